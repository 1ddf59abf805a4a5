"""Unmodified redis-py clients (sync and asyncio, default protocol) against every member of a
three-member chain: writes sent anywhere are forwarded to the head and answered once committed,
reads anywhere see every acknowledged write."""

from __future__ import annotations

import asyncio
import random

import pytest
import redis
import redis.asyncio

from conftest import HOST, port_of

ROLES = ("head", "middle", "tail")


def _at(members, role):
    return members[ROLES.index(role)]


def test_default_protocol_is_resp3_and_connection_commands_work(shared_chain3):
    cluster, members = shared_chain3
    for addr in members:
        c = cluster.client(addr)
        assert c.ping() is True
        hello = c.execute_command("HELLO", "3")
        assert hello[b"proto"] == 3
        assert c.connection_pool.connection_kwargs.get("protocol") in (None, 3)
        assert c.client_setname("it") is True
        assert c.client_getname() in ("it", b"it")  # redis-py decodes this one
        assert c.echo(b"x\r\ny") == b"x\r\ny"
        assert c.execute_command("SELECT", 0) in (True, b"OK")
        info = c.info()
        assert info["chain_role"] in ROLES


@pytest.mark.parametrize("role", ROLES)
def test_sync_client_commands_at_each_member(shared_chain3, role):
    cluster, members = shared_chain3
    c = cluster.client(_at(members, role))
    k = f"sync:{role}:"
    assert c.set(k + "a", b"1") is True
    assert c.get(k + "a") == b"1"
    assert c.set(k + "a", b"2", nx=True) is None
    assert c.set(k + "a", b"3", xx=True) is True
    assert c.set(k + "a", b"4", get=True) == b"3"
    assert c.set(k + "missing", b"x", xx=True) is None
    assert c.incr(k + "n") == 1
    assert c.incrby(k + "n", 10) == 11
    assert c.decr(k + "n") == 10
    assert c.decrby(k + "n", 4) == 6
    with pytest.raises(redis.ResponseError, match="not an integer"):
        c.incr(k + "a" if c.set(k + "a", b"text") else "")
    assert c.mset({k + "m1": b"x", k + "m2": b"y"}) is True
    assert c.mget([k + "m1", k + "m2", k + "none"]) == [b"x", b"y", None]
    assert c.exists(k + "m1", k + "m2", k + "none") == 2
    assert c.delete(k + "m1", k + "none") == 1
    assert c.get(k + "m1") is None
    assert set(c.keys(k + "*")) == {(k + s).encode() for s in ("a", "n", "m2")}
    assert {key for key in c.scan_iter(match=k + "*", count=3)} == {(k + s).encode() for s in ("a", "n", "m2")}
    assert c.dbsize() >= 3
    assert c.execute_command("MEMBER.PUT", k + "p", "v") in (True, b"OK")
    # Every member answers with the committed values, whichever member took the writes.
    for addr in members:
        other = cluster.client(addr)
        assert other.mget([k + "a", k + "n", k + "m2", k + "p", k + "m1"]) == [b"text", b"6", b"y", b"v", None]


def test_writes_anywhere_go_through_the_head(shared_chain3):
    cluster, members = shared_chain3
    head = members[0]
    for addr in members:
        before = cluster.status(head)["last_seq"]
        assert cluster.client(addr).set(f"route:{port_of(addr)}", b"v") is True
        after = cluster.status(head)
        assert after["last_seq"] == before + 1, f"a write at {addr} was not sequenced by the head"
    # All members hold the same history.
    states = cluster.wait_converged(members)
    assert len({s["last_seq"] for s in states}) == 1


def test_reads_anywhere_see_every_acknowledged_write(shared_chain3):
    """Write at one member, read at another right after the acknowledgement: never stale."""
    cluster, members = shared_chain3
    clients = [cluster.client(a) for a in members]
    rng = random.Random(7)
    for i in range(120):
        w, r = rng.choice(clients), rng.choice(clients)
        key = f"ryw:{i % 5}"
        assert w.set(key, i) is True
        assert r.get(key) == str(i).encode(), f"stale read of {key} after write {i}"
        if i % 3 == 0:
            assert w.incr("ryw:counter") == i // 3 + 1
            assert r.get("ryw:counter") == str(i // 3 + 1).encode()


@pytest.mark.parametrize("role", ROLES)
def test_pipeline_at_each_member(shared_chain3, role):
    cluster, members = shared_chain3
    c = cluster.client(_at(members, role))
    k = f"pipe:{role}:"
    p = c.pipeline(transaction=False)
    for i in range(300):
        p.set(f"{k}{i}", i)
        p.incr(k + "n")
    out = p.execute()
    assert out[0::2] == [True] * 300
    assert out[1::2] == list(range(1, 301))  # replies come back in request order
    p = c.pipeline(transaction=False)
    for i in range(300):
        p.get(f"{k}{i}")
    assert p.execute() == [str(i).encode() for i in range(300)]
    for addr in members:
        vals = cluster.client(addr).mget([f"{k}{i}" for i in range(300)] + [k + "n"])
        assert vals == [str(i).encode() for i in range(300)] + [b"300"]


def test_pipelined_read_sees_the_same_connections_earlier_write(shared_chain3):
    cluster, members = shared_chain3
    stale = {}
    for role in ROLES:
        p = cluster.client(_at(members, role)).pipeline(transaction=False)
        for i in range(100):
            p.set(f"pipe-ryw:{role}:{i}", i)
            p.get(f"pipe-ryw:{role}:{i}")
        got = p.execute()[1::2]
        stale[role] = sum(v != str(i).encode() for i, v in enumerate(got))
    assert stale == {role: 0 for role in ROLES}


def test_asyncio_clients_at_all_members_concurrently(shared_chain3):
    cluster, members = shared_chain3

    async def main():
        clients = [redis.asyncio.Redis(host=HOST, port=port_of(a), socket_timeout=15) for a in members]
        try:
            async def worker(c, n):
                for i in range(n):
                    await c.incr("async:counter")
                    await c.set(f"async:{id(c)}:{i}", i)
                return n

            got = await asyncio.gather(*(worker(c, 60) for c in clients))
            assert sum(got) == 180
            for c in clients:
                assert await c.get("async:counter") == b"180"
            # An asyncio pipeline too.
            async with clients[1].pipeline(transaction=False) as p:
                for i in range(100):
                    p.incr("async:p")
                res = await p.execute()
            assert res == list(range(1, 101))
            assert [await c.get("async:p") for c in clients] == [b"100"] * 3
        finally:
            for c in clients:
                await c.aclose()

    asyncio.run(asyncio.wait_for(main(), 60))
