"""Removing a chain (docs/sharding.md §5). On the embedded store: two chains grow to three, slots
move to the third, `catena drain --chain 2` moves them all back (evenly) and removes chain 2;
every key written before stays readable through RedisCluster, no member lists chain 2 any more,
`redis-cli --cluster check` agrees, and a coordinator restarted with --chains 2 does not make it
again. On etcd: the removal deletes the chain's key, and the next leader keeps it removed."""

from __future__ import annotations

import subprocess

import pytest
import redis
from redis.cluster import ClusterNode, RedisCluster

from catena.slots import key_slot

from conftest import CHAIN_TIMEOUT_S, HOST, Cluster, catena_argv, port_of, wait_until
from etcd_helpers import etcd, make_ha, requires_etcd  # noqa: F401 - fixtures
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
        check = subprocess.run(["redis-cli", "--cluster", "check", zero[0]], capture_output=True, text=True,
                               timeout=60)
        assert "[OK] All 16384 slots covered." in check.stdout and "2 masters" in check.stdout, check.stdout

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


@requires_etcd
def test_on_etcd_removing_a_chain_deletes_its_key_and_the_next_leader_keeps_it_removed(etcd, make_ha):
    ha = make_ha(etcd, coordinators=2, extras=[("--chains", "2")] * 2, member_args=CLUSTER_MODE)
    zero, one = start_sharded(ha, members=1)
    new = ha.start_member(register=True, extra=("--chain", "2"))
    wait_until(lambda: new in ha.member_cmd(zero[0], "CLUSTER", "NODES").decode(), CHAIN_TIMEOUT_S,
               "chain 2 to be announced")
    assert ha.etcd.get(f"{ha.prefix}/chains/2")[0] is not None
    assert ha.admin("MASTER.REMOVECHAIN", 2) in ("OK", True)
    assert ha.etcd.get(f"{ha.prefix}/chains/2") is None  # deleted in the same write as the map
    wait_until(lambda: new not in ha.member_cmd(one[0], "CLUSTER", "NODES").decode(), CHAIN_TIMEOUT_S,
               "chain 1 to forget chain 2")
    old = ha.coordinator
    ha.kill9(old)
    ha.wait_leader(other_than=old)
    assert ha.admin("MASTER.SLOTMAP")[1:] == [0, "0-8191", 1, "8192-16383"]
    assert [row[0] for row in ha.coordinator_status()["chains"]] == [0, 1]
    with pytest.raises(redis.ResponseError, match="chain 2 was removed"):
        ha.admin("MASTER.ADD", HOST, port_of(new), 2)
