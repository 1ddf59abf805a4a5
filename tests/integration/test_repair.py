"""Automatic repair with real processes: the coordinator's own probes notice a member killed
(kill -9) or paused (SIGSTOP) under a write load and take it out of the chain without anyone
calling MASTER.REMOVE; the restarted (or resumed) member rejoins as the tail with all the data;
a whole chain and the coordinator restart from their data dirs without losing an acknowledged
write or regressing a view; a member holding another cluster's data is refused, untouched.

Deadlines are generous (CPU contention on a small machine): these tests check that repair
happens and loses nothing, bench/failover measures how fast it is."""

from __future__ import annotations

import hashlib
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import CHAIN_TIMEOUT_S, Proc, catena_argv, free_port, wait_until
from repair_helpers import RetryingLoad, epoch, registered_chain, wait_rejoined, wait_removed

ROLES = ("head", "middle", "tail")
FLOWING_DEADLINE_S = 10.0  # writes flow again after a failure (the target is 1 s; not a timing test)


def assert_nothing_lost(cluster, members: list[str], load: RetryingLoad) -> None:
    """Every member converged, holds every acknowledged write, and all hold the same values."""
    cluster.wait_converged(members)
    for addr in members:
        lost = load.lost_at(addr)
        assert not lost, f"{addr}: {len(lost)} problems with acknowledged writes, e.g. {lost[:3]}"
    keys = sorted(cluster.client(members[0]).keys("*"))
    assert keys
    values = cluster.client(members[0]).mget(keys)
    for addr in members[1:]:
        assert cluster.client(addr).mget(keys) == values, f"{addr} diverges from {members[0]}"


@pytest.mark.parametrize("role", ROLES)
def test_kill9_under_load_repairs_and_the_restarted_member_rejoins_as_tail(make_cluster, role):
    cluster = make_cluster(fsync="everysec")
    chain = registered_chain(cluster, 3)
    victim = chain[ROLES.index(role)]
    survivors = [a for a in chain if a != victim]
    before = epoch(cluster)
    with RetryingLoad(cluster, chain, prefix=f"kill-{role}") as load:
        load.wait_for_acks(80)
        cluster.kill9(victim)
        dead_at = time.monotonic()
        assert wait_removed(cluster, victim) == survivors
        load.wait_flowing_after(dead_at, FLOWING_DEADLINE_S)
        assert cluster.status(survivors[0])["role"] == "head"
        assert cluster.status(survivors[-1])["role"] == "tail"
        load.wait_for_acks(50)
        # Restarted from its data dir (same flags, --coordinator included): a new incarnation
        # registers, syncs from the tail as a learner and becomes the tail.
        cluster.restart(victim)
        rejoined = wait_rejoined(cluster, victim, 3)
        load.wait_for_acks(50)  # commits now go through the rejoined tail
    assert rejoined == survivors + [victim]
    assert epoch(cluster) > before
    assert_nothing_lost(cluster, rejoined, load)
    assert cluster.status(victim)["role"] == "tail"


def test_sigstop_past_the_probe_timeout_removes_and_sigcont_rejoins(cluster):
    chain = registered_chain(cluster, 3)
    victim = chain[1]
    with RetryingLoad(cluster, chain, prefix="pause") as load:
        load.wait_for_acks(80)
        cluster.sigstop(victim)
        paused_at = time.monotonic()
        assert wait_removed(cluster, victim) == [chain[0], chain[2]]
        load.wait_flowing_after(paused_at, FLOWING_DEADLINE_S)
        cluster.sigcont(victim)
        # Once running again it learns it was removed, registers again and rejoins as the tail.
        rejoined = wait_rejoined(cluster, victim, 3)
        load.wait_for_acks(50)
    assert rejoined == [chain[0], chain[2], victim]
    assert_nothing_lost(cluster, rejoined, load)


def _kill_all(cluster, chain: list[str]) -> tuple[str, list[str]]:
    """kill -9 every member; returns the one the coordinator keeps (it never removes the last
    member of a chain: that one holds every committed write) and the others."""
    for addr in chain:
        cluster.kill9(addr)
    (last,) = wait_until(lambda: len(c := cluster.chain()) == 1 and c, CHAIN_TIMEOUT_S,
                         "the coordinator to remove all but one killed member")
    return last, [a for a in chain if a != last]


def test_whole_chain_kill9_and_restart_rebuilds_the_chain(cluster):
    chain = registered_chain(cluster, 3)
    with RetryingLoad(cluster, chain, prefix="all") as load:
        load.wait_for_acks(100)
        last, others = _kill_all(cluster, chain)
        down_at = time.monotonic()
        cluster.restart(last)  # the member still in the view comes back first ...
        wait_until(lambda: cluster.status(last)["role"] == "head+tail", CHAIN_TIMEOUT_S,
                   f"{last} to serve as a chain of one again")
        for addr in others:  # ... then the others, together
            cluster.restart(addr, wait=False)
        rebuilt = wait_until(lambda: sorted(c := cluster.chain()) == sorted(chain) and c, CHAIN_TIMEOUT_S,
                             "the coordinator to rebuild a chain of all three restarted members")
        assert rebuilt[0] == last
        cluster.wait_chain(rebuilt)
        load.wait_flowing_after(down_at, CHAIN_TIMEOUT_S)
        load.wait_for_acks(50)
    assert_nothing_lost(cluster, rebuilt, load)


