"""`catena chaos --target ADDRESS`: the same faults on a cluster that is already running here.

`RunningCluster` offers what the nemesis and `catena.chaos.cli.run` use of `LocalCluster`
(coordinator, members, chain(), kill9, restart, pause, resume, heal, wait_whole, stop), for
processes this run did not start:

- discovery: the coordinator address as clients are given it (`host:port[,host:port…]` or
  `etcd://…/prefix`); the chain's members come from the leader's view. The coordinators are the
  addresses listed (or, for etcd, the leader at the start).
- the local process of each address: its TCP port's listening socket in /proc/net/tcp{,6} (an
  inode), then the process holding `socket:[inode]` among /proc/<pid>/fd. Its argv, cwd and
  environment (/proc/<pid>/cmdline, cwd, environ) are recorded up front, so that after a kill -9
  it is started again exactly so: detached (own session, stdin /dev/null), its output appended
  to `<run dir>/logs/<name>.log`. Signals go to a PID only while /proc shows the same process
  (its start time), never to a PID the system may have reused.
- an address that is not served by a process of this machine that we may signal and read
  (another host, another user, another network namespace) refuses the run before any fault.

`stop()` heals (paused processes continued, killed ones started again), waits for the chain to
be whole and leaves everything running; it prints the PIDs that changed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from catena.chaos.runner import (
    REJOIN_TIMEOUT_S,
    START_TIMEOUT_S,
    STOP_TIMEOUT_S,
    wait_for,
)
from catena.coordinator.address import AddressError, EtcdAddress, parse
from catena.coordinator.discovery import CoordinatorClient
from catena.errors import CatenaError
from catena.view import View

LISTEN = "0A"  # TCP state in /proc/net/tcp
NET_TABLES = (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6))


class TargetError(RuntimeError):
    """The target cluster cannot be used (`catena chaos` exits 2 with this message)."""


class Unreachable(ConnectionError):
    """The coordinator leader did not answer (retried by `wait_for`)."""


# -- port -> PID ------------------------------------------------------------------------------------

def _proc_ip(hex_addr: str, family: int) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """An address of /proc/net/tcp{,6}: 32-bit words in the host's byte order."""
    words = [int(hex_addr[i:i + 8], 16) for i in range(0, len(hex_addr), 8)]
    packed = b"".join(struct.pack("=I", w) for w in words)
    return ipaddress.ip_address(socket.inet_ntop(family, packed))


def _serves(listener: ipaddress.IPv4Address | ipaddress.IPv6Address, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether a socket listening on `listener` accepts connections to `ip`."""
    if listener.is_unspecified:  # 0.0.0.0, or :: (which takes IPv4 too unless IPV6_V6ONLY)
        return listener.version == ip.version or listener.version == 6
    mapped = getattr(listener, "ipv4_mapped", None)
    return listener == ip or (mapped is not None and mapped == ip)


def listening_inodes(ip: str, port: int) -> set[str]:
    """The inodes of the TCP sockets listening on `ip`:`port` (wildcard listeners included)."""
    want = ipaddress.ip_address(ip)
    inodes = set()
    for table, family in NET_TABLES:
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            f = row.split()
            if len(f) < 10 or f[3] != LISTEN:
                continue
            local, _, hex_port = f[1].partition(":")
            if int(hex_port, 16) == port and _serves(_proc_ip(local, family), want) and f[9] != "0":
                inodes.add(f[9])
    return inodes


def pids_holding(inodes: set[str]) -> tuple[set[int], int]:
    """The PIDs with one of `inodes` among their open files, and how many processes' fds could
    not be read (other users' processes)."""
    links = {f"socket:[{i}]" for i in inodes}
    found, denied = set(), 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fds = list((entry / "fd").iterdir())
        except PermissionError:
            denied += 1
            continue
        except OSError:  # gone meanwhile
            continue
        for fd in fds:
            try:
                if os.readlink(fd) in links:
                    found.add(int(entry.name))
                    break
            except OSError:
                continue
    return found, denied


def is_local_ip(ip: str) -> bool:
    """Whether `ip` is an address of this machine (one can bind to it)."""
    family = socket.AF_INET6 if ipaddress.ip_address(ip).version == 6 else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        try:
            s.bind((ip, 0))
        except OSError:
            return False
    return True


def pid_listening_on(addr: str) -> int:
    """The PID of the local process listening on TCP `addr` ("host:port"); TargetError saying why
    when there is none this run could use."""
    if not Path(NET_TABLES[0][0]).exists():
        raise TargetError(f"{addr}: finding the process behind a port needs Linux /proc (no {NET_TABLES[0][0]})")
    host, _, port_text = addr.rpartition(":")
    port = int(port_text)
    try:
        ips = sorted({info[4][0] for info in socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)})
    except OSError as exc:
        raise TargetError(f"{addr}: cannot resolve {host!r}: {exc}") from None
    local = [ip for ip in ips if is_local_ip(ip)]
    if not local:
        raise TargetError(f"{addr} is not an address of this machine ({', '.join(ips)}); --target needs every "
                          "coordinator and member to run here, where it can kill and restart them")
    for ip in local:
        inodes = listening_inodes(ip, port)
        if not inodes:
            continue
        pids, denied = pids_holding(inodes)
        if len(pids) == 1:
            return pids.pop()
        if len(pids) > 1:
            raise TargetError(f"{addr}: several processes hold its listening socket ({sorted(pids)})")
        why = f" ({denied} processes of other users could not be inspected)" if denied else ""
        raise TargetError(f"{addr}: a process listens on it but not one this user may inspect and signal{why}")
    raise TargetError(f"{addr}: no process listens on port {port} in this machine's network namespace "
                      f"(looked for {', '.join(local)})")


# -- processes --------------------------------------------------------------------------------------

def proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, start time in clock ticks) of `pid`, None when there is no such process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rpartition(")")[2].split()
    return fields[0], int(fields[19])


