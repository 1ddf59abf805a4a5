"""Changing the chain under load with real processes: adding a member, kill -9 of a member
followed by MASTER.REMOVE, and members restarted from their data dirs."""

from __future__ import annotations

import pytest
import redis

from conftest import WriteLoad, wait_until

ROLES = ("head", "middle", "tail")


def _assert_same_everywhere(cluster, members, load: WriteLoad) -> None:
    """No acknowledged write is missing anywhere and no member diverges."""
    states = cluster.wait_converged(members)
    assert len({(s["last_epoch"], s["last_seq"]) for s in states}) == 1, states
    assert len({s["keys"] for s in states}) == 1, states
    for addr in members:
        missing = load.missing_at(addr)
        assert not missing, f"{addr} lacks {len(missing)} acknowledged writes, e.g. {list(missing.items())[:3]}"
    sizes = {addr: cluster.client(addr).dbsize() for addr in members}
    assert len(set(sizes.values())) == 1, sizes
    # Same values, key by key, on every member (not only the ones this test wrote).
    keys = sorted(cluster.client(members[0]).keys("*"))
    first = cluster.client(members[0]).mget(keys) if keys else []
    for addr in members[1:]:
        assert (cluster.client(addr).mget(keys) if keys else []) == first, f"{addr} diverges from {members[0]}"


def _fill(client, prefix: str, n: int, *extra) -> None:
    """SET prefix:0..n-1 to 0..n-1 in one pipeline (plus `extra` (command, args...) tuples)."""
    p = client.pipeline(transaction=False)
    for i in range(n):
        p.set(f"{prefix}:{i}", i)
    for cmd in extra:
        p.execute_command(*cmd)
    assert all(p.execute())


def test_add_member_under_write_load(cluster):
    members = cluster.start(2)
    with WriteLoad(cluster, members, prefix="add") as load:
        load.wait_for_acks(200)
        new = cluster.start_member()
        cluster.add(new)  # returns once the new member is the tail
        before = load.count
        load.wait_for_acks(200)
    chain = members + [new]
    cluster.wait_chain(chain)
    assert before > 0 and load.count > before
    # Everything acknowledged before, during and after the transfer is at the new tail.
    assert cluster.status(new)["role"] == "tail"
    _assert_same_everywhere(cluster, chain, load)
    assert load.count >= 400
    # The new tail serves: a write through it is committed everywhere.
    assert cluster.client(new).set("after-add", b"x") is True
    assert [cluster.client(a).get("after-add") for a in chain] == [b"x"] * 3


def test_removing_the_last_member_is_refused_and_keeps_its_data(cluster):
    first, second = cluster.start(2)
    cluster.client(first).set("kept", b"1")
    cluster.remove(first)
    cluster.wait_chain([second])
    with pytest.raises(redis.ResponseError, match="last member of its chain"):
        cluster.remove(second)
    assert cluster.chain() == [second]
    assert cluster.client(second).get("kept") == b"1"


@pytest.mark.parametrize("role", ROLES)
def test_kill9_then_remove_loses_no_acknowledged_write(make_cluster, role):
    cluster = make_cluster(fsync="everysec")
    members = cluster.start(3)
    victim = members[ROLES.index(role)]
    survivors = [a for a in members if a != victim]
    # Writers at the surviving members: their writes reach the victim as forwards or chain traffic.
    with WriteLoad(cluster, survivors, prefix=f"kill-{role}") as load:
        load.wait_for_acks(300)
        cluster.kill9(victim)
        cluster.remove(victim, missing_ok=True)  # the coordinator may have taken it out already
        cluster.wait_chain(survivors)
        load.wait_for_acks(300)  # the repaired chain takes writes again
    _assert_same_everywhere(cluster, survivors, load)
    head = cluster.status(survivors[0])
    assert head["role"] == "head" and head["members"] == ",".join(survivors)


def test_restarted_member_recovers_its_log_and_rejoins(cluster):
    members = cluster.start(3)
    c = cluster.client(members[0])
    _fill(c, "r", 500)
    cluster.wait_converged(members)
    victim = members[1]
    cluster.kill9(victim)
    cluster.remove(victim, missing_ok=True)
    cluster.wait_chain([members[0], members[2]])
    assert c.set("written-while-down", b"1") is True
    # Restarted without a coordinator address, it recovers its log before any view arrives.
    cluster.restart(victim)
    st = cluster.status(victim)
    assert st["keys"] == 500, st
    assert st["last_seq"] >= 500
    # Added again, it catches up with what it missed and becomes the tail.
    cluster.add(victim)
    chain = [members[0], members[2], victim]
    cluster.wait_chain(chain)
    v = cluster.client(victim)
    assert v.get("written-while-down") == b"1"
    assert v.mget([f"r:{i}" for i in range(500)]) == [str(i).encode() for i in range(500)]
    states = cluster.wait_converged(chain)
    assert {s["keys"] for s in states} == {501}


def test_restarted_member_with_coordinator_rejoins_by_itself(cluster):
    members = cluster.start(2)
    c = cluster.client(members[0])
    for i in range(50):
        c.set(f"s:{i}", i)
    cluster.kill9(members[1])
    cluster.remove(members[1], missing_ok=True)
    cluster.wait_chain(members[:1])
    c.set("s:while-down", b"1")
    cluster.restart(members[1], register=True)  # a new incarnation registers and is added again
    cluster.wait_chain(members)
    t = cluster.client(members[1])
    assert t.get("s:while-down") == b"1"
    assert t.mget([f"s:{i}" for i in range(50)]) == [str(i).encode() for i in range(50)]


def test_whole_cluster_restart_keeps_data(cluster):
    """Every process stopped (SIGTERM) and started again from its data dir: same chain, same data."""
    members = cluster.start(3)
    c = cluster.client(members[1])
    _fill(c, "w", 300, ("INCRBY", "w:n", 7))
    cluster.wait_converged(members)
    # The coordinator first: with it running, a member stopping would be repaired away.
    for addr in [cluster.coordinator, *members]:
        assert cluster.stop(addr) is not None
    for addr in members:  # members first: the coordinator probes them as soon as it starts
        cluster.restart(addr)
    cluster.restart(cluster.coordinator)
    cluster.wait_chain(members)
    for addr in members:
        r = cluster.client(addr)
        wait_until(lambda: r.get("w:n") == b"7", 30, f"{addr} to serve reads again")
        assert r.mget([f"w:{i}" for i in range(300)]) == [str(i).encode() for i in range(300)]
    assert cluster.client(members[2]).incr("w:n") == 8
