"""The chaos verdict's late-write check (catena.chaos.report.judge_late_writes)."""

import math

from catena.chaos.report import Verdict, judge_late_writes
from catena.check import Operation

BOUND = 6.0


def op(client, kind, key, arg, result, call, ret):
    return Operation(client, kind, key, arg, result, call, ret)


def test_a_timed_out_write_seen_after_a_much_later_write_is_flagged():
    v = Verdict()
    judge_late_writes([
        op(1, "set", "k", 10_000_001, None, 0.0, math.inf),  # the client gave up on it
        op(2, "set", "k", 20_000_001, None, 8.0, 8.1),  # called 8 s later, acknowledged
        op(3, "get", "k", None, b"10000001", 9.0, 9.1),  # then the first value shows up
    ], v, BOUND)
    assert not v.clean and len(v.late) == 1 and "at least 8.00 s" in v.late[0]
    assert v.latest_unknown_s == 8.0


def test_a_delay_within_the_bound_is_reported_not_flagged():
    v = Verdict()
    judge_late_writes([
        op(1, "set", "k", 10_000_001, None, 0.0, math.inf),
        op(2, "del", "k", None, 0, 3.0, 3.1),
        op(3, "get", "k", None, b"10000001", 4.0, 4.1),
    ], v, BOUND)
    assert v.clean and v.latest_unknown_s == 3.0
    assert "longest proven delay 3.00 s" in "\n".join(v.lines())


def test_values_an_incr_could_have_made_and_acknowledged_writes_are_not_judged():
    v = Verdict()
    judge_late_writes([
        op(1, "set", "k", 10_000_001, None, 0.0, 0.1),  # acknowledged: took effect by 0.1
        op(1, "set", "k", 10_000_002, None, 0.2, math.inf),
        op(2, "incr", "k", 1, None, 0.3, math.inf),  # may have made 10_000_002 from 10_000_001
        op(2, "set", "k", 7, None, 9.0, 9.1),
        op(3, "get", "k", None, b"10000002", 9.5, 9.6),
        op(3, "get", "k", None, b"10000001", 9.7, 9.8),
    ], v, BOUND)
    assert v.clean and v.latest_unknown_s == 0.0
