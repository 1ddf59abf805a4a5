"""The slot moves of `catena chaos --chains K` (chaos/migrations.py): the plan comes from the seed
alone, each move is judged done or undone by where its slot went next, and the added chain's
drain and removal goes on through failed calls."""

from __future__ import annotations

import time

import pytest
import redis

from catena.chaos import migrations
from catena.chaos.migrations import REMOVE_AFTER_S, Migrations, MoveRecord, owners, plan
from catena.chaos.workload import Sample
from catena.slots import key_slot


def test_the_plan_is_the_seeds_and_empty_with_one_chain():
    assert plan(7, 30, 2) == plan(7, 30, 2) and plan(7, 30, 2) != plan(8, 30, 2)
    assert plan(7, 30, 1) == []
    moves = plan(7, 30, 3)
    assert moves and all(2.0 < m.at < 28.0 for m in moves) and any(m.hot for m in moves)
    assert not any(m.add for m in moves)
    grown = plan(7, 30, 3, add_chain=True)
    added = [i for i, m in enumerate(grown) if m.add]
    assert len(added) == 1 and 0 < added[0] < len(grown) - 1  # a move before it and one after
    assert [m.at for m in grown if not m.remove] == [m.at for m in moves]


class Cluster:
    """MASTER.SLOTMAP with chain 0 holding 0-99 and chain 1 the rest, but for `where` (chain ->
    ranges word)."""
    chains, coordinators = 2, ["c:1"]

    def __init__(self, where: dict[int, str]):
        self.where = where

    def slot_map(self):
        return [9, 0, self.where.get(0, "0-99"), 1, self.where.get(1, "100-16383")]


def test_the_map_is_read_per_slot():
    where = owners(Cluster({0: "0-98,5000", 1: "99-4999,5001-16383"}).slot_map())
    assert where[98] == 0 and where[99] == 1 and where[5000] == 0 and where[16383] == 1


def test_each_move_is_judged_by_where_its_slot_went_next():
    m = Migrations(Cluster({0: "0-49,51-99", 1: "50,100-16383"}), [], 0.0, list, None)
    m.records = [MoveRecord(50, True, 0, 1, 1.0, 2.0, "1"),  # the next move of 50 found it at 1: done
                 MoveRecord(60, False, 0, 1, 2.0, 3.0, "ConnectionError"),  # still at 0: undone
                 MoveRecord(50, True, 1, 0, 3.0, 4.0, "ConnectionError"),  # the map has it at 1: undone
                 MoveRecord(70, False, 0, 1, 5.0, 5.1, "ResponseError: not the leader (leader: unknown)")]
    assert m.judge() == []
    assert [r.outcome for r in m.records] == ["done", "undone", "undone", "not started"]
    lines = m.lines([])
    assert lines[-1].startswith("slot moves 4 (of 0 planned") and lines[-1].endswith(
        ": done 1, undone 2, not started 1")
    assert "move slot 50 (hot) chain 0->1: done" in lines[0]


def test_a_slot_found_at_a_third_chain_is_a_problem():
    m = Migrations(Cluster({}), [], 0.0, list, None)
    m.records = [MoveRecord(7000, False, 2, 3, 1.0, 2.0, "1")]
    assert m.judge() == ["slot 7000, moved from chain 2 to 3, ended at chain 1"]


def test_a_chains_plan_drains_and_removes_the_added_chain_after_the_move_that_fed_it():
    moves = plan(15, 15, 2, add_chain=True)
    add = next(i for i, m in enumerate(moves) if m.add)
    remove = next(i for i, m in enumerate(moves) if m.remove)
    assert remove == add + 2 and moves[remove].at == round(moves[add + 1].at + REMOVE_AFTER_S, 3), moves
    assert [m.at for m in moves] == sorted(m.at for m in moves)
    assert not any(m.remove for m in plan(15, 15, 2))  # no chain added, none removed


def test_a_move_to_a_chain_not_yet_synced_is_sent_again_until_the_coordinator_takes_it(monkeypatch):
    """A chain just added is listed in the map before its table is synced; the coordinator refuses
    moves to it until then. Refused once, such a move used to be judged undone, and a run whose
    only move to the new chain it was failed its check."""
    monkeypatch.setattr(migrations, "RETRY_S", 0.0)
    calls = []

    def admin(addr, *words, timeout):
        calls.append(words)
        if len(calls) < 3:
            raise redis.ResponseError("TRYAGAIN chain 2 is joining the slot map (its table is not synced yet): try again shortly")
        return 1

    m = Migrations(Cluster({}), [], 0.0, list, admin)
    m.cluster.leading = lambda: "c:1"
    m._move(MoveRecord(7, True, 0, 2, time.monotonic()))
    assert calls == [("MASTER.MOVE", 7, 2)] * 3 and [r.reply for r in m.records] == ["1"]


@pytest.mark.parametrize("refusal", ["ERR not the leader (leader: unknown)", "ERR there is no chain 2 in the slot map"])
def test_a_refusal_for_another_reason_is_not_sent_again(monkeypatch, refusal):
    monkeypatch.setattr(migrations, "RETRY_S", 0.0)
    calls = []

    def admin(addr, *words, timeout):
        calls.append(words)
        raise redis.ResponseError(refusal)

    m = Migrations(Cluster({}), [], 0.0, list, admin)
    m.cluster.leading = lambda: "c:1"
    m._move(MoveRecord(7, True, 0, 2, time.monotonic()))
    assert len(calls) == 1 and m.records[0].reply == f"ResponseError: {refusal}"


