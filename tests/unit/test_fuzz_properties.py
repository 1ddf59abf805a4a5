"""Peer frames under hypothesis, and short runs of the fuzz runner (catena.fuzz).

The @example inputs are bugs the fuzzer found (all fixed): they stay as regression cases.
"""

import random

from hypothesis import HealthCheck, example, given, settings, strategies as st

from catena import fuzz
from catena.chain import messages as pm
from catena.chain.replica import Replica
from catena.errors import RemoteProtocolError
from catena.view import View

ints = st.integers(-(2**63), 2**64 - 1)
u64 = st.integers(0, 2**64 - 1)
blobs = st.binary(max_size=64)
texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)
rids = st.none() | st.tuples(blobs, u64, u64)
ops = st.one_of(
    st.tuples(st.just(0), blobs, blobs, st.none() | u64, st.integers(0, 15)),
    st.tuples(st.just(1), st.lists(blobs, max_size=6).map(tuple)),
    st.tuples(st.just(2), st.lists(blobs, max_size=4).map(tuple)),
    st.tuples(st.just(3), blobs, ints),
    st.tuples(st.just(4), blobs, st.none() | u64),
    st.tuples(st.just(5), blobs),
    st.tuples(st.just(5), st.lists(blobs, min_size=1, max_size=4).map(tuple)),
)
entries = st.tuples(u64, u64, u64, rids, ops)
replies = st.one_of(blobs, ints, st.none(), texts.map(pm.Status), texts.map(pm.Error),
                    st.lists(blobs, max_size=4).map(tuple))
commands = st.lists(blobs, min_size=1, max_size=5).map(tuple)

messages = st.one_of(
    st.builds(pm.Sync, u64, u64, u64),
    st.builds(pm.Append, u64, u64, st.lists(entries, max_size=4).map(tuple)),
    st.builds(pm.Ack, u64, u64),
    st.builds(pm.Snapshot, u64, u64, u64, u64, st.binary(max_size=200)),
    st.builds(pm.SyncRequest, u64),
    st.builds(pm.Forward, u64, u64, rids, commands, u64),
    st.builds(pm.WriteReply, u64, replies),
    st.builds(pm.Read, u64, u64, commands),
    st.builds(pm.ReadReply, u64, replies),
    st.builds(pm.Stale, u64),
)


def frames(data: bytes) -> list:
    u = pm.unpacker()
    u.feed(data)
    return [pm.decode(f) for f in u]


@given(st.lists(messages, min_size=1, max_size=4))
def test_every_message_type_round_trips(msgs):
    assert frames(b"".join(pm.pack(m) for m in msgs)) == msgs


def test_strategies_cover_every_tag():
    assert {cls.TAG for cls in pm.MESSAGES.values()} == set(range(1, 11))


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
@example(b"\x81\x80\x01")
@example(b"\x93\x07\x01\x92\xc4\x01+\x01")
def test_arbitrary_bytes_are_messages_or_a_documented_error(data):
    try:
        msgs = frames(data)
    except (RemoteProtocolError, ValueError):  # what a link closes on
        return
    assert all(type(m) in pm.MESSAGES.values() for m in msgs)


def garbage():
    """Decodable frames of every tag whose fields are anything msgpack can carry."""
    leaf = st.one_of(st.none(), st.booleans(), ints, blobs, st.floats(allow_nan=False))
    value = st.recursive(leaf, lambda inner: st.lists(inner, max_size=4).map(tuple), max_leaves=8)
    return st.builds(lambda tag, fields: (tag, *fields), st.sampled_from(sorted(pm.MESSAGES)),
                     st.lists(value, min_size=1, max_size=6))


def two_replicas():
    now = 1_700_000_000.0
    view = View(0, 1, ("a:1", "b:2"))
    head, tail = Replica("a:1", b"a/1"), Replica("b:2", b"b/2")
    head.on_view(view, now)
    tail.on_view(view, now)
    return (head, "b:2"), (tail, "a:1")


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(garbage())
@example((3, 1, b"x"))
@example((4, 1, 0, 0, 0, b"not a dump"))
def test_replica_never_raises_on_decoded_garbage(frame):
    try:
        msg = pm.decode(frame)
    except RemoteProtocolError:
        return
    for replica, sender in two_replicas():
        try:
            fx = replica.on_message(sender, msg, 1_700_000_001.0)
        except RemoteProtocolError:  # a clean refusal
            continue
        assert isinstance(fx, list)


# -- the runner ----------------------------------------------------------------------------------


def short_run(target: str, inputs: int = 20_000) -> fuzz.Report:
    report = fuzz.run_target(target, inputs, seed=1, timeout=5.0, slow=2.0)
    assert report.inputs == inputs
    assert sum(report.outcomes.values()) == inputs
    return report


def describe(report: fuzz.Report) -> str:
    return "; ".join(f"{sig} x{n}: --replay {report.examples[sig][0][0].hex()}"
                     for sig, n in report.crashes.most_common(5))


def test_fuzz_membership_short_run_finds_nothing():
    report = short_run("membership")
    assert report.ok, describe(report)
    assert report.outcomes["forged"] or any("forged" in o for o in report.outcomes)
    assert any("accepted" in o for o in report.outcomes)  # mutations reach past the MAC and parser


def test_fuzz_resp_short_run_finds_nothing():
    report = short_run("resp")
    assert report.ok, describe(report)


def test_fuzz_peer_short_run_finds_nothing():
    report = short_run("peer")
    assert report.ok, describe(report)


def test_mutator_is_seeded():
    a = fuzz.Mutator(fuzz.resp_seeds(), random.Random(5), fuzz._RESP_BYTES, fuzz._RESP_HUGE, True)
    b = fuzz.Mutator(fuzz.resp_seeds(), random.Random(5), fuzz._RESP_BYTES, fuzz._RESP_HUGE, True)
    assert [a() for _ in range(500)] == [b() for _ in range(500)]


def test_runner_counts_a_crash_with_its_input(monkeypatch):
    real = fuzz.check_resp

    def broken(data, rng, cuts=None):
        if data.startswith(b"*1\r\n$4\r\nPING"):
            raise KeyError("boom")
        return real(data, rng, cuts)

    monkeypatch.setattr(fuzz, "check_resp", broken)
    monkeypatch.setitem(fuzz.PROBES, "resp", [b"*1\r\n$4\r\nPING\r\n"])
    report = fuzz.run_target("resp", 50, seed=3, slow=5.0)
    assert report.crashed >= 1 and not report.ok
    (sig, examples), *_ = report.examples.items()
    assert "KeyError" in sig and examples[0][0] == b"*1\r\n$4\r\nPING\r\n"
