"""Busy is not dead (issue 11): a member whose event loop is held by queued work misses its
probes, but its liveness responder (a thread with its own UDP port) says the loop still turns,
so the coordinator keeps it; a loop stuck in one turn past the wedge bound, or a stopped
process (SIGSTOP: no thread answers), is removed."""

from __future__ import annotations

import asyncio
import threading
import time

import redis

from catena.coordinator import liveness

from conftest import HOST, port_of, wait_until

WEDGE_S = 4  # the coordinator's --wedge-timeout-s here (10 by default), to keep the test short


def _coordinator_log(cluster) -> str:
    return cluster.procs[cluster.coordinator].log_path.read_text(errors="replace")


def _state(pid: int) -> str:
    """The process's state letter in /proc (T: stopped)."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rpartition(")")[2].split()[0]


def _debug_sleep(addr: str, seconds: float, until: float, errors: list) -> None:
    """DEBUG SLEEP `seconds` at `addr`, and again until `until` (monotonic) has passed."""
    try:
        with redis.Redis(host=HOST, port=port_of(addr), socket_timeout=seconds + 60) as c:
            while True:
                c.execute_command("DEBUG", "SLEEP", seconds)
                if time.monotonic() >= until:
                    return
    except Exception as exc:  # noqa: BLE001 - reported by the test
        errors.append(repr(exc))


def _busy_cluster(make_cluster):
    cluster = make_cluster(member_args=("--enable-debug-command", "yes"))
    cluster.start_coordinator(extra=("--wedge-timeout-s", str(WEDGE_S)))
    return cluster, cluster.start(3)


def test_a_busy_member_stays_and_a_wedged_one_is_removed(make_cluster):
    cluster, (head, middle, tail) = _busy_cluster(make_cluster)
    chain = [head, middle, tail]
    # Three connections keep the middle's loop in 0.6 s turns for 6 s: each probe waits
    # behind at least one of them (its 0.5 s deadline passes), but the loop keeps turning.
    errors: list = []
    until = time.monotonic() + 6
    sleepers = [threading.Thread(target=_debug_sleep, args=(middle, 0.6, until, errors)) for _ in range(3)]
    for t in sleepers:
        t.start()
    while any(t.is_alive() for t in sleepers):
        assert cluster.chain() == chain, f"the busy member was removed:\n{_coordinator_log(cluster)[-3000:]}"
        time.sleep(0.2)  # sampling the chain while the stimulus runs, not synchronisation
    assert not errors, errors
    busy = [ln for ln in _coordinator_log(cluster).splitlines() if f"member {middle} missed its probe but answers liveness" in ln]
    assert busy, "the middle's probes never timed out: the test did not make it busy"
    assert cluster.chain() == chain
    assert cluster.client(head).set("after-busy", b"1") is True

    # One turn of 3 × the wedge bound: the process answers liveness, but its loop is stuck.
    started = time.monotonic()
    wedge = threading.Thread(target=_debug_sleep, args=(middle, 3 * WEDGE_S, 0, errors), daemon=True)
    wedge.start()
    wait_until(lambda: cluster.chain() == [head, tail], 3 * WEDGE_S, "the wedged member to be removed")
    assert time.monotonic() - started >= WEDGE_S - 1  # not before its turn reached the bound
    assert f"member {middle}: its event loop has not turned for {WEDGE_S:g} s (wedged)" in _coordinator_log(cluster)
    assert cluster.client(head).set("after-wedge", b"1") is True
    assert cluster.client(tail).get("after-wedge") == b"1"


def test_a_stopped_member_answers_nothing_and_is_removed(make_cluster):
    cluster, (head, middle, tail) = _busy_cluster(make_cluster)
    port = cluster.client(middle).info("server")["catena_liveness_port"]
    incarnation = cluster.member_cmd(middle, "MEMBER.PROBE", 0, 0, 0)[0]
    assert asyncio.run(liveness.ask(HOST, port, None, 5.0)).incarnation == incarnation
    logged = len(_coordinator_log(cluster))
    cluster.sigstop(middle)
    try:
        wait_until(lambda: _state(cluster.procs[middle].pid) == "T", 10, "the member to be stopped")
        assert asyncio.run(liveness.ask(HOST, port, None, 1.0)) is None  # every thread is stopped
        wait_until(lambda: cluster.chain() == [head, tail], 20, "the stopped member to be removed")
        since = _coordinator_log(cluster)[logged:]
        assert f"member {middle} failed 3 probes in a row" in since
        assert f"member {middle} missed its probe but answers liveness" not in since
        assert cluster.client(head).set("after-stop", b"1") is True
    finally:
        cluster.sigcont(middle)


def test_a_large_value_crosses_the_chain_intact(make_cluster):
    """A value over the member shell's big-effect size is logged and forwarded in several turns
    (its Append framed around the log's record, not packed again), between two small writes:
    every member holds all three."""
    cluster, (head, middle, tail) = _busy_cluster(make_cluster)
    value = bytes(range(256)) * (40 << 12)  # 40 MB
    c = cluster.client(head)
    assert c.set("before", b"1") is True
    assert c.set("big", value) is True
    assert c.set("after", b"2") is True
    for m in (head, middle, tail):
        got = cluster.client(m).mget("before", "big", "after")
        assert got[0] == b"1" and got[2] == b"2" and got[1] == value, m
    assert cluster.chain() == [head, middle, tail]
