"""Arguments through a real chain get real Redis's answers, and no command wedges the chain.

Every command that used to pass validation and then wedge every later write (msgpack could not
encode its int64-overflowing entry), and more argument edge cases, are sent with redis-py to a three-member chain (at the head and through the
middle member, which forwards) and to a real redis-server: the error texts must be the same, the
key must be unchanged at every member, and a normal SET afterwards must commit and be readable at
every member. And the chain fuzzer's commands get the same replies as from redis-server.
"""

from __future__ import annotations

import pytest
import redis

from catena.fuzz_chain import run_against_redis
from conftest import HOST, Proc, free_port, wait_until

WEDGING = [  # (command, Redis 7's error)
    (("EXPIRE", "{k}", "9223372036854775807"), "invalid expire time in 'expire' command"),
    (("EXPIRE", "{k}", "-9223372036854775808"), "invalid expire time in 'expire' command"),
    (("PEXPIREAT", "{k}", "99999999999999999999"), "value is not an integer or out of range"),
    (("SET", "{k}", "v", "EX", "9223372036854775807"), "invalid expire time in 'set' command"),
    (("INCRBY", "{k}", "99999999999999999999"), "value is not an integer or out of range"),
    (("DECRBY", "{k}", "-9223372036854775808"), "decrement would overflow"),
    (("SETEX", "{k}", "9223372036854775807", "v"), "invalid expire time in 'setex' command"),
]

# More edges, compared with redis-server's answer (an error text, or success).
DIFFERENTIAL = [
    ("SET", "{k}", "v", "EX", "0"), ("SET", "{k}", "v", "PX", "-1"), ("SET", "{k}", "v", "EXAT", "0"),
    ("SET", "{k}", "v", "EX", "9223372036854775"), ("SET", "{k}", "v", "PX", "9223372036854775807"),
    ("SET", "{k}", "v", "PXAT", "9223372036854775807"), ("SET", "{k}", "v", "EX", "abc", "EX", "10"),
    ("SET", "{k}", "v", "EX", "-1", "BAD"), ("SET", "{k}", "v", "EX"), ("SET", "{k}", "v", "NX", "XX"),
    ("SET", "{k}", "v", "EX", " 5"), ("SET", "{k}", "v", "EX", "+5"), ("SET", "{k}", "v", "KEEPTTL", "PX", "5"),
    ("PSETEX", "{k}", "0", "v"), ("SETEX", "{k}", "-5", "v"), ("SETEX", "{k}", "05", "v"),
    ("EXPIRE", "{k}", "-9223372036854775"), ("EXPIRE", "{k}", "9223372036854776"),
    ("PEXPIRE", "{k}", "-9223372036854775808"), ("PEXPIRE", "{k}", "9223372036854775807"),
    ("EXPIREAT", "{k}", "9223372036854776"), ("PEXPIREAT", "{k}", "9223372036854775807"),
    ("EXPIRE", "{k}", "100", "NX"), ("EXPIRE", "{k}", "100", "XX"), ("EXPIRE", "{k}", "100", "GT"),
    ("EXPIRE", "{k}", "100", "lt"), ("EXPIRE", "{k}", "100", "NX", "GT"), ("EXPIRE", "{k}", "1", "GT", "LT"),
    ("EXPIRE", "{k}", "x", "BAD"),
    ("INCRBY", "{k}", "+5"), ("INCRBY", "{k}", " 5"), ("INCRBY", "{k}", "1_0"), ("INCRBY", "{k}", "-0"),
    ("INCRBY", "{k}", "9223372036854775808"), ("DECRBY", "{k}", "9223372036854775807"),
    ("SCAN", "18446744073709551616"), ("SCAN", " 1"), ("SCAN", "0", "COUNT", "0"), ("SCAN", "0", "COUNT", "x"),
    ("SELECT", "abc"), ("SELECT", "99999999999"),  # (SELECT 1: catena has one database)
]


@pytest.fixture(scope="module")
def real_redis(tmp_path_factory):
    port = free_port()
    proc = Proc("redis-server", ["redis-server", "--port", str(port), "--bind", HOST, "--save", "",
                                 "--appendonly", "no"], tmp_path_factory.mktemp("redis") / "redis.log")
    try:
        client = redis.Redis(host=HOST, port=port, socket_timeout=10)
        wait_until(lambda: client.ping(), 30, "redis-server to answer")
        yield client
    finally:
        proc.stop()


def answer(client: redis.Redis, words) -> str:
    try:
        client.execute_command(*words)
        return "ok"
    except redis.ResponseError as exc:
        return str(exc)


def words_for(command, key: str) -> list[str]:
    return [w.format(k=key) for w in command]


def assert_chain_serves(cluster, members, key: str, value: bytes) -> None:
    """A normal write commits and every member reads it."""
    assert cluster.client(members[0]).set(key, value) is True
    for m in members:
        assert cluster.client(m).get(key) == value, m


@pytest.mark.parametrize("command,error", WEDGING, ids=[" ".join(c) for c, _ in WEDGING])
@pytest.mark.parametrize("via", [0, 1], ids=["at the head", "forwarded by the middle"])
def test_wedging_commands_get_redis_errors_and_the_chain_keeps_serving(shared_chain3, real_redis, command,
                                                                       error, via):
    cluster, members = shared_chain3
    key = f"wedge:{via}:{'-'.join(command)}"
    cluster.client(members[0]).set(key, b"before")
    real_redis.set(key, b"before")
    assert answer(real_redis, words_for(command, key)) == error  # what Redis 7 answers
    assert answer(cluster.client(members[via]), words_for(command, key)) == error
    for m in members:
        assert cluster.client(m).get(key) == b"before", m  # the command changed nothing
    assert_chain_serves(cluster, members, key + ":after", b"after")


def test_request_numbers_beyond_int64_are_refused(shared_chain3):
    cluster, members = shared_chain3
    for via in members[:2]:
        with pytest.raises(redis.ResponseError, match="request number"):
            cluster.client(via).execute_command("CATENA.REQ", "c", "99999999999999999999", "99999999999999999999",
                                                "SET", "req:k", "v")
    assert cluster.client(members[0]).get("req:k") is None
    assert_chain_serves(cluster, members, "req:after", b"ok")


def test_argument_edges_answer_as_redis_answers(shared_chain3, real_redis):
    cluster, members = shared_chain3
    head = cluster.client(members[0])
    mismatches = []
    for i, command in enumerate(DIFFERENTIAL):
        key = f"edge:{i}"
        for c in (head, real_redis):
            c.set(key, b"7")
        want = answer(real_redis, words_for(command, key))
        got = answer(head, words_for(command, key))
        if got != want:
            mismatches.append((command, want, got))
        if command[0] not in ("SCAN", "SELECT"):
            assert head.exists(key) == real_redis.exists(key), command  # EXPIRE into the past deletes
    assert mismatches == []
    assert_chain_serves(cluster, members, "edge:after", b"ok")


def test_every_reply_is_redis_s_for_fuzzed_commands(real_redis):
    """The chain fuzzer's commands at the head of a pure chain and at redis-server: the same
    replies, error texts included (it found SETNX answering OK/nil where Redis answers 1/0)."""
    port = real_redis.connection_pool.connection_kwargs["port"]
    report = run_against_redis(5000, f"{HOST}:{port}", seed=5)
    assert report.failures == []
    assert report.commands == 5000 and report.accepted > 1500 and report.refused > 300
