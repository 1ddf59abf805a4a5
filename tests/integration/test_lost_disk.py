"""A member that lost its disk (docs/operations.md: "start it with an empty data dir") comes
back as a learner and loses nothing, even when the coordinator's first push after a restart
names its address among the chain's members: that view was meant for the old incarnation. (The
sharded simulation found an empty process acting on it as head, its empty snapshot wiping the
chain; tests/unit/test_lost_disk_member.py.)"""

from __future__ import annotations

import shutil

from repair_helpers import registered_chain, wait_rejoined

KEYS = [f"disk:{i}" for i in range(50)]


def test_a_head_restarted_on_an_empty_disk_rejoins_as_tail_and_the_chain_keeps_its_data(cluster):
    chain = registered_chain(cluster, 3)
    head = chain[0]
    client = cluster.client(head)
    for i, key in enumerate(KEYS):
        assert client.set(key, i) is True
    coordinator = cluster.coordinator
    cluster.kill9(coordinator)
    cluster.kill9(head)
    shutil.rmtree(cluster.data_dir(head))
    cluster.restart(head)  # an empty process at the head's address, waiting for a coordinator
    cluster.restart(coordinator)  # its new term pushes the saved view (this address as head) to all
    rejoined = wait_rejoined(cluster, head, 3)
    assert rejoined == chain[1:] + [head]
    for addr in rejoined:
        assert cluster.client(addr).mget(KEYS) == [str(i).encode() for i in range(len(KEYS))], addr
