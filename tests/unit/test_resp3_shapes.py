"""RESP3 shapes of typed replies (catena.chain.resp3): a HELLO 3 client (redis-py's default since
8.0) gets the bytes redis-server 7.0.15 sent for the same commands (captured from it)."""

from catena.chain import resp3
from catena.chain.state import KVState
from catena.resp.codec import NULL_ARRAY, Error, encode
from test_types import run

# (command, redis-server 7.0.15's RESP3 reply), in order, after ZADD z 1.5 a 2 b -inf c; HSET h f v
CAPTURED = [
    (("ZSCORE", "z", "a"), b",1.5\r\n"),
    (("ZMSCORE", "z", "a", "x"), b"*2\r\n,1.5\r\n_\r\n"),
    (("ZRANGE", "z", "0", "-1", "WITHSCORES"),
     b"*3\r\n*2\r\n$1\r\nc\r\n,-inf\r\n*2\r\n$1\r\na\r\n,1.5\r\n*2\r\n$1\r\nb\r\n,2\r\n"),
    (("ZADD", "z", "INCR", "1", "b"), b",3\r\n"),
    (("ZPOPMIN", "z"), b"*2\r\n$1\r\nc\r\n,-inf\r\n"),
    (("ZPOPMAX", "z", "1"), b"*1\r\n*2\r\n$1\r\nb\r\n,3\r\n"),
    (("ZRANDMEMBER", "z", "1", "WITHSCORES"), b"*1\r\n*2\r\n$1\r\na\r\n,1.5\r\n"),
    (("HGETALL", "h"), b"%1\r\n$1\r\nf\r\n$1\r\nv\r\n"),
    (("HRANDFIELD", "h", "1", "WITHVALUES"), b"*1\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n"),
    (("ZMPOP", "1", "z", "MIN"), b"*2\r\n$1\r\nz\r\n*1\r\n*2\r\n$1\r\na\r\n,1.5\r\n"),
    (("ZMPOP", "1", "nokey", "MIN"), b"_\r\n"),
]


class _Box:
    def resolve(self, value):
        self.value = value


def test_typed_replies_have_redis_resp3_shapes():
    s = KVState()
    run(s, "ZADD", "z", "1.5", "a", "2", "b", "-inf", "c")
    run(s, "HSET", "h", "f", "v")
    for cmd, want in CAPTURED:
        args = [w.encode() for w in cmd]
        box = _Box()
        token = resp3.token_for(box, args, resp3=True)
        token.resolve(run(s, *cmd))
        assert encode(box.value, resp3=True) == want, cmd


def test_a_blocking_pops_timeout_is_a_resp3_null():
    for cmd in ([b"BZPOPMIN", b"z", b"0.01"], [b"BZPOPMAX", b"z", b"0.01"], [b"BZMPOP", b"0.01", b"1", b"z", b"MIN"]):
        box = _Box()
        resp3.token_for(box, cmd, resp3=True).resolve(NULL_ARRAY)
        assert encode(box.value, resp3=True) == b"_\r\n", cmd


def test_a_key_named_withscores_is_not_an_option():
    box = _Box()
    resp3.token_for(box, [b"ZUNION", b"1", b"withscores"], resp3=True).resolve([b"a", b"b"])
    assert box.value == [b"a", b"b"]
    resp3.token_for(box, [b"ZUNION", b"1", b"k", b"withscores"], resp3=True).resolve([b"a", b"1"])
    assert box.value == [[b"a", 1.0]]


def test_resp2_clients_and_errors_are_not_reshaped():
    box = _Box()
    assert resp3.token_for(box, [b"ZSCORE", b"z", b"a"], resp3=False) is box
    token = resp3.token_for(box, [b"ZSCORE", b"z", b"a"], resp3=True)
    token.resolve(Error("WRONGTYPE Operation against a key holding the wrong kind of value"))
    assert type(box.value) is Error
    assert encode(1.1, resp3=False) == b"$18\r\n1.1000000000000001\r\n" and encode(float("inf"), True) == b",inf\r\n"
