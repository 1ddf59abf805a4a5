"""`catena up`: a coordinator and N members (per chain, K chains) as real processes on 127.0.0.1,
until Ctrl-C."""

from __future__ import annotations

import asyncio
import ctypes
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from catena.loopback import free_ports
from catena.resp.client import ReplyError, call
from catena.slots import SLOTS, key_slot
from catena.status import _table, member_rows

START_TIMEOUT_S = 30.0
PR_SET_PDEATHSIG = 1  # prctl(2)


def cluster_secret(root: Path) -> Path:
    """The cluster's secret file in `root` (mode 0600), made with a fresh random secret the
    first time: catena's own processes authenticate to each other with it (read from the file,
    never passed in argv)."""
    path = root / "secret"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32) + "\n")
    return path


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when `catena up` dies, even by SIGKILL (Linux)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass  # not Linux: Ctrl-C and SIGTERM still stop the children


def _spawn(args: list[str], log_path: Path, env: dict) -> subprocess.Popen:
    out = open(log_path, "ab")
    return subprocess.Popen([sys.executable, "-m", "catena", *args], stdout=out, stderr=subprocess.STDOUT,
                            start_new_session=True, env=env, preexec_fn=_die_with_parent)


METRICS_TAKEN = "cannot listen on --metrics-listen"  # (catena.metrics.http)
METRICS_ATTEMPTS = 3


def _spawn_metered(args: list[str], log_path: Path, env: dict, taken: set[int]) -> tuple[subprocess.Popen, str]:
    """`_spawn` with `--metrics-listen` on a free loopback port, and that port open: a port found
    free may be taken by another program before the process binds it (the process then stops at
    once), so it starts again on another port, up to METRICS_ATTEMPTS times. (process, address)."""
    for _ in range(METRICS_ATTEMPTS):
        metrics = f"127.0.0.1:{free_ports(1, taken)[0]}"
        proc = _spawn([*args, "--metrics-listen", metrics], log_path, env)
        deadline = time.monotonic() + START_TIMEOUT_S
        while proc.poll() is None and time.monotonic() < deadline:
            if _serves_metrics(metrics):
                return proc, metrics
            time.sleep(0.05)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
            raise RuntimeError(f"a catena process did not open its metrics port {metrics} within "
                               f"{START_TIMEOUT_S:.0f} s; see its log")
        if METRICS_TAKEN not in log_path.read_text(errors="replace"):
            raise RuntimeError(f"a catena process exited early (status {proc.returncode}); see its log")
    raise RuntimeError(f"{METRICS_ATTEMPTS} metrics ports in a row were taken before a catena process bound them")


def _serves_metrics(addr: str) -> bool:
    """Does a catena process answer at `addr` with its metrics (not some other program that took
    the port)?"""
    try:
        with urllib.request.urlopen(f"http://{addr}/metrics", timeout=0.5) as reply:
            return b"catena_" in reply.read()
    except (OSError, ValueError):
        return False


def _read_key(chain_id: int, chains: int) -> bytes:
    """A key chain `chain_id` of `chains` serves once the slots are split evenly between them."""
    first, last = chain_id * SLOTS // chains, (chain_id + 1) * SLOTS // chains - 1
    return next(k for i in range(1_000_000) if first <= key_slot(k := b"catena:up%d" % i) <= last)


async def _wait_chain(coordinator: str, n: int, procs: list[subprocess.Popen], auth: tuple | None,
                      chain_id: int = 0, chains: int = 1) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        for p in procs:
            if p.poll() is not None:
                raise RuntimeError(f"a catena process exited early (status {p.returncode}); see its log")
        try:
            chain = await call(coordinator, b"MASTER.GET_CHAIN", chain_id, timeout=1.0, auth=auth)
            if len(chain) >= n and await _all_serve_reads([m.decode() for m in chain], auth,
                                                          _read_key(chain_id, chains)):
                return
        except (OSError, asyncio.TimeoutError, ConnectionError, ReplyError):
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError(f"chain {chain_id} did not reach {n} members within {START_TIMEOUT_S:.0f} s")


