"""The slot-move driver (catena.coordinator.migration), one behaviour per test: save before each
step, idempotent re-sends under one token, undo before GIVE, forward only after, resume."""

from __future__ import annotations

from catena.coordinator.migration import NO_ANSWER, RETRY_S, Call, Finished, Migration, Move, Save, SaveMap

S = b"%d" % 7


def saved_then_call(m, fx, now=0.0):
    """The Save the machine asks for, acknowledged; the call it then sends."""
    (save,) = [f for f in fx if type(f) is Save]
    return m.on_saved(save.move, now)


def at_precopy(fence: int = 0):
    """A fresh move driven (replies OK) to its pre-copy's dump: (machine, that call)."""
    m, fx = Migration.start(7, 0, 1, 0.0, fence=fence)
    while m.move.phase != "precopy":
        (call,) = saved_then_call(m, fx)
        fx = m.on_reply(call.token, b"OK", 0.0)
    (dump,) = saved_then_call(m, fx)
    return m, dump


def test_every_phase_is_saved_before_its_step_and_the_move_runs_to_done():
    m, fx = Migration.start(7, 0, 1, 0.0)
    assert fx == [Save(Move(7, 0, 1, "clear"))]
    phases, maps = [], []
    replies = {b"CATENA.SLOTDUMP": [41, [b"{a}k"], b"{a}k", b"\x01", b"-"], b"CATENA.IMPORT": 1}
    while not m.finished:
        phases.append(m.move.phase)
        fx = saved_then_call(m, fx)
        while fx and type(fx[0]) in (Call, SaveMap):
            f = fx[0]
            maps += [f] if type(f) is SaveMap else []
            fx = m.on_saved(m.move, 0.0) if type(f) is SaveMap else m.on_reply(f.token, replies.get(f.words[0], b"OK"), 0.0)
    assert phases == ["clear", "import", "precopy", "freeze", "copy", "give", "take", "map", "clean"]
    assert maps == [SaveMap(7, 1)]  # the intent at `map` is saved, then the map itself
    assert fx[-1] == Finished(m.move) and m.move.phase == "done"


def test_a_call_without_an_answer_is_resent_under_the_same_token():
    m, fx = Migration.start(7, 0, 1, 0.0)
    (call,) = saved_then_call(m, fx)
    assert call.words == (b"CATENA.CLEARSLOT", S) and call.chain == 1
    assert m.on_timer(RETRY_S / 2) == []
    (again,) = m.on_timer(RETRY_S)
    assert again == call  # same token: the shell sends it under the same request id
    assert m.on_reply(call.token, NO_ANSWER, RETRY_S) == [] and m.move.phase == "clear"


def test_a_refusal_before_give_undoes_the_move():
    m, (call,) = Migration.resume(Move(7, 0, 1, "freeze", (b"{a}k",)), 0.0)
    fx = m.on_reply(call.token, Exception("ERR slot 7 is given: it cannot become frozen"), 0.0)
    assert fx == [Save(Move(7, 0, 1, "unfreeze", (b"{a}k",)))]
    undo = []
    while not m.finished:
        undo.append(m.move.phase)
        (call,) = m.on_saved(m.move, 0.0)
        fx = m.on_reply(call.token, Exception("ERR slot 7 is given: it cannot become owned")
                        if m.move.phase == "unfreeze" else b"OK", 0.0)
    assert undo == ["unfreeze", "abort", "drop"] and m.move.phase == "undone"


def test_a_refused_first_step_changed_nothing_and_ends_at_once():
    m, fx = Migration.start(7, 0, 1, 0.0)
    (call,) = saved_then_call(m, fx)
    fx = m.on_reply(call.token, Exception("ERR slot 7 is owned: only a given or unowned slot is cleared"), 0.0)
    assert fx == [Save(Move(7, 0, 1, "undone")), Finished(Move(7, 0, 1, "undone"))]


def test_after_give_a_refusal_is_retried_never_undone():
    m, (call,) = Migration.resume(Move(7, 0, 1, "take"), 0.0)
    assert call.words == (b"CATENA.SLOTS", S, S, b"owned")
    assert m.on_reply(call.token, Exception("ERR slot 7 is none: it cannot become owned"), 1.0) == []
    assert m.move.phase == "take" and m.on_timer(1.0 + RETRY_S) == [call]


def test_the_pre_copy_notes_its_keys_and_as_of_seq_for_the_final_copy():
    m, dump = at_precopy()
    assert dump.words == (b"CATENA.SLOTDUMP", S)
    (imp,) = m.on_reply(dump.token, [41, [b"{a}k", b"{a}j"], b"{a}k", b"\x01", b"-", b"{a}j", b"\x02", b"-"], 0.0)
    assert imp.words == (b"CATENA.IMPORT", S, b"{a}k", b"\x01", b"-", b"{a}j", b"\x02", b"-")
    assert m.on_reply(imp.token, 2, 0.0) == [Save(Move(7, 0, 1, "freeze", (b"{a}k", b"{a}j"), 41))]


def test_a_new_driver_resumes_the_saved_phase_and_the_final_copy_deletes_what_the_source_dropped():
    m, fx = Migration.resume(Move(7, 0, 1, "copy", (b"{a}gone", b"{a}k", b"{a}same"), 41), 0.0)
    (dump,) = fx
    assert dump.words == (b"CATENA.SLOTDUMP", S, b"41") and dump.chain == 0  # only what changed since
    (imp,) = m.on_reply(dump.token, [57, [b"{a}k", b"{a}same"], b"{a}k", b"\x01", b"-"], 0.0)
    assert imp.chain == 1 and imp.words == (b"CATENA.IMPORT", S, b"{a}k", b"\x01", b"-", b"{a}gone", b"", b"-")
    assert m.on_reply(imp.token, 2, 0.0) == [Save(Move(7, 0, 1, "give", (b"{a}gone", b"{a}k", b"{a}same"), 41))]


def test_a_driver_s_slot_ops_carry_its_fence_and_a_successor_brings_its_own():
    m, fx = Migration.start(7, 0, 1, 0.0, fence=4)
    (call,) = saved_then_call(m, fx)
    assert call.words == (b"CATENA.CLEARSLOT", b"FENCE", b"4", S)
    m, (call,) = Migration.resume(m.move, 0.0, fence=9)
    assert call.words == (b"CATENA.CLEARSLOT", b"FENCE", b"9", S) and m.move.fence == 9
    m, dump = at_precopy(fence=9)
    assert dump.words == (b"CATENA.SLOTDUMP", S)  # a read: no fence
    (imp,) = m.on_reply(dump.token, [3, [], ], 0.0)
    assert imp.words == (b"CATENA.IMPORT", b"FENCE", b"9", S)


def test_a_pre_copy_resumed_by_a_new_driver_starts_again_from_an_empty_slot():
    """Its predecessor's IMPORT may have written keys that no saved intent names (and that the
    final copy would then never delete): the target's slot goes back to none, is cleared and
    imported again."""
    m, fx = Migration.resume(Move(7, 0, 1, "precopy", fence=3), 0.0, fence=4)
    assert fx == [Save(Move(7, 0, 1, "reset", fence=4))]
    phases = []
    while m.move.phase != "precopy":
        phases.append(m.move.phase)
        (call,) = saved_then_call(m, fx)
        assert call.chain == 1
        fx = m.on_reply(call.token, b"OK", 0.0)
    assert phases == ["reset", "clear", "import"]
