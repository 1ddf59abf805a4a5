"""The metrics' own parts, without processes: histogram buckets, the member's command counters
and sampling, log I/O timing on a real DurableLog, the event ring, JSON log lines, the status
page's rates, and what a collector exports."""

from __future__ import annotations

import json
import logging

from prometheus_client import generate_latest

from catena import logs
from catena.chain.node import _disconnected
from catena.chain.resp3 import Shaped
from catena.chain.log import DurableLog
from catena.metrics import status_page
from catena.metrics.buckets import Buckets
from catena.metrics.coordinator import CoordinatorMetrics
from catena.metrics.events import EventRing
from catena.metrics.http import registry
from catena.metrics.member import SAMPLE, MemberMetrics
from catena.resp.server import Deferred
from catena.resp.codec import Error
from catena.view import View


class _Reply:
    def __init__(self):
        self.value = None

    def resolve(self, value):
        self.value = value


class _Replica:
    def __init__(self, me: str, view: View | None):
        self.me, self.view = me, view


def test_buckets_are_cumulative_with_an_inf_bucket():
    b = Buckets((0.1, 1.0))
    for v in (0.05, 0.1, 0.5, 3.0):
        b.observe(v)
    assert b.cumulative() == [("0.1", 2), ("1.0", 3), ("+Inf", 4)]
    assert b.sum == 3.65


def test_every_command_counted_one_in_sample_timed_with_its_outcome():
    m = MemberMetrics()
    replies = []
    for i in range(4 * SAMPLE):
        reply = _Reply()
        token = m.track(reply, [b"SET", b"k", b"v"] if i % (2 * SAMPLE) == SAMPLE - 1 else [b"GET", b"k"])
        token.resolve(b"OK")
        replies.append(reply)
    assert all(r.value == b"OK" for r in replies)  # the client's reply is resolved either way
    assert m.commands == 4 * SAMPLE
    assert m.outcomes() == {("set", "ok"): 2, ("get", "ok"): 2}  # the SAMPLE-th, 2·SAMPLE-th, … commands
    assert sum(m.latency["read"].counts) == 2 and sum(m.latency["write"].counts) == 2
    assert m.latency["read"].sum > 0
    status = m.status()
    assert status["reads"] + status["writes"] == 4 * SAMPLE  # scaled up from the sample


def test_errors_are_seen_in_the_sample_and_req_names_its_command():
    m = MemberMetrics()
    for _ in range(SAMPLE):
        m.track(_Reply(), [b"CATENA.REQ", b"c1", b"7", b"INCR", b"n"]).resolve(Error("ERR not an integer"))
    for _ in range(SAMPLE):
        m.track(_Reply(), [b"catena.req", b"c1", b"8", b"3", b"set", b"n", b"1"]).resolve(b"OK")
    assert m.outcomes() == {("incr", "error"): 1, ("set", "ok"): 1}
    assert sum(m.latency["write"].counts) == 2 and sum(m.latency["read"].counts) == 0


def test_the_replica_counts_the_writes_it_forwards():
    from catena.chain.replica import Replica
    from catena.chain.state import KVState

    middle = Replica("b", b"b/1", KVState(), (0, 0), [], epoch=1)
    middle.on_view(View(0, 1, ("a", "b", "c")), 0.0)
    middle.on_client(_Reply(), [b"SET", b"k", b"v"], 0.0)
    middle.on_client(_Reply(), [b"GET", b"k"], 0.0)
    assert middle.forwarded_total == 1


def test_log_appends_and_fsyncs_are_timed(tmp_path):
    m = MemberMetrics()
    log = DurableLog(tmp_path / "log", "always", m.io)
    log.recover()
    appends, fsyncs = sum(m.io.append.counts), sum(m.io.fsync.counts)
    try:
        log.append([b"x" * 100])
        log.append([b"y" * 100])
    finally:
        log.close()
    assert sum(m.io.append.counts) == appends + 2
    assert sum(m.io.fsync.counts) >= fsyncs + 2  # fsync=always: one per append
    assert m.io.busy is None


