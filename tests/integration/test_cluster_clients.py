"""Real Redis Cluster clients against a single chain started in cluster mode (docs/sharding.md):
redis-py's RedisCluster, `redis-cli -c` and `redis-cli --cluster check`, and a head failure
that the cluster clients follow."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
import redis
from redis.cluster import ClusterNode, RedisCluster

from catena.slots import key_slot

from conftest import HOST, Cluster, Proc, free_port_block, port_of, wait_until

pytestmark = pytest.mark.skipif(shutil.which("redis-cli") is None, reason="redis-cli is not installed")
CLUSTER_MODE = ("--cluster-enabled", "yes")


@pytest.fixture(scope="module")
def cluster_chain(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("cluster-mode"), member_args=CLUSTER_MODE)
    try:
        try:
            members = c.start(3)
        except BaseException:
            sys.stderr.write(c.logs())
            raise
        yield c, members
    finally:
        c.close()


def rc_for(addr: str) -> RedisCluster:
    return RedisCluster(startup_nodes=[ClusterNode(HOST, port_of(addr))], decode_responses=True, socket_timeout=15)


def redis_cli(*args: str, timeout: float = 30.0) -> subprocess.CompletedProcess:
    return subprocess.run(["redis-cli", *args], capture_output=True, text=True, timeout=timeout)


def test_redis_cluster_sees_one_shard_whose_master_is_the_head(cluster_chain):
    c, (head, middle, tail) = cluster_chain
    with rc_for(tail) as rc:
        assert [n.name for n in rc.get_primaries()] == [head]
        assert sorted(n.name for n in rc.get_replicas()) == sorted([middle, tail])
        assert rc.cluster_keyslot("{user1000}.following") == key_slot(b"user1000")


def test_redis_cluster_writes_reads_pipelines_and_hash_tags(cluster_chain):
    c, (head, middle, tail) = cluster_chain
    with rc_for(middle) as rc:
        assert rc.set("rc:a", "1") is True and rc.get("rc:a") == "1"
        assert rc.incr("rc:n") == 1
        pipe = rc.pipeline()
        for i in range(50):
            pipe.set(f"rc:p{i}", i)
        pipe.get("rc:p7")
        assert pipe.execute()[-1] == "7"
        assert rc.mset({"{rc}x": "1", "{rc}y": "2"}) is True
        assert rc.mget(["{rc}x", "{rc}y"]) == ["1", "2"]
        slot = key_slot(b"rc")
        assert rc.cluster_countkeysinslot(slot) == 2
        assert sorted(rc.cluster_get_keys_in_slot(slot, 10)) == ["{rc}x", "{rc}y"]
    with c.client(tail, decode_responses=True) as member:
        assert member.get("rc:p49") == "49"  # every member serves every slot of its chain


def test_keys_across_slots_are_refused_with_crossslot(cluster_chain):
    c, (head, middle, tail) = cluster_chain
    member = c.client(middle, decode_responses=True)
    with pytest.raises(redis.exceptions.ClusterCrossSlotError, match="^Keys in request don't hash to the same slot$"):
        member.mset({"cross:a": "1", "cross:b": "2"})
    assert member.exists("cross:a") == member.exists("cross:b") == 0  # nothing was written
    out = redis_cli("-p", str(port_of(middle)), "MGET", "cross:a", "cross:b").stdout.strip()
    assert out == "CROSSSLOT Keys in request don't hash to the same slot"  # Redis's words, on the wire
    with rc_for(middle) as rc, pytest.raises(redis.exceptions.RedisClusterException):
        rc.mget(["cross:a", "cross:b"])  # refused by the client before it is sent, as Redis Cluster's


def test_cluster_commands_answer_as_redis_does(cluster_chain):
    c, (head, middle, tail) = cluster_chain
    member = c.client(tail, decode_responses=True)
    info = member.execute_command("CLUSTER", "INFO")
    assert "cluster_state:ok" in info and "cluster_slots_assigned:16384" in info
    assert member.info("cluster") == {"cluster_enabled": 1}
    assert member.config_get("cluster-enabled") == {"cluster-enabled": "yes"}
    assert len(member.execute_command("CLUSTER", "MYID")) == 40
    nodes = member.execute_command("CLUSTER", "NODES")
    assert "myself,slave" in str(nodes) and "0-16383" in str(nodes)
    assert member.execute_command("READONLY") in (True, "OK")
    assert member.execute_command("ASKING") in (True, "OK")
    with pytest.raises(redis.ResponseError, match="Invalid slot"):
        member.execute_command("CLUSTER", "COUNTKEYSINSLOT", "16384")
    with pytest.raises(redis.ResponseError, match="Unknown subcommand"):
        member.execute_command("CLUSTER", "FORGET", "x")


def test_redis_cli_follows_the_cluster_and_checks_it(cluster_chain):
    c, (head, middle, tail) = cluster_chain
    port = str(port_of(tail))
    assert redis_cli("-c", "-p", port, "SET", "cli:k", "v").stdout.strip() == "OK"
    assert redis_cli("-c", "-p", str(port_of(head)), "GET", "cli:k").stdout.strip() == "v"
    check = redis_cli("--cluster", "check", f"{HOST}:{port}")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "[OK] All 16384 slots covered." in check.stdout, check.stdout
    assert "[OK] All nodes agree about slots configuration." in check.stdout, check.stdout


def test_after_a_head_failure_the_cluster_client_follows_the_new_head(make_cluster):
    c = make_cluster(member_args=CLUSTER_MODE)
    head, middle, tail = c.start(3)
    rc = RedisCluster(startup_nodes=[ClusterNode(HOST, port_of(a)) for a in (head, middle, tail)],
                      decode_responses=True, socket_timeout=5, socket_connect_timeout=2)
    try:
        assert rc.set("fo:k", "before") is True
        c.kill9(head)

        def written():
            try:
                return rc.set("fo:k", "after")
            except (redis.ConnectionError, redis.TimeoutError, redis.exceptions.ClusterError,
                    redis.ResponseError):
                return False

        wait_until(written, 60, "a write through RedisCluster after the head died")
        assert rc.get("fo:k") == "after"
        wait_until(lambda: rc.nodes_manager.initialize() or [n.name for n in rc.get_primaries()] == [middle],
                   60, "the cluster client to name the new head its master")
    finally:
        rc.close()


def move_slot_by_hand(a: Cluster, b: Cluster, slot: int, b_as_seen_from_a: int = 1) -> None:
    """docs/sharding.md §3's steps, one internal command each, as the migration driver will send
    them: B imports, A freezes, the slot's keys are copied from A to B, A gives, B takes, A
    learns where B is, A drops its copy."""
    a_member, b_member = a.chain_members[0], b.chain_members[0]
    s = b"%d" % slot
    assert b.member_cmd(b_member, "CATENA.SLOTS", s, s, "none") == b"OK"
    assert b.member_cmd(b_member, "CATENA.SLOTS", s, s, "importing", 0) == b"OK"
    assert a.member_cmd(a_member, "CATENA.SLOTS", s, s, "frozen") == b"OK"
    _, live, *copied = a.member_cmd(a_member, "CATENA.SLOTDUMP", s)
    assert len(live) == len(copied) // 3 == 2
    assert b.member_cmd(b_member, "CATENA.IMPORT", s, *copied) == len(copied) // 3
    for member in a.chain_members:  # the addressing first, so that -MOVED names B's head
        assert a.member_cmd(member, "MEMBER.SHARD", b_as_seen_from_a, 1, f"{slot}-{slot}",
                            *b.chain_members) == b"OK"
    assert a.member_cmd(a_member, "CATENA.SLOTS", s, s, "given", b_as_seen_from_a) == b"OK"
    assert b.member_cmd(b_member, "CATENA.SLOTS", s, s, "owned") == b"OK"
    assert a.member_cmd(a_member, "CATENA.CLEARSLOT", s) == len(copied) // 3


def test_a_slot_moved_between_two_chains_is_followed_by_every_client(make_cluster):
    """Two single-chain deployments in cluster mode; one slot moved from A to B by hand. Clients
    that know only A follow -MOVED to B's head: catena.Client, redis-cli -c, RedisCluster."""
    from catena.client import Client

    a, b = make_cluster(member_args=CLUSTER_MODE), make_cluster(member_args=CLUSTER_MODE)
    a.chain_members, b.chain_members = a.start(2), b.start(2)
    key = "{moving}k"
    slot = key_slot(key.encode())
    with Client(a.coordinator, timeout=20) as client:
        client.set(key, "before")
        client.set("{moving}h", "tagged")
        move_slot_by_hand(a, b, slot)
        assert client.get(key) == b"before"  # -MOVED from A, then B's head
        assert client.set(key, "after") is True
        assert client.get("{moving}h") == b"tagged"
        assert client.get("elsewhere") is None and client.set("elsewhere", "A") is True
        pipe = client.pipeline()  # split by chain: the moved slot's commands to B, the rest to A
        pipe.set("{moving}p", "1").set("elsewhere:p", "2").get("{moving}p").get("elsewhere:p")
        assert pipe.execute() == [b"OK", b"OK", b"1", b"2"]
    for member in b.chain_members:
        assert b.client(member).get(key) == b"after"
    with pytest.raises(redis.exceptions.MovedError) as moved:  # `-MOVED slot host:port` on the wire
        a.client(a.chain_members[1]).get(key)
    assert moved.value.message == f"{slot} {b.chain_members[0]}"
    assert a.client(a.chain_members[1]).get("elsewhere") == b"A"
    assert b.client(b.chain_members[1]).get("{moving}p") == b"1" and a.client(a.chain_members[1]).get("elsewhere:p") == b"2"
    out = redis_cli("-c", "-p", str(port_of(a.chain_members[1])), "GET", key).stdout.strip()
    assert out == "after"
    with RedisCluster(startup_nodes=[ClusterNode(HOST, port_of(a.chain_members[0]))], decode_responses=True,
                      socket_timeout=15) as rc:
        assert rc.get_node_from_key(key).name == b.chain_members[0]
        assert rc.get(key) == "after" and rc.get("elsewhere") == "A"
        assert rc.set(key, "third") is True
    assert b.client(b.chain_members[1]).get(key) == b"third"


