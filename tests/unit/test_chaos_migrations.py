"""The slot moves of `catena chaos --chains K` (chaos/migrations.py): the plan comes from the seed
alone, and each move is judged done or undone by where its slot went next."""

from __future__ import annotations

from catena.chaos.migrations import Migrations, MoveRecord, owners, plan


def test_the_plan_is_the_seeds_and_empty_with_one_chain():
    assert plan(7, 30, 2) == plan(7, 30, 2) and plan(7, 30, 2) != plan(8, 30, 2)
    assert plan(7, 30, 1) == []
    moves = plan(7, 30, 3)
    assert moves and all(2.0 < m.at < 28.0 for m in moves) and any(m.hot for m in moves)
    assert not any(m.add for m in moves)
    grown = plan(7, 30, 3, add_chain=True)
    added = [i for i, m in enumerate(grown) if m.add]
    assert len(added) == 1 and 0 < added[0] < len(grown) - 1  # a move before it and one after
    assert [m.at for m in grown] == [m.at for m in moves]


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
