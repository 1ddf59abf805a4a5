"""Introspection at a real member, checked against redis-server where Redis has the answer:
COMMAND INFO/COUNT/GETKEYS, INFO sections, CONFIG GET/SET, CLIENT LIST/INFO/KILL/NO-EVICT, WAIT,
HELLO/RESET, FUNCTION FLUSH and the refusal of scripts."""

from __future__ import annotations

import socket

import pytest
import redis

from conftest import wait_until
from test_wedging_commands import real_redis  # noqa: F401 - a fixture


def _raw(client, *args):
    """One command without redis-py's reply parsing (it reads every COMMAND reply as COMMAND's)."""
    conn = client.connection_pool.get_connection()
    try:
        conn.send_command(*args)
        return conn.read_response()
    except redis.ResponseError as exc:
        return str(exc)
    finally:
        client.connection_pool.release(conn)


def _info_of(reply) -> tuple:
    name, arity, flags, first, last, step = reply[:6]
    return name, arity, sorted(flags), first, last, step


def test_command_info_agrees_with_redis_for_every_command_both_have(shared_chain3, real_redis):  # noqa: F811
    cluster, (head, middle, tail) = shared_chain3
    c = cluster.client(middle, protocol=2)
    conn = c.connection_pool.get_connection()
    try:
        conn.send_command("COMMAND")
        ours = {r[0].lower(): r for r in conn.read_response()}
        conn.send_command("COMMAND", "COUNT")
        assert conn.read_response() == len(ours)
    finally:
        c.connection_pool.release(conn)
    theirs_conn = real_redis.connection_pool.get_connection()
    try:
        compared = 0
        for name, reply in ours.items():
            theirs_conn.send_command("COMMAND", "INFO", name)
            (theirs,) = theirs_conn.read_response()
            if theirs is None:
                continue  # catena's own
            assert _info_of(reply) == _info_of(theirs), name
            compared += 1
    finally:
        real_redis.connection_pool.release(theirs_conn)
    assert compared >= 60 and b"exec" in ours and b"publish" in ours


@pytest.mark.parametrize("command", [
    ("MSET", "a", "1", "b", "2"), ("SMOVE", "s", "d", "m"), ("SINTERSTORE", "d", "x", "y"), ("DEL", "a", "b", "c"),
    ("HSET", "h", "f", "v"), ("GET", "k"), ("PING",), ("WATCH", "a", "b"), ("PUBLISH", "ch", "m"),
])
def test_command_getkeys_agrees_with_redis(shared_chain3, real_redis, command):  # noqa: F811
    cluster, (head, middle, tail) = shared_chain3

    ours = _raw(cluster.client(tail), "COMMAND", "GETKEYS", *command)
    assert ours == _raw(real_redis, "COMMAND", "GETKEYS", *command)


def test_info_answers_redis_sections_one_at_a_time_and_the_chain(shared_chain3):
    cluster, (head, middle, tail) = shared_chain3
    c = cluster.client(middle)
    c.set("intro:k", "v")
    default = c.info()
    assert default["redis_version"].startswith("7.") and default["chain_role"] == "middle"
    assert "catena_longest_loop_turn_ms" in default and "used_cpu_user" in default
    keyspace = c.info("keyspace")
    assert set(keyspace) == {"db0"} and keyspace["db0"]["keys"] >= 1
    cpu = c.info("cpu")
    assert "used_cpu_user" in cpu and "used_memory" not in cpu
    replication = c.info("replication")
    assert replication["role"] == "slave" and [replication[f"chain_member{i}"] for i in range(3)] == [head, middle, tail]
    assert cluster.client(head).info("replication")["role"] == "master"
    assert "rejected_calls" in str(c.info("all")) and "rejected_calls" not in str(default)


def test_config_get_set_for_the_documented_parameters(shared_chain3):
    cluster, (head, middle, tail) = shared_chain3
    c = cluster.client(head)
    assert c.config_get("maxclients") == {"maxclients": "10000"}
    assert c.config_set("zset-max-ziplist-entries", 7) is True
    assert c.config_get("zset-max-ziplist-entries") == {"zset-max-ziplist-entries": "7"}
    with pytest.raises(redis.ResponseError, match="Unknown option"):
        c.config_set("no-such-parameter", 1)
    with pytest.raises(redis.ResponseError, match="CONFIG SET failed"):
        c.config_set("maxmemory", 100)
    assert c.config_get("maxmemory") == {"maxmemory": "0"}
    assert c.config_set("save", "") is True  # a read-only parameter set to what it is


