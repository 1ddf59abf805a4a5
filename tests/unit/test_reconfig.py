"""Reconfiguration decisions (catena.coordinator.reconfig): rolling back an add."""

from catena.coordinator.reconfig import CoordinatorState, Reconfig


def _chain_with_learner() -> Reconfig:
    r = Reconfig(CoordinatorState())
    r.add("a:1")
    r.add("b:1")  # the learner
    r.add("c:1")  # queued behind it
    assert r.view().learner == "b:1" and r.state.queued == ["c:1"]
    return r


def test_abandoning_an_add_takes_the_learner_out_and_starts_the_next_queued_add():
    r = _chain_with_learner()
    epoch = r.view().epoch
    changed = r.abandon_add("b:1")
    assert changed and r.view().members == ("a:1",) and r.view().learner == "c:1"
    assert r.view().epoch > epoch and not r.state.queued


def test_abandoning_an_add_that_already_ended_changes_nothing():
    r = _chain_with_learner()
    r.caught_up(r.view().epoch, "b:1")  # b became the tail; c is the learner now
    view = r.view()
    assert r.abandon_add("b:1") == [] and r.view() == view