def test_a_chain_that_never_syncs_is_given_up_after_the_moves_timeout(monkeypatch):
    monkeypatch.setattr(migrations, "RETRY_S", 0.0)
    monkeypatch.setattr(migrations, "MOVE_TIMEOUT_S", 0.05)

    def admin(addr, *words, timeout):
        raise redis.ResponseError("TRYAGAIN chain 2 is joining the slot map (its table is not synced yet): try again shortly")

    m = Migrations(Cluster({}), [], 0.0, list, admin)
    m.cluster.leading = lambda: "c:1"
    m._move(MoveRecord(7, True, 0, 2, time.monotonic()))
    assert "chain 2 is joining" in m.records[0].reply and m.records[0].end - m.records[0].start < 5


class _DrainedCluster:
    """Three chains (chain 2 added, holding slots 5 and 6) behind a coordinator that fails the
    first MASTER.MOVE (killed) and first refuses MASTER.REMOVECHAIN (a move under way)."""

    founded, chains = 2, 3

    def __init__(self):
        self.owner = {s: (0 if s < 8192 else 1) for s in range(16384)} | {5: 2, 6: 2}
        self.removed: set[int] = set()
        self.calls: list[tuple] = []

    def live_chains(self):
        return [c for c in range(self.chains) if c not in self.removed]

    def leading(self):
        return "127.0.0.1:1"

    def slot_map(self):
        reply = [7]
        for chain in self.live_chains():
            spans: list[list[int]] = []
            for slot in sorted(s for s, o in self.owner.items() if o == chain):
                if spans and spans[-1][1] == slot - 1:
                    spans[-1][1] = slot
                else:
                    spans.append([slot, slot])
            reply += [chain, ",".join(f"{a}-{b}" for a, b in spans) or "-"]
        return reply

    def admin(self, addr, *words, timeout):
        self.calls.append(words)
        if words[0] == "MASTER.MOVE":
            if sum(w[0] == "MASTER.MOVE" for w in self.calls) == 1:
                raise redis.ConnectionError("Connection refused")  # the coordinator was killed
            self.owner[words[1]] = words[2]
            return 1
        if sum(w[0] == "MASTER.REMOVECHAIN" for w in self.calls) == 1:
            raise redis.ResponseError("ERR a slot move is under way: try again once it is done")
        self.removed.add(words[1])
        return "OK"

    def retire_chain(self, chain):
        self.removed.add(chain)


def test_a_drain_goes_on_through_a_failed_move_and_a_refused_removal(monkeypatch):
    """The drain's retry path, without processes: a MASTER.MOVE that failed (its coordinator
    killed) is sent again after reading the map, a refused MASTER.REMOVECHAIN is sent again, and
    the verdict reports every drain move, the removal, and no problem."""
    monkeypatch.setattr(migrations, "RETRY_S", 0.0)
    cluster = _DrainedCluster()
    mover = migrations.Migrations(cluster, [], time.monotonic(), lambda: [], cluster.admin)
    mover._drain_and_remove()
    removal = mover.removals[0]
    assert removal.chain == 2 and removal.end and removal.attempts == 2, removal
    assert cluster.owner[5] in (0, 1) and cluster.owner[6] in (0, 1) and cluster.removed == {2}
    # slot 5's move failed, 6's went on, and 5 was moved again from the map read after
    assert [(r.slot, r.drain) for r in mover.records] == [(5, True), (6, True), (5, True)], mover.records
    assert mover.judge() == [] and [r.outcome for r in mover.records] == ["undone", "done", "done"]
    lines = mover.lines([])
    assert any(line.startswith("chain 2: drain began ") and "2 slots drained in " in line and
               "(MASTER.REMOVECHAIN calls 2); per-slot unavailability: no writes to them" in line
               for line in lines), lines
    assert lines[-1].startswith("slot moves 3 (of 0 planned, and 3 draining a chain;"), lines


def test_a_drains_unavailability_is_the_slowest_acknowledged_write_to_a_drained_slot_during_its_move():
    cluster = _DrainedCluster()
    mover = Migrations(cluster, [], 0.0, lambda: [], cluster.admin)
    mover.records = [MoveRecord(6, False, 2, 0, 10.0, 10.2, "1", drain=True)]
    mover.removals = [migrations.Removal(2, 10.0, drained=10.2, end=10.3, attempts=1)]
    key = next(f"k{i}" for i in range(1_000_000) if key_slot(f"k{i}".encode()) == 6)
    writes = [Sample(10.05, 10.075, "ok", key=key), Sample(10.1, 12.0, "fail", key=key),
              Sample(10.0, 10.5, "ok", key="elsewhere"), Sample(11.0, 11.9, "ok", key=key)]  # other slot; after
    assert mover._removal_line(mover.removals[0], writes).endswith(
        "1 slot drained in 0.20 s (1 moves), removed 0.30 s after the drain began (MASTER.REMOVECHAIN calls 1); "
        "per-slot unavailability: slowest acknowledged write 25 ms")


def test_a_drain_that_never_removes_its_chain_fails_the_run(monkeypatch):
    monkeypatch.setattr(migrations, "RETRY_S", 0.0)
    monkeypatch.setattr(migrations, "DRAIN_TIMEOUT_S", 0.05)
    cluster = _DrainedCluster()
    refuse = cluster.admin

    def admin(addr, *words, timeout):
        if words[0] == "MASTER.REMOVECHAIN":
            raise redis.ResponseError("ERR a slot move is under way: try again once it is done")
        return refuse(addr, *words, timeout=timeout)

    mover = migrations.Migrations(cluster, [], time.monotonic(), lambda: [], admin)
    mover._drain_and_remove()
    assert not mover.removals[0].end and 2 not in cluster.removed
    problems = mover.judge()
    assert len(problems) == 1 and problems[0].startswith("chain 2 was not removed within "), problems
