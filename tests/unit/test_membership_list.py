"""The member list's merge rule, the ring and the broadcast queue (pure pieces)."""

import ast
import pathlib
import random

from hypothesis import given, settings, strategies as st

from catena.membership import wire
from catena.membership.dissemination import BroadcastQueue, chunk
from catena.membership.messages import MemberId, Status, Update
from catena.membership.ring import Ring
from catena.membership.table import MemberTable

PKG = pathlib.Path(__file__).resolve().parents[2] / "src" / "catena" / "membership"
PURE = ["messages", "wire", "settings", "ring", "table", "dissemination", "effects", "detector"]
FORBIDDEN = {"asyncio", "socket", "time", "random", "threading", "selectors"}


def test_machines_import_no_io_clock_or_global_random():
    for name in PURE:
        tree = ast.parse((PKG / f"{name}.py").read_text())
        for node in ast.walk(tree):
            mods = []
            if isinstance(node, ast.Import):
                mods = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                mods = [node.module.split(".")[0]]
            bad = set(mods) & FORBIDDEN
            assert not bad, f"{name} imports {bad}"  # machines only receive a seeded random.Random


def m(i, inc=1):
    return MemberId("10.0.0.1", 7000 + i, inc)


def test_merge_rules():
    t = MemberTable()
    assert t.apply(Update(m(1), 0, Status.ALIVE), 0) == [("join", m(1))]
    assert t.apply(Update(m(1), 0, Status.ALIVE), 1) is None  # idempotent
    assert t.apply(Update(m(1), 0, Status.SUSPECT), 2) == [("suspect", m(1))]
    assert t.apply(Update(m(1), 0, Status.ALIVE), 3) is None  # suspect beats alive at equal refute
    assert t.apply(Update(m(1), 1, Status.ALIVE), 4) == [("alive", m(1))]  # refuted
    assert t.apply(Update(m(1), 0, Status.FAILED), 5) == [("failed", m(1))]  # final, even at lower refute
    assert t.apply(Update(m(1), 9, Status.ALIVE), 6) is None  # no coming back in the same incarnation
    assert t.apply(Update(m(1, 2), 0, Status.ALIVE), 7) == [("join", m(1, 2))]  # a new incarnation
    assert t.apply(Update(m(1, 1), 5, Status.ALIVE), 8) is None  # an older incarnation is stale
    assert t.apply(Update(m(1, 3), 0, Status.ALIVE), 9) == [("failed", m(1, 2)), ("join", m(1, 3))]
    assert t.apply(Update(m(1, 3), 0, Status.LEFT), 10) == [("leave", m(1, 3))]
    assert t.live_count == 0 and t.digest == 0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(1, 3), st.integers(0, 3), st.sampled_from(list(Status))),
                max_size=30), st.randoms(use_true_random=False))
def test_merge_is_order_independent_and_idempotent(raw, rnd):
    ups = [Update(m(i, inc), r, s) for i, inc, r, s in raw]
    shuffled = ups + ups[: len(ups) // 2]
    rnd.shuffle(shuffled)
    a, b = MemberTable(), MemberTable()
    for u in ups:
        a.apply(u, 0)
    for u in shuffled:
        b.apply(u, 0)
    assert {k: r.update for k, r in a.records.items()} == {k: r.update for k, r in b.records.items()}
    assert a.digest == b.digest and a.live_count == b.live_count


def test_gc_forgets_only_old_tombstones():
    t = MemberTable()
    t.apply(Update(m(1), 0, Status.FAILED), 0)
    t.apply(Update(m(2), 0, Status.ALIVE), 0)
    t.apply(Update(m(3), 0, Status.LEFT), 50)
    assert t.gc(61, 60) == 1
    assert set(t.records) == {m(2).addr, m(3).addr}


def test_ring_neighbours():
    addrs = [f"h:{p}" for p in range(1, 11)]
    ring = Ring(addrs)
    order = ring.addrs()
    assert sorted(order) == sorted(addrs) and len(ring) == 10
    for i, a in enumerate(order):
        assert ring.successors(a, 3) == [order[(i + j) % 10] for j in (1, 2, 3)]
        assert ring.predecessors(a, 3) == [order[(i - j) % 10] for j in (1, 2, 3)]
    # a member's monitors are exactly the members it heartbeats back from
    for a in order:
        for s in ring.successors(a, 3):
            assert a in ring.predecessors(s, 3)
    assert ring.successors("h:1", 20) == [a for a in order[order.index("h:1") + 1:] + order[: order.index("h:1")]]
    assert Ring(["x:1"]).successors("x:1", 3) == []
    ring.remove(order[1])
    assert ring.successors(order[0], 1) == [order[2]]
    assert not ring.remove(order[1]) and ring.add(order[1]) and not ring.add(order[1])


def test_ring_sample_is_distinct_and_excludes():
    ring = Ring(f"h:{p}" for p in range(1, 1001))
    rng = random.Random(1)
    got = ring.sample(rng, 5, exclude=["h:1"])
    assert len(set(got)) == 5 and "h:1" not in got
    small = Ring(["a:1", "b:1", "c:1"])
    assert sorted(small.sample(rng, 5, exclude=["a:1"])) == ["b:1", "c:1"]


def test_broadcast_queue_least_transmitted_first_and_limited():
    q = BroadcastQueue()
    u1, u2 = Update(m(1), 0, Status.ALIVE), Update(m(2), 0, Status.FAILED)
    q.add(u1)
    size = wire.update_size
    assert q.take(1000, 3, size) == (u1,)
    q.add(u2)
    assert q.take(1000, 3, size) == (u2, u1)  # fresh news first
    assert q.take(1000, 3, size) == (u2, u1)
    assert q.take(1000, 3, size) == (u2,)  # u1 reached its limit
    assert len(q) == 0 and q.take(1000, 3, size) == ()
    q.add(u1)
    newer = Update(m(1), 1, Status.ALIVE)
    q.add(newer)  # replaces the pending update for the same address
    assert q.take(1000, 3, size) == (newer,) and len(q) == 1
    assert q.take(size(newer) - 1, 3, size) == ()  # nothing fits


def test_chunk_respects_budget():
    ups = [Update(m(i), 0, Status.ALIVE) for i in range(100)]
    parts = chunk(ups, 200, wire.update_size)
    assert sum(parts, []) == ups
    assert all(sum(map(wire.update_size, p)) <= 200 for p in parts)
    assert chunk([], 200, wire.update_size) == [[]]
