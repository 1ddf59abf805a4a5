"""etcd for the integration tier: Debian's `etcd-server` as real processes on free loopback ports,
each with its own data dir under the test's tmp_path, stopped by PID at teardown.

- `EtcdNode` is one etcd process (start, kill -9, restart from its data dir, SIGSTOP/SIGCONT).
- `EtcdCluster` is one node or three; `endpoints` is the `host:port,…` list coordinators use,
  `url(prefix)` the `etcd://…/prefix` address; `leader()` names etcd's own raft leader (from
  `etcdctl endpoint status`-like gRPC calls made with aetcd).
- `HaCluster` adds catena coordinators (`--store etcd://…`) and members that find the leader
  through discovery, on top of the integration conftest's `Cluster`.

Timings are etcd's defaults unless `tuned` (heartbeat 50 ms, election 500 ms): the lease TTL
the coordinators ask for is then the smallest etcd grants (2 s by default, 1 s tuned).
"""

from __future__ import annotations

import asyncio
import shutil
import socket
from pathlib import Path

import pytest
import redis

from catena.etcd_local import ETCD, etcd_argv

from conftest import CHAIN_TIMEOUT_S, HOST, START_TIMEOUT_S, Cluster, Proc, addr_of, as_dict, catena_argv, free_port, \
    port_of, wait_until

ETCD_START_S = 20.0
PREFIX = "/catena/test"

requires_etcd = pytest.mark.skipif(not Path(ETCD).exists(), reason="etcd-server is not installed")


class EtcdNode:
    def __init__(self, root: Path, name: str, tuned: bool):
        self.root = root
        self.name = name
        self.tuned = tuned
        self.client_port = self.peer_port = 0
        self.data_dir = root / f"etcd-{name}"
        self.new_ports()
        self.proc: Proc | None = None
        self.procs: list[Proc] = []

    def new_ports(self) -> None:
        """Free ports, and an empty data dir (a first start on them)."""
        self.client_port, self.peer_port = free_port(), free_port()
        shutil.rmtree(self.data_dir, ignore_errors=True)

    @property
    def client_url(self) -> str:
        return f"http://{HOST}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://{HOST}:{self.peer_port}"

    @property
    def endpoint(self) -> str:
        return addr_of(self.client_port)

    def argv(self, initial_cluster: str, state: str) -> list[str]:
        return etcd_argv(self.name, self.data_dir, self.client_url, self.peer_url, initial_cluster,
                         f"catena-test-{self.root.name}", state, self.tuned)

    def start(self, initial_cluster: str, state: str = "new") -> None:
        self.proc = Proc(f"etcd-{self.name}", self.argv(initial_cluster, state),
                         self.root / "logs" / f"etcd-{self.name}.log")
        self.procs.append(self.proc)

    def wait_listening(self, timeout: float = ETCD_START_S) -> None:
        def up():
            if not self.proc.alive:
                raise AssertionError(f"etcd {self.name} exited:\n{self.proc.log_tail()}")
            with socket.create_connection((HOST, self.client_port), timeout=1.0):
                return True

        wait_until(up, timeout, f"etcd {self.name} to listen on {self.endpoint}")

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.alive

    def kill9(self) -> None:
        self.proc.kill9()

    def stop(self) -> None:
        for p in self.procs:
            p.stop()


