"""Fixtures for the integration tier: real catena processes on 127.0.0.1.

Everything here is generic so later tests (failover, etcd) can build on it:

- `free_port()` hands out loopback ports that are free for TCP and UDP (members use the same
  number for membership heartbeats) and never hands out the same one twice in a run.
- `Proc` is one child process with its own log file: stop (SIGTERM, then SIGKILL after a
  deadline), kill -9, SIGSTOP/SIGCONT, all by PID.
- `Cluster` starts a coordinator and members as subprocesses with data dirs under tmp_path,
  drives the coordinator's admin commands, waits on conditions with deadlines (never bare
  sleeps), restarts members from their data dir, and stops every process it started.

The `cluster` fixture yields an empty `Cluster` (call `cluster.start(n)`); on failure the tails
of the processes' logs are printed to help the diagnosis.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest
import redis

from catena import loopback
from catena.chaos.runner import stop_all
from catena.chaos.target import listening_inodes, pids_holding
from catena.loopback import free_ports, port_is_free, port_range

HOST = "127.0.0.1"
START_TIMEOUT_S = 30.0  # a process starts listening (python startup under CPU contention)
CHAIN_TIMEOUT_S = 45.0  # the chain reaches an expected shape
STOP_TIMEOUT_S = 5.0  # SIGTERM grace before SIGKILL
CLIENT_TIMEOUT_S = 15.0  # socket timeout of the clients the fixtures hand out

_used_ports: set[int] = set()


def free_port() -> int:
    """A loopback port free for TCP and UDP, not handed out before in this run."""
    return free_ports(1, _used_ports)[0]


def free_port_block(n: int) -> int:
    """The first of `n` consecutive free loopback ports (for `catena up --port P`)."""
    rng = random.Random(os.getpid() ^ time.time_ns())
    low, high = port_range()
    for _ in range(1000):
        first = rng.randrange(low, high - n)
        block = range(first, first + n)
        if not _used_ports.intersection(block) and all(port_is_free(p) for p in block):
            _used_ports.update(block)
            return first
    raise RuntimeError(f"no {n} consecutive free loopback ports found")


def wait_until(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.05):
    """Poll `predicate` until it returns something truthy (returned); fail the test after
    `timeout` s (exceptions from the predicate count as "not yet": a process may be starting)."""
    try:
        return loopback.wait_until(predicate, timeout, what, interval=interval, retry_on=(redis.RedisError, OSError))
    except TimeoutError as exc:
        raise AssertionError(str(exc)) from None


def listens(pid: int, port: int) -> bool:
    """Whether process `pid` itself holds the listening socket of `port` (not some other
    process that happens to use the port). True where /proc cannot tell."""
    if not Path("/proc/net/tcp").exists():
        return True
    return pid in pids_holding(listening_inodes(HOST, port))[0]


def addr_of(port: int) -> str:
    return f"{HOST}:{port}"


def port_of(addr: str) -> int:
    return int(addr.rpartition(":")[2])


def as_dict(reply) -> dict:
    """A map reply (RESP3 dict or RESP2 flat list) as a dict with str keys."""
    if isinstance(reply, dict):
        items = reply.items()
    else:
        items = zip(reply[0::2], reply[1::2])
    out = {}
    for k, v in items:
        k = k.decode() if isinstance(k, bytes) else k
        out[k] = v.decode() if isinstance(v, bytes) else v
    return out


def patient_redis(addr: str, **kwargs) -> redis.Redis:
    """A redis-py client that retries -TRYAGAIN for a few seconds, as an application would: a
    member answers it while the chain is reconfigured or until its read lease is renewed."""
    from redis.backoff import ExponentialBackoff
    from redis.exceptions import TryAgainError
    from redis.retry import Retry

    kwargs.setdefault("retry", Retry(ExponentialBackoff(cap=0.25, base=0.02), 30))
    kwargs.setdefault("retry_on_error", [TryAgainError])
    return redis.Redis(host=HOST, port=port_of(addr), **kwargs)


class Proc:
    """One child process; every signal goes to its PID."""

    def __init__(self, name: str, argv: list[str], log_path: Path, env: dict | None = None):
        self.name = name
        self.argv = argv
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(log_path, "ab")
        self.popen = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                      env=env, start_new_session=True)
        self.pid = self.popen.pid
        self.stopped = False  # SIGSTOPped

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive:
            os.kill(self.pid, sig)

    def kill9(self) -> None:
        """SIGKILL and reap: the process is gone when this returns."""
        if self.alive:
            os.kill(self.pid, signal.SIGKILL)
        self.popen.wait(timeout=STOP_TIMEOUT_S)
        self._log.close()

    def sigstop(self) -> None:
        self.signal(signal.SIGSTOP)
        self.stopped = True

    def sigcont(self) -> None:
        self.signal(signal.SIGCONT)
        self.stopped = False

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> int | None:
        """SIGTERM, then SIGKILL if it is still there after `timeout` s; returns the exit status."""
        if self.alive:
            if self.stopped:
                self.sigcont()  # a stopped process would not see SIGTERM
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.popen.wait(timeout=timeout)
        self._log.close()
        return self.popen.returncode

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])


def catena_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "catena", *args]


class Cluster:
    """A coordinator and members as real processes; addresses are "127.0.0.1:PORT" strings."""

    def __init__(self, root: Path, fsync: str = "everysec", password: str | None = None,
                 member_args: tuple[str, ...] = (), env: dict | None = None):
        self.root = root
        self.fsync = fsync
        self.password = password
        self.member_args = tuple(member_args)
        self.env = env
        self.coordinator: str | None = None
        self.procs: dict[str, Proc] = {}  # addr -> the newest process serving it
        self.all_procs: list[Proc] = []  # every process ever started, for teardown
        self._clients: list = []

    # -- processes ------------------------------------------------------------------------------

    def _spawn(self, name: str, argv: list[str], addr: str) -> Proc:
        proc = Proc(name, argv, self.root / "logs" / f"{name}.log", self.env)
        self.procs[addr] = proc
        self.all_procs.append(proc)
        return proc

    def start_coordinator(self, port: int | None = None, wait: bool = True, extra: tuple[str, ...] = ()) -> str:
        port = port or free_port()
        addr = addr_of(port)
        self._spawn(f"coordinator-{port}", catena_argv(
            "coordinator", "--listen", addr, "--data-dir", str(self.root / f"coordinator-{port}"), *extra), addr)
        self.coordinator = addr
        if wait:
            self.wait_listening(addr)
        return addr

    def data_dir(self, addr: str) -> Path:
        return self.root / f"member-{port_of(addr)}"

    def spawn_member(self, port: int | None = None, register: bool = False, extra: tuple[str, ...] = ()) -> str:
        """Start a member process (not yet in the chain unless `register`); returns its address."""
        port = port or free_port()
        addr = addr_of(port)
        args = ["member", "--listen", addr, "--data-dir", str(self.data_dir(addr)), "--fsync", self.fsync]
        if register:
            args += ["--coordinator", self.coordinator]
        if self.password is not None:
            args += ["--requirepass", self.password]
        args += [*self.member_args, *extra]
        self._spawn(f"member-{port}", catena_argv(*args), addr)
        return addr

    def start_member(self, port: int | None = None, register: bool = False, extra: tuple[str, ...] = ()) -> str:
        addr = self.spawn_member(port, register, extra)
        self.wait_listening(addr)
        return addr

    def start(self, members: int = 3) -> list[str]:
        """A coordinator and `members` members added in order (head first); returns the chain."""
        if self.coordinator is None:
            self.start_coordinator(wait=False)
        addrs = [self.spawn_member() for _ in range(members)]
        self.wait_listening(self.coordinator)
        for addr in addrs:
            self.wait_listening(addr)
            self.add(addr)
        self.wait_chain(addrs)
        return addrs

    def wait_listening(self, addr: str, timeout: float = START_TIMEOUT_S) -> None:
        proc = self.procs.get(addr)

        def up():
            if proc is not None and not proc.alive:
                raise AssertionError(f"{proc.name} exited with status {proc.popen.returncode}:\n{proc.log_tail()}")
            with socket.create_connection((HOST, port_of(addr)), timeout=1.0):
                pass
            if proc is not None and not listens(proc.pid, port_of(addr)):
                raise AssertionError(f"{addr} is served by another process than {proc.name} (pid {proc.pid})")
            return True

        wait_until(up, timeout, f"{addr} to listen")

    def kill9(self, addr: str) -> None:
        self.procs[addr].kill9()

    def sigstop(self, addr: str) -> None:
        self.procs[addr].sigstop()

    def sigcont(self, addr: str) -> None:
        self.procs[addr].sigcont()

    def stop(self, addr: str) -> int | None:
        return self.procs[addr].stop()

    def restart(self, addr: str, wait: bool = True, register: bool = False) -> None:
        """Start `addr` again from its data dir (after kill9/stop), same port and flags."""
        old = self.procs[addr]
        if old.alive:
            old.stop()
        argv = list(old.argv)
        if register and "--coordinator" not in argv:
            argv += ["--coordinator", self.coordinator]
        self._spawn(old.name, argv, addr)
        if wait:
            self.wait_listening(addr)

    def close(self) -> None:
        for c in self._clients:
            try:
                c.close()
            except Exception:  # noqa: BLE001 - best effort on teardown
                pass
        stop_all(self.all_procs)

    def logs(self, lines: int = 40) -> str:
        return "\n".join(f"----- {p.name} (pid {p.pid}) -----\n{p.log_tail(lines)}" for p in self.all_procs)

    # -- clients ----------------------------------------------------------------------------------

    def client(self, addr: str, **kwargs) -> redis.Redis:
        """A redis-py client (default protocol) closed at teardown; retries TRYAGAIN."""
        kwargs.setdefault("socket_timeout", CLIENT_TIMEOUT_S)
        kwargs.setdefault("socket_connect_timeout", CLIENT_TIMEOUT_S)
        if self.password is not None and addr != self.coordinator:
            kwargs.setdefault("password", self.password)
        c = patient_redis(addr, **kwargs)
        self._clients.append(c)
        return c

    def _operator(self) -> dict:
        """Credentials of an operator: the cluster secret (user `catena`) when the processes
        have one, else none (the member's data password, if any)."""
        secret = (self.env or {}).get("CATENA_SECRET")
        return {"username": "catena", "password": secret} if secret else {"password": self.password}

    def admin(self, *args, timeout: float = CLIENT_TIMEOUT_S):
        """One command to the coordinator on a fresh connection, replies decoded."""
        creds = self._operator() if (self.env or {}).get("CATENA_SECRET") else {}
        with redis.Redis(host=HOST, port=port_of(self.coordinator), socket_timeout=timeout,
                         socket_connect_timeout=timeout, decode_responses=True, protocol=2, **creds) as c:
            return c.execute_command(*args)

    def member_cmd(self, addr: str, *args, timeout: float = CLIENT_TIMEOUT_S):
        with patient_redis(addr, socket_timeout=timeout, socket_connect_timeout=timeout,
                           protocol=2, **self._operator()) as c:
            return c.execute_command(*args)

    # -- coordinator ------------------------------------------------------------------------------

    def add(self, addr: str, timeout: float = CHAIN_TIMEOUT_S) -> None:
        """MASTER.ADD; returns once the coordinator answered OK (the member is the tail)."""
        host, port = addr.rsplit(":", 1)
        reply = self.admin("MASTER.ADD", host, port, timeout=timeout)
        assert reply in ("OK", True), reply

    def remove(self, addr: str, missing_ok: bool = False) -> bool:
        """MASTER.REMOVE. With `missing_ok`, a member the coordinator already took out (its own
        failure detection may beat us to it) is fine. Returns whether this call removed it."""
        host, port = addr.rsplit(":", 1)
        try:
            reply = self.admin("MASTER.REMOVE", host, port)
        except redis.ResponseError as exc:
            if missing_ok and "not a member" in str(exc):
                return False
            raise
        assert reply in ("OK", True), reply
        return True

    def chain(self) -> list[str]:
        return list(self.admin("MASTER.GET_CHAIN"))

    def coordinator_status(self) -> dict:
        return as_dict(self.admin("MASTER.STATUS"))

    def status(self, addr: str) -> dict:
        """The member's MEMBER.STATUS as a dict with str keys (ints stay ints)."""
        return as_dict(self.member_cmd(addr, "MEMBER.STATUS"))

    def wait_chain(self, members: list[str], timeout: float = CHAIN_TIMEOUT_S) -> None:
        """The coordinator's chain is `members` and every member acts on that view."""
        wait_until(lambda: self.chain() == list(members), timeout, f"the chain to be {members}")
        epoch = self.coordinator_status()["epoch"]

        def adopted():
            for addr in members:
                s = self.status(addr)
                if s["epoch"] != epoch or s["members"] != ",".join(members):
                    return False
            return True

        wait_until(adopted, timeout, f"every member to act on epoch {epoch}")

    def wait_converged(self, members: list[str], timeout: float = CHAIN_TIMEOUT_S) -> list[dict]:
        """Every member has the same history, all of it committed and no sent list left."""

        def converged():
            st = [self.status(a) for a in members]
            last = {s["last_seq"] for s in st}
            done = all(s["commit_seq"] == s["last_seq"] and s["sent_list"] == 0 for s in st)
            return st if len(last) == 1 and done else None

        return wait_until(converged, timeout, f"{members} to converge")


class WriteLoad:
    """Background writers (threads, one redis-py client each) doing SETs of unique keys at the
    given members, recording every acknowledged write. Errors and timeouts are counted, not
    raised: during a failure a write's outcome may be unknown, and only acknowledged ones
    must survive. Use as a context manager, or start()/stop()."""

    def __init__(self, cluster: Cluster, targets: list[str], threads_per_target: int = 1, prefix: str = "load",
                 pause_after_error_s: float = 0.05):
        import threading

        self.cluster = cluster
        self.targets = list(targets)
        self.prefix = prefix
        self.pause = pause_after_error_s
        self.acked: dict[str, bytes] = {}
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(t, i), daemon=True, name=f"{prefix}-{t}-{i}")
                         for t in self.targets for i in range(threads_per_target)]

    def _run(self, target: str, n: int) -> None:
        client = redis.Redis(host=HOST, port=port_of(target), socket_timeout=CLIENT_TIMEOUT_S,
                             socket_connect_timeout=2.0, password=self.cluster.password)
        i = 0
        try:
            while not self._stop.is_set():
                key, value = f"{self.prefix}:{port_of(target)}:{n}:{i}", b"%d" % i
                i += 1
                try:
                    ok = client.set(key, value)
                except (redis.RedisError, OSError) as exc:
                    with self._lock:
                        self.errors.append(f"{target}: {exc!r}")
                    self._stop.wait(self.pause)  # back off, not synchronisation
                    continue
                if ok:
                    with self._lock:
                        self.acked[key] = value
        finally:
            client.close()

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.acked)

    def wait_for_acks(self, more: int, timeout: float = CHAIN_TIMEOUT_S) -> None:
        """Until `more` writes beyond the ones acknowledged so far were acknowledged."""
        goal = self.count + more
        wait_until(lambda: self.count >= goal, timeout, f"{goal} acknowledged writes (errors: {self.errors[-3:]})")

    def start(self) -> "WriteLoad":
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=CLIENT_TIMEOUT_S + 5)
        assert not any(t.is_alive() for t in self._threads), "a writer thread did not stop"

    def __enter__(self) -> "WriteLoad":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def missing_at(self, addr: str, chunk: int = 500) -> dict[str, tuple[bytes, bytes | None]]:
        """Acknowledged writes that `addr` does not show: key -> (acknowledged, found)."""
        with self._lock:
            items = sorted(self.acked.items())
        wrong = {}
        with patient_redis(addr, socket_timeout=CLIENT_TIMEOUT_S, password=self.cluster.password) as c:
            for i in range(0, len(items), chunk):
                part = items[i : i + chunk]
                for (k, v), got in zip(part, c.mget([k for k, _ in part])):
                    if got != v:
                        wrong[k] = (v, got)
        return wrong


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for c in getattr(item, "catena_clusters", ()):
            report.sections.append((f"catena logs ({c.root.name})", c.logs()))


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture
def make_cluster(tmp_path, request):
    """Factory for clusters with options; all of them are stopped at teardown."""
    made: list[Cluster] = []
    request.node.catena_clusters = made  # the report hook shows their logs when the test fails

    def make(**kwargs) -> Cluster:
        c = Cluster(tmp_path / f"cluster-{len(made)}", **kwargs)
        made.append(c)
        return c

    yield make
    errors = []
    for c in made:
        try:
            c.close()
        except RuntimeError as exc:
            errors.append(str(exc))
    assert not errors, errors


@pytest.fixture
def cluster(make_cluster) -> Cluster:
    """An empty cluster (default settings): call `cluster.start(n)`."""
    return make_cluster()


@pytest.fixture
def chain3(cluster) -> tuple[Cluster, list[str]]:
    """A running three-member chain of its own: (cluster, [head, middle, tail])."""
    return cluster, cluster.start(3)


@pytest.fixture(scope="module")
def _module_chain3(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("chain3"))
    try:
        try:
            members = c.start(3)
        except BaseException:
            sys.stderr.write(c.logs())  # shown with the setup error
            raise
        yield c, members
    finally:
        c.close()


@pytest.fixture
def shared_chain3(_module_chain3, request) -> tuple[Cluster, list[str]]:
    """A three-member chain shared by the tests of one module (they must not change its
    membership and should use their own keys): (cluster, [head, middle, tail])."""
    request.node.catena_clusters = [_module_chain3[0]]
    return _module_chain3