def test_client_list_info_kill_and_no_evict(shared_chain3):
    cluster, (head, middle, tail) = shared_chain3
    victim = socket.create_connection(("127.0.0.1", int(tail.rsplit(":", 1)[1])), timeout=10)
    victim.sendall(b"CLIENT SETNAME victim\r\n")
    assert victim.recv(100) == b"+OK\r\n"
    me = cluster.client(tail, single_connection_client=True)
    listed = {c["name"]: c for c in me.client_list()}
    assert "victim" in listed and listed["victim"]["cmd"] == "client"
    assert me.client_info()["id"] == str(me.client_id()) or int(me.client_info()["id"]) == me.client_id()
    assert me.execute_command("CLIENT", "NO-EVICT", "on") in (b"OK", True, "OK")
    assert me.client_kill_filter(_id=int(listed["victim"]["id"])) == 1
    wait_until(lambda: "victim" not in {c["name"] for c in me.client_list()}, 10, "the victim to go")
    assert victim.recv(100) == b""  # closed by the member
    victim.close()


def test_wait_counts_the_other_chain_members(shared_chain3):
    cluster, (head, middle, tail) = shared_chain3
    c = cluster.client(middle)
    c.set("intro:w", "1")
    assert c.wait(2, 100) == 2
    with pytest.raises(redis.ResponseError, match="timeout is negative"):
        c.wait(1, -1)


def test_hello_reset_function_flush_and_scripts(shared_chain3):
    cluster, (head, middle, tail) = shared_chain3
    c = cluster.client(head, single_connection_client=True, protocol=2)
    assert c.execute_command("HELLO", "3")[b"proto" if b"proto" in c.execute_command("HELLO", "3") else "proto"] == 3
    c.execute_command("MULTI")
    assert c.execute_command("RESET") in (b"RESET", "RESET")
    assert c.execute_command("GET", "intro:none") is None  # not queued: the transaction is gone
    assert c.execute_command("FUNCTION", "FLUSH") in (b"OK", True)
    for script in (("EVAL", "return 1", "0"), ("FUNCTION", "LOAD", "x"), ("EVALSHA", "abc", "0")):
        with pytest.raises(redis.ResponseError, match="catena does not support"):
            c.execute_command(*script)


def test_client_reply_off_and_skip_drop_replies_until_on(shared_chain3):
    cluster, (head, middle, tail) = shared_chain3
    with socket.create_connection(("127.0.0.1", int(middle.rsplit(":", 1)[1])), timeout=10) as s:
        s.sendall(b"CLIENT REPLY OFF\r\nSET intro:r 1\r\nGET intro:r\r\nCLIENT REPLY SKIP\r\nPING\r\n"
                  b"CLIENT REPLY ON\r\nGET intro:r\r\n")
        expected = b"+OK\r\n$1\r\n1\r\n"  # only ON's reply and the last GET's
        data = b""
        while len(data) < len(expected):
            chunk = s.recv(4096)
            assert chunk, data
            data += chunk
        assert data == expected


def test_memory_usage_and_object_describe_a_key(shared_chain3):
    cluster, (head, middle, tail) = shared_chain3
    c = cluster.client(tail)
    c.set("intro:mem", "x" * 1000)
    c.hset("intro:memh", mapping={f"f{i}": "v" * 10 for i in range(100)})
    assert 1000 < c.memory_usage("intro:mem") < 2000
    assert c.memory_usage("intro:memh") > 100 * 13
    assert c.memory_usage("intro:none") is None
    assert c.info("memory")["mem_allocator"] == "libc"
    c.set("intro:int", "12")
    assert [c.object("encoding", k) for k in ("intro:int", "intro:mem", "intro:memh")] == [b"int", b"raw", b"listpack"]
    assert c.object("refcount", "intro:mem") == 1 and c.object("encoding", "intro:none") is None
