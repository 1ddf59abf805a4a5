"""The members of a removed chain are told (docs/sharding.md §5, chain/removal.py): after
MASTER.REMOVECHAIN they learn it from their view poll, say so in their log, leave the membership
group, and answer every data command with -MOVED to the slot's owner (or an error naming the
removal), never with a value from their own data, while staying up for connected clients."""

from __future__ import annotations

import pytest
import redis
from redis.cluster import ClusterNode, RedisCluster

from conftest import CHAIN_TIMEOUT_S, HOST, Cluster, port_of, wait_until
from test_removing_a_chain import keys_in
from test_sharded_cluster import CLUSTER_MODE, shards_seen, start_sharded


def alive_at(c: Cluster, addr: str) -> set[str]:
    """The members `addr`'s membership agent holds alive or suspect (MEMBERS)."""
    return {row[1].decode() for row in c.member_cmd(addr, "MEMBERS")}


def test_members_of_a_removed_chain_learn_it_leave_and_answer_moved_never_old_values(tmp_path):
    c = Cluster(tmp_path, member_args=CLUSTER_MODE)
    try:
        zero, one = start_sharded(c, members=1)
        two = [c.start_member(register=True, extra=("--chain", "2"))]
        wait_until(lambda: c.admin("MASTER.GET_CHAIN", 2) == two, CHAIN_TIMEOUT_S, "chain 2 to be founded")
        two.append(c.start_member(register=True, extra=("--chain", "2")))
        wait_until(lambda: c.admin("MASTER.GET_CHAIN", 2) == two, CHAIN_TIMEOUT_S, "chain 2 to have two members")
        wait_until(lambda: two[0] in c.member_cmd(zero[0], "CLUSTER", "NODES").decode(), CHAIN_TIMEOUT_S,
                   "chain 2 to be announced")
        key = keys_in(range(100, 101))[0]  # chain 0's slot 100, lent to chain 2 and given back
        assert c.admin("MASTER.MOVE", "100", 2, timeout=60) == 1
        held = [c.client(m) for m in two]  # data clients that stay connected to chain 2's members
        assert held[0].set(key, "old") is True
        wait_until(lambda: all(h.get(key) == b"old" for h in held), CHAIN_TIMEOUT_S, "chain 2 to serve the key")
        assert c.admin("MASTER.MOVE", "100", 0, timeout=60) == 1
        with RedisCluster(startup_nodes=[ClusterNode(HOST, port_of(one[0]))], decode_responses=True,
                          socket_timeout=15) as rc:
            wait_until(lambda: rc.nodes_manager.initialize() or rc.get_node_from_key(key).name == zero[0],
                       CHAIN_TIMEOUT_S, "the cluster client to route slot 100 to chain 0")
            assert rc.set(key, "new") is True
        for m in (*zero, *one):  # (so that their leaving, below, is seen)
            wait_until(lambda: set(two) <= alive_at(c, m), CHAIN_TIMEOUT_S, f"{m} to hold chain 2's members alive")

        assert c.admin("MASTER.REMOVECHAIN", 2) in ("OK", True)
        for m, h in zip(two, held):
            wait_until(lambda: "chain 2 was removed from the cluster" in c.procs[m].log_path.read_text(),
                       CHAIN_TIMEOUT_S, f"{m} to say it was removed")
            with pytest.raises(redis.exceptions.MovedError, match=f"100 {zero[0]}"):
                h.get(key)
            with pytest.raises(redis.exceptions.MovedError, match=f"100 {zero[0]}"):
                h.set(key, "late")
            with pytest.raises(redis.ResponseError, match="chain 2 of this member was removed from the cluster"):
                h.dbsize()
            for keyless in (lambda: h.keys("*"), lambda: h.scan(0), h.randomkey,
                            lambda: h.execute_command("CLUSTER", "COUNTKEYSINSLOT", 100)):
                with pytest.raises(redis.ResponseError, match="chain 2 of this member was removed"):
                    keyless()
            assert h.ping() is True  # still up for connected clients
            assert shards_seen(c, m) == [(0, 8191, zero[0]), (8192, 16383, one[0])]  # itself no more
        # It left the membership group: no heartbeats as a chain member.
        for m in (*zero, *one):
            wait_until(lambda: not set(two) & alive_at(c, m), CHAIN_TIMEOUT_S, f"{m} to see chain 2's members leave")
        # A cluster client started from a removed member is sent to the owners: the new value.
        with RedisCluster(startup_nodes=[ClusterNode(HOST, port_of(two[1]))], decode_responses=True,
                          socket_timeout=15) as rc:
            assert rc.get(key) == "new"
        assert c.client(zero[0]).get(key) == b"new"  # the late SET was refused, not applied
        # Stopped cleanly; restarted, it is refused at registration and exits saying why.
        assert c.stop(two[1]) == 0
        c.restart(two[1], wait=False)
        wait_until(lambda: not c.procs[two[1]].alive, CHAIN_TIMEOUT_S, "the restarted member to exit")
        assert "chain 2 was removed (MASTER.REMOVECHAIN)" in c.procs[two[1]].log_tail(), c.procs[two[1]].log_tail()
    finally:
        c.close()
