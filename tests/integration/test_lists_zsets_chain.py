"""Lists, sorted sets and blocking pops through a real 3-member chain with redis-py: every member
answers the same, a restarted member replays them from its log, FLUSHALL empties every member,
and a client blocked at one member is woken by a push through another (the pop itself going
through the head)."""

from __future__ import annotations

import socket
import threading
import time

from conftest import HOST, port_of, wait_until


def _contents(client) -> dict:
    out = {}
    for key in client.scan_iter(count=1000):
        kind = client.type(key)
        if kind == b"list":
            out[key] = (kind, client.lrange(key, 0, -1))
        elif kind == b"zset":
            out[key] = (kind, client.zrange(key, 0, -1, withscores=True))
        else:
            out[key] = (kind, client.get(key))
    return out


def _write(c) -> None:
    assert c.rpush("l", *"abcdef") == 6 and c.lpop("l", 2) == [b"a", b"b"]
    assert c.linsert("l", "AFTER", "d", "x") == 5 and c.lmove("l", "m", "RIGHT", "LEFT") == b"f"
    assert c.zadd("z", {"a": 1.5, "b": 2, "c": -1}) == 3 and c.zincrby("z", 0.25, "a") == 1.75  # RESP3: a double
    assert c.zpopmax("z") == [(b"b", 2.0)] and c.zunionstore("u", ["z", "z"]) == 2
    assert c.zrangestore("r", "z", 0, 0) == 1


def test_lists_and_sorted_sets_are_replicated_and_replayed(chain3):
    cluster, members = chain3
    head = cluster.client(members[0])
    _write(head)
    want = _contents(head)
    assert want[b"l"] == (b"list", [b"c", b"d", b"x", b"e"]) and want[b"z"] == (b"zset", [(b"c", -1.0), (b"a", 1.75)])
    for addr in members[1:]:
        assert _contents(cluster.client(addr)) == want, addr
    victim = members[1]
    cluster.kill9(victim)
    cluster.remove(victim, missing_ok=True)
    cluster.wait_chain([members[0], members[2]])
    assert head.rpush("l", "while-down") == 5 and head.zrem("z", "c") == 1
    cluster.restart(victim)  # recovers its log: every list and sorted set op replayed
    cluster.add(victim)
    chain = [members[0], members[2], victim]
    cluster.wait_chain(chain)
    cluster.wait_converged(chain)
    want = _contents(head)
    assert want[b"l"][1][-1] == b"while-down" and want[b"z"][1] == [(b"a", 1.75)]
    wait_until(lambda: _contents(cluster.client(victim)) == want, 60, "the restarted member to hold them")
    assert cluster.client(victim).flushall(asynchronous=True) is True  # through the chain, from any member
    assert [cluster.client(m).dbsize() for m in chain] == [0, 0, 0]


def _blocked(client, *args):
    """Run a blocking command in a thread; returns (thread, result box)."""
    box = {}

    def run():
        box["reply"] = client.execute_command(*args)
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, box


def test_a_client_blocked_at_the_tail_is_woken_by_a_push_at_the_middle(chain3):
    cluster, members = chain3
    head, middle, tail = (cluster.client(m, socket_timeout=30) for m in members)
    thread, box = _blocked(tail, "BLPOP", "q", "0")
    time.sleep(0.3)  # not a synchronisation: only gives the pop a chance to wrongly return early
    assert "reply" not in box, "BLPOP on an empty list returned at once"
    assert middle.rpush("q", "hello") == 1
    thread.join(20)
    assert list(box.get("reply") or ()) == [b"q", b"hello"]
    assert [cluster.client(m).exists("q") for m in members] == [0, 0, 0], "the pop went through the chain"

    zthread, zbox = _blocked(middle, "BZPOPMIN", "z", "0")
    wait_until(lambda: head.zadd("z", {"m": 3}) >= 0 and zbox.get("reply") is not None, 20, "BZPOPMIN to wake")
    zthread.join(5)
    assert list(zbox["reply"]) == [b"z", b"m", 3.0], "RESP3 (redis-py's default): the score a double"


def test_the_loser_of_a_race_blocks_again_and_times_out_with_nil(chain3):
    cluster, members = chain3
    head, middle, tail = (cluster.client(m, socket_timeout=30) for m in members)
    first = _blocked(middle, "BRPOP", "race", "4")
    second = _blocked(tail, "BRPOP", "race", "4")
    time.sleep(0.3)  # both blocked (a premature reply would show below)
    assert head.lpush("race", "only") == 1
    start = time.monotonic()
    for thread, _ in (first, second):
        thread.join(20)
    replies = sorted([first[1]["reply"], second[1]["reply"]], key=lambda r: r is None)
    assert [r and list(r) for r in replies] == [[b"race", b"only"], None], "one winner, one nil at its timeout"
    assert time.monotonic() - start < 15
    moved = _blocked(tail, "BLMOVE", "src", "dst", "LEFT", "RIGHT", "0")
    assert middle.rpush("src", "e") == 1
    moved[0].join(20)
    assert moved[1]["reply"] == b"e" and cluster.client(members[2]).lrange("dst", 0, -1) == [b"e"]


def test_null_arrays_go_out_as_redis_sends_them(chain3):
    """Redis answers `*-1` (not `$-1`) for pops that find nothing and blocking pops that time out;
    a test client comparing raw bytes (Redis's own suite) loses sync on anything else."""
    cluster, members = chain3
    middle = members[1]
    commands = [b"LMPOP 1 nk LEFT", b"ZMPOP 1 nk MIN", b"LPOP nk 2", b"BLPOP nk 0.05", b"BZMPOP 0.05 1 nk MAX",
                b"BLMOVE nk d LEFT LEFT 0.05", b"LPOP nk"]
    with socket.create_connection((HOST, port_of(middle)), timeout=15.0) as sock:
        sock.sendall(b"".join(c + b"\r\n" for c in commands))
        want = b"*-1\r\n" * 6 + b"$-1\r\n"
        got = b""
        deadline = time.monotonic() + 15.0
        while len(got) < len(want) and time.monotonic() < deadline:
            got += sock.recv(4096)
    assert got == want


def test_sort_through_a_chain(chain3):
    """SORT at the middle with BY/GET patterns sees the writes just made; SORT ... STORE sent to
    the middle goes through the head and every member holds the same list; COMMAND knows SORT."""
    cluster, members = chain3
    head, middle, tail = (cluster.client(m) for m in members)
    assert middle.rpush("sl", 3, 1, 2) == 3 and middle.mset({"w_1": 30, "w_2": 10, "w_3": 20, "o_2": "two"})
    assert middle.sort("sl", by="w_*", get=["#", "o_*"]) == [b"2", b"two", b"3", None, b"1", None]
    assert middle.sort("sl", desc=True, store="sd") == 3
    for client in (head, middle, tail):
        wait_until(lambda: client.lrange("sd", 0, -1) == [b"3", b"2", b"1"], 15.0, "every member holds the stored list")
    assert middle.execute_command("SORT_RO", "sl", "BY", "nosort", "DESC") == [b"2", b"1", b"3"]
    assert middle.command_getkeys("SORT", "sl", "STORE", "sd") == ["sl", "sd"]