def test_event_ring_is_bounded_and_newest_first():
    ring = EventRing(size=3, clock=iter(range(10)).__next__)
    for i in range(5):
        ring.add("removed", f"m{i}", i, f"event {i}")
    assert [e["member"] for e in ring.recent()] == ["m4", "m3", "m2"]


def test_view_changes_count_repairs_apart():
    m = CoordinatorMetrics()
    view = View(0, 7, ("a", "c"))
    m.view_changed(view, "failure", "b")
    m.view_changed(View(0, 8, ("a", "c"), "d"), "join", "d")
    assert m.view_changes == {"failure": 1, "join": 1} and m.repairs == {"failure": 1}
    kinds = [e["kind"] for e in m.events.recent()]
    assert kinds == ["joining", "removed"]
    assert "b failed its probes and was removed" in m.events.recent()[1]["text"]


def test_json_log_lines_carry_the_fields_and_the_process_context():
    formatter = logs.JsonFormatter("member 127.0.0.1:1")
    logs.set_context(lambda: (0, 5))
    try:
        plain = logging.LogRecord("catena.x", logging.INFO, __file__, 1, "hello %s", ("there",), None)
        line = json.loads(formatter.format(plain))
        assert line["message"] == "hello there" and line["level"] == "INFO"
        assert line["process"] == "member 127.0.0.1:1" and (line["chain"], line["epoch"]) == (0, 5)
        assert line["event"] is None and line["time"].endswith("+00:00")
        event = logging.LogRecord("catena.x", logging.WARNING, __file__, 1, "repaired", (), None)
        event.event, event.cause, event.epoch = "repair", "failure", 9
        line = json.loads(formatter.format(event))
        assert (line["event"], line["cause"], line["epoch"], line["chain"]) == ("repair", "failure", 9, 0)
    finally:
        logs.set_context(lambda: (None, None))


def test_status_page_rates_come_from_successive_samples(monkeypatch):
    clock = iter([100.0, 100.2, 101.0, 103.0]).__next__
    monkeypatch.setattr(status_page.time, "monotonic", clock)
    page = status_page.StatusPage(coord=None)
    assert page._rate("m", 0, 0) == (0.0, 0.0)  # first sample
    assert page._rate("m", 50, 10) == (0.0, 0.0)  # 0.2 s later: too soon, the last rate stands
    assert page._rate("m", 100, 40) == (100.0, 40.0)  # 1 s after the first sample
    assert page._rate("m", 5, 5) == (0.0, 0.0)  # the counters went back: the member restarted


def test_a_collector_is_rendered_in_the_text_format():
    class Collector:
        def collect(self):
            from catena.metrics.member import loop_families

            class Monitor:
                longest_s, slow_turns = 0.2, 3
                clock = staticmethod(lambda: 0.0)

                def recent_s(self, now):
                    return 0.1

            yield from loop_families(Monitor())

    text = generate_latest(registry(Collector())).decode()
    assert "catena_longest_loop_turn_seconds 0.2" in text
    assert "catena_slow_loop_turns_total 3.0" in text
    assert "process_cpu_seconds_total" in text


def test_a_sampled_blocked_clients_token_tells_whether_the_client_is_gone():
    """A blocked client's member asks its token whether the client left: a sampled (timed)
    token, around a RESP3-shaped one, answers it too (it crashed the member before)."""
    m = MemberMetrics()
    for wrap in (lambda d: d, lambda d: Shaped(d, None, [])):
        deferred = Deferred()
        token = next(t for t in (m.track(wrap(deferred), [b"BLPOP", b"q", b"0"]) for _ in range(SAMPLE))
                     if t is not deferred and type(t) is not Shaped)
        assert _disconnected(token), "no connection: gone"
        deferred.conn = object()
        assert not _disconnected(token)
