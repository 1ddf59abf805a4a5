"""Real Redis Cluster clients against a single chain started in cluster mode (docs/sharding.md):
redis-py's RedisCluster, `redis-cli -c` and `redis-cli --cluster check`, and a head failure
that the cluster clients follow."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
import redis
from redis.cluster import ClusterNode, RedisCluster

from catena.slots import key_slot

from conftest import HOST, Cluster, port_of, wait_until

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
