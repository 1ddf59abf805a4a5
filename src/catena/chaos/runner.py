"""Local cluster processes for a chaos run, the seeded fault schedule, and the run itself.

Every process is a child started here and signalled by its PID only: kill -9 (then a restart
from the same data dir and port), SIGSTOP/SIGCONT. Coordinators and members listen each on a
loopback address of its own (127.0.2.N) behind the fault-injecting proxy (`proxy.py`), which
holds the addresses the cluster knows them by, so partitions cut chosen pairs of processes.
With a `Lab` (`netns.py`) there is no proxy: each process (the run's own clients too) lives in
a network namespace of its own on the lab's bridge, is known by its address there, and shares
a cluster secret (protected mode: they listen beyond loopback); partitions are iptables rules
in the namespace of the process they concern, and the schedule also holds the gray kinds (link
cuts by chain position, a coordinator cut from the members, a flapping member, a one-way cut of
the tail, packet loss, delay where netem is there).
Faults come one at a time: after each one the runner waits (bounded) until the chain has all its
members again before the next, so the chain never loses every copy at once. The schedule
(kinds, targets, durations, gaps) is drawn from the seed alone; the wall-clock moments at which
it is applied vary with the machine.
"""

from __future__ import annotations

import os
import random
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import redis

from catena.chaos.netns import Faults, Lab
from catena.chaos.proxy import CLIENT, ProxyProcess, Route
from catena.etcd_local import etcd_argv
from catena.loopback import HOST, free_ports, wait_until

START_TIMEOUT_S = 30.0
REJOIN_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 5.0
WARMUP_S = 2.0
SETTLE_S = 1.0  # whole this long after a fault before the next: a removal landing just after its heal counts

FAULT_KINDS = ("kill-member", "pause-member", "kill-coordinator",
               "isolate-member", "isolate-coordinator", "cut-coordinator-member", "cut-members")
FAULT_WEIGHTS = (4, 3, 2, 2, 1, 2, 2)
PARTITIONS = frozenset(FAULT_KINDS[3:])
ETCD_FAULT_KINDS = ("kill-etcd", "pause-etcd")  # with --store etcd, on top of the others
ETCD_FAULT_WEIGHTS = (2, 1)
# netns runs only; "-tail", "-head", "-middle": the member in that position when it begins
GRAY_KINDS = ("cut-middle-tail", "cut-head-middle", "isolate-coordinator-members", "flap-member",
              "one-way-tail", "lossy-member", "slow-member")
GRAY_WEIGHTS = (3, 3, 2, 2, 2, 1, 1)
GRAY_ETCD_KINDS = ("cut-etcd-coordinator",)  # the leader cut from etcd only (netns with --store etcd)
GRAY_ETCD_WEIGHTS = (2,)
FLAP_CUT_S, FLAP_UP_S, FLAPS = 2.0, 1.0, 3
LOSS = 0.3
DELAY_MS = 100
ETCD_PREFIX = "/catena/chaos"
REAL_NET = "127.0.2."  # each process's own loopback host: N = its index + 1


# -- processes --------------------------------------------------------------------------------------

