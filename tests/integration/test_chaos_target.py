"""`catena chaos --target`: seeded faults on a cluster that `catena up` started, not the harness;
the run must come out clean and leave that cluster running, whole, with its data."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import redis
from conftest import HOST, Proc, free_port_block, wait_until
from etcd_helpers import etcd, join_chain, make_ha, requires_etcd  # noqa: F401 - fixtures

from catena.chaos.runner import admin, schedule
from catena.chaos.target import TargetError, pid_listening_on, proc_stat
from catena.client import Client

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/net/tcp"), reason="needs Linux /proc")

CHAOS_S = 15
MEMBERS = 3


def _seed() -> int:
    """A seed whose schedule, partitions left out, begins with a member kill and also kills the
    coordinator (so that PIDs change whatever else the schedule holds)."""
    for seed in range(1, 1000):
        kinds = [f.kind for f in schedule(seed, CHAOS_S, MEMBERS, partitions=False)]
        if kinds[:1] == ["kill-member"] and "kill-coordinator" in kinds:
            return seed
    raise AssertionError("no seed kills a member and the coordinator")


def _pids(addrs: list[str]) -> dict[str, int]:
    return {a: pid_listening_on(a) for a in addrs}


def _gone(pid: int) -> bool:
    stat = proc_stat(pid)
    return stat is None or stat[0] in "ZX"


def _stop_by_port(addrs: list[str]) -> None:
    """Stop whatever still serves `addrs`, found by port as the tool finds it: the processes the
    chaos run started again are not children of anything here."""
    pids = []
    for addr in addrs:
        try:
            pids.append(pid_listening_on(addr))
        except TargetError:
            continue
    for pid in pids:
        os.kill(pid, signal.SIGCONT)  # a paused process would not see SIGTERM
        os.kill(pid, signal.SIGTERM)
    for pid in pids:
        try:
            wait_until(lambda pid=pid: _gone(pid), 10, f"pid {pid} to exit")
        except AssertionError:
            os.kill(pid, signal.SIGKILL)
            wait_until(lambda pid=pid: _gone(pid), 10, f"pid {pid} to die")


def _chaos_leaves_it_whole(tmp_path, target: str, coordinators: list[str], members: list[str],
                           password: str | None = None) -> None:
    """A seeded run on `target` is clean, says which PIDs changed, and leaves the chain whole with
    every member serving a key written before the run."""
    with Client(target, timeout=15, password=password) as client:
        assert client.set("user:before", "kept")
    before = _pids([*coordinators, *members])
    seed = _seed()
    out = tmp_path / "out"
    run = subprocess.run(
        [sys.executable, "-m", "catena.chaos", "--target", target, "--seed", str(seed), "--duration",
         str(CHAOS_S), "--no-progress", "--out", str(out), *(["--password", password] if password else [])],
        capture_output=True, text=True, timeout=CHAOS_S + 150, check=False)
    text = run.stdout + run.stderr
    assert run.returncode == 0, text
    assert "verdict: CLEAN" in run.stdout, text
    applied = run.stdout.split("faults applied: ")[1].split("\n")[0]
    assert "kill-member" in applied, text
    png = out / f"chaos-{seed}.png"
    assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"the cluster at {target} is left running" in run.stdout, text

    after = _pids([*coordinators, *members])
    changed = [a for a in before if before[a] != after[a]]
    assert changed, (before, after)
    for addr in changed:
        assert f"{addr}: pid {before[addr]} -> {after[addr]}" in run.stdout, text
    with Client(target, timeout=15, password=password) as client:
        assert client.get("user:before") == b"kept"

    def read(addr: str):
        with redis.Redis(host=HOST, port=int(addr.rsplit(":", 1)[1]), password=password, decode_responses=True,
                         protocol=2, socket_timeout=2) as c:
            return c.get("user:before")

    for addr in members:
        wait_until(lambda addr=addr: read(addr) == "kept", 30, f"{addr} to serve reads")


def test_chaos_on_a_running_cluster(tmp_path):
    """On a `catena up` cluster with a password (and its own secret): restarted processes keep
    both, and the workload logs in."""
    port = free_port_block(MEMBERS + 1)
    coordinator = f"{HOST}:{port}"
    members = [f"{HOST}:{port + i}" for i in range(1, MEMBERS + 1)]
    password = "chaos-pw"
    up = Proc("up", [sys.executable, "-m", "catena", "up", "--members", str(MEMBERS), "--port", str(port),
                     "--data-dir", str(tmp_path / "up")], tmp_path / "up.log",
              env={**os.environ, "CATENA_REQUIREPASS": password})
    try:
        wait_until(lambda: "catena is up" in up.log_path.read_text() or not up.alive, 60, "catena up to start")
        assert up.alive, up.log_tail()
        _chaos_leaves_it_whole(tmp_path, coordinator, [coordinator], members, password)
        with redis.Redis(host=HOST, port=port, password=password, decode_responses=True, protocol=2) as c:
            assert sorted(c.execute_command("MASTER.GET_CHAIN")) == sorted(members)
    finally:
        up.stop(timeout=20)  # `catena up` stops the children it still has
        _stop_by_port([coordinator, *members])


def _leader_chain(coordinators: list[str]) -> list[str] | None:
    for addr in coordinators:
        try:
            return list(admin(addr, "MASTER.GET_CHAIN"))
        except (redis.RedisError, OSError):  # a follower (NOTLEADER) or a process starting
            continue
    return None


@requires_etcd
def test_chaos_on_a_running_cluster_found_through_etcd(tmp_path, etcd, make_ha):  # noqa: F811 - fixtures
    ha = make_ha(etcd, coordinators=2)
    members = []
    try:
        members = join_chain(ha, MEMBERS, discovery=etcd.url(ha.prefix))
        _chaos_leaves_it_whole(tmp_path, etcd.url(ha.prefix), [ha.coordinator], members)
        # The leader may be a coordinator the run restarted (a process the fixture does not
        # track): ask every address.
        chain = wait_until(lambda: _leader_chain(ha.coordinators), 45, "a coordinator to lead")
        assert sorted(chain) == sorted(members)
    finally:
        _stop_by_port([*ha.coordinators, *members])  # the ones started again; make_ha stops its own