@dataclass
class Process:
    """One process known by its PID (and start time): one found behind a port, or one this run
    started again (`popen` then, so it is reaped)."""

    name: str
    pid: int
    started: int  # /proc/<pid>/stat start time, to never signal a reused PID
    argv: list[str]
    cwd: str
    env: dict[str, str]
    popen: subprocess.Popen | None = None
    log_path: Path | None = None
    paused: bool = False

    @classmethod
    def of_pid(cls, name: str, pid: int) -> Process:
        """Record how `pid` was started; TargetError when /proc does not let us (another user)."""
        proc = Path(f"/proc/{pid}")
        try:
            argv = [a.decode(errors="surrogateescape") for a in (proc / "cmdline").read_bytes().split(b"\0")[:-1]]
            env = dict(item.decode(errors="surrogateescape").partition("=")[::2]
                       for item in (proc / "environ").read_bytes().split(b"\0") if b"=" in item)
            cwd = os.readlink(proc / "cwd")
            os.kill(pid, 0)
        except OSError as exc:
            raise TargetError(f"{name}: cannot record how process {pid} was started or signal it: {exc}") from None
        stat = proc_stat(pid)
        if not argv or stat is None:
            raise TargetError(f"{name}: process {pid} exited while it was being inspected")
        return cls(name, pid, stat[1], argv, cwd, env)

    @property
    def alive(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        stat = proc_stat(self.pid)
        return stat is not None and stat[1] == self.started and stat[0] not in "ZX"

    def _signal(self, sig: int) -> None:
        if self.alive:
            os.kill(self.pid, sig)

    def kill9(self) -> None:
        """SIGKILL; returns once it is gone (a zombie of its own parent counts as gone)."""
        self._signal(signal.SIGKILL)
        if self.popen is not None:
            self.popen.wait(timeout=STOP_TIMEOUT_S)
        else:
            wait_for(lambda: not self.alive, STOP_TIMEOUT_S, f"{self.name} (pid {self.pid}) to die")
        self.paused = False

    def pause(self) -> None:
        self._signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        if self.paused:
            self._signal(signal.SIGCONT)
        self.paused = False

    def respawn(self, log_path: Path) -> Process:
        """The same argv, cwd and environment again, detached, output appended to `log_path`."""
        with open(log_path, "ab") as log:
            popen = subprocess.Popen(self.argv, cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL, stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        stat = proc_stat(popen.pid)
        return Process(self.name, popen.pid, stat[1] if stat else 0, self.argv, self.cwd, self.env, popen, log_path)


# -- the cluster ------------------------------------------------------------------------------------

@dataclass
class RunningCluster:
    """A running cluster's processes on this machine; see the module's docstring. Its schedule
    holds no partitions (there is no proxy in front of it)."""

    target: str
    root: Path
    say: Callable[[str], object] = print
    password: str | None = None  # the cluster's data password, if it has one
    coordinator: str = field(init=False)  # the address as given: the workload's clients find the leader with it
    members: list[str] = field(init=False)  # the chain (and learner) at the start
    coordinators: list[str] = field(init=False)  # the coordinator processes faults may kill
    etcd: str | None = field(init=False, default=None)  # an etcd the coordinators use is never faulted here
    procs: dict[str, Process] = field(init=False, default_factory=dict)  # address -> its process now
    first_pids: dict[str, int] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self._lock = threading.RLock()
        self._victim: str | None = None  # the coordinator a "kill-coordinator" fault killed
        try:
            self._address = parse(self.target)
        except AddressError as exc:
            raise TargetError(f"--target: {exc}") from None
        self.coordinator = str(self._address)
        if not isinstance(self._address, EtcdAddress):
            self.coordinators = list(self._address.addrs)
            self._map(self.coordinators, "coordinator")  # before any network call: refuse fast
        leader, view = self._discover()
        if isinstance(self._address, EtcdAddress):
            self.coordinators = [leader]
            self._map(self.coordinators, "coordinator")
        self.members = list(view.members) + ([view.learner] if view.learner else [])
        if not self.members:
            raise TargetError(f"the chain of {self.coordinator} has no members")
        self._map(self.members, "member")
        (self.root / "logs").mkdir(parents=True, exist_ok=True)

    def _map(self, addrs: list[str], role: str) -> None:
        problems = []
        for addr in addrs:
            name = f"{role} {addr}"
            try:
                self.procs[addr] = Process.of_pid(name, pid_listening_on(addr))
                self.first_pids[addr] = self.procs[addr].pid
            except TargetError as exc:
                problems.append(f"  {role} {exc}")
        if problems:
            raise TargetError("cannot run faults on this cluster from here:\n" + "\n".join(problems))

    def _call(self, *args, timeout: float = 2.0):
        """One command to the coordinator leader (found as a client finds it)."""

        async def go():
            client = CoordinatorClient(self._address, password=self.password)
            try:
                return await client.call(*args, timeout=timeout), client.leader
            finally:
                await client.close()

        try:
            return asyncio.run(go())
        except CatenaError as exc:
            raise Unreachable(f"coordinator {self.coordinator}: {exc}") from None

    def _discover(self):

        try:
            words, leader = self._call(b"MASTER.GET_VIEW", timeout=10.0)
        except (Unreachable, OSError) as exc:
            raise TargetError(f"cannot read the chain from {self.coordinator}: {exc}") from None
        return leader, View.from_words(words)

    # -- what the nemesis uses ------------------------------------------------------------------

    def name(self, addr: str) -> str:
        return self.procs[self._resolve(addr)].name

    def chain(self, chain_id: int = 0) -> list[str]:  # one chain: the run's faults and checks use chain 0's
        words, _ = self._call(b"MASTER.GET_CHAIN")
        return [w.decode() if isinstance(w, bytes) else str(w) for w in words]

    chained = chain

    @property
    def chain_of(self) -> dict[str, int]:
        return dict.fromkeys(self.members, 0)

    def whole(self) -> bool:
        return set(self.members) <= set(self.chain())

    def start(self) -> None:
        """Nothing to start; the chain must be whole before any fault."""
        if not self.wait_whole(START_TIMEOUT_S):
            raise TargetError(f"the chain of {self.coordinator} does not hold all of {self.members}")

    def _resolve(self, addr: str, killing: bool = False) -> str:
        """The coordinator address stands for one coordinator process: the leader when it is one
        of those found, and for a restart the one killed."""
        if addr != self.coordinator or addr in self.procs:
            return addr
        if not killing and self._victim is not None:
            return self._victim
        try:
            _, leader = self._call(b"MASTER.GET_CHAIN")  # leader-only: `leader` is the leader
        except Unreachable:
            leader = None
        self._victim = leader if leader in self.procs else self.coordinators[0]
        return self._victim

    def kill9(self, addr: str) -> None:
        with self._lock:
            self.procs[self._resolve(addr, killing=True)].kill9()

    def restart(self, addr: str) -> None:
        with self._lock:
            addr = self._resolve(addr)
            old = self.procs[addr]
            if old.alive:
                old.kill9()
            log = self.root / "logs" / f"{old.name.replace(' ', '-').replace(':', '-')}.log"
            self.procs[addr] = old.respawn(log)

    def pause(self, addr: str) -> None:
        with self._lock:
            self.procs[addr].pause()

    def resume(self, addr: str) -> None:
        with self._lock:
            self.procs[addr].resume()

    def heal(self) -> None:
        """Every process running and not paused."""
        with self._lock:
            for addr, proc in list(self.procs.items()):
                proc.resume()
                if not proc.alive:
                    self.restart(addr)

    def wait_whole(self, timeout: float = REJOIN_TIMEOUT_S) -> bool:
        """Until the coordinator's chain holds every member found at the start; False on timeout."""
        try:
            wait_for(self.whole, timeout, "the whole chain")
        except TimeoutError:
            return False
        return True

    @property
    def respawned(self) -> list[Process]:
        """The processes this run started (they write to the run's log directory)."""
        return [p for p in self.procs.values() if p.popen is not None]

    def stop(self) -> None:
        """Leave the cluster running and whole: heal, wait, and say which PIDs changed."""
        started = time.monotonic()
        self.heal()
        if not self.wait_whole():
            self.say(f"chaos: warning: the chain of {self.coordinator} was not whole "
                     f"{time.monotonic() - started:.0f} s after healing")
        for addr, proc in self.procs.items():
            if proc.pid != self.first_pids[addr]:
                self.say(f"chaos: {proc.name}: pid {self.first_pids[addr]} -> {proc.pid} "
                         f"(started again as before; output appended to {proc.log_path})")
        self.say(f"chaos: the cluster at {self.coordinator} is left running")
