"""The etcd store against a real etcd, in-process: fencing at etcd itself (a deposed leader that
still believes it leads cannot write), warm standby, and refusal of prefixes that are not ours."""

from __future__ import annotations

import asyncio
import json
import math
import random

import pytest

from catena.coordinator import layout
from catena.coordinator.address import parse
from catena.coordinator.etcd_store import EtcdStore
from catena.coordinator.store import NotLeader
from catena.errors import CatenaError
from catena.view import View
from etcd_helpers import PREFIX, etcd, requires_etcd  # noqa: F401 - fixture

pytestmark = requires_etcd


class Recorder:
    """Stands in for the coordinator: records what the store tells it; its saved view names no
    members (the store checks it reaches them before campaigning)."""

    def __init__(self):
        self.events: list[tuple] = []
        self.view = View(0, 0, ())

    def lead(self, fence, state):
        self.events.append(("lead", fence, state))

    def step_down(self, reason):
        self.events.append(("step_down", reason))

    def follow(self, state):
        self.events.append(("follow", state))


def legacy(epoch: int, cluster: str = "c1") -> dict:
    """A schema-1 state (one chain, one key)."""
    return {"views": [[0, epoch, ["127.0.0.1:1"], None]], "registry": {}, "queued": [], "retired": {},
            "cluster_id": cluster}


def state(epoch: int, cluster: str = "c1", chain_id: int = 0) -> dict:
    """Chain `chain_id`'s parts at `epoch` (layout.py)."""
    raw = legacy(epoch, cluster)
    raw["views"][0][0] = chain_id
    return layout.parts_of(raw)


def epoch_of(parts: dict, chain_id: int = 0) -> int:
    return layout.chain_state(parts, chain_id)["views"][0][1]


async def until(predicate, timeout: float, what: str):
    async with asyncio.timeout(timeout):
        while not (result := predicate()):
            await asyncio.sleep(0.02)
    assert result, what
    return result


def store(etcd_cluster, me: str, prefix: str = PREFIX, **kw) -> tuple[EtcdStore, Recorder]:
    s = EtcdStore(parse(etcd_cluster.url(prefix)), me, lease_ttl_s=1, rng=random.Random(7), **kw)
    rec = Recorder()
    s.coordinator = rec
    return s, rec


def test_deposed_leader_write_is_refused_by_etcd(etcd):
    """A leader whose lease is gone but who still believes it leads (a paused process whose
    clock check has not fired yet) writes under its old fence: etcd refuses, the state stays the
    new leader's, and the old leader steps down."""

    async def main():
        a, rec_a = store(etcd, "127.0.0.1:1001")
        b, rec_b = store(etcd, "127.0.0.1:1002")
        await a._check_prefix()
        a.election.on_timer(0.0)  # follower with no key observed: campaign
        await a._campaign()
        assert a.election.role == "leader" and rec_a.events[0][:2] == ("lead", a.fence)
        fence_a = a.fence
        await a.save(state(1))
        # A's lease ends at etcd (as if A was paused past its TTL); B campaigns and wins.
        await a.conn.run(lambda c: c.revoke_lease(a.election.lease_id), "revoke")
        b.election.on_timer(0.0)
        await b._campaign()
        assert b.election.role == "leader" and b.fence > fence_a
        assert epoch_of(rec_b.events[-1][2]) == 1  # B starts from the newest saved state
        await b.save(state(2))
        # A resumes believing it still leads: only the fence stands between it and etcd.
        a.election.deadline = math.inf
        with pytest.raises(NotLeader) as refused:
            await a.save(state(99))
        assert refused.value.leader == "127.0.0.1:1002"
        assert a.election.role == "follower" and rec_a.events[-1][0] == "step_down"
        got = await b.conn.run(lambda c: c.get(f"{PREFIX}/chains/0".encode()), "read")
        saved = json.loads(got.value)
        assert saved["view"][1] == 2 and saved["fence"] == b.fence
        for s in (a, b):
            await s.conn.close()

    asyncio.run(main())