def test_coordinator_kill9_and_restart_keeps_views_and_still_repairs(cluster):
    chain = registered_chain(cluster, 3)
    coordinator = cluster.coordinator
    with RetryingLoad(cluster, chain, prefix="coord") as load:
        load.wait_for_acks(50)
        before = epoch(cluster)
        cluster.kill9(coordinator)
        # The chain does not need the coordinator to take writes.
        load.wait_for_acks(50, timeout=FLOWING_DEADLINE_S)
        # A member dies while no coordinator watches: the restarted coordinator repairs it.
        victim = chain[2]
        cluster.kill9(victim)
        cluster.restart(coordinator)
        assert epoch(cluster) >= before
        dead_at = time.monotonic()
        assert wait_removed(cluster, victim) == chain[:2]
        assert epoch(cluster) > before
        load.wait_flowing_after(dead_at, FLOWING_DEADLINE_S)
        # ... and a restart of the coordinator again, then a further failure and a rejoin.
        before = epoch(cluster)
        cluster.kill9(coordinator)
        cluster.restart(coordinator)
        assert epoch(cluster) >= before and cluster.chain() == chain[:2]
        cluster.restart(victim)
        rejoined = wait_rejoined(cluster, victim, 3)
        load.wait_for_acks(50)
    assert rejoined == chain
    assert_nothing_lost(cluster, rejoined, load)


def _fingerprint(directory: Path) -> dict[str, tuple[str, int]]:
    """Each file's content hash and mtime (the LOCK file holds the pid of its last opener)."""
    return {str(p.relative_to(directory)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(directory.rglob("*")) if p.is_file() and p.name != "LOCK"}


def _start_with_another_clusters_data(make_cluster) -> tuple[int, str, Path, dict]:
    """A member started with the data dir of a member of another cluster: (exit status, its
    log, the data dir, the data dir's fingerprint before)."""
    first = make_cluster()
    member = registered_chain(first, 1)[0]
    c = first.client(member)
    for i in range(20):
        assert c.set(f"old:{i}", i) is True
    assert first.stop(member) == 0
    data = first.data_dir(member)
    assert (data / "cluster_id").read_text().strip()
    before = _fingerprint(data)

    other = make_cluster()
    other.start_coordinator()
    proc = Proc("stranger", catena_argv("member", "--listen", f"127.0.0.1:{free_port()}", "--data-dir", str(data),
                                        "--coordinator", other.coordinator),
                other.root / "logs" / "stranger.log")
    other.all_procs.append(proc)
    try:
        status = proc.popen.wait(timeout=CHAIN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.signal(signal.SIGKILL)
        pytest.fail(f"a member with another cluster's data kept running:\n{proc.log_tail()}")
    assert other.chain() == []
    return status, proc.log_path.read_text(), data, before


def test_member_with_another_clusters_data_is_refused_and_left_untouched(make_cluster):
    status, log, data, before = _start_with_another_clusters_data(make_cluster)
    assert status == 2, log
    assert _fingerprint(data) == before


def test_refused_member_says_why(make_cluster):
    status, log, _, _ = _start_with_another_clusters_data(make_cluster)
    assert status == 2, log
    assert "refused" in log and "holds data of cluster" in log, log



def test_whole_chain_restart_with_the_remaining_member_restarted_last(cluster):
    """The others, restarted first, wait (as learner / queued adds) for the member the
    coordinator kept; once it is back they join it."""
    chain = registered_chain(cluster, 3)
    with RetryingLoad(cluster, chain, prefix="last") as load:
        load.wait_for_acks(50)
    last, others = _kill_all(cluster, chain)
    for addr in others:
        cluster.restart(addr)

    def waiting():
        st = cluster.coordinator_status()
        return sorted([st["learner"], *st["queued"]]) == sorted(others)

    wait_until(waiting, CHAIN_TIMEOUT_S, f"{others} to register and wait for {last}")
    cluster.restart(last)
    rebuilt = wait_until(lambda: sorted(c := cluster.chain()) == sorted(chain) and c, CHAIN_TIMEOUT_S,
                         "the coordinator to rebuild a chain of all three restarted members")
    assert rebuilt[0] == last
    cluster.wait_chain(rebuilt)
    assert_nothing_lost(cluster, rebuilt, load)


def test_a_paused_tail_replaced_meanwhile_answers_no_stale_read(cluster):
    """SIGSTOP the tail; the coordinator replaces it (after its read lease ran out) and new
    writes commit at the new tail. On SIGCONT the old tail, before it has heard of the new
    view, must not answer the old value: its lease is gone, so it answers TRYAGAIN (or, once
    it learnt the new view, the new value)."""
    import redis

    chain = registered_chain(cluster, 3)
    head, tail = cluster.client(chain[0]), chain[2]
    assert head.set("fresh", "old")
    wait_until(lambda: cluster.client(tail).get("fresh") == b"old", 10, "the tail to have the old value")
    with redis.Redis(host="127.0.0.1", port=int(tail.rsplit(":", 1)[1]), single_connection_client=True,
                     socket_timeout=30) as stale_conn:
        stale_conn.ping()  # the connection is open before the pause; the read is queued during it
        cluster.sigstop(tail)
        wait_removed(cluster, tail)
        assert head.set("fresh", "new")
        stale_conn.connection.send_command("GET", "fresh")  # lands in the paused process's socket
        cluster.sigcont(tail)
        try:
            got = stale_conn.connection.read_response()
        except redis.ResponseError as exc:
            got = exc
    assert got != b"old", "a replaced tail answered a read from data the chain has moved past"
