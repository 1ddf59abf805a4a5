"""Removing a chain (docs/sharding.md §5) on the embedded store: two chains grow to three, slots
move to the third, `catena drain --chain 2` moves them all back (evenly) and removes chain 2;
every key written before stays readable through RedisCluster, no member lists chain 2 any more,
and a coordinator restarted with --chains 2 does not make it again."""

from __future__ import annotations

import subprocess

import pytest
import redis
from redis.cluster import ClusterNode, RedisCluster

from catena.slots import key_slot

from conftest import CHAIN_TIMEOUT_S, HOST, Cluster, catena_argv, port_of, wait_until
from test_sharded_cluster import CLUSTER_MODE, shards_seen, start_sharded


def keys_in(slots: range, per_slot: int = 1) -> list[str]:
    """`per_slot` keys hashing to each slot of `slots`."""
    want = {s: per_slot for s in slots}
    out = []
    i = 0
    while want:
        key = f"k{i}"
        s = key_slot(key.encode())
        if want.get(s):
            out.append(key)
            want[s] -= 1
            if not want[s]:
                del want[s]
        i += 1
    return out


def catena(*args: str) -> str:
    out = subprocess.run(catena_argv(*args), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def test_two_chains_grow_to_three_then_drain_and_remove_the_third(tmp_path):
    c = Cluster(tmp_path, member_args=CLUSTER_MODE)
    try:
        zero, one = start_sharded(c, members=1)
        coordinator = ("--coordinator", c.coordinator)
        new = c.start_member(register=True, extra=("--chain", "2"))
        wait_until(lambda: new in c.member_cmd(zero[0], "CLUSTER", "NODES").decode(), CHAIN_TIMEOUT_S,
                   "chain 2 to be announced")
        # Keys around the ranges that move: the last 12 slots of chain 0 and of chain 1.
        keys = keys_in(range(8180, 8192)) + keys_in(range(16372, 16384)) + keys_in(range(0, 4))
        with RedisCluster(startup_nodes=[ClusterNode(HOST, port_of(zero[0]))], socket_timeout=15) as rc:
            for k in keys:
                assert rc.set(k, f"v-{k}") is True
        assert "moved 12/12" in catena("reshard", *coordinator, "--from", "0", "--to", "2", "--slots", "12")
        assert "moved 12/12" in catena("reshard", *coordinator, "--from", "1", "--to", "2", "--slots", "12")
        assert c.coordinator_status()["slots"] == [0, 8180, 1, 8180, 2, 24]

        with pytest.raises(redis.ResponseError, match="chain 2 owns 24 slots: move them to other chains first"):
            c.admin("MASTER.REMOVECHAIN", 2)
        with pytest.raises(redis.ResponseError, match="chain 0 cannot be removed"):
            c.admin("MASTER.REMOVECHAIN", 0)
        with pytest.raises(redis.ResponseError, match="no chain 9"):
            c.admin("MASTER.REMOVECHAIN", 9)
        with pytest.raises(redis.ResponseError, match="bad chain id"):
            c.admin("MASTER.REMOVECHAIN", "two")
        assert c.coordinator_status()["slots"] == [0, 8180, 1, 8180, 2, 24]  # refusals changed nothing

        out = catena("drain", *coordinator, "--chain", "2")
        assert "moved 24/24 slots (100%)" in out and "removed chain 2" in out, out
        assert c.admin("MASTER.SLOTMAP")[1:] == [0, "0-8191", 1, "8192-16383"]
        with pytest.raises(redis.ResponseError, match="there is no chain 2"):
            c.admin("MASTER.GET_CHAIN", 2)
        for addr in (zero[0], one[0]):
            wait_until(lambda: new not in c.member_cmd(addr, "CLUSTER", "NODES").decode(), CHAIN_TIMEOUT_S,
                       f"{addr} to forget chain 2")
            assert shards_seen(c, addr) == [(0, 8191, zero[0]), (8192, 16383, one[0])]
        with RedisCluster(startup_nodes=[ClusterNode(HOST, port_of(one[0]))], socket_timeout=15) as rc:
            assert {k: rc.get(k) for k in keys} == {k: f"v-{k}".encode() for k in keys}

        c.stop(new)
        addr = c.coordinator
        assert c.stop(addr) == 0
        c.start_coordinator(port=port_of(addr), extra=("--chains", "2"))
        wait_until(lambda: c.admin("MASTER.SLOTMAP")[1:] == [0, "0-8191", 1, "8192-16383"], CHAIN_TIMEOUT_S,
                   "the restarted coordinator to lead with the map of two chains")
        assert [row[0] for row in c.coordinator_status()["chains"]] == [0, 1]
        with pytest.raises(redis.ResponseError, match="chain 2 was removed"):
            c.admin("MASTER.ADD", HOST, port_of(new), 2)
    finally:
        c.close()
