"""The cluster as Redis Cluster's clients see it (catena.cluster_topology): each chain a shard,
its head the master, the other members replicas, in Redis's reply shapes."""

from __future__ import annotations

from catena.cluster_topology import Shard, Topology, node_id

A = Shard(1, 5, ("127.0.0.1:7000", "127.0.0.1:7001", "127.0.0.1:7002"), ((0, 99), (200, 16383)))
B = Shard(2, 3, ("127.0.0.1:8000",), ((100, 199),))


def test_node_ids_are_40_hex_characters_and_stable():
    assert node_id("127.0.0.1:7000") == node_id("127.0.0.1:7000") != node_id("127.0.0.1:7001")
    assert len(node_id("127.0.0.1:7000")) == 40 and int(node_id("127.0.0.1:7000"), 16) >= 0


def test_cluster_slots_lists_each_range_with_its_master_first():
    slots = Topology([A, B]).slots()
    assert [r[:2] for r in slots] == [[0, 99], [100, 199], [200, 16383]]
    first = slots[0]
    assert first[2] == [b"127.0.0.1", 7000, node_id("127.0.0.1:7000").encode(), []]
    assert [n[1] for n in first[2:]] == [7000, 7001, 7002]
    assert [n[1] for n in slots[1][2:]] == [8000]


def test_heads_are_found_by_chain_or_by_slot():
    t = Topology([A, B])
    assert t.head_of(2, 0) == "127.0.0.1:8000"
    assert t.head_of(None, 150) == "127.0.0.1:8000" and t.head_of(None, 5000) == "127.0.0.1:7000"
    assert t.head_of(9, 0) is None


def test_an_older_epoch_of_a_chain_does_not_replace_a_newer_one():
    t = Topology([A])
    t.put(Shard(1, 4, ("127.0.0.1:9999",), ()))
    assert t.head_of(1, 0) == "127.0.0.1:7000"
    t.put(Shard(1, 6, ("127.0.0.1:7001", "127.0.0.1:7002"), A.ranges))
    assert t.head_of(1, 0) == "127.0.0.1:7001"


def test_cluster_nodes_is_redis_s_line_format():
    lines = Topology([A, B]).nodes("127.0.0.1:7001").decode().splitlines()
    assert len(lines) == 4
    master, replica = lines[0].split(" "), lines[1].split(" ")
    assert master[:4] == [node_id("127.0.0.1:7000"), "127.0.0.1:7000@17000", "master", "-"]
    assert master[6:] == ["5", "connected", "0-99", "200-16383"]
    assert replica[:4] == [node_id("127.0.0.1:7001"), "127.0.0.1:7001@17001", "myself,slave", node_id("127.0.0.1:7000")]
    assert replica[6:] == ["5", "connected"]


def test_cluster_shards_names_roles_and_slot_pairs():
    shards = Topology([A, B]).shards_reply()
    assert shards[0][:2] == [b"slots", [0, 99, 200, 16383]]
    roles = [dict(zip(n[0::2], n[1::2]))[b"role"] for n in shards[0][3]]
    assert roles == [b"master", b"replica", b"replica"]


def test_cluster_info_is_ok_only_when_every_slot_is_served():
    info = dict(line.split(":") for line in Topology([A, B]).info(5).decode().split("\r\n") if line)
    assert info["cluster_state"] == "ok" and info["cluster_slots_assigned"] == "16384"
    assert info["cluster_known_nodes"] == "4" and info["cluster_size"] == "2" and info["cluster_my_epoch"] == "5"
    assert "cluster_state:fail" in Topology([A]).info(5).decode()


def test_member_shard_slot_ranges_are_parsed_and_checked():
    import pytest

    from catena.slots import parse_ranges
    assert parse_ranges(b"0-99,200,300-16383") == ((0, 99), (200, 200), (300, 16383))
    assert parse_ranges(b"-") == ()
    for bad in (b"5-2", b"0-16384", b"x", b""):
        with pytest.raises(ValueError):
            parse_ranges(bad)
