"""Control messages between the coordinator and the members (catena.control): one encoder, one
decoder, and a clear error for bad words."""

from __future__ import annotations

import pytest

from catena.control import (MasterCaughtUp, MasterRegister, MemberProbe, MemberRevoke, MemberView, decode, encode)
from catena.view import View


def words(msg) -> list[bytes]:
    """The command as it reaches the receiver: every word bytes."""
    return [w if isinstance(w, bytes) else str(w).encode() for w in encode(msg)]


@pytest.mark.parametrize("msg", [
    MemberView(View(0, 7, ("a:1", "b:2"), "c:3")), MemberView(View(0, 1, ("a:1",))),
    MemberProbe(3, 41, 40), MemberRevoke(9),
    MasterRegister("127.0.0.1:6370", "inc-1", "cluster-x", 12), MasterRegister("[::1]:6371"),
    MasterCaughtUp(0, 5, "127.0.0.1:6372"),
])
def test_round_trip(msg):
    assert decode(words(msg)) == msg


def test_the_command_names_are_the_credis_style_ones():
    assert [encode(m)[0] for m in (MemberView(View(0, 1, ("a:1",))), MemberProbe(1, 1, 0), MemberRevoke(1),
                                    MasterRegister("h:1"), MasterCaughtUp(0, 1, "h:2"))] == [
        b"MEMBER.VIEW", b"MEMBER.PROBE", b"MEMBER.REVOKE", b"MASTER.REGISTER", b"MASTER.CAUGHT_UP"]


def test_register_keeps_the_short_form_of_older_members():
    assert decode([b"MASTER.REGISTER", b"h", b"6370"]) == MasterRegister("h:6370", "0", "", 0)


@pytest.mark.parametrize("args, error", [
    ([b"MEMBER.PROBE", b"1", b"x", b"0"], "bad nonce 'x'"),
    ([b"MEMBER.PROBE", b"-1", b"1", b"0"], "bad epoch '-1'"),
    ([b"MEMBER.PROBE", b"1", b"2"], "wrong number of arguments for 'member.probe'"),
    ([b"MEMBER.REVOKE", b"99999999999999999999"], "bad epoch"),
    ([b"MEMBER.VIEW", b"0", b"x", b"-"], "a view is: chain_id epoch"),
    ([b"MASTER.REGISTER", b"h", b"70000"], "bad port '70000'"),
    ([b"MASTER.REGISTER", b"h", b"1", b"i", b"c", b"e"], "bad epoch 'e'"),
    ([b"MASTER.CAUGHT_UP", b"0", b"1"], "wrong number of arguments"),
    ([b"MEMBER.NOPE"], "not a control message"),
])
def test_bad_words_are_refused_with_a_reason(args, error):
    with pytest.raises(ValueError, match=error):
        decode(args)


def test_probe_answer_round_trips_and_a_bare_incarnation_has_no_liveness_port():
    from catena.control import ProbeAnswer, decode_answer, encode_answer
    assert decode_answer(encode_answer(ProbeAnswer("7f3a", 40123))) == ProbeAnswer("7f3a", 40123)
    assert decode_answer([b"7f3a", 40123]) == ProbeAnswer("7f3a", 40123)
    assert decode_answer(b"7f3a") == ProbeAnswer("7f3a", 0)
    for bad in ([b"7f3a"], [b"7f3a", b"x"], [b"7f3a", 70000]):
        with pytest.raises(ValueError):
            decode_answer(bad)


def test_probe_answer_carries_a_link_report_and_a_bad_one_is_refused():
    from catena.control import LinkReport, ProbeAnswer, decode_answer, encode_answer
    report = LinkReport(5, (("10.0.0.3:7001", 1200, 9),), (("10.0.0.1:7001", 30),), ("10.0.0.4:7001",))
    answer = ProbeAnswer("7f3a", 40123, report)
    wire = [w.encode() if isinstance(w, str) else w for w in encode_answer(answer)[:2]] + encode_answer(answer)[2:]
    assert decode_answer(wire) == answer
    assert decode_answer(encode_answer(ProbeAnswer("7f3a", 1, LinkReport(2)))) == ProbeAnswer("7f3a", 1, LinkReport(2))
    for bad in ([b"i", 1, 2, [b"p", 5], [], []], [b"i", 1, 2, [], [b"p"], []], [b"i", 1, b"x", [], [], []],
                [b"i", 1, 2, [b"p", b"-1", 3], [], []], [b"i", 1, 2, []]):
        with pytest.raises(ValueError):
            decode_answer(bad)


def test_probe_answer_carries_the_members_slowness():
    from catena.control import LinkReport, ProbeAnswer, Slowness, decode_answer, encode_answer
    answer = ProbeAnswer("7f3a", 1, LinkReport(3), Slowness(2400, 1300))
    assert decode_answer(encode_answer(answer)) == answer
    with pytest.raises(ValueError):
        decode_answer(encode_answer(answer)[:-1])
