"""A member's link report (chain/link_watch.py) sampled against a real Replica at each probe."""

from catena.chain.link_watch import LinkWatch
from catena.chain.replica import Replica
from catena.control import LinkReport
from catena.view import View


def middle() -> Replica:
    r = Replica("b", b"b/1")
    r.on_view(View(0, 3, ("a", "b", "c")), 0.0)
    return r


def test_a_successor_that_acks_nothing_for_a_while_is_reported_stalled_with_what_waits():
    r, w = middle(), LinkWatch()
    assert w.report(r, {}, (), 0.0) == LinkReport(3)
    r.last_seq, r.commit_seq = 9, 4  # five entries in the sent list, unacked
    assert w.report(r, {}, (), 0.1).stalled == ()  # the wait starts now
    assert w.report(r, {}, (), 1.3).stalled == (("c", 1200, 5),)
    r.commit_seq = 6  # c acked some: progress
    assert w.report(r, {}, (), 1.4).stalled == ()
    assert w.report(r, {}, (), 1.9).stalled == (("c", 500, 3),)
    r.commit_seq = 9  # nothing outstanding: never stalled
    assert w.report(r, {}, (), 5.0).stalled == ()


def test_forwarded_writes_wait_on_the_head_and_heard_and_lost_name_only_chain_members():
    r, w = middle(), LinkWatch()
    r.forwarded[7] = [None, None, (), 0.0, 0]
    w.report(r, {}, (), 0.0)
    r.forwarded[8] = [None, None, (), 0.5, 0]  # a newer one behind the same oldest: no progress
    report = w.report(r, {"a": 0.5, "x": 0.9}, ("c", "x", "b"), 1.0)
    assert report.stalled == (("a", 1000, 2),)
    assert report.heard == (("a", 500),) and report.lost == ("c",)
    del r.forwarded[7]  # the oldest was answered
    assert w.report(r, {}, (), 1.1).stalled == ()