def test_the_client_never_follows_redirects_or_retries_forever(make_cluster):
    """A slot frozen for good: writes are retried with backoff until the call's deadline. A
    slot whose -MOVED names the member itself: followed MAX_REDIRECTS times, then refused."""
    import time

    from catena.client import Client, ResponseError, Timeout

    c = make_cluster(member_args=CLUSTER_MODE)
    (member,) = c.start(1)
    frozen, looping = "{frozen}k", "{loop}k"
    for key, words in ((frozen, ["frozen"]), (looping, ["frozen"]), (looping, ["given", 5])):
        s = key_slot(key.encode())
        if words[0] == "given":
            assert c.member_cmd(member, "MEMBER.SHARD", 5, 1, f"{s}", member) == b"OK"
        assert c.member_cmd(member, "CATENA.SLOTS", s, s, *words) == b"OK"
    with Client(c.coordinator, timeout=2) as client:
        assert client.get(frozen) is None  # a frozen slot's reads are served
        started = time.monotonic()
        with pytest.raises(Timeout, match="TRYAGAIN Slot is being migrated"):
            client.set(frozen, "v")
        assert 1.9 < time.monotonic() - started < 10
        started = time.monotonic()
        with pytest.raises(ResponseError, match=f"too many redirects .*MOVED {key_slot(looping.encode())} {member}"):
            client.get(looping)
        assert time.monotonic() - started < 1.9  # refused before the deadline, not timed out


