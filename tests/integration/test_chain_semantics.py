"""At-most-once retries (CATENA.REQ) and expiry, through a real chain."""

from __future__ import annotations

import time

import pytest
import redis

from conftest import wait_until

ROLES = ("head", "middle", "tail")


def test_retried_catena_req_incr_is_applied_once(shared_chain3):
    cluster, members = shared_chain3
    head, middle, tail = (cluster.client(a) for a in members)
    assert head.execute_command("CATENA.REQ", "client-a", 1, "INCR", "req:n") == 1
    # The same request again (a retry after a lost reply), at any member: the original reply.
    for c in (head, middle, tail, head):
        assert c.execute_command("CATENA.REQ", "client-a", 1, "INCR", "req:n") == 1
    assert tail.get("req:n") == b"1"
    assert middle.execute_command("CATENA.REQ", "client-a", 2, "INCRBY", "req:n", 10) == 11
    assert tail.execute_command("CATENA.REQ", "client-a", 2, "INCRBY", "req:n", 10) == 11
    # Another client with the same request number is a different request.
    assert tail.execute_command("CATENA.REQ", "client-b", 1, "INCR", "req:n") == 12
    assert [c.get("req:n") for c in (head, middle, tail)] == [b"12"] * 3
    # Other write commands are deduplicated too.
    assert middle.execute_command("CATENA.REQ", "client-c", 7, "SET", "req:s", "v", "GET") is None
    assert middle.execute_command("CATENA.REQ", "client-c", 7, "SET", "req:s", "v", "GET") is None


def test_retried_request_after_head_failure_is_applied_once(cluster):
    """The dedup table travels with the data: the new head answers a retry with the original reply."""
    members = cluster.start(3)
    tail = cluster.client(members[2])
    assert tail.execute_command("CATENA.REQ", "c1", 41, "INCR", "req:h") == 1
    cluster.kill9(members[0])
    cluster.remove(members[0], missing_ok=True)
    cluster.wait_chain(members[1:])
    for addr in members[1:]:
        assert cluster.client(addr).execute_command("CATENA.REQ", "c1", 41, "INCR", "req:h") == 1
    assert tail.get("req:h") == b"1"
    assert tail.execute_command("CATENA.REQ", "c1", 42, "INCR", "req:h") == 2


def test_catena_req_bad_arguments(shared_chain3):
    cluster, members = shared_chain3
    c = cluster.client(members[1])
    with pytest.raises(redis.ResponseError, match="wrong number of arguments"):
        c.execute_command("CATENA.REQ", "c", "1")
    with pytest.raises(redis.ResponseError, match="not an integer"):
        c.execute_command("CATENA.REQ", "c", "one", "INCR", "x")


def test_expiry_through_the_chain(shared_chain3):
    """SET EX/PX, EXPIRE, PEXPIRE, PERSIST, KEEPTTL written at each member; TTLs agree everywhere
    and the keys disappear on every member at their deadline."""
    cluster, members = shared_chain3
    clients = [cluster.client(a) for a in members]
    prefixes = []
    for role, c in zip(ROLES, clients):
        k = f"exp:{role}:"
        prefixes.append(k)
        assert c.set(k + "ex", b"v", ex=2) is True
        assert c.set(k + "px", b"v", px=1500) is True
        assert c.set(k + "keep", b"v") is True
        assert c.set(k + "later", b"v") is True
        assert c.expire(k + "later", 100) is True
        assert c.pexpire(k + "keep", 100_000) is True
        assert c.persist(k + "keep") is True
        assert c.set(k + "kt", b"1", ex=100) is True
        assert c.set(k + "kt", b"2", keepttl=True) is True
    for k in prefixes:
        for r in clients:  # the deadline is the same on every member
            assert 0 < r.ttl(k + "ex") <= 2
            assert 0 < r.pttl(k + "px") <= 1500
            assert r.ttl(k + "keep") == -1
            assert 90 < r.ttl(k + "later") <= 100
            assert 90 < r.ttl(k + "kt") <= 100 and r.get(k + "kt") == b"2"
            assert r.ttl(k + "none") == -2
    # After the deadline no member shows the keys; the others stay.
    wait_until(lambda: all(r.exists(*(k + s for k in prefixes for s in ("ex", "px"))) == 0 for r in clients), 20,
               "the keys to expire on every member")
    for k in prefixes:
        for r in clients:
            assert r.get(k + "ex") is None and r.ttl(k + "px") == -2
            assert set(r.keys(k + "*")) == {(k + s).encode() for s in ("keep", "later", "kt")}


def test_expired_keys_are_deleted_through_the_chain(cluster):
    """Only the head decides expiry; its delete reaches every member (raw key counts drop)."""
    members = cluster.start(3)
    c = cluster.client(members[2])
    p = c.pipeline(transaction=False)
    for i in range(50):
        p.set(f"t:{i}", i, px=500)
    p.set("t:stay", b"1")
    assert all(p.execute())
    assert {cluster.status(a)["keys"] for a in members} == {51}
    start = time.monotonic()
    wait_until(lambda: all(cluster.status(a)["keys"] == 1 for a in members), 30,
               "every member to drop the expired keys")
    assert time.monotonic() - start < 30
    states = cluster.wait_converged(members)
    assert len({s["last_seq"] for s in states}) == 1
    assert [cluster.client(a).dbsize() for a in members] == [1, 1, 1]