def test_follower_keeps_the_state_warm_and_takes_over_on_revoke(etcd):
    """Followers hold the saved state from the watch; when the leader gives its lease back the
    follower leads at once, starting from the newest state."""

    async def main():
        a, rec_a = store(etcd, "127.0.0.1:2001")
        b, rec_b = store(etcd, "127.0.0.1:2002")
        ta = asyncio.create_task(a.run(rec_a))
        await until(lambda: a.leading(), 10, "a leads")
        tb = asyncio.create_task(b.run(rec_b))
        await until(lambda: b.leader == "127.0.0.1:2001", 10, "b watches")  # so it sees the save's parts one by one
        await a.save(state(5))
        await until(lambda: any(e[0] == "follow" and epoch_of(e[1]) == 5 for e in rec_b.events), 10,
                    "b follows epoch 5")
        assert not b.leading() and b.leader == "127.0.0.1:2001"
        ta.cancel()  # shutting down: a gives its lease back
        await asyncio.wait({ta})
        await until(lambda: b.leading(), 10, "b leads")
        lead = [e for e in rec_b.events if e[0] == "lead"][-1]
        assert epoch_of(lead[2]) == 5 and lead[1] == b.fence
        tb.cancel()
        await asyncio.wait({tb})

    asyncio.run(main())


def test_prefix_of_something_else_or_unknown_schema_is_refused(etcd):
    async def main():
        s, _ = store(etcd, "127.0.0.1:3001", prefix="/other")
        await s.conn.run(lambda c: c.put(b"/other/config", b"x"), "put")
        with pytest.raises(CatenaError, match="keys catena does not write"):
            await s._check_prefix()
        s2, _ = store(etcd, "127.0.0.1:3002", prefix="/newer")
        await s2.conn.run(lambda c: c.put(b"/newer/state", json.dumps({**legacy(1), "schema": 99}).encode()), "put")
        with pytest.raises(CatenaError, match="schema version 99"):
            await s2._check_prefix()
        s3, _ = store(etcd, "127.0.0.1:3003", prefix="/mine", cluster_id="c2")
        await s3.conn.run(lambda c: c.put(b"/mine/state", json.dumps(legacy(1, "c1")).encode()), "put")
        with pytest.raises(CatenaError, match="cluster c1, not of cluster c2"):
            await s3._check_prefix()
        for x in (s, s2, s3):
            await x.conn.close()

    asyncio.run(main())


def test_a_chain_write_touches_its_own_key_and_old_state_is_migrated(etcd):
    """A schema-1 prefix (one `state` key) is read as parts by the campaign and replaced by them
    in the leader's first fenced write; after that, a change of chain 1 writes chain 1's key
    only: chain 0's key keeps its revision."""

    async def main():
        a, rec = store(etcd, "127.0.0.1:4001", prefix="/old")
        await a.conn.run(lambda c: c.put(b"/old/state", json.dumps(legacy(7)).encode()), "put")
        await a._check_prefix()
        a.election.on_timer(0.0)
        await a._campaign()
        assert rec.events[-1][0] == "lead" and epoch_of(rec.events[-1][2]) == 7
        await a.save(state(1, chain_id=1))
        keys = {kv.key: kv for kv in await a.conn.run(lambda c: c.get_prefix(b"/old/"), "read")}
        assert b"/old/state" not in keys and json.loads(keys[b"/old/chains/0"].value)["view"][1] == 7
        chain0 = keys[b"/old/chains/0"].mod_revision
        await a.save({layout.chain_part(1): state(2, chain_id=1)[layout.chain_part(1)]})
        keys = {kv.key: kv for kv in await a.conn.run(lambda c: c.get_prefix(b"/old/"), "read")}
        assert keys[b"/old/chains/0"].mod_revision == chain0
        assert json.loads(keys[b"/old/chains/1"].value)["view"][1] == 2
        await a.conn.close()

    asyncio.run(main())