async def _wait_slots(members: list[str], auth: tuple | None) -> None:
    """Every member knows a server for every slot (CLUSTER INFO: cluster_state:ok)."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            infos = [await call(m, b"CLUSTER", b"INFO", timeout=1.0, auth=auth) for m in members]
            if all(b"cluster_state:ok" in info for info in infos):
                return
        except (OSError, asyncio.TimeoutError, ConnectionError, ReplyError):
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError(f"the chains did not cover every slot within {START_TIMEOUT_S:.0f} s")


async def _all_serve_reads(members: list[str], auth: tuple | None, key: bytes) -> bool:
    """Every member answers a read of `key` (it holds the read lease the coordinator's probes grant)."""
    for addr in members:
        try:
            await call(addr, b"EXISTS", key, timeout=1.0, auth=auth)
        except ReplyError:
            return False
    return True


def run_cluster(members: int, port: int, data_dir: str | None, password: str | None = None,
                log_format: str = "text", cluster_enabled: bool = False, chains: int = 1) -> int:
    """`members` per chain; `chains` > 1: cluster mode (docs/sharding.md), the slots split
    between the chains. `password`: the data password of every process (handed over in
    CATENA_REQUIREPASS, never in argv); the coordinator requires it too, so that sessions need
    it. Each process gets a metrics port (free loopback ports, below the ephemeral range) and
    logs in `log_format`."""
    if members < 1 or chains < 1:
        print("catena up: --members and --chains must be at least 1", file=sys.stderr)
        return 2
    sharded = chains > 1
    cluster_enabled = cluster_enabled or sharded
    total = members * chains
    root = Path(data_dir) if data_dir else Path(tempfile.mkdtemp(prefix="catena-"))
    root.mkdir(parents=True, exist_ok=True)
    coordinator = f"127.0.0.1:{port}"
    secret = ["--secret-file", str(cluster_secret(root))]
    env = {k: v for k, v in os.environ.items() if k != "CATENA_REQUIREPASS"}
    auth = None
    if password:
        env["CATENA_REQUIREPASS"], auth = password, (b"default", password)
    procs: list[subprocess.Popen] = []
    taken = set(range(port, port + total + 1))  # (metrics ports are picked among the others)
    ops = ["--log-format", log_format]
    try:
        coord, status = _spawn_metered(["coordinator", "--listen", coordinator, "--data-dir",
                                        str(root / "coordinator"), *secret, *ops,
                                        *(["--chains", str(chains)] if sharded else [])],
                                       root / "coordinator.log", env, taken)
        procs.append(coord)
        for i in range(1, total + 1):  # one at a time, so each chain's order is the ports' order
            addr, chain = f"127.0.0.1:{port + i}", (i - 1) // members
            procs.append(_spawn_metered(["member", "--listen", addr, "--data-dir", str(root / f"member-{port + i}"),
                                         "--coordinator", coordinator, *secret, *ops,
                                         "--cluster-enabled", "yes" if cluster_enabled else "no", "--chain", str(chain)],
                                        root / f"member-{port + i}.log", env, taken)[0])
            asyncio.run(_wait_chain(coordinator, (i - 1) % members + 1, procs, auth, chain, chains))
        if sharded:
            asyncio.run(_wait_slots([f"127.0.0.1:{port + i}" for i in range(1, total + 1)], auth))
        tables = []  # gathered first: the lines below go out together
        for chain in range(chains):
            _, rows = asyncio.run(member_rows(coordinator, password, chain))
            rows[0].insert(1, "ENDPOINT")
            for r in rows[1:]:
                r.insert(1, f"redis-cli{' -c' if sharded else ''} -p {r[0].rpartition(':')[2]}"
                         + (" --askpass" if password else ""))
            table = _table([[r[0], r[1], r[2], r[3], r[-1]] for r in rows])
            tables.append(f"chain {chain}\n{table}" if sharded else table)
        print(f"catena is up. Data and logs in {root}; the cluster secret is in {secret[1]} (mode 0600)")
        print(f"coordinator  {coordinator}  (redis-cli -p {port} MASTER.GET_CHAIN)  status page "
              f"http://{status}/  metrics http://{status}/metrics")
        print("\n".join(tables))
        print("Ctrl-C stops everything.", flush=True)
        stop = {signal.SIGINT, signal.SIGTERM}
        signal.pthread_sigmask(signal.SIG_BLOCK, stop)
        signal.sigwait(stop)
        return 0
    except RuntimeError as exc:
        print(f"catena up: {exc}. Logs are in {root}", file=sys.stderr)
        return 1
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.kill(p.pid, signal.SIGKILL)
                p.wait()
        print("catena stopped.", file=sys.stderr)

