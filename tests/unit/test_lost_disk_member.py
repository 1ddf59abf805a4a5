"""A member process started on an empty data dir at a former member's address (its disk was
lost) and pushed the view that names that address among the chain's members: the push was meant
for the old incarnation, and acting on it would hand an empty history down the chain.
(tests/sim/shard_sim.py found it: a new leader pushed the saved view to a member restarted
empty before its probes saw the new incarnation; as head it sent its empty snapshot to its
successors, which dropped the chain's data. docs/operations.md: "One member lost its disk".)"""

from __future__ import annotations

from catena.chain.messages import Snapshot, Sync
from catena.chain.replica import Replica
from catena.effects import Send
from catena.view import View

NOW = 1000.0
CHAIN = View(0, 5, ("a", "b", "c"))


def fresh(managed: bool = True) -> Replica:
    return Replica("a", b"a/2", lease_s=0.5, managed=managed)


def test_a_new_process_does_not_act_on_a_view_naming_it_among_members():
    r = fresh()
    assert r.on_view(CHAIN, NOW) == []
    assert r.view is None and r.epoch == 0


def test_it_sends_its_successor_no_snapshot_of_its_empty_history():
    r = fresh()
    r.on_view(CHAIN, NOW)
    fx = r.on_message("b", Sync(epoch=5, last_epoch=5, last_seq=40), NOW) + r.flush()
    assert not [f for f in fx if isinstance(f, Send) and isinstance(f.msg, Snapshot)]


def test_it_joins_as_a_learner():
    r = fresh()
    r.on_view(View(0, 6, ("b", "c"), "a"), NOW)
    assert r.view == View(0, 6, ("b", "c"), "a") and r.epoch == 6


def test_a_process_founding_a_chain_adopts_its_first_view():
    r = fresh()
    r.on_view(View(0, 1, ("a",)), NOW)
    assert r.epoch == 1 and r.view.head == "a"


def test_a_member_that_has_seen_an_epoch_adopts_the_view_after_a_restart():
    r = Replica("a", b"a/2", lease_s=0.5, managed=True, epoch=5)
    r.on_view(CHAIN, NOW)
    assert r.view == CHAIN


def test_without_a_coordinator_views_come_from_the_operator_and_are_adopted():
    r = fresh(managed=False)
    r.on_view(CHAIN, NOW)
    assert r.view == CHAIN
