"""MULTI/EXEC/WATCH through a real 3-member chain with redis-py: pipelines, Redis's errors, WATCH
races between clients at different members, and transactions across a kill -9 of the head."""

from __future__ import annotations

import shutil
import subprocess
import threading

import pytest
import redis

from conftest import CHAIN_TIMEOUT_S, wait_until


def test_a_pipeline_transaction_answers_every_reply_in_order(shared_chain3):
    cluster, (head, middle, tail) = shared_chain3
    c = cluster.client(middle)
    pipe = c.pipeline(transaction=True)
    pipe.set("t:a", "1").incr("t:a").get("t:a").sadd("t:s", "x").scard("t:s").hset("t:h", "f", "v")
    assert pipe.execute() == [True, 2, b"2", 1, 1, 1]
    assert cluster.client(tail).get("t:a") == b"2"


def test_runtime_errors_are_per_command_and_queuing_errors_abort_the_whole_transaction(shared_chain3):
    cluster, (head, middle, tail) = shared_chain3
    c = cluster.client(tail)
    c.set("t:str", "v")
    pipe = c.pipeline(transaction=True)
    pipe.incr("t:n").sadd("t:str", "m").incr("t:n")
    replies = pipe.execute(raise_on_error=False)
    assert replies[0] == 1 and replies[2] == 2 and str(replies[1]).startswith("WRONGTYPE")
    conn = c.connection_pool.get_connection()
    try:
        for command, expected in ((("MULTI",), b"OK"), (("SET", "t:x", "1"), b"QUEUED")):
            conn.send_command(*command)
            assert conn.read_response() == expected
        conn.send_command("NOSUCHCOMMAND", "a")
        with pytest.raises(redis.ResponseError, match="unknown command"):
            conn.read_response()
        conn.send_command("GET")
        with pytest.raises(redis.ResponseError, match="wrong number of arguments"):
            conn.read_response()
        conn.send_command("EXEC")
        with pytest.raises(redis.ResponseError, match=r"^Transaction discarded because of previous errors\.$"):
            conn.read_response()
    finally:
        c.connection_pool.release(conn)
    assert c.exists("t:x") == 0


@pytest.mark.parametrize("commands, error", [
    ([("EXEC",)], "EXEC without MULTI"),
    ([("DISCARD",)], "DISCARD without MULTI"),
    ([("MULTI",), ("MULTI",)], "MULTI calls can not be nested"),
    ([("MULTI",), ("WATCH", "t:k")], "WATCH inside MULTI is not allowed"),
])
def test_misused_transaction_commands_answer_redis_errors(shared_chain3, commands, error):
    cluster, (head, middle, tail) = shared_chain3
    c = cluster.client(middle, single_connection_client=True)
    for command in commands[:-1]:
        c.execute_command(*command)
    with pytest.raises(redis.ResponseError, match=error):
        c.execute_command(*commands[-1])
    if commands[0] == ("MULTI",):  # neither error ended the transaction; it still runs
        assert c.execute_command("ECHO", "still") == b"QUEUED"
        assert c.execute_command("EXEC") == [b"still"]


def test_discard_drops_the_queue_and_the_watches(shared_chain3):
    cluster, (head, middle, tail) = shared_chain3
    c = cluster.client(head, single_connection_client=True)
    c.execute_command("WATCH", "t:d")
    c.execute_command("MULTI")
    c.execute_command("SET", "t:d", "no")
    assert c.execute_command("DISCARD") == b"OK"
    cluster.client(tail).set("t:d", "other")  # would abort a transaction still watching it
    c.execute_command("MULTI")
    c.execute_command("GET", "t:d")
    assert c.execute_command("EXEC") == [b"other"]


def test_watch_aborts_when_another_member_wrote_the_key(shared_chain3):
    cluster, (head, middle, tail) = shared_chain3
    a, b = cluster.client(middle), cluster.client(tail)
    a.set("t:w", "0")
    with a.pipeline() as pipe:
        pipe.watch("t:w")
        assert pipe.get("t:w") == b"0"
        b.set("t:w", "theirs")
        pipe.multi()
        pipe.set("t:w", "mine")
        with pytest.raises(redis.WatchError):
            pipe.execute()
    assert a.get("t:w") == b"theirs"
    with a.pipeline() as pipe:  # unchanged since WATCH: it runs
        pipe.watch("t:w")
        pipe.multi()
        pipe.set("t:w", "mine")
        assert pipe.execute() == [True]
    assert b.get("t:w") == b"mine"


def test_a_watched_key_changed_aborts_a_transaction_of_local_commands_only(shared_chain3):
    cluster, (head, middle, tail) = shared_chain3
    c = cluster.client(middle, single_connection_client=True)
    c.set("t:pw", "1")
    c.execute_command("WATCH", "t:pw")
    cluster.client(head).set("t:pw", "2")
    c.execute_command("MULTI")
    assert c.execute_command("ECHO", "x") == b"QUEUED"
    assert c.execute_command("EXEC") is None