class Proc:
    """One child process with its log file; signals go to its PID."""

    def __init__(self, name: str, argv: list[str], log_path: Path, env: dict[str, str] | None = None):
        self.name, self.argv, self.log_path = name, argv, log_path
        with open(log_path, "ab") as log:
            self.popen = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                          start_new_session=True, env=env)
        self.paused = False

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill9(self) -> None:
        if self.alive:
            os.kill(self.popen.pid, signal.SIGKILL)
        self.popen.wait(timeout=STOP_TIMEOUT_S)
        self.paused = False

    def pause(self) -> None:
        if self.alive:
            os.kill(self.popen.pid, signal.SIGSTOP)
            self.paused = True

    def resume(self) -> None:
        if self.alive and self.paused:
            os.kill(self.popen.pid, signal.SIGCONT)
        self.paused = False

    def stop(self) -> None:
        if self.alive:
            self.resume()
            os.kill(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.kill(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout=STOP_TIMEOUT_S)


def stop_all(procs) -> None:
    """Stop every process (the newest first), going on past failures, then report them."""
    errors = []
    for proc in reversed(procs):
        try:
            proc.stop()
        except Exception as exc:  # noqa: BLE001 - keep stopping the others
            errors.append(f"{proc.name}: {exc!r}")
    if errors:
        raise RuntimeError("could not stop: " + "; ".join(errors))


def admin(addr: str, *args, timeout: float = 2.0):
    host, port = addr.rsplit(":", 1)
    with redis.Redis(host=host, port=int(port), socket_timeout=timeout, socket_connect_timeout=timeout,
                     decode_responses=True, protocol=2) as c:
        return c.execute_command(*args)


def wait_for(predicate, timeout: float, what: str, interval: float = 0.05):
    return wait_until(predicate, timeout, what, interval=interval, retry_on=(redis.RedisError, OSError))


class LocalCluster:
    """`members` members (per chain, `chains` chains: cluster mode when more than one, as
    `catena up --chains`) and a coordinator (embedded store), or two coordinators on one etcd
    node (`store="etcd"`), under `root`. Coordinators and members are known by their addresses
    on 127.0.0.1 (the proxy's), each listening on its own 127.0.2.N; etcd listens directly.
    With a `lab`, each process (etcd and the run's clients too) in a namespace of its own,
    known by its address there."""

    def __init__(self, root: Path, members: int = 3, store: str = "embedded", proxy: bool = True,
                 lab: Lab | None = None, chains: int = 1, spare: int = 0):
        self.root = root
        self.chains = self.founded = chains  # chains made, chains the coordinator starts with
        self.removed: set[int] = set()  # chains removed (MASTER.REMOVECHAIN)
        members *= chains
        (root / "logs").mkdir(parents=True, exist_ok=True)
        coordinators = 2 if store == "etcd" else 1
        ports = free_ports(coordinators + members + (2 if store == "etcd" else 0))
        # lab: coordinators, members, etcd, then the clients, each at an address of its own
        hosts = [Lab.address(i) if lab else HOST for i in range(coordinators + members + 2)]
        self.coordinators = [f"{h}:{p}" for h, p in zip(hosts, ports[:coordinators])]
        self.coordinator = ",".join(self.coordinators)  # as clients take it
        self.members = [f"{h}:{p}" for h, p in zip(hosts[coordinators:], ports[coordinators:coordinators + members])]
        self.chain_of = {a: i * chains // members for i, a in enumerate(self.members)}  # in order, per chain
        # `spare` members of one more chain, started by `add_chain` (known to the proxy from the start)
        self.spares = [f"{HOST}:{p}" for p in (free_ports(spare, set(ports)) if spare and lab is None else [])]
        self.chain_of.update(dict.fromkeys(self.spares, chains))
        etcd_host = hosts[coordinators + members]
        self.etcd = f"{etcd_host}:{ports[-2]}" if store == "etcd" else None
        self._etcd_peer = f"http://{etcd_host}:{ports[-1]}"
        self.client_host = hosts[-1]
        self.lab = lab
        self.proxied = proxy and lab is None
        # not proxied: every process listens on its own address, with nothing in between.
        self.real = {a: f"{REAL_NET}{i + 1}:{a.rsplit(':', 1)[1]}" if self.proxied else a
                     for i, a in enumerate(self.everyone)}
        # lab: one secret for the run's processes (they listen beyond loopback: protected mode)
        self.env = os.environ | {"CATENA_SECRET": secrets.token_hex(16)} if lab else None
        self.procs: dict[str, Proc] = {}
        self._all: list[Proc] = []
        self.proxy: ProxyProcess | None = None
        self.faults: Faults | None = None

    @property
    def everyone(self) -> list[str]:
        """The processes behind the proxy."""
        return [*self.coordinators, *self.members, *(a for a in self.spares if a not in self.members)]

    @property
    def store_url(self) -> str:
        return f"etcd://{self.etcd}{ETCD_PREFIX}"

    def name(self, addr: str) -> str:
        if addr == self.etcd:
            return "etcd"
        return ("coordinator-" if addr in self.coordinators else "member-") + addr.rsplit(":", 1)[1]

    def _argv(self, addr: str) -> list[str]:
        if addr == self.etcd:
            return etcd_argv("etcd", self.root / "etcd", f"http://{addr}", self._etcd_peer,
                             f"etcd={self._etcd_peer}", f"catena-chaos-{self.root.name}",
                             "existing" if (self.root / "etcd").exists() else "new")
        port = addr.rsplit(":", 1)[1]
        real = self.real[addr]
        net = ["--listen", real] + (["--advertise", addr, "--source-addr", real.rsplit(":", 1)[0]]
                                    if self.proxied else [])
        if addr in self.coordinators:
            store = (["--store", self.store_url] if self.etcd else
                     ["--data-dir", str(self.root / f"coordinator-{port}")])
            args = ["coordinator", *net, *store, *(["--chains", str(self.founded)] if self.founded > 1 else [])]
        else:
            args = ["member", *net, "--data-dir", str(self.root / f"member-{port}"),
                    "--coordinator", self.store_url if self.etcd else self.coordinator,
                    *(["--cluster-enabled", "yes", "--chain", str(self.chain_of[addr])] if self.founded > 1 else [])]
        return [sys.executable, "-m", "catena", *args]

    def _spawn(self, addr: str) -> Proc:
        name = self.name(addr)
        argv = self._argv(addr)
        if self.lab is not None:
            argv = self.lab.nodes[name].exec(argv)
        proc = Proc(name, argv, self.root / "logs" / f"{name}.log", self.env)
        self.procs[addr] = proc
        self._all.append(proc)
        return proc

    def chain(self, chain_id: int = 0) -> list[str]:
        """A chain as the coordinator leader has it (followers answer NOTLEADER: the next is asked)."""
        for i, addr in enumerate(self.coordinators):
            try:
                words = admin(addr, "MASTER.GET_CHAIN", *([chain_id] if self.founded > 1 else []))
                return [a if isinstance(a, str) else a.decode() for a in words]
            except (redis.RedisError, OSError):
                if i == len(self.coordinators) - 1:
                    raise
        raise AssertionError("unreachable")

    def live_chains(self) -> list[int]:
        """The chains made and not removed."""
        return [c for c in range(self.chains) if c not in self.removed]

    def chained(self) -> list[str]:
        """Every chain's members as the leader has them, chain after chain."""
        return [m for chain_id in self.live_chains() for m in self.chain(chain_id)]

    def whole(self, exact: bool = False) -> bool:
        """Every chain holds each of its members (`exact`: and no other)."""
        for chain_id in self.live_chains():
            chain, own = self.chain(chain_id), [m for m in self.members if self.chain_of[m] == chain_id]
            if (sorted(chain) != sorted(own)) if exact else not set(own) <= set(chain):
                return False
        return True

    def leader(self) -> str | None:
        """The coordinator leading now, as the first one that answers knows it (None: none known)."""
        for addr in self.coordinators:
            try:
                leader = admin(addr, "MASTER.LEADER")
            except (redis.RedisError, OSError):
                continue
            return leader if leader in self.coordinators else None
        return None

    def start(self) -> None:
        if self.proxied:
            self.proxy = ProxyProcess([Route(self.name(a), a, self.real[a]) for a in self.everyone],
                                      self.root / "logs" / "proxy.log")
        if self.lab is not None:
            self._build_lab()
        if self.etcd:
            self._spawn(self.etcd)
        for addr in self.coordinators:
            self._spawn(addr)
        wait_for(lambda: self.chain() is not None, START_TIMEOUT_S, "a coordinator to lead")
        for addr in self.members:  # they register themselves; one at a time
            self._spawn(addr)
            wait_for(lambda: addr in self.chain(self.chain_of[addr]), START_TIMEOUT_S, f"{addr} to join the chain")

    def _build_lab(self) -> None:
        """A namespace per process (named after it) and one for the run's clients, which this
        thread, and the workload's and nemesis's threads started after, then live in."""
        processes = [*self.everyone, *([self.etcd] if self.etcd else [])]
        nodes = {a: self.lab.node(self.name(a), a.rsplit(":", 1)[0]) for a in processes}
        nodes[CLIENT] = self.lab.node(CLIENT, self.client_host)
        self.lab.join(CLIENT)
        self.faults = Faults(nodes)

    def add_chain(self) -> int:
        """Start the spare members: they found one more chain, which the coordinator empties and
        announces in the slot map ("adding a chain"); returns its id once the map holds it."""
        chain_id = self.chain_of[self.spares[0]]
        for addr in self.spares:
            self._spawn(addr)
            wait_for(lambda: addr in self.chain(chain_id), START_TIMEOUT_S, f"{addr} to join chain {chain_id}")
        self.members += self.spares
        self.chains += 1
        wait_for(lambda: str(chain_id) in map(str, self.slot_map()[1::2]), START_TIMEOUT_S,
                 f"chain {chain_id} in the slot map")
        return chain_id

    def retire_chain(self, chain_id: int) -> None:
        """Chain `chain_id` was removed: its members are stopped and no longer faulted or healed."""
        gone = [a for a in self.members if self.chain_of[a] == chain_id]
        self.removed.add(chain_id)
        self.members = [a for a in self.members if a not in gone]
        for addr in gone:
            self.procs.pop(addr).stop()

    def slot_map(self) -> list:
        """MASTER.SLOTMAP at the leader: the map's version, then each chain's id and ranges."""
        return admin(self.leading(), "MASTER.SLOTMAP")

    def leading(self) -> str:
        """The coordinator to send an operator's command to: the leader, else the first."""
        return self.leader() or self.coordinators[0]

    def kill9(self, addr: str) -> None:
        self.procs[addr].kill9()

    def restart(self, addr: str) -> None:
        if self.procs[addr].alive:
            self.procs[addr].kill9()
        self._spawn(addr)

    def pause(self, addr: str) -> None:
        self.procs[addr].pause()

    def resume(self, addr: str) -> None:
        self.procs[addr].resume()

    def partition(self, pairs: list[tuple[str, str]]) -> None:
        """Cut each pair of processes (addresses, or CLIENT for the workload) both ways; the
        cuts replace any in force."""
        if self.faults is not None:
            self.faults.heal()
            self.faults.cut(pairs)
        else:
            self.proxy.cut([(self._proxy_name(a), self._proxy_name(b)) for a, b in pairs])

    def _proxy_name(self, addr: str) -> str:
        return CLIENT if addr == CLIENT else self.name(addr)

    def degrade(self, kind: str, addr: str) -> None:
        """A one-way cut of `addr` (nothing it sends gets out), packet loss or delay (lab)."""
        self.faults.heal()
        if kind == "one-way-tail":
            self.faults.one_way(addr)
        elif kind == "lossy-member":
            self.faults.loss(addr, LOSS)
        else:
            self.faults.delay(addr, DELAY_MS)

    def heal_network(self) -> None:
        if self.faults is not None:
            self.faults.heal()
        else:
            self.proxy.heal()

    def heal(self) -> None:
        """Every process running and not paused, nothing cut."""
        if self.proxy is not None or self.faults is not None:
            self.heal_network()
        for addr, proc in list(self.procs.items()):
            if proc.paused:
                proc.resume()
            if not proc.alive:
                self._spawn(addr)

    def wait_whole(self, timeout: float = REJOIN_TIMEOUT_S) -> bool:
        """Until the coordinator's chain holds every member (in any order); False on timeout."""
        try:
            wait_for(lambda: self.whole(exact=True), timeout, "the whole chain")
            return True
        except TimeoutError:
            return False

    def stop(self) -> None:
        try:
            stop_all(self._all)
        finally:
            if self.proxy is not None:
                self.proxy.stop()


# -- the fault schedule -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Fault:
    """One planned fault: `at` s after the start (at the earliest), `target` an index into the
    members (modulo their number for the coordinators; ignored for etcd), held for `hold` s."""

    at: float
    kind: str
    target: int
    hold: float


def schedule(seed: int, duration: float, members: int, store: str = "embedded",
             partitions: bool = True, gray: bool = False, delay: bool = False) -> list[Fault]:
    """The faults of a run, drawn from the seed alone (and the kinds the run can apply: `gray`
    in a netns run, its delays only with `delay`)."""
    kinds, weights = list(FAULT_KINDS), list(FAULT_WEIGHTS)
    if store == "etcd":
        kinds += ETCD_FAULT_KINDS
        weights += ETCD_FAULT_WEIGHTS
    if gray:
        kinds += GRAY_KINDS
        weights += [w if delay or k != "slow-member" else 0 for k, w in zip(GRAY_KINDS, GRAY_WEIGHTS)]
    if gray and store == "etcd":
        kinds += GRAY_ETCD_KINDS
        weights += GRAY_ETCD_WEIGHTS
    if not partitions:
        weights = [0 if k in PARTITIONS else w for k, w in zip(kinds, weights)]
    rng = random.Random(f"catena-chaos-{seed}")
    faults, t = [], WARMUP_S
    while True:
        t += rng.uniform(0.5, 2.5)
        kind = rng.choices(kinds, weights)[0]
        target = rng.randrange(members)
        hold = rng.uniform(0.2, 2.0) if kind == "kill-coordinator" else rng.uniform(0.2, 3.0)
        if kind in GRAY_KINDS + GRAY_ETCD_KINDS:  # held longer than a repair takes (about 1 s)
            hold = FLAPS * (FLAP_CUT_S + FLAP_UP_S) if kind == "flap-member" else 2.0 + hold
        if t + hold > duration - 1.0:
            return faults
        faults.append(Fault(round(t, 3), kind, target, round(hold, 3)))
        t += hold


def target_of(fault: Fault, coordinators: list[str], members: list[str], etcd: str | None) -> str:
    """The process a fault acts on (for a partition: the one it cuts off)."""
    if fault.kind.endswith("-etcd"):
        return etcd
    if fault.kind.endswith("-coordinator") or fault.kind in ("cut-coordinator-member", "isolate-coordinator-members"):
        return coordinators[fault.target % len(coordinators)]
    return members[fault.target]


def cut_pairs(fault: Fault, coordinators: list[str], members: list[str],
              chain: list[str] | None = None, etcd: str | None = None) -> list[tuple[str, str]]:
    """The pairs a partition fault cuts (empty for the other kinds); a link cut by chain
    position is between the members of `chain` (the chain as it is when the cut begins)."""
    m = members[fault.target]
    coordinator = coordinators[fault.target % len(coordinators)]
    everyone = [*coordinators, *members, CLIENT]
    chain = chain or members
    return {
        "isolate-member": [(m, x) for x in everyone if x != m],
        "flap-member": [(m, x) for x in everyone if x != m],
        "isolate-coordinator": [(coordinator, x) for x in everyone if x != coordinator],
        "isolate-coordinator-members": [(coordinator, x) for x in members],
        "cut-coordinator-member": [(coordinator, m)],
        "cut-etcd-coordinator": [(coordinator, etcd)],
        "cut-members": [(m, members[(fault.target + 1) % len(members)])],
        "cut-middle-tail": [(chain[-2], chain[-1])],
        "cut-head-middle": [(chain[0], chain[1])],
    }.get(fault.kind, [])


@dataclass
class Applied:
    """A fault as it happened (monotonic seconds), for the report and the timeline."""

    fault: Fault
    target: str
    start: float
    end: float = 0.0
    rejoined: float | None = None  # when the chain was whole again
    note: str = ""


@dataclass
class Nemesis:
    """Applies a schedule to a cluster in its own thread; stops early when asked."""

    cluster: LocalCluster
    faults: list[Fault]
    t0: float
    applied: list[Applied] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    settle_s: float = SETTLE_S

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos-nemesis", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=REJOIN_TIMEOUT_S + 10)

    def _run(self) -> None:
        for fault in self.faults:
            if self._stop.wait(max(0.0, self.t0 + fault.at - time.monotonic())):
                return
            try:
                self._apply(fault)
            except Exception as exc:  # noqa: BLE001 - a fault that could not be applied fails the run
                self.errors.append(f"{fault.kind}: {exc!r}")
            if self._stop.is_set():
                return

    def _apply(self, fault: Fault) -> None:
        c = self.cluster
        chain = c.chain(c.chain_of[c.members[fault.target]]) if fault.kind in GRAY_KINDS else None
        if fault.kind in ("isolate-coordinator-members", *GRAY_ETCD_KINDS) and len(c.coordinators) > 1:
            leader = c.leader()  # the one cut, if known
            fault = replace(fault, target=c.coordinators.index(leader) if leader else fault.target)
        cuts = cut_pairs(fault, c.coordinators, c.members, chain, c.etcd)
        target = chain[-1] if fault.kind == "one-way-tail" else target_of(fault, c.coordinators, c.members, c.etcd)
        label = (f"{c.name(target)} from {'members' if fault.kind.endswith('-members') else 'all'}" if len(cuts) > 1
                 else f"{c.name(cuts[0][0])} ~ {c.name(cuts[0][1])}" if cuts else c.name(target))
        a = Applied(fault, label, time.monotonic())
        self.applied.append(a)
        try:
            if fault.kind.startswith("pause-"):
                c.pause(target)
                self._stop.wait(fault.hold)
                c.resume(target)
            elif fault.kind == "flap-member":
                for _ in range(FLAPS):
                    c.partition(cuts)
                    if self._stop.wait(FLAP_CUT_S):
                        break
                    c.heal_network()
                    if self._stop.wait(FLAP_UP_S):
                        break
                c.heal_network()
            elif fault.kind in ("one-way-tail", "lossy-member", "slow-member"):
                c.degrade(fault.kind, target)
                self._stop.wait(fault.hold)
                c.heal_network()
            elif cuts:
                c.partition(cuts)
                self._stop.wait(fault.hold)
                c.heal_network()
            else:
                c.kill9(target)
                self._stop.wait(fault.hold)
                c.restart(target)
            a.end = time.monotonic()
            a.rejoined = settled_whole(c, REJOIN_TIMEOUT_S, self.settle_s)
            if a.rejoined is None:
                a.note = f"chain not whole {REJOIN_TIMEOUT_S:.0f} s after the fault"
                raise TimeoutError(f"{label}: {a.note}")
        except Exception as exc:
            a.end = a.end or time.monotonic()
            a.note = a.note or repr(exc)
            raise


def settled_whole(cluster, timeout: float, settle_s: float = SETTLE_S) -> float | None:
    """When the chain last became whole, once it has held every member for `settle_s` (a chain
    read whole just as a removal lands is not whole yet); None if not within `timeout`."""
    since = None

    def settled():
        nonlocal since
        now = time.monotonic()
        if not cluster.whole():
            since = None
            return False
        since = since or now
        return now - since >= settle_s

    try:
        wait_for(settled, timeout, "the whole chain")
    except TimeoutError:
        return None
    return since


def temp_root() -> Path:
    return Path(tempfile.mkdtemp(prefix="catena-chaos-"))
