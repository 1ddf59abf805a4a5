"""Blocking pops (catena.chain.blocking) through a pure 3-member chain: a client blocked at any
member is woken by a write applied there and pops through the head; a client that loses the
race blocks again; timeouts answer nil; a gone client pops nothing; errors as Redis's."""

import pytest

from catena.chain.blocking import parse_timeout
from catena.fuzz_chain import MEMBERS, PureChain
from catena.resp.codec import NULL_ARRAY, Error

HEAD, MIDDLE, TAIL = MEMBERS


def words(*ws):
    return [w if type(w) is bytes else str(w).encode() for w in ws]


@pytest.fixture
def chain():
    return PureChain()


def nobody_blocked(chain) -> bool:
    return all(not (r.blocked.waiters or r.blocked.watched or r.blocked.by_key) for r in chain.replicas.values())


def ask(chain, member, *cmd):
    token = chain.send(member, words(*cmd))
    chain.settle()
    return token


def test_a_client_blocked_at_the_tail_is_woken_by_a_push_through_another_member(chain):
    blocked = ask(chain, TAIL, "BLPOP", "q", "other", "0")
    assert blocked not in chain.replies, "nothing to pop: blocked"
    chain.tick(5)
    assert blocked not in chain.replies, "timeout 0 blocks for ever"
    pushed = ask(chain, MIDDLE, "RPUSH", "q", "a", "b")
    assert chain.replies.pop(pushed) == 2
    assert list(chain.replies.pop(blocked)) == [b"q", b"a"]
    assert chain.replies.pop(ask(chain, HEAD, "LRANGE", "q", "0", "-1")) in ([b"b"], (b"b",))
    assert nobody_blocked(chain), "an answered client is forgotten everywhere"
    chain.check(b"fresh")


def test_the_oldest_client_wins_and_the_loser_blocks_again_until_its_timeout(chain):
    first = ask(chain, MIDDLE, "BRPOP", "q", "1")
    second = ask(chain, TAIL, "BRPOP", "q", "1")
    ask(chain, HEAD, "LPUSH", "q", "x")
    got = {t: chain.replies.pop(t) for t in (first, second) if t in chain.replies}
    assert list(got.values()) in ([[b"q", b"x"]], [(b"q", b"x")]) and len(got) == 1, "one element, one winner"
    loser = second if first in got else first
    chain.tick(0.5)
    assert loser not in chain.replies
    chain.tick(0.6)
    assert chain.replies.pop(loser) is NULL_ARRAY, "its deadline passed: a null array, as Redis"
    assert nobody_blocked(chain)
    chain.check(b"fresh")


def test_blmove_bzpopmin_blmpop_and_errors(chain):
    moved = ask(chain, TAIL, "BLMOVE", "src", "dst", "LEFT", "RIGHT", "0")
    zpop = ask(chain, MIDDLE, "BZPOPMIN", "z", "0")
    mpop = ask(chain, HEAD, "BLMPOP", "0", "2", "a", "b", "RIGHT", "COUNT", "5")
    ask(chain, HEAD, "RPUSH", "src", "e")
    ask(chain, MIDDLE, "ZADD", "z", "2", "m", "1", "n")
    ask(chain, TAIL, "RPUSH", "b", "1", "2")
    assert chain.replies.pop(moved) == b"e" and chain.replies.pop(ask(chain, TAIL, "LLEN", "dst")) == 1
    assert list(chain.replies.pop(zpop)) == [b"z", b"n", b"1"]
    reply = chain.replies.pop(mpop)
    assert reply[0] == b"b" and list(reply[1]) == [b"2", b"1"]
    assert chain.replies.pop(ask(chain, TAIL, "BLPOP", "q", "-1")) == Error("ERR timeout is negative")
    assert chain.replies.pop(ask(chain, TAIL, "BLPOP", "q", "x")) == Error("ERR timeout is not a float or out of range")
    ask(chain, HEAD, "SET", "s", "v")
    assert chain.replies.pop(ask(chain, TAIL, "BLPOP", "s", "0")) == Error(
        "WRONGTYPE Operation against a key holding the wrong kind of value")
    assert chain.replies.pop(ask(chain, TAIL, "BLMOVE", "a", "b", "UP", "LEFT", "0")) == Error("ERR syntax error")
    assert list(chain.replies.pop(ask(chain, TAIL, "BZPOPMAX", "z", "0.01"))) == [b"z", b"m", b"2"]
    chain.check(b"fresh")


def test_a_gone_client_pops_nothing():
    chain = PureChain()
    gone = set()
    for replica in chain.replicas.values():
        replica.gone = gone.__contains__
    blocked = ask(chain, TAIL, "BLPOP", "q", "0")
    gone.add(blocked)
    ask(chain, HEAD, "RPUSH", "q", "a")
    assert blocked not in chain.replies
    assert chain.replies.pop(ask(chain, HEAD, "LLEN", "q")) == 1, "the element is still there"
    assert nobody_blocked(chain), "a gone client is forgotten"


def test_timeouts_parse_as_redis():
    assert parse_timeout(b"0", 1000) is None and parse_timeout(b"1.5", 1000) == 2500
    assert parse_timeout(b"0.0001", 1000) == 1001, "below a millisecond: 1 ms, as Redis rounds it up (ceill)"
    assert parse_timeout(b"0.001", 1000) == 1001 and parse_timeout(b"-0.0001", 0) is None, "-0.1 ms rounds up to 0"
    assert parse_timeout(b"-0.5", 0) == Error("ERR timeout is negative")
    assert parse_timeout(b"inf", 0) == Error("ERR timeout is not a float or out of range")


def test_a_woken_move_to_a_destination_of_another_type_answers_wrongtype_and_keeps_the_list(chain):
    ask(chain, HEAD, "SET", "target", "nolist")
    moved = ask(chain, TAIL, "BRPOPLPUSH", "blist", "target", "0")
    assert moved not in chain.replies
    ask(chain, MIDDLE, "RPUSH", "blist", "a", "b", "c")
    assert chain.replies.pop(moved) == Error("WRONGTYPE Operation against a key holding the wrong kind of value")
    assert list(chain.replies.pop(ask(chain, TAIL, "LRANGE", "blist", "0", "-1"))) == [b"a", b"b", b"c"]


def test_the_same_key_twice_blocks_once(chain):
    blocked = ask(chain, MIDDLE, "BLPOP", "l1", "l2", "l2", "l1", "0")
    ask(chain, HEAD, "RPUSH", "l2", "x")
    assert list(chain.replies.pop(blocked)) == [b"l2", b"x"] and nobody_blocked(chain)


def test_many_blocked_clients_each_get_one_element_and_none_is_lost(chain):
    waiting = [ask(chain, MEMBERS[i % 3], "BLPOP", "q", "0") for i in range(30)]
    assert not any(t in chain.replies for t in waiting)
    ask(chain, HEAD, "RPUSH", "q", *[f"e{i}" for i in range(20)])
    served = [t for t in waiting if t in chain.replies]
    assert len(served) == 20, "20 elements: 20 clients served"
    got = [list(chain.replies.pop(t))[1] for t in served]
    assert sorted(got) == sorted(f"e{i}".encode() for i in range(20)), "each element popped once"
    ask(chain, MIDDLE, "RPUSH", "q", *[f"f{i}" for i in range(15)])
    assert all(t in chain.replies for t in waiting if t not in served), "the other 10 served next"
    assert chain.replies.pop(ask(chain, TAIL, "LLEN", "q")) == 5 and nobody_blocked(chain)
    chain.check(b"fresh")