def test_watch_increments_from_clients_at_every_member_lose_no_update(shared_chain3):
    """Optimistic increments (WATCH, GET, MULTI, SET, EXEC, retried on a nil EXEC) from three
    clients at the three members: the counter ends at exactly the number of EXECs that ran."""
    cluster, members = shared_chain3
    cluster.client(members[0]).set("t:counter", "0")
    done, errors = [0], []
    lock = threading.Lock()

    def worker(addr):
        c = cluster.client(addr)
        for _ in range(15):
            while True:
                try:
                    with c.pipeline() as pipe:
                        pipe.watch("t:counter")
                        value = int(pipe.get("t:counter"))
                        pipe.multi()
                        pipe.set("t:counter", value + 1)
                        pipe.execute()
                        with lock:
                            done[0] += 1
                        break
                except redis.WatchError:
                    continue
                except Exception as exc:  # noqa: BLE001 - reported below
                    errors.append(repr(exc))
                    return

    threads = [threading.Thread(target=worker, args=(m,)) for m in members]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=CHAIN_TIMEOUT_S)
    assert not errors and done[0] == 45
    assert {int(cluster.client(m).get("t:counter")) for m in members} == {45}


def test_retrying_an_exec_under_one_request_id_applies_it_once(shared_chain3):
    cluster, (head, middle, tail) = shared_chain3
    c = cluster.client(tail, single_connection_client=True)
    for _ in range(2):
        c.execute_command("MULTI")
        c.execute_command("INCR", "t:once")
        c.execute_command("INCR", "t:once")
        assert c.execute_command("CATENA.REQ", "txn-client", "7", "EXEC") == [1, 2]
    assert c.get("t:once") == b"2"


def test_transactions_stay_atomic_and_acknowledged_across_a_kill_of_the_head(chain3):
    """Writers run MULTI INCR x INCR y EXEC at the middle and the tail while the head is
    killed: every member ends with x == y, and no acknowledged transaction is lost."""
    cluster, (head, middle, tail) = chain3
    stop = threading.Event()
    acked = {middle: 0, tail: 0}

    def writer(addr):
        c = redis.Redis(host="127.0.0.1", port=int(addr.rsplit(":", 1)[1]), socket_timeout=10)
        try:
            while not stop.is_set():
                try:
                    pipe = c.pipeline(transaction=True)
                    pipe.incr(f"t:x:{addr}").incr(f"t:y:{addr}")
                    x, y = pipe.execute()
                    assert x == y, (x, y)
                    acked[addr] = x
                except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError):
                    stop.wait(0.05)  # outcome unknown or not served yet: try again
        finally:
            c.close()

    threads = [threading.Thread(target=writer, args=(m,), daemon=True) for m in (middle, tail)]
    for t in threads:
        t.start()
    wait_until(lambda: min(acked.values()) >= 20, CHAIN_TIMEOUT_S, "transactions before the kill")
    cluster.kill9(head)
    cluster.wait_chain([middle, tail])
    before = dict(acked)
    wait_until(lambda: all(acked[m] >= before[m] + 20 for m in acked), CHAIN_TIMEOUT_S,
               "transactions after the failover")
    stop.set()
    for t in threads:
        t.join(timeout=30)
    for member in (middle, tail):
        c = cluster.client(member)
        for addr in acked:
            x, y = int(c.get(f"t:x:{addr}")), int(c.get(f"t:y:{addr}"))
            assert x == y >= acked[addr]


@pytest.mark.skipif(shutil.which("redis-cli") is None, reason="redis-cli is not installed")
def test_redis_cli_runs_a_transaction(shared_chain3):
    cluster, (head, middle, tail) = shared_chain3
    port = middle.rsplit(":", 1)[1]
    out = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", port], input="MULTI\nSET t:cli 5\nINCR t:cli\n"
                         "GET t:cli\nEXEC\n", capture_output=True, text=True, timeout=30).stdout.split("\n")
    assert out == ["OK", "QUEUED", "QUEUED", "QUEUED", "OK", "6", "6", ""]  # (not a tty: EXEC's array flat)
    assert cluster.client(tail).get("t:cli") == b"6"


def test_a_resp3_client_gets_resp3_shapes_inside_exec(shared_chain3):
    """redis-py speaks RESP3 by default: inside EXEC, HGETALL is a map and scores are doubles,
    as outside it (and as Redis sends them); the blocking pop run in its non-blocking form keeps
    its own shape."""
    cluster, (head, middle, tail) = shared_chain3
    c = cluster.client(middle, protocol=3)
    c.delete("t3:h", "t3:z")
    pipe = c.pipeline(transaction=True)
    pipe.hset("t3:h", mapping={"f": "v", "g": "w"}).hgetall("t3:h").zadd("t3:z", {"a": 1.5, "b": 2})
    conn = c.connection_pool.get_connection()
    try:
        conn.send_command("MULTI")
        assert conn.read_response() == b"OK"
        for command in (("HGETALL", "t3:h"), ("ZSCORE", "t3:z", "a"), ("ZRANGE", "t3:z", "0", "-1", "WITHSCORES"),
                        ("BZPOPMIN", "t3:z", "1"), ("GET", "t3:none")):
            conn.send_command(*command)
            assert conn.read_response() == b"QUEUED"
        pipe.execute()  # (on another connection) the keys exist now
        conn.send_command("EXEC")
        assert conn.read_response() == [{b"f": b"v", b"g": b"w"}, 1.5, [[b"a", 1.5], [b"b", 2.0]],
                                        [b"t3:z", b"a", 1.5], None]
    finally:
        c.connection_pool.release(conn)
