"""The coordinator machine (catena.coordinator.machine), in stories with their effects written out.

In the manner of etcd-io/raft's datadriven tests: each file in testdata/coordinator_machine/ is a
list of commands, each followed by `----` and the effects it must return, then the machine's
next deadline. Rewrite the expected text after a deliberate change (then review the diff):

    CATENA_REWRITE=1 .venv/bin/python -m pytest -q tests/unit/test_coordinator_machine.py

Commands (t: monotonic seconds; members are short names; requests are numbered 1, 2, … as made):

    lead t=T [epoch=E members=a,b learner=c queued=d sessions=s1:ttl_ms:k1+k2[:ending] flaps=c:P]
                                               a new term over this saved state (no epoch: a new store)
    step-down
    follow epoch=E members=a,b …               a follower's copy of the saved state
    register a inc=I                           a registered as incarnation I (its probes answer as it)
    timer t=T
    answer t=T a nonce=N [inc=I]               the probe answered (as incarnation I, default "1")
           [report=E stalled=b:MS:N+… heard=b:MS+… lost=b+…]   with a link report under epoch E
           [slow=TURN_MS:FSYNC_MS]                             and its slowness
    miss t=T a nonce=N [refused] [broken]      the probe timed out, was refused, or its connection broke
    liveness t=T a nonce=N [inc=I turn=S]      the liveness check after probe N: incarnation I, its loop's
                                               current turn S seconds old (no inc: no answer)
    suspect t=T a                              membership says a failed
    revoked t=T a ok|unanswered                a's revoke answered, or did not
    saved t=T [failed]                         the store saved the last Save (or refused it)
    pushed t=T a epoch=E ok|failed             a acknowledged the view of epoch E, or the push failed
    tail t=T [epoch=E acked=N sent=B loaded=S] [caught-up]
                                               the tail's answer to the last AskTail (no epoch: none);
                                               sent/loaded: the state transfer's progress at the
                                               tail and at the learner
    told-caught-up t=T c epoch=E               the tail's MASTER.CAUGHT_UP: its learner c caught up
    request t=T add|remove a                   MASTER.ADD / MASTER.REMOVE
    request t=T register a inc=I [epoch=E] [cluster=C]
    request t=T open s ttl=MS | attach s k… | close s
    ping t=T s                                 MASTER.SESSION.PING
    deleted t=T s batch=N ok|failed            the head answered a DeleteKeys, or it failed
    revokes epoch=E members=a,b [learner=c]    revokes before saving this view over the saved one
    unanswered a                               a did not answer its revoke: the save waits until
    add-timeout s=S                            the coordinator's --add-timeout-s
    learner-poll s=S                           how often the tail is asked about its learner
    wedge s=S [busy-limit=L]                   the coordinator's --wedge-timeout-s (liveness checks on)
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from catena.coordinator import requests as rq
from catena.control import LinkReport, Slowness
from catena.coordinator.effects import (AbandonAdd, AskTail, CaughtUp, CheckLiveness, Cut, DeleteKeys, Fail, Note,
                                        Probe, Push, Reply, Resign, Restarted, Revoke, Save, Slow)
from catena.coordinator.machine import CoordinatorMachine
from catena.coordinator.reconfig import CoordinatorState
from catena.view import View

DATA = Path(__file__).parent / "testdata" / "coordinator_machine"
REWRITE = bool(os.environ.get("CATENA_REWRITE"))


def render_state(state: dict) -> str:
    s = CoordinatorState.from_dict(state)
    v = s.views[0]
    out = f"epoch={v.epoch} members={','.join(v.members)}" + (f" learner={v.learner}" if v.learner else "")
    if s.queued:
        out += f" queued={','.join(s.queued)}"
    for sid, e in sorted(s.sessions.items()):
        out += f" session={sid}:{'+'.join(e['keys']) or '-'}" + (":ending" if e.get("ending") else "")
    if s.flaps:
        out += " flaps=" + ",".join(f"{m}:{p:g}" for m, p in sorted(s.flaps.items()))
    return out


def render(fx) -> str:
    if isinstance(fx, Probe):
        return f"probe {fx.member} epoch={fx.epoch} nonce={fx.nonce} grant={fx.grant} timeout={fx.timeout_s:g}"
    if isinstance(fx, Revoke):
        return f"revoke {fx.member} epoch={fx.epoch}"
    if isinstance(fx, Fail):
        return f"fail {fx.member} misses={fx.misses}" + (" wedged" if fx.wedged else "") + (
            f" witness={fx.witness}" if fx.witness else "")
    if isinstance(fx, Resign):
        return f"resign ({fx.reason})"
    if isinstance(fx, Slow):
        return f"slow {fx.member} ({fx.why})"
    if isinstance(fx, Cut):
        return f"cut {fx.member} peer={fx.peer} stalled={fx.stalled_s:g}"
    if isinstance(fx, CheckLiveness):
        return f"check-liveness {fx.member} nonce={fx.nonce} timeout={fx.timeout_s:g}"
    if isinstance(fx, Restarted):
        return f"restarted {fx.member} incarnation={fx.incarnation}"
    if isinstance(fx, AskTail):
        return f"ask-tail {fx.tail} epoch={fx.epoch} learner={fx.learner}"
    if isinstance(fx, CaughtUp):
        return f"caught-up {fx.member} epoch={fx.epoch}"
    if isinstance(fx, AbandonAdd):
        return f"abandon-add {fx.member} quiet={fx.quiet_s:g}"
    if isinstance(fx, Save):
        return f"save {render_state(fx.state)}"
    if isinstance(fx, Push):
        return f"push {fx.member} epoch={fx.view.epoch}"
    if isinstance(fx, Reply):
        return f"reply {fx.token} " + (f"error={fx.error}" if fx.error is not None else str(fx.value))
    if isinstance(fx, DeleteKeys):
        return f"delete-keys {fx.session} batch={fx.batch} keys={b','.join(fx.keys).decode()} head={fx.head}"
    if isinstance(fx, Note):
        return f"note {fx.text}"
    raise AssertionError(f"unknown effect {fx!r}")


def parse(words: list[str]) -> tuple[list[str], dict[str, str]]:
    args, kv = [], {}
    for w in words:
        if "=" in w:
            k, v = w.split("=", 1)
            kv[k] = v
        else:
            args.append(w)
    return args, kv


def view_of(kv: dict) -> View:
    members = tuple(m for m in kv.get("members", "").split(",") if m)
    return View(0, int(kv["epoch"]), members, kv.get("learner"))


def state_of(kv: dict) -> dict | None:
    """The saved state a `lead` or `follow` line names (None: a new store)."""
    if "epoch" not in kv:
        return None
    state = CoordinatorState(views={0: view_of(kv)}, cluster_id="story",
                             queued=[m for m in kv.get("queued", "").split(",") if m],
                             flaps={m: float(p) for m, p in (f.split(":") for f in kv.get("flaps", "").split(",") if f)})
    for spec in filter(None, kv.get("sessions", "").split(",")):
        sid, ttl_ms, keys, *ending = spec.split(":")
        state.sessions[sid] = {"ttl_ms": int(ttl_ms), "keys": [k for k in keys.split("+") if k],
                               **({"ending": True} if ending else {})}
    return state.to_dict()


def report_of(kv: dict) -> LinkReport | None:
    """The link report an `answer` line carries (None: no `report=`)."""
    if "report" not in kv:
        return None

    def rows(key):
        return [r.split(":") for r in kv.get(key, "").split("+") if r]
    return LinkReport(int(kv["report"]), tuple((p, int(ms), int(n)) for p, ms, n in rows("stalled")),
                      tuple((p, int(ms)) for p, ms in rows("heard")), tuple(p for (p,) in rows("lost")))


def request_of(args: list[str], kv: dict):
    kind, *rest = args
    if kind == "add":
        return rq.Add(rest[0])
    if kind == "remove":
        return rq.Remove(rest[0])
    if kind == "register":
        return rq.Register(rest[0], kv["inc"], kv.get("cluster", ""), int(kv.get("epoch", 0)))
    if kind == "open":
        return rq.OpenSession(rest[0], int(kv["ttl"]))
    if kind == "attach":
        return rq.Attach(rest[0], tuple(k.encode() for k in rest[1:]))
    if kind == "close":
        return rq.CloseSession(rest[0])
    raise AssertionError(f"unknown request {args!r}")


class Story:
    def __init__(self):
        self.m = CoordinatorMachine()
        self.asked: AskTail | None = None  # the last AskTail
        self.requests = 0

    def run(self, line: str) -> list[str]:
        cmd, *words = line.split()
        args, kv = parse(words)
        t = float(kv.get("t", "nan"))
        m = self.m
        out = None
        fx = []
        if cmd == "lead":
            fx = m.lead(t, state_of(kv), "story")
        elif cmd == "step-down":
            fx = m.step_down()
        elif cmd == "follow":
            m.follow(state_of(kv))
            out = [f"view {m.view.epoch} {','.join(m.view.members)}"]
        elif cmd == "register":
            m.registered(args[0], kv["inc"])
        elif cmd == "timer":
            fx = m.on_timer(t)
        elif cmd == "answer":
            slow = Slowness(*map(int, kv["slow"].split(":"))) if "slow" in kv else None
            fx = m.on_probe_answer(args[0], int(kv["nonce"]), kv.get("inc", "1"), t, report_of(kv), slow)
        elif cmd == "miss":
            fx = m.on_probe_failed(args[0], int(kv["nonce"]), t, refused="refused" in args, broken="broken" in args)
        elif cmd == "liveness":
            fx = m.on_liveness(args[0], int(kv["nonce"]), t, kv.get("inc"), float(kv.get("turn", 0)))
        elif cmd == "wedge":
            m.wedge_s = float(kv["s"])
            m.busy_limit_s = float(kv.get("busy-limit", m.busy_limit_s))
            fx = []
        elif cmd == "suspect":
            out = [f"brought forward: {m.suspect(args[0], t)}"]
        elif cmd == "revoked":
            fx = m.on_revoked(args[0], args[1] == "ok", t)
        elif cmd == "saved":
            fx = m.on_save_result("failed" not in args, t)
        elif cmd == "pushed":
            fx = m.on_pushed(args[0], int(kv["epoch"]), args[1] == "ok", t)
        elif cmd == "request":
            self.requests += 1
            fx = m.request(self.requests, request_of(args, kv), t)
        elif cmd == "ping":
            out = [f"alive: {m.session_ping(args[0], t)}"]
        elif cmd == "deleted":
            fx = m.on_keys_deleted(args[0], int(kv["batch"]), args[1] == "ok", t)
        elif cmd == "revokes":
            fx = m.revokes(m.view, view_of(kv))
        elif cmd == "tail":
            epoch = int(kv["epoch"]) if "epoch" in kv else None
            fx = m.on_tail_status(self.asked, t, epoch=epoch, caught_up="caught-up" in args,
                                  acked=int(kv.get("acked", -1)),
                                  transfer=(int(kv.get("sent", 0)), int(kv.get("loaded", 0))))
        elif cmd == "told-caught-up":
            fx = m.on_caught_up(int(kv["epoch"]), args[0], t)
        elif cmd == "learner-poll":
            m.learner_poll_s = float(kv["s"])
        elif cmd == "add-timeout":
            m.add_timeout_s = float(kv["s"])
        elif cmd == "unanswered":
            out = [f"wait until {m.revoke_unanswered(args[0]):.3f}"]
        else:
            raise AssertionError(f"unknown command {line!r}")
        for f in fx:
            if isinstance(f, AskTail):
                self.asked = f
        lines = (out or []) + [render(f) for f in fx]
        due = m.next_deadline()
        lines.append(f"next {'none' if due is None else f'{due:.3f}'}")
        return lines


def blocks(text: str):
    """(command, expected lines) per `command\\n----\\nexpected…\\n\\n` block; `#` lines are comments."""
    for chunk in text.strip().split("\n\n"):
        lines = [ln for ln in chunk.splitlines() if not ln.startswith("#")]
        if not lines:
            continue
        assert lines[1] == "----", f"expected ---- after {lines[0]!r}"
        yield chunk, lines[0], lines[2:]


@pytest.mark.parametrize("path", sorted(DATA.glob("*.txt")), ids=lambda p: p.stem)
def test_story(path: Path):
    story = Story()
    text = path.read_text()
    rewritten, mismatches = [], []
    for chunk, command, expected in blocks(text):
        got = story.run(command)
        comments = [ln for ln in chunk.splitlines() if ln.startswith("#")]
        rewritten.append("\n".join(comments + [command, "----"] + got))
        if got != expected:
            mismatches.append(f"{command}\n  expected: {expected}\n  got:      {got}")
    if REWRITE:
        path.write_text("\n\n".join(rewritten) + "\n")
        return
    assert not mismatches, f"{path.name}:\n" + "\n".join(mismatches)


def test_the_stories_are_there():
    assert len(list(DATA.glob("*.txt"))) >= 8


def test_a_paused_members_lease_runs_out_before_the_machine_lets_its_replacement_be_saved():
    """The machine driven against a real `Replica`: b answers its probes (each after a short
    delay) until it is paused at 0.35; its probes then time out until the machine confirms the
    failure. Its revoke goes unanswered (paused), so the save waits until `revoke_unanswered`:
    by then every lease b took has run out, though it held one while it answered."""
    from catena.chain.replica import Replica
    from catena.coordinator.machine import LEASE_MARGIN_S

    m, b = CoordinatorMachine(), Replica("b", b"b/1", lease_s=1.0)
    b.on_view(View(0, 1, ("a", "b")), 0.0)
    outcomes: list[tuple[float, Probe]] = []  # (when the probe's outcome reaches the machine, probe)

    def send(effects, now):
        for fx in (f for f in effects if isinstance(f, Probe)):
            answers = fx.member == "a" or now < 0.35  # b is paused from 0.35 on
            if answers and fx.member == "b":
                b.on_probe(fx.epoch, fx.nonce, fx.grant, now + 0.01)
            outcomes.append((now + (0.02 if answers else fx.timeout_s), fx))

    send(m.lead(0.0, CoordinatorState(views={0: View(0, 1, ("a", "b"))}).to_dict()), 0.0)
    fail, leased = None, False
    while fail is None:
        due = m.next_deadline()
        if due is not None and all(due < t for t, _ in outcomes):
            send(m.on_timer(due), due)
            continue
        now, fx = min(outcomes, key=lambda o: (o[0], o[1].member))
        outcomes.remove((now, fx))
        leased = leased or b.lease_until > now
        if fx.member == "a":  # a's membership loses b about half a second after b stopped
            out = m.on_probe_answer("a", fx.nonce, "1", now, LinkReport(1, lost=("b",) if now > 0.85 else ()))
        elif now < 0.35 + 0.02:
            out = m.on_probe_answer(fx.member, fx.nonce, "1", now)
        else:
            out = m.on_probe_failed(fx.member, fx.nonce, now)
        fail = next((f for f in out if isinstance(f, Fail)), None)
    assert leased and fail == Fail("b", 2, witness="a")  # a's membership lost it too: two misses confirm it
    assert Revoke("b", 1) in out and not any(isinstance(f, Save) for f in out)
    assert now < b.lease_until + LEASE_MARGIN_S <= m.revoke_unanswered("b")  # it must wait, and long enough
    assert not any(isinstance(f, Save) for f in m.on_revoked("b", False, now + 0.3))
    until = m.revoke_unanswered("b")
    assert m.next_deadline() <= until and not any(isinstance(f, Save) for f in m.on_timer(until - 0.001))
    saves = [f for f in m.on_timer(until) if isinstance(f, Save)]
    assert saves and CoordinatorState.from_dict(saves[0].state).views[0].members == ("a",)


def test_view_notes_name_their_cause_for_the_metrics():
    """The shell counts view changes by cause and logs repairs from the machine's notes."""
    m = CoordinatorMachine()
    m.lead(0.0, CoordinatorState(views={0: View(0, 1, ("a", "b"))}, cluster_id="c").to_dict())

    def events(fx):
        return [(n.event, n.cause, n.member, n.view.epoch if n.view else None) for n in fx
                if isinstance(n, Note) and n.event]

    m.request(1, rq.Register("c", "7"), 0.1)
    assert events(m.on_save_result(True, 0.11)) == [("view_change", "join", "c", 2)]
    m.on_probe_failed("a", 1, 1.1, refused=True)  # the probe the term started with
    nonce = next(f for f in m.on_timer(1.2) if isinstance(f, Probe) and f.member == "a").nonce
    assert Revoke("a", 2) not in m.on_probe_failed("a", nonce, 1.3, refused=True)  # refused: nobody to revoke
    assert events(m.on_save_result(True, 1.4)) == [("view_change", "failure", "a", 3), ("repair", "failure", "a", None)]
