"""Hashes and sets through a real 3-member chain with redis-py: every member answers the same,
types survive a member's restart (log replay) and reach a member added after the window of
delta catch-up has moved on (a snapshot transfer)."""

from __future__ import annotations

import redis

from catena.chain.replica import WINDOW
from conftest import wait_until


def _contents(client) -> dict:
    """Every key with its type and value, as this member answers them."""
    out = {}
    for key in client.scan_iter(count=1000):
        kind = client.type(key)
        if kind == b"hash":
            pairs = client.execute_command("HGETALL", key)
            out[key] = (kind, pairs if type(pairs) is dict else dict(zip(pairs[0::2], pairs[1::2])))
        elif kind == b"set":
            out[key] = (kind, set(client.smembers(key)))
        else:
            out[key] = (kind, client.get(key))
    return out


def _write_types(c) -> None:
    assert c.hset("h", mapping={"a": "1", "b": "2"}) == 2
    assert c.hincrbyfloat("h", "f", 10.5) == 10.5 and c.hincrbyfloat("h", "f", "0.1") == 10.6
    assert c.sadd("s", *[f"m{i}" for i in range(20)]) == 20
    assert len(c.spop("s", 5)) == 5
    assert c.smove("s", "t", c.srandmember("s")) is True
    assert c.sunionstore("u", "s", "t") == 15
    assert c.set("str", "v") is True


def test_types_are_replicated_and_survive_a_restart(cluster):
    members = cluster.start(3)
    head, tail = cluster.client(members[0]), cluster.client(members[2])
    _write_types(head)
    try:
        tail.get("h")
        raise AssertionError("GET on a hash answered")
    except redis.ResponseError as exc:
        assert str(exc).startswith("WRONGTYPE")
    assert [cluster.client(m).type("h") for m in members] == [b"hash"] * 3
    want = _contents(head)
    assert len(want) == 5 and want[b"s"][0] == b"set" and len(want[b"s"][1]) == 14
    for addr in members[1:]:
        assert _contents(cluster.client(addr)) == want, addr
    assert tail.scan(0, count=1000, _type="set")[1] and sorted(tail.scan(0, count=1000, _type="hash")[1]) == [b"h"]

    victim = members[1]
    cluster.kill9(victim)
    cluster.remove(victim, missing_ok=True)
    cluster.wait_chain([members[0], members[2]])
    assert head.hset("h", "while-down", "1") == 1 and head.srem("s", *want[b"s"][1]) == 14
    cluster.restart(victim)  # recovers its log: every type replayed
    cluster.add(victim)
    chain = [members[0], members[2], victim]
    cluster.wait_chain(chain)
    cluster.wait_converged(chain)
    want = _contents(head)
    assert b"s" not in want and want[b"h"][1][b"while-down"] == b"1"
    assert _contents(cluster.client(victim)) == want


def test_a_member_added_after_the_window_gets_the_types_in_a_snapshot(cluster):
    members = cluster.start(2)
    head = cluster.client(members[0])
    _write_types(head)
    p = head.pipeline(transaction=False)
    for i in range(WINDOW + 500):  # past the delta window: a new member needs a snapshot
        p.sadd(f"bulk:{i % 1000}", i)
        if len(p) == 10_000:
            p.execute()
    p.execute()
    new = cluster.start_member()
    cluster.add(new)
    chain = members + [new]
    cluster.wait_chain(chain)
    cluster.wait_converged(chain)
    want = _contents(head)
    assert len(want) == 1005 and want[b"bulk:7"][0] == b"set" and len(want[b"bulk:7"][1]) == 101
    wait_until(lambda: _contents(cluster.client(new)) == want, 60, "the new member to hold every typed key")
    assert cluster.client(new).sismember("bulk:7", "100007") == 1
    assert (cluster.data_dir(new) / "log" / "snapshot").exists(), "the new member was sent a snapshot"