class EtcdCluster:
    def __init__(self, root: Path, size: int = 1, tuned: bool = False):
        self.root = root
        self.tuned = tuned
        self.nodes = [EtcdNode(root, f"e{i}", tuned) for i in range(size)]

    @property
    def initial_cluster(self) -> str:
        return ",".join(f"{n.name}={n.peer_url}" for n in self.nodes)

    def start(self, attempts: int = 3) -> "EtcdCluster":
        """Start every node and wait until they elect a leader. A free port can be taken by
        another test's process before etcd binds it (then "listening" is that process, and
        etcd never answers): after ETCD_START_S, the nodes start again on fresh ports."""
        for attempt in range(attempts):
            for n in self.nodes:
                n.start(self.initial_cluster)
            try:
                for n in self.nodes:
                    n.wait_listening()
                wait_until(self.healthy, ETCD_START_S, "etcd to elect a leader and answer")
                return self
            except AssertionError:
                if attempt == attempts - 1:
                    raise
                self.stop()
                for n in self.nodes:
                    n.new_ports()
        return self

    @property
    def endpoints(self) -> str:
        return ",".join(n.endpoint for n in self.nodes)

    def url(self, prefix: str = PREFIX) -> str:
        return f"etcd://{self.endpoints}{prefix}"

    def restart(self, node: EtcdNode) -> None:
        """Start `node` again from its data dir (after kill9/stop); waits until it answers."""
        if node.alive:
            node.proc.stop()
        node.start(self.initial_cluster, "existing")
        node.wait_listening()
        wait_until(self.healthy, ETCD_START_S, "etcd to answer after the restart")

    def stop(self) -> None:
        for n in self.nodes:
            n.stop()

    # -- queries (a fresh aetcd client per call: the test thread has no event loop) -------------

    def _run(self, coro_fn, endpoint: str | None = None, timeout: float = 3.0):
        """Run `coro_fn(client)` on `endpoint`, or on each live node in turn until one answers."""
        import aetcd

        async def go(ep):
            host, port = ep.rsplit(":", 1)
            async with asyncio.timeout(timeout):
                async with aetcd.Client(host, int(port), timeout=timeout) as c:
                    return await coro_fn(c)

        endpoints = [endpoint] if endpoint else [n.endpoint for n in self.nodes if n.alive]
        for i, ep in enumerate(endpoints):
            try:
                return asyncio.run(go(ep))
            except Exception:  # noqa: BLE001 - try the next node; the last error is raised
                if i == len(endpoints) - 1:
                    raise

    def live_endpoint(self) -> str:
        return next(n.endpoint for n in self.nodes if n.alive)

    def healthy(self) -> bool:
        try:
            self._run(lambda c: c.get(b"/health-probe"))
            return True
        except Exception:  # noqa: BLE001 - not up yet
            return False

    def get_prefix(self, prefix: str) -> list[tuple[bytes, bytes]]:
        """(key, value) of every key under `prefix`."""
        return [(kv.key, kv.value) for kv in self._run(lambda c: c.get_prefix(prefix.encode()))]

    def get(self, key: str):
        """(value, create_revision, mod_revision, lease) of `key`, or None."""
        kv = self._run(lambda c: c.get(key.encode()))
        return None if kv is None else (kv.value, kv.create_revision, kv.mod_revision, kv.lease)

    def leader_node(self) -> EtcdNode:
        """etcd's own raft leader among the live nodes (waits until one is known)."""
        def find():
            for n in self.nodes:
                if not n.alive:
                    continue
                try:
                    st = self._run(lambda c: c.status(), n.endpoint)
                except Exception:  # noqa: BLE001 - electing, or this node is down
                    continue
                for node in self.nodes:
                    if node.name == st.leader.name and node.alive:
                        return node
            return None

        return wait_until(find, ETCD_START_S, "etcd to have a leader")


class HaCluster(Cluster):
    """Coordinators sharing one etcd prefix, and members that find the leader by discovery.

    `self.coordinator` always names the coordinator that leads right now (refreshed by
    `wait_leader`); `coordinators` is every coordinator address started."""

    def __init__(self, root: Path, etcd: EtcdCluster, prefix: str = PREFIX, lease_ttl_s: int = 1, **kw):
        super().__init__(root, **kw)
        self.etcd = etcd
        self.prefix = prefix
        self.lease_ttl_s = lease_ttl_s
        self.coordinators: list[str] = []

    @property
    def store_url(self) -> str:
        return self.etcd.url(self.prefix)

    @property
    def discovery(self) -> str:
        """What members are given: every coordinator address (ask any; followers redirect)."""
        return ",".join(self.coordinators)

    def start_coordinator(self, port: int | None = None, wait: bool = True, extra: tuple[str, ...] = ()) -> str:
        port = port or free_port()
        addr = addr_of(port)
        self._spawn(f"coordinator-{port}", catena_argv(
            "coordinator", "--listen", addr, "--store", self.store_url, "--lease-ttl-s", str(self.lease_ttl_s),
            *extra), addr)
        self.coordinators.append(addr)
        if self.coordinator is None:
            self.coordinator = addr
        if wait:
            self.wait_listening(addr)
        return addr

    def spawn_member(self, port: int | None = None, register: bool = False, extra: tuple[str, ...] = ()) -> str:
        if register:
            extra = ("--coordinator", self.discovery, *extra)
        return super().spawn_member(port, False, extra)

    def role(self, addr: str, timeout: float = 3.0) -> dict:
        with redis.Redis(host=HOST, port=port_of(addr), socket_timeout=timeout, socket_connect_timeout=timeout,
                         decode_responses=True, protocol=2) as c:
            return as_dict(c.execute_command("MASTER.STATUS"))

    def leader(self) -> str | None:
        """The coordinator that says it leads (and whose leadership etcd's leader key confirms)."""
        live = [a for a in self.coordinators if self.procs[a].alive and not self.procs[a].stopped]
        leading = []
        for a in live:
            try:
                if self.role(a)["role"] == "leader":
                    leading.append(a)
            except (redis.RedisError, OSError):
                continue
        try:
            key = self.etcd.get(f"{self.prefix}/leader")
        except Exception:  # noqa: BLE001 - etcd electing its own leader
            return None
        if len(leading) == 1 and key is not None and key[0].decode() == leading[0]:
            return leading[0]
        return None

    def wait_leader(self, timeout: float = CHAIN_TIMEOUT_S, other_than: str | None = None) -> str:
        def found():
            lead = self.leader()
            return lead if lead and lead != other_than else None

        lead = wait_until(found, timeout, "one coordinator to lead" + (f" (not {other_than})" if other_than else ""),
                          interval=0.02)
        self.coordinator = lead
        return lead