def test_the_move_runner_moves_a_slot_while_a_client_writes_it(make_cluster):
    """The driver (coordinator/move_runner.py over the pure machine) against real chains, with
    catena.Client incrementing a counter of the moving slot throughout: the move ends done, and
    the counter at B counts every acknowledged increment, none twice. A request A applied,
    re-sent to B after the move under its request id, gets A's reply and is not applied again."""
    import asyncio
    import threading

    from catena.client import Client
    from catena.coordinator.move_runner import run_move

    a, b = make_cluster(member_args=CLUSTER_MODE), make_cluster(member_args=CLUSTER_MODE)
    a_members, b_members = a.start(2), b.start(2)
    assert b.member_cmd(b_members[0], "CATENA.SLOTS", 0, 16383, "none") == b"OK"
    for member in a_members:
        assert a.member_cmd(member, "MEMBER.SHARD", 1, 1, "-", *b_members) == b"OK"
    key, slot = "{run}n", key_slot(b"run")
    acked, stop = [], threading.Event()

    def writer():
        with Client(a.coordinator, timeout=30) as client:
            while not stop.is_set():
                acked.append(client.incr(key))

    retried = ("CATENA.REQ", "retrier", 1, "INCRBY", "{run}retried", 5)
    assert a.client(a_members[0]).execute_command(*retried) == 5
    thread = threading.Thread(target=writer)
    thread.start()
    wait_until(lambda: len(acked) >= 20, 30, "increments before the move")
    heads = {0: a_members[0], 1: b_members[0]}.__getitem__
    final = asyncio.run(run_move(heads, slot, 0, 1))
    assert b.client(b_members[0]).execute_command(*retried) == 5  # its reply moved with the slot
    assert b.client(b_members[1]).get("{run}retried") == b"5"  # applied once
    count = len(acked)
    wait_until(lambda: len(acked) >= count + 20, 30, "increments after the move")
    stop.set()
    thread.join(timeout=60)
    assert final.phase == "done"
    assert acked == list(range(1, len(acked) + 1))  # each increment answered once, in order
    assert int(b.client(b_members[1]).get(key)) == len(acked)
    assert a.member_cmd(a_members[1], "CLUSTER", "COUNTKEYSINSLOT", slot) == 0