# -- fixtures (import them into a test module to use them) ------------------------------------------


def _etcd(root: Path, size: int):
    cluster = EtcdCluster(root, size)
    try:
        yield cluster.start()
    finally:
        cluster.stop()


@pytest.fixture
def etcd(tmp_path):
    """One etcd node with default timings, on free loopback ports; stopped at teardown."""
    yield from _etcd(tmp_path / "etcd", 1)


@pytest.fixture
def etcd3(tmp_path):
    """A three-node etcd cluster with default timings; stopped at teardown."""
    yield from _etcd(tmp_path / "etcd3", 3)


@pytest.fixture
def make_ha(tmp_path, request):
    """Factory: `make_ha(etcd, coordinators=3)` starts coordinators on one etcd prefix and waits
    for a leader; every process is stopped at teardown (logs shown if the test fails)."""
    made: list[HaCluster] = []
    request.node.catena_clusters = made

    def make(etcd_cluster: EtcdCluster, coordinators: int = 3, extras: list[tuple[str, ...]] | None = None,
             **kw) -> HaCluster:
        """`extras[i]`: coordinator i's own flags."""
        ha = HaCluster(tmp_path / f"ha-{len(made)}", etcd_cluster, **kw)
        made.append(ha)
        for i in range(coordinators):
            ha.start_coordinator(wait=False, extra=extras[i] if extras else ())
        for a in ha.coordinators:
            ha.wait_listening(a, START_TIMEOUT_S)
        ha.wait_leader()
        return ha

    yield make
    errors = []
    for ha in made:
        try:
            ha.close()
        except Exception as exc:  # noqa: BLE001 - keep stopping the others
            errors.append(repr(exc))
    if errors:
        raise RuntimeError("; ".join(errors))


def join_chain(ha: HaCluster, n: int, discovery: str | None = None) -> list[str]:
    """Start `n` members that register through `discovery` (default: the coordinator list),
    one at a time so the chain follows start order; returns the chain."""
    chain: list[str] = []
    for _ in range(n):
        addr = ha.start_member(extra=("--coordinator", discovery or ha.discovery))
        chain.append(addr)
        wait_until(lambda: ha.chain() == chain, CHAIN_TIMEOUT_S, f"{addr} to join as the tail of {chain}")
    ha.wait_chain(chain)
    return chain


def saved_state(ha: HaCluster, chain_id: int = 0) -> dict:
    """Chain `chain_id`'s coordinator state as etcd holds it (layout.py's parts), with the
    `fence` its part was last written under."""
    import json

    from catena.coordinator import layout

    prefix = f"{ha.prefix}/"
    parts = {k.decode()[len(prefix):]: json.loads(v) for k, v in ha.etcd.get_prefix(prefix)
             if not k.endswith(b"/leader")}
    if layout.chain_part(chain_id) not in parts:
        return {}
    return {**layout.chain_state(parts, chain_id), "fence": parts[layout.chain_part(chain_id)]["fence"]}


def saved_view(ha: HaCluster) -> dict:
    return saved_state(ha)["views"][0]