def test_catena_up_starts_a_cluster_mode_chain_that_redis_cli_checks(tmp_path):
    port = free_port_block(3)
    up = Proc("up", [sys.executable, "-m", "catena", "up", "--members", "2", "--port", str(port), "--data-dir",
                     str(tmp_path / "up"), "--cluster-enabled", "yes"], tmp_path / "up.log")
    try:
        wait_until(lambda: "catena is up" in up.log_path.read_text() or not up.alive, 60, "catena up to start")
        assert up.alive, up.log_tail()
        check = redis_cli("--cluster", "check", f"{HOST}:{port + 1}")
        assert "[OK] All 16384 slots covered." in check.stdout, check.stdout + check.stderr
        assert redis_cli("-p", str(port + 2), "CLUSTER", "KEYSLOT", "{user1000}.following").stdout.strip() == str(
            key_slot(b"user1000"))
    finally:
        assert up.stop(timeout=20) == 0, up.log_tail()


def test_a_member_restarted_from_its_log_keeps_its_chain_s_slot_table(make_cluster):
    c = make_cluster(member_args=CLUSTER_MODE)
    head, tail = c.start(2)
    slot = key_slot(b"kept")
    for words in (["frozen"], ["given", 7]):
        assert c.member_cmd(head, "CATENA.SLOTS", slot, slot, *words) == b"OK"
    c.kill9(tail)
    c.restart(tail)  # it answers at once from the table it recovered from its log
    with redis.Redis(host=HOST, port=port_of(tail), decode_responses=True) as member:  # no retries
        with pytest.raises(redis.exceptions.TryAgainError, match="^Slot is being migrated, retry$"):
            member.get("{kept}k")  # given away, by the table it recovered (whom to: pushed again later)


def test_the_slot_commands_are_catena_s_own(make_cluster):
    """With a cluster secret, a data client cannot move, dump, clear or re-address slots."""
    c = make_cluster(member_args=CLUSTER_MODE, env={**os.environ, "CATENA_SECRET": "s" * 32})
    (member,) = c.start(1)
    data = c.client(member)
    for words in (["CATENA.SLOTS", 0, 0, "frozen"], ["CATENA.SLOTDUMP", 0], ["CATENA.CLEARSLOT", 0],
                  ["CATENA.IMPORT", 0], ["MEMBER.SHARD", 1, 1, "-", "127.0.0.1:1"]):
        with pytest.raises(redis.exceptions.NoPermissionError, match="has no permissions"):
            data.execute_command(*words)
    assert c.member_cmd(member, "CATENA.SLOTS", 0, 0, "frozen") == b"OK"  # as user catena
    assert data.execute_command("CLUSTER", "COUNTKEYSINSLOT", 0) == 0  # CLUSTER is a data command
