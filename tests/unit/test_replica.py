"""The chain replication machine (catena.chain.replica), one behaviour per test, no event loop.

A small synchronous harness routes the machines' Send effects through FIFO queues (frames go
through the real wire codec), flushes every machine after each delivery as the shell does once
per loop turn, and collects replies. Tests drop or hold messages by kind to build the failure
cases of van Renesse & Schneider and CRAQ.
"""

from __future__ import annotations

from collections import deque

import msgpack
import pytest

from catena.chain import messages
from catena.chain.messages import (
    Ack, Append, Forward, Read, ReadReply, Snapshot, Stale, Sync, WriteReply,
)
from hypothesis import HealthCheck, given, settings, strategies as st

from catena.chain.replica import (
    EXPIRE_ROUNDS, EXPIRE_SAMPLE, LATER, NOT_SERVING, OUTCOME_UNKNOWN, PAST_DEADLINE, RETRY_S, WRITE_TIMEOUT_S,
    Replica,
)
from catena.chain.state import DEL, INCRBY, MSET, PURGE, SET, KVState, valid_op
from catena.effects import FetchView, Persist, PersistSnapshot, Reply, Send
from catena.resp.codec import OK, Error
from catena.view import View

NOW = 1000.0


def wire(msg):
    unpacker = messages.unpacker()
    unpacker.feed(messages.pack(msg))
    return messages.decode(next(unpacker))


class Cluster:
    def __init__(self, *names, now=NOW):
        self.r = {n: Replica(n, f"{n}/1".encode()) for n in names}
        self.queue: deque = deque()  # (src, dst, msg)
        self.replies: dict = {}
        self.fetches: list = []
        self.persisted: dict = {n: [] for n in names}
        self.snapshots: dict = {n: 0 for n in names}
        self.sent: list = []  # every (src, dst, msg) ever sent
        self.now = now
        self.views: list[View] = []

    def add(self, name, replica=None):
        self.r[name] = replica or Replica(name, f"{name}/1".encode())
        self.persisted[name], self.snapshots[name] = [], 0

    def run(self, name, fx):
        for f in fx:
            if type(f) is Send:
                msg = wire(f.msg)
                self.queue.append((name, f.to, msg))
                self.sent.append((name, f.to, msg))
            elif type(f) is Reply:
                self.replies[f.token] = f.value
            elif type(f) is FetchView:
                self.fetches.append((name, f.epoch))
            elif type(f) is Persist:
                self.persisted[name] += list(f.entries)
            elif type(f) is PersistSnapshot:
                self.snapshots[name] += 1
        return fx

    def flush(self):
        for name, r in self.r.items():
            self.run(name, r.flush())

    def view(self, epoch, members, learner=None, to=None):
        v = View(0, epoch, tuple(members), learner)
        self.views.append(v)
        for n in to if to is not None else list(members) + ([learner] if learner else []):
            self.run(n, self.r[n].on_view(v, self.now))
        self.flush()
        return v

    def turn(self, name, *commands):
        """Several client commands in one event-loop turn (one flush)."""
        for token, *args in commands:
            self.run(name, self.r[name].on_client(token, [str(a).encode() for a in args], self.now))
        self.flush()

    def client(self, name, token, *args):
        fx = self.run(name, self.r[name].on_client(token, [a if isinstance(a, bytes) else str(a).encode()
                                                            for a in args], self.now))
        self.flush()
        return fx

    def deliver_one(self):
        src, dst, msg = self.queue.popleft()
        self.run(dst, self.r[dst].on_message(src, msg, self.now))
        self.flush()
        return src, dst, msg

    def settle(self, drop=lambda src, dst, msg: False, hold=lambda src, dst, msg: False, limit=10_000):
        """Deliver until nothing moves; `drop` loses a message, `hold` keeps it queued."""
        held = deque()
        for _ in range(limit):
            self.flush()
            if not self.queue:
                break
            src, dst, msg = self.queue.popleft()
            if drop(src, dst, msg):
                continue
            if hold(src, dst, msg):
                held.append((src, dst, msg))
                continue
            self.run(dst, self.r[dst].on_message(src, msg, self.now))
        else:
            raise AssertionError("messages never settle")
        self.queue.extend(held)

    def history(self, name):
        r = self.r[name]
        return [(e[0], e[1]) for e in r.window]


E = 5  # the epoch of chain3()


def chain3(**kw):
    """a -> b -> c, built as the coordinator builds it (each added as a learner, then
    promoted), synced under epoch E."""
    c = Cluster("a", "b", "c", **kw)
    for epoch, members, learner in ((1, "a", None), (2, "a", "b"), (3, "ab", None), (4, "ab", "c"),
                                    (5, "abc", None)):
        c.view(epoch, tuple(members), learner)
        c.settle()
        if learner:
            c.run(members[-1], c.r[members[-1]].on_timer(c.now))
            assert c.r[members[-1]].learner_caught_up()
    return c


def kinds(c, src=None, dst=None):
    return [type(m).__name__ for s, d, m in c.sent if (src is None or s == src) and (dst is None or d == dst)]


# -- the write path ---------------------------------------------------------------------------


def test_head_assigns_seq_and_answers_only_after_commit():
    c = chain3()
    assert c.client("a", "w1", "SET", "k", "v") == []
    assert "w1" not in c.replies
    a = c.r["a"]
    assert (a.last_epoch, a.last_seq, a.commit_seq) == (E, 1, 0)
    assert a.window[-1][:2] == (E, 1)
    # The Append reaches b, then c (the tail commits), acks flow back; only then the reply.
    c.deliver_one()  # a -> b Append
    assert "w1" not in c.replies
    c.deliver_one()  # b -> c Append
    assert c.r["c"].commit_seq == 1
    assert "w1" not in c.replies
    c.deliver_one()  # c -> b Ack
    assert "w1" not in c.replies
    c.deliver_one()  # b -> a Ack
    assert c.replies["w1"] == OK
    assert c.r["a"].commit_seq == 1


def test_the_tail_tells_the_head_of_a_commit_directly_so_its_client_need_not_wait_for_the_middle():
    c = chain3()
    c.client("a", "w1", "SET", "k", "v")
    c.deliver_one()  # a -> b Append
    c.deliver_one()  # b -> c Append: the tail commits
    acks = [(s, d) for s, d, m in c.queue if type(m) is Ack]
    assert acks == [("c", "b"), ("c", "a")]
    c.queue.remove(next(q for q in c.queue if q[:2] == ("c", "b")))  # the middle's ack is late
    c.deliver_one()  # c -> a
    assert c.replies["w1"] == OK and c.r["a"].commit_seq == 1
    assert c.r["b"].commit_seq == 0  # the middle waits for its own successor's word


def test_under_fsync_always_the_head_hears_of_a_commit_only_through_the_middle():
    """A middle member forwards a batch before its own fsync, so the tail's ack does not say
    the batch is stored there: with `acks_head` off the head waits for the middle's ack."""
    c = chain3()
    c.r["c"].acks_head = False
    c.client("a", "w1", "SET", "k", "v")
    c.deliver_one()  # a -> b
    c.deliver_one()  # b -> c
    assert [(s, d) for s, d, m in c.queue if type(m) is Ack] == [("c", "b")]
    c.settle()
    assert c.replies["w1"] == OK


def test_the_head_takes_a_direct_ack_only_from_the_tail_of_its_own_epoch():
    c = chain3()
    c.client("a", "w1", "SET", "k", "v")
    a = c.r["a"]
    for sender, msg in (("x", Ack(E, 1)), ("c", Ack(E - 1, 1))):  # not a member; an older epoch
        c.run("a", a.on_message(sender, msg, NOW))
        c.flush()
        assert a.commit_seq == 0 and "w1" not in c.replies
    b = c.r["b"]
    c.deliver_one()  # a -> b
    c.run("b", b.on_message("a", Ack(E, 1), NOW))  # a predecessor's ack means nothing
    assert b.commit_seq == 0


def test_in_a_chain_of_two_the_tail_acks_its_predecessor_once():
    c = Cluster("a", "b")
    for epoch, members, learner in ((1, "a", None), (2, "a", "b"), (3, "ab", None)):
        c.view(epoch, tuple(members), learner)
        c.settle()
        if learner:
            c.run("a", c.r["a"].on_timer(c.now))
    c.sent.clear()
    c.client("a", "w", "SET", "k", "v")
    c.settle()
    assert c.replies["w"] == OK and kinds(c, "b") == ["Ack"]


def test_persist_comes_before_the_append_in_a_flush():
    c = chain3()
    c.run("a", c.r["a"].on_client("t", [b"SET", b"k", b"v"], NOW))
    fx = c.r["a"].flush()
    assert [type(f) for f in fx][:2] == [Persist, Send]
    assert type(fx[1].msg) is Append


def test_a_sole_member_commits_and_lets_its_writes_be_seen_only_once_they_are_persisted():
    """A chain of one: its newest write is durable nowhere until the flush persists it, so a
    crash before that flush must not lose anything acknowledged or read (the cluster
    simulation's seed 572 under the old code)."""
    c = Cluster("a")
    c.view(1, ("a",))
    a = c.r["a"]
    c.run("a", a.on_client("w", [b"SET", b"k", b"v"], NOW))
    assert c.run("a", a.on_client("r", [b"GET", b"k"], NOW)) == []  # held, not answered from memory
    assert (a.last_seq, a.commit_seq) == (1, 0)
    assert not c.persisted["a"] and "w" not in c.replies and "r" not in c.replies
    fx = a.flush()
    assert [type(f) for f in fx] == [Persist, Reply, Reply]
    c.run("a", fx)
    assert a.commit_seq == 1 and c.replies == {"w": OK, "r": b"v"}
    assert c.client("a", "r2", "GET", "k") and c.replies["r2"] == b"v"  # nothing pending: at once


def test_writes_of_one_turn_leave_in_one_append():
    c = chain3()
    for i in range(5):
        c.run("a", c.r["a"].on_client(i, [b"SET", b"k%d" % i, b"v"], NOW))
    c.flush()
    appends = [m for s, d, m in c.sent if type(m) is Append and m.entries]
    assert len(appends) == 1 and [e[1] for e in appends[0].entries] == [1, 2, 3, 4, 5]


def test_tail_commits_and_acks_trim_the_sent_lists():
    c = chain3()
    for i in range(3):  # one event-loop turn: one Append
        c.run("a", c.r["a"].on_client(i, [b"INCR", b"n"], NOW))
    c.flush()
    assert c.r["a"].sent_list_len() == 3
    c.deliver_one()  # a -> b
    assert c.r["b"].sent_list_len() == 3
    c.deliver_one()  # b -> c: the tail commits on apply
    assert c.r["c"].commit_seq == 3 and c.r["c"].sent_list_len() == 0
    c.deliver_one()  # c -> b Ack 3
    assert c.r["b"].sent_list_len() == 0
    assert c.r["a"].sent_list_len() == 3
    c.settle()
    assert c.r["a"].sent_list_len() == 0
    assert [c.replies[i] for i in range(3)] == [1, 2, 3]


def test_a_write_to_a_non_head_is_forwarded_and_answered_there():
    c = chain3()
    c.client("c", "w", "SET", "k", "v")
    assert kinds(c, "c", "a") == ["Forward"]
    c.settle()
    assert c.replies["w"] == OK
    assert ("a", "c") in [(s, d) for s, d, m in c.sent if type(m) is WriteReply]


# -- deadlines of forwarded writes ------------------------------------------------------------


def test_a_forward_carries_its_deadline_and_old_frames_without_one_still_decode():
    c = chain3()
    c.client("c", "w", "SET", "k", "v")
    fwd = c.queue[0][2]
    assert fwd.deadline_ms == int((NOW + WRITE_TIMEOUT_S) * 1000)
    old = msgpack.packb((6, fwd.epoch, fwd.token, fwd.rid, fwd.args), use_bin_type=True)
    unpacker = messages.unpacker()
    unpacker.feed(old)
    assert messages.decode(next(unpacker)) == fwd._replace(deadline_ms=0)


def test_a_forward_reaching_the_head_after_its_deadline_is_refused_and_not_applied():
    c = chain3()
    c.client("c", "w", "SET", "k", "late")
    src, dst, fwd = c.queue.popleft()  # held in a cut link
    later = NOW + WRITE_TIMEOUT_S + 0.001
    c.run(dst, c.r[dst].on_message(src, fwd, later))
    c.settle()
    assert c.replies["w"] == PAST_DEADLINE
    assert all(r.last_seq == 0 and r.state.get(b"k", 0) is None for r in c.r.values())


def test_the_forwarding_member_stops_resending_at_the_deadline_and_says_the_outcome_is_unknown():
    c = chain3()
    c.client("c", "w", "SET", "k", "v")
    c.queue.clear()  # the head never hears of it (or its reply is lost)
    fx = c.r["c"].on_timer(NOW + WRITE_TIMEOUT_S - 0.5)
    assert [type(f.msg) for f in fx if type(f) is Send] == [Forward]  # still within: resent
    fx = c.run("c", c.r["c"].on_timer(NOW + WRITE_TIMEOUT_S + 0.001))
    assert not [f for f in fx if type(f) is Send] and c.replies["w"] == OUTCOME_UNKNOWN
    assert not c.r["c"].forwarded
    assert not [f for f in c.r["c"].on_timer(NOW + WRITE_TIMEOUT_S + 2) if type(f) is Send]


def test_a_late_resend_of_an_applied_forward_gets_its_reply_not_a_refusal():
    c = chain3()
    c.client("c", "w", "INCR", "n")
    c.settle(drop=lambda s, d, m: type(m) is WriteReply)  # applied and committed; the reply is lost
    fx = c.r["c"].on_timer(NOW + 1.0)
    (resend,) = [f.msg for f in fx if type(f) is Send]
    c.run("a", c.r["a"].on_message("c", resend, NOW + WRITE_TIMEOUT_S + 1))
    c.settle()
    assert c.replies["w"] == 1 and c.r["a"].state.get(b"n", 0) == b"1"


def test_a_new_head_does_not_apply_its_own_forward_past_the_deadline():
    c = chain3()
    c.client("b", "w", "SET", "k", "v")
    c.queue.clear()  # the old head never got it
    del c.r["a"]
    c.now = NOW + WRITE_TIMEOUT_S + 0.001
    c.view(E + 1, ("b", "c"))
    c.settle()
    assert c.replies["w"] == PAST_DEADLINE and c.r["b"].state.get(b"k", 0) is None


# -- reads (CRAQ) -----------------------------------------------------------------------------


def test_clean_read_is_answered_locally_dirty_read_goes_to_the_tail():
    c = chain3()
    c.client("a", "w1", "SET", "k", "old")
    c.settle()
    c.client("a", "w2", "SET", "k", "new")
    c.deliver_one()  # a -> b: b now holds an uncommitted write of k
    assert c.r["b"].dirty == {b"k": 1}
    before = len(c.sent)
    fx = c.client("b", "r-clean", "GET", "other")
    assert fx == [Reply("r-clean", None)]
    fx = c.client("b", "r-dirty", "GET", "k")
    assert [type(f) for f in fx] == [Send] and fx[0].to == "c" and type(fx[0].msg) is Read
    assert len(c.sent) == before + 1
    c.settle()
    # The tail answered with committed data only: the old value or the new one once committed.
    assert c.replies["r-dirty"] in (b"old", b"new")
    fx = c.client("b", "r-again", "GET", "k")
    assert fx == [Reply("r-again", b"new")]  # clean again after the ack


def test_an_ack_short_of_the_last_entry_cleans_only_the_keys_the_acked_entries_wrote():
    """A key stays dirty while any uncommitted entry wrote it: an ack that commits part of a
    middle member's sent list un-dirties the keys of that part only, entry by entry; one that
    commits the rest leaves nothing dirty."""
    b = Replica("b", b"b/1")
    b.on_view(View(0, 1, ("a", "b", "c")), NOW)
    entries = ((1, 1, 0, None, (SET, b"k1", b"v", None, 0)), (1, 2, 0, None, (SET, b"k2", b"v", None, 0)),
               (1, 3, 0, None, (MSET, (b"k1", b"w", b"k2", b"w"))))
    b.on_message("a", Append(1, 0, entries), NOW)
    b.flush()
    assert b.dirty == {b"k1": 2, b"k2": 2}
    b.on_message("c", Ack(1, 1), NOW)
    assert b.dirty == {b"k1": 1, b"k2": 2}
    b.on_message("c", Ack(1, 2), NOW)
    assert b.dirty == {b"k1": 1, b"k2": 1}
    b.on_message("c", Ack(1, 3), NOW)
    assert b.dirty == {} and not b.dirtied and b.commit_seq == 3


def test_read_now_answers_exactly_the_reads_on_client_would_answer_at_once():
    """The shell's fast path for reads: `read_now` gives the value `on_client` would reply with
    in the same call, and LATER for everything else (dirty keys, writes, blocking pops, a
    sole member's unpersisted writes, no lease)."""
    c = chain3()
    c.client("a", "w1", "SET", "k", "old")
    c.settle()
    c.client("a", "w2", "SET", "k", "new")
    c.deliver_one()  # b holds an uncommitted write of k
    b = c.r["b"]
    assert b.read_now([b"GET", b"other"], NOW, NOW) is None  # a missing key: nil, answered here
    assert b.read_now([b"GET", b"k"], NOW, NOW) is LATER  # dirty: the tail answers
    assert b.read_now([b"MGET", b"other", b"k"], NOW, NOW) is LATER
    assert b.read_now([b"SET", b"x", b"1"], NOW, NOW) is LATER
    assert b.read_now([b"BLPOP", b"l", b"0"], NOW, NOW) is LATER
    assert b.read_now([b"CATENA.REQ", b"c", b"1", b"GET", b"other"], NOW, NOW) is LATER
    assert b.read_now([b"SORT", b"other", b"STORE", b"d"], NOW, NOW) is LATER  # a read's write form
    assert b.read_now([b"SORT", b"other"], NOW, NOW) == []
    assert b.read_now([b"GET"], NOW, NOW) == Error("ERR wrong number of arguments for 'get' command")
    assert c.r["c"].read_now([b"GET", b"k"], NOW, NOW) == b"old"  # the tail: committed data
    for name, args in (("b", [b"GET", b"other"]), ("b", [b"GET", b"k"]), ("c", [b"GET", b"k"])):
        value = c.r[name].read_now(args, NOW, NOW)
        fx = c.r[name].on_client("t", args, NOW)
        assert (fx == [Reply("t", value)]) == (value is not LATER)
    c.settle()
    assert b.read_now([b"GET", b"k"], NOW, NOW) == b"new"  # clean again after the ack

    sole = Replica("s", b"s/1")
    sole.on_view(View(0, 1, ("s",)), NOW)
    sole.flush()
    sole.on_client("w", [b"SET", b"k", b"v"], NOW)
    assert sole.read_now([b"GET", b"k"], NOW, NOW) is LATER  # not persisted yet
    sole.flush()
    assert sole.read_now([b"GET", b"k"], NOW, NOW) == b"v"

    leased = Replica("l", b"l/1", lease_s=0.5, managed=True)
    leased.on_view(View(0, 1, ("l",)), NOW)
    leased.flush()
    assert leased.read_now([b"GET", b"k"], NOW, NOW) is LATER  # no lease yet


def test_no_read_is_also_a_write_a_blocking_command_or_a_request():
    """`read_now` takes a name in READS for a read (unless WRITE_FORMS says this form writes)."""
    from catena.chain import blocking, ops
    from catena.chain.replica import REQ
    assert not set(ops.READS) & (set(blocking.COMMANDS) | {REQ})
    assert set(ops.READS) & set(ops.WRITES) <= set(ops.WRITE_FORMS) <= set(ops.READS)


def test_tail_answers_reads_itself():
    c = chain3()
    c.client("a", "w", "SET", "k", "v")
    c.deliver_one()
    c.deliver_one()
    assert c.client("c", "r", "GET", "k") == [Reply("r", b"v")]


def test_the_tail_answers_a_read_that_may_see_an_unpersisted_entry_only_after_persisting_it():
    """The tail commits what it applies, as a sole member does: a read served between applying
    an Append and persisting it would let a client see what a crash of every member could lose
    (under --fsync always, the shell answers it after the batch's fdatasync)."""
    c = chain3()
    c.client("a", "w", "SET", "k", "v")
    c.deliver_one()  # a -> b
    src, dst, msg = c.queue.popleft()  # b -> c: applied, not flushed (persisted) yet
    tail = c.r["c"]
    c.run("c", tail.on_message(src, msg, c.now))
    assert tail.read_now([b"GET", b"k"], NOW, NOW) is LATER
    assert c.run("c", tail.on_client("r", [b"GET", b"k"], NOW)) == [] and "r" not in c.replies
    fx = tail.flush()
    assert [type(f) for f in fx][0] is Persist and type(fx[-1]) is Reply
    c.run("c", fx)
    assert c.replies["r"] == b"v"
    assert tail.read_now([b"GET", b"k"], NOW, NOW) == b"v"  # nothing unpersisted: at once


# -- failures (planned removals) --------------------------------------------------------------


def test_head_failure_successor_continues_numbering_with_the_new_epoch():
    c = chain3()
    c.client("a", "w1", "SET", "k", "1")
    c.settle()
    # The old head applies a write it never forwards (it fails right after).
    c.run("a", c.r["a"].on_client("lost", [b"SET", b"k", b"lost"], NOW))
    assert c.r["a"].last_seq == 2
    del c.r["a"]
    c.queue.clear()
    c.view(E + 1, ("b", "c"))
    c.settle()
    assert c.r["b"].is_head()
    c.client("b", "w2", "SET", "k", "2")
    c.settle()
    assert c.replies["w2"] == OK
    for n in ("b", "c"):
        assert c.history(n)[-2:] == [(E, 1), (E + 1, 2)]  # not the old head's (E, 2)
        assert c.r[n].state.get(b"k", 0) == b"2"


def test_the_old_heads_unforwarded_entry_is_never_mixed_in_when_it_rejoins():
    c = chain3()
    c.client("a", "w1", "SET", "k", "1")
    c.settle()
    c.run("a", c.r["a"].on_client("lost", [b"SET", b"k", b"lost"], NOW))
    c.r["a"].flush()  # persisted and sent, but the frame is lost with the connection
    c.queue.clear()
    c.view(E + 1, ("b", "c"), to=["b", "c"])
    c.settle()
    c.client("b", "w2", "SET", "k", "2")
    c.settle()
    # a comes back as a learner behind c; its history (1, 2) is not a prefix of the chain's.
    c.view(E + 2, ("b", "c"), learner="a")
    c.settle()
    assert any(type(m) is Snapshot for s, d, m in c.sent if d == "a")
    assert c.snapshots["a"] >= 1
    a = c.r["a"]
    assert (a.last_epoch, a.last_seq) == (E + 1, 2)
    assert a.state.get(b"k", 0) == b"2"
    assert "lost" not in c.replies or isinstance(c.replies["lost"], Error)


def test_tail_failure_predecessor_commits_its_sent_list_and_answers_clients():
    c = chain3()
    c.turn("a", ("w1", "INCR", "n"), ("w2", "INCR", "n"))
    c.deliver_one()  # a -> b; b -> c is lost with the tail
    c.queue.clear()
    del c.r["c"]
    assert c.r["b"].sent_list_len() == 2
    c.view(E + 1, ("a", "b"))
    assert c.r["b"].is_tail() and c.r["b"].commit_seq == 2 and c.r["b"].sent_list_len() == 0
    c.settle()
    assert c.replies["w1"] == 1 and c.replies["w2"] == 2
    assert c.r["a"].sent_list_len() == 0


def test_middle_failure_successor_syncs_and_predecessor_resends_from_its_last_seq():
    c = chain3()
    c.client("a", "w1", "SET", "k", "1")
    c.settle()
    c.turn("a", ("w2", "SET", "k", "2"), ("w3", "SET", "k", "3"))
    c.deliver_one()  # a -> b carries 2 and 3; b dies before forwarding them
    c.queue.clear()
    del c.r["b"]
    c.view(E + 1, ("a", "c"))
    syncs = [m for s, d, m in c.sent if s == "c" and d == "a" and type(m) is Sync]
    assert syncs[-1] == Sync(E + 1, E, 1)
    c.settle()
    resent = [m for s, d, m in c.sent if s == "a" and d == "c" and type(m) is Append and m.epoch == E + 1]
    # (both ends start the handshake under the new epoch, so the resend may come twice; the
    # store applies it once)
    assert [e[1] for e in resent[0].entries] == [2, 3]
    assert c.history("c") == [(E, 1), (E, 2), (E, 3)]
    assert c.replies["w2"] == OK and c.replies["w3"] == OK
    assert c.r["c"].last_seq == 3


def test_views_out_of_order_never_regress():
    c = chain3()
    c.view(E + 2, ("a", "c"), to=["a"])
    c.run("a", c.r["a"].on_view(View(0, E + 1, ("a", "b", "c")), NOW))
    assert c.r["a"].epoch == E + 2 and c.r["a"].view.members == ("a", "c")


# -- adding a member ----------------------------------------------------------------------------


def test_learner_added_during_writes_is_promoted_and_new_tail_waits_for_its_barrier():
    c = chain3()
    for i in range(5):
        c.client("a", f"w{i}", "INCR", "n")
    c.settle()
    c.add("d")
    c.view(E + 1, ("a", "b", "c"), learner="d")
    c.client("a", "w5", "INCR", "n")  # writes keep flowing while d syncs
    c.settle()
    assert c.replies["w5"] == 6
    assert c.r["d"].last_seq == 6 and not c.r["d"].serving_reads()
    assert c.r["c"].learner_caught_up()
    # d is promoted, but c learns the new view late: d must not serve reads before it synced
    # with c under the new epoch.
    c.view(E + 2, ("a", "b", "c", "d"), to=["d"])
    assert c.r["d"].is_tail()
    assert c.client("d", "r", "GET", "n") == [Reply("r", NOT_SERVING)]
    c.settle()  # d's Sync under epoch 3 makes c fetch the view
    assert ("c", E + 2) in c.fetches
    c.view(E + 2, ("a", "b", "c", "d"), to=["a", "b", "c"])
    c.settle()
    assert c.r["d"].serving_reads()
    assert c.client("d", "r2", "GET", "n") == [Reply("r2", b"6")]
    c.client("a", "w6", "INCR", "n")
    c.settle()
    assert c.replies["w6"] == 7 and c.r["d"].commit_seq == 7


def test_learner_is_not_caught_up_while_the_tail_itself_is_unsynced():
    """Seed 158 of the simulator: a new tail that has not synced with its predecessor must not
    hand its (stale) commit point on to a learner."""
    c = chain3()
    c.client("a", "w1", "SET", "k", "1")
    c.settle()
    c.add("d")
    c.view(E + 1, ("a", "b", "c"), learner="d")
    c.settle(hold=lambda s, d, m: s == "b" and d == "c")  # b's messages to c are slow
    c.queue = deque(x for x in c.queue if not (x[0] == "b" and x[1] == "c"))
    c.run("c", c.r["c"].on_link("b", False, NOW))
    assert c.r["c"].learner_acked >= 0
    assert not c.r["c"].learner_caught_up()
    c.run("c", c.r["c"].on_link("b", True, NOW))
    c.settle()
    c.run("c", c.r["c"].on_timer(NOW))
    assert c.r["c"].learner_caught_up()


def test_the_tail_says_its_learner_caught_up_only_once_it_holds_every_acknowledged_write():
    """A tail that acknowledged writes on its own before the hand-over began must wait for its
    learner to hold them too: promoted earlier, the learner could be all that is left of the
    chain (the old tail cut off and removed) without writes clients were told are stored (the
    chain simulation's seed 52)."""
    c = chain3()
    c.add("d")
    c.view(E + 1, ("a", "b", "c"), learner="d")
    learner = lambda s, d, m: "d" in (s, d)
    c.settle(hold=learner)
    for i in range(3):
        c.client("a", f"w{i}", "SET", f"k{i}", "v")
    c.settle(hold=learner)
    tail = c.r["c"]
    assert tail.commit_seq == tail.last_seq and {c.replies[f"w{i}"] for i in range(3)} == {OK}
    sync = next(q for q in c.queue if q[0] == "d" and type(q[2]) is Sync)
    c.run("c", tail.on_message("d", sync[2], NOW))  # the learner is linked, and not far behind:
    assert c.run("c", tail.on_message("d", Ack(E + 1, tail.commit_seq - 2), NOW)) == []
    assert tail.handing_over and not tail.learner_caught_up()  # the hand-over begins, unsaid
    c.client("a", "w3", "SET", "k3", "v")
    c.settle(hold=learner)
    assert tail.commit_seq == tail.last_seq - 1 and "w3" not in c.replies  # the learner's to ack now
    fx = tail.on_message("d", Ack(E + 1, tail.last_seq - 1), NOW)
    assert [type(f).__name__ for f in fx] == ["LearnerCaughtUp"] and tail.learner_caught_up()
    assert tail.on_message("d", Ack(E + 1, tail.last_seq), NOW) == [] and tail.commit_seq == tail.last_seq


def test_commits_on_apply_is_recomputed_at_every_view_and_at_the_hand_over():
    """`commits_on_apply` is a flag kept by `_recommit`: each change of the view or of
    `handing_over` must recompute it (the tail's, a new tail's, a head left alone's)."""
    c = chain3()
    flags = lambda: {n: r.commits_on_apply for n, r in c.r.items()}
    assert flags() == {"a": False, "b": False, "c": True}
    c.add("d")
    c.view(E + 1, ("a", "b", "c"), learner="d")
    c.client("a", "w1", "INCR", "n")
    c.settle()
    assert c.r["c"].handing_over and flags() == {"a": False, "b": False, "c": False, "d": False}
    c.view(E + 2, ("a", "b", "c", "d"))
    c.settle()
    assert flags() == {"a": False, "b": False, "c": False, "d": True}
    c.view(E + 3, ("a",), to=["a"])
    assert flags()["a"]
    c.client("a", "w2", "INCR", "n")
    assert c.replies["w2"] == 2 and c.r["a"].commit_seq == c.r["a"].last_seq


def test_a_tail_handing_over_commits_only_what_its_learner_acked():
    """Seeds 562 and 906 of the simulator: a lone member extended by a learner must not
    acknowledge a write the learner lacks, or removing it loses the write."""
    c = Cluster("a")
    c.view(1, ("a",))
    c.client("a", "w0", "SET", "k", "0")
    assert c.replies["w0"] == OK  # a one-member chain commits at once
    c.add("d")
    c.view(2, ("a",), learner="d")
    c.settle()
    c.run("a", c.r["a"].on_timer(NOW))
    assert c.r["a"].learner_caught_up() and c.r["a"].handing_over
    c.client("a", "w1", "SET", "k", "1")
    assert "w1" not in c.replies  # not before d has it
    assert c.client("a", "r", "GET", "k") == [Reply("r", NOT_SERVING)]  # k is dirty
    c.settle()
    assert c.replies["w1"] == OK and c.r["d"].last_seq == 2
    # The coordinator promotes d, then removes a: d holds every acknowledged write.
    c.view(4, ("d",), to=["d"])
    assert c.r["d"].state.get(b"k", 0) == b"1"


# -- epochs ----------------------------------------------------------------------------------


def test_stale_epoch_messages_are_refused_and_newer_ones_fetch_the_view():
    c = chain3()
    c.view(E + 1, ("a", "b", "c"), to=["b"])
    c.queue.clear()
    b = c.r["b"]
    entry = (E, 1, 1000000, None, (SET, b"k", b"x", None, 0))
    fx = b.on_message("a", Append(E, 0, (entry,)), NOW)
    assert fx == [Send("a", Stale(E + 1))]
    assert b.last_seq == 0
    fx = c.r["a"].on_message("b", Stale(E + 1), NOW)
    assert fx == [FetchView(E + 1)]
    fx = c.r["a"].on_message("b", Ack(E + 4, 0), NOW)
    assert fx == [FetchView(E + 4)]
    fx = b.on_message("c", Read(E + 6, 1, (b"GET", b"k")), NOW)
    assert fx == [FetchView(E + 6), Send("c", ReadReply(1, NOT_SERVING))]
    assert c.r["a"].epoch == E  # it fetches the view, it never guesses one


def test_messages_from_a_member_that_is_not_our_neighbour_are_ignored():
    c = chain3()
    entry = (E, 1, 1000000, None, (SET, b"k", b"x", None, 0))
    assert c.r["c"].on_message("a", Append(E, 0, (entry,)), NOW) == []
    assert c.r["c"].last_seq == 0


def test_gap_in_append_triggers_a_resync():
    c = chain3()
    c.client("a", "w1", "SET", "k", "1")
    c.settle()
    c.turn("a", ("w2", "SET", "k", "2"), ("w3", "SET", "k", "3"))
    lost = c.queue.popleft()  # the Append of seq 2 and 3 is lost ...
    assert [e[1] for e in lost[2].entries] == [2, 3]
    c.client("a", "w4", "SET", "k", "4")  # ... and seq 4 arrives on a new connection
    src, dst, msg = c.queue.popleft()
    fx = c.r["b"].on_message(src, msg, NOW)
    assert fx == [Send("a", Sync(E, E, 1))]
    assert c.r["b"].last_seq == 1  # 4 is not applied over the gap
    c.run("b", fx)
    c.settle()
    assert [c.replies[f"w{i}"] for i in (2, 3, 4)] == [OK, OK, OK]
    assert c.history("c")[-3:] == [(E, 2), (E, 3), (E, 4)]


def test_duplicate_entries_after_a_reconnect_are_applied_once():
    c = chain3()
    c.client("a", "w1", "INCR", "n")
    c.settle()
    c.run("a", c.r["a"].on_link("b", False, NOW))
    c.run("a", c.r["a"].on_link("b", True, NOW))
    c.settle()  # b re-syncs; a resends nothing twice into b's store
    assert c.r["b"].state.get(b"n", 0) == b"1"
    for m in [m for s, d, m in c.sent if type(m) is Append and m.entries]:
        c.run("b", c.r["b"].on_message("a", m, NOW))  # old frames delivered again
    assert c.r["b"].state.get(b"n", 0) == b"1"


# -- request ids --------------------------------------------------------------------------------


def test_retried_request_id_gets_the_original_reply_and_applies_once():
    c = chain3()
    req = ["CATENA.REQ", "cl", "7", "INCR", "n"]
    c.client("a", "t1", *req)
    c.settle()
    assert c.replies["t1"] == 1
    c.client("a", "t2", *req)  # the reply was lost: the client retries
    assert c.replies["t2"] == 1
    c.settle()
    assert c.r["c"].state.get(b"n", 0) == b"1" and c.r["a"].last_seq == 1
    # Retried at a new head after the old one failed: the dedup table travelled with the data.
    del c.r["a"]
    c.queue.clear()
    c.view(E + 1, ("b", "c"))
    c.settle()
    c.client("b", "t3", *req)
    c.settle()
    assert c.replies["t3"] == 1 and c.r["c"].state.get(b"n", 0) == b"1"


def test_retry_of_an_uncommitted_request_waits_for_the_commit():
    c = chain3()
    req = ["CATENA.REQ", "cl", "1", "INCR", "n"]
    c.client("a", "t1", *req)
    c.client("a", "t2", *req)
    assert c.r["a"].last_seq == 1
    c.settle()
    assert c.replies["t1"] == 1 and c.replies["t2"] == 1


def test_forwarded_write_retried_after_a_head_change_applies_once():
    c = chain3()
    c.client("c", "w", "INCR", "n")
    src, _, fwd = c.queue.popleft()
    c.run("a", c.r["a"].on_message(src, fwd, NOW))
    c.flush()
    c.deliver_one()  # a -> b Append
    c.queue.clear()  # the head fails before anything else gets out
    del c.r["a"]
    c.view(E + 1, ("b", "c"))
    c.settle()
    assert c.replies["w"] == 1
    assert c.r["c"].state.get(b"n", 0) == b"1"


# -- snapshots -----------------------------------------------------------------------------------


def learner_past_the_window(monkeypatch) -> Cluster:
    """A chain a, b, c whose six writes are gone from a window of two, and a learner d joining."""
    from catena.chain import replica as replica_module
    monkeypatch.setattr(replica_module, "WINDOW", 2)
    c = chain3()
    for i in range(6):
        c.client("a", f"w{i}", "SET", f"k{i}", "v")
    c.settle()
    c.add("d")
    c.view(E + 1, ("a", "b", "c"), learner="d")
    return c


def test_snapshot_when_the_entries_are_gone_from_the_window(monkeypatch):
    c = learner_past_the_window(monkeypatch)
    c.settle()
    assert any(type(m) is Snapshot for s, d, m in c.sent if d == "d")
    assert c.r["d"].state.data == c.r["c"].state.data
    assert c.r["d"].state.dedup == c.r["c"].state.dedup
    assert (c.r["d"].last_epoch, c.r["d"].last_seq) == (E, 6)


@pytest.mark.parametrize("backlog, snapshot", [(10_000, False), (300, True)])
def test_a_learner_further_behind_than_the_resend_bound_gets_a_snapshot(monkeypatch, backlog, snapshot):
    """The window resends what a successor misses only up to RESEND_BYTES of keys and values
    (as Redis's replication backlog); further behind, a Snapshot, which the shell packs in a
    child and streams, instead of queueing the whole window ahead of the tail's acks."""
    from catena.chain import replica as replica_module
    monkeypatch.setattr(replica_module, "RESEND_BYTES", backlog)
    c = chain3()
    for i in range(6):
        c.client("a", f"w{i}", "SET", f"k{i}", "v" * 40)
    c.settle()
    c.add("d")
    c.view(E + 1, ("a", "b", "c"), learner="d")
    c.settle()
    to_d = [type(m) for s, d, m in c.sent if d == "d"]
    assert (Snapshot in to_d) is snapshot and (Append in to_d) is not snapshot
    assert c.r["d"].state.data == c.r["c"].state.data
    assert (c.r["d"].last_epoch, c.r["d"].last_seq) == (E, 6)


def test_the_resend_bound_is_counted_only_as_far_as_it_reaches(monkeypatch):
    """A new learner's Sync from the start of a long window of small entries: the tail counts the
    entries' bytes only until the bound is passed (walking all 37,500 of a 300,000-key chain held
    its loop 60 ms), and a Sync from near the end gets exactly the entries after it."""
    from catena.chain import replica as replica_module
    monkeypatch.setattr(replica_module, "RESEND_BYTES", 400)
    counted = []
    payload = replica_module._payload
    monkeypatch.setattr(replica_module, "_payload", lambda op: counted.append(op) or payload(op))
    c = chain3()
    for i in range(60):
        c.client("a", f"w{i}", "SET", f"k{i}", "v" * 40)
    c.settle()
    middle = c.r["b"]  # (its window holds every entry since seq 1)
    counted.clear()
    assert type(middle.on_message("c", Sync(E, 0, 0), NOW)[0].msg) is Snapshot
    assert 0 < len(counted) <= 4  # 400 bytes: 4 entries of 106, not 60
    middle.snapshot_out = None
    fx = middle.on_message("c", Sync(E, E, 57), NOW)
    assert [e[1] for f in fx for e in f.msg.entries] == [58, 59, 60]


def test_snapshot_carries_the_dedup_table():
    state = KVState()
    state.apply((INCRBY, b"n", 5), 0)
    state.remember((b"cl", 3), 1, 5, b"n")
    loaded = KVState.load(state.dump())
    assert loaded.seen((b"cl", 3)) == (1, 5, b"n")  # with the key it wrote: it moves with its slot


# -- expiry --------------------------------------------------------------------------------------


def test_only_the_head_purges_expired_keys():
    c = chain3()
    c.client("a", "w", "SET", "k", "v", "PX", "100")
    c.settle()
    later = NOW + 1.0
    for n in ("b", "c"):
        c.run(n, c.r[n].on_timer(later))
        c.flush()
        assert c.r[n].last_seq == 1  # non-heads never delete on their own ...
        assert c.r[n].state.data.get(b"k") == b"v"
        assert c.r[n].state.get(b"k", int(later * 1000)) is None  # ... but hide the key
    c.run("a", c.r["a"].on_timer(later))
    c.flush()
    assert c.r["a"].window[-1][4] == (PURGE, (b"k",))
    c.settle()
    for n in ("a", "b", "c"):
        assert b"k" not in c.r[n].state.data and c.r[n].last_seq == 2


def _tick_all(c, now):
    for n in sorted(c.r):
        c.run(n, c.r[n].on_timer(now))
    c.settle()


def _states(c):
    return [(c.r[n].state.data, c.r[n].state.expires) for n in sorted(c.r)]


def test_active_expiry_purges_100k_keys_due_at_once_in_a_few_bounded_ticks():
    c = chain3()
    n = 100_000
    for start in range(0, n, 10_000):
        c.turn("a", *((f"w{i}", "SET", f"k{i}", "v", "PX", "500") for i in range(start, start + 10_000)))
        c.settle()
    c.client("a", "live", "SET", "live", "v", "EX", "3600")  # not due: never purged
    c.settle()
    assert all(len(c.r[m].state.expires) == n + 1 for m in c.r)
    first = c.r["a"].last_seq
    now, ticks = NOW + 1.0, 0
    while any(len(c.r[m].state.data) > 1 for m in c.r):
        before = c.r["a"].last_seq
        _tick_all(c, now)
        purges = [e[4] for e in c.r["a"].window if e[1] > before]
        assert all(p[0] == PURGE for p in purges)
        assert len(purges) <= EXPIRE_ROUNDS and all(len(p[1]) <= EXPIRE_SAMPLE for p in purges)  # bounded work
        assert len({len(p[1]) for p in purges}) <= 2  # full samples (the last one may be short)
        assert _states(c)[0] == _states(c)[1] == _states(c)[2]  # every member holds the same keys
        now, ticks = now + 0.1, ticks + 1
        assert ticks <= 20, "not purged within 2 s of ticks"
    assert ticks <= (n + EXPIRE_SAMPLE * EXPIRE_ROUNDS - 1) // (EXPIRE_SAMPLE * EXPIRE_ROUNDS) + 1
    assert c.r["a"].last_seq - first == -(-n // EXPIRE_SAMPLE)  # 1,000 keys per PURGE entry
    for m in c.r:
        assert list(c.r[m].state.data) == [b"live"]
        assert len(c.r[m].state._heap) <= 1  # the heap does not keep purged deadlines anywhere


def test_a_sparse_expired_sample_ends_the_cycle_for_this_tick():
    """As Redis's cycle: when at most a quarter of a sample was expired (the rest were stale
    deadlines: keys since deleted or given another TTL), the head stops for this tick."""
    c = chain3()
    keys = EXPIRE_SAMPLE * 3
    c.turn("a", *((f"w{i}", "SET", f"k{i}", "v", "PX", "500") for i in range(keys)))
    c.turn("a", *((f"p{i}", "PERSIST", f"k{i}") for i in range(keys) if i % 5))  # 4 in 5 stale
    c.settle()
    before = c.r["a"].last_seq
    _tick_all(c, NOW + 1.0)
    assert c.r["a"].last_seq == before + 1  # one sample, 200 expired of 1,000: no second round
    _tick_all(c, NOW + 1.1)
    _tick_all(c, NOW + 1.2)
    assert all(len(c.r[m].state.data) == keys - keys // 5 for m in c.r)
    assert _states(c)[0] == _states(c)[1] == _states(c)[2]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(["SET", "SETPX", "DEL", "PEXPIRE", "PERSIST", "TICK"]),
                          st.integers(0, 7), st.integers(1, 400)), max_size=60))
def test_members_hold_identical_states_whatever_expires_when(steps):
    c = chain3()
    for i, (cmd, k, ms) in enumerate(steps):
        key = f"k{k}"
        if cmd == "TICK":
            c.now += ms / 1000
            _tick_all(c, c.now)
            continue
        args = {"SET": ("SET", key, "v"), "SETPX": ("SET", key, "v", "PX", ms), "DEL": ("DEL", key),
                "PEXPIRE": ("PEXPIRE", key, ms), "PERSIST": ("PERSIST", key)}[cmd]
        c.client("a", f"t{i}", *args)
        c.settle()
        assert _states(c)[0] == _states(c)[1] == _states(c)[2]
    c.now += 1.0
    _tick_all(c, c.now)
    assert _states(c)[0] == _states(c)[1] == _states(c)[2]
    for m in c.r:  # everything due was purged, on every member
        assert all(d > int(c.now * 1000) for d in c.r[m].state.expires.values())


def test_purge_entries_of_older_logs_still_apply():
    s = KVState()
    s.apply((SET, b"k", b"v", 5, 0), 0)
    s.apply((SET, b"j", b"v", 5, 0), 0)
    assert valid_op((PURGE, b"k")) and valid_op((PURGE, (b"j",)))
    assert not valid_op((PURGE, ())) and not valid_op((PURGE, (b"j", 1)))
    assert s.apply((PURGE, b"k"), 10) == 1 and s.apply((PURGE, (b"j", b"none")), 10) == 1
    assert s.data == {}


def test_expiry_deadline_is_stamped_by_the_head():
    c = chain3()
    c.client("b", "w", "SET", "k", "v", "EX", "10")
    c.settle()
    deadlines = {c.r[n].state.expires[b"k"] for n in ("a", "b", "c")}
    assert deadlines == {int(NOW * 1000) + 10_000}


# -- restart ------------------------------------------------------------------------------------


def test_restart_replays_the_log_and_rejoins_without_a_snapshot():
    c = chain3()
    for i in range(3):
        c.client("a", f"w{i}", "INCR", "n")
    c.settle()
    log = list(c.persisted["c"])
    c.r["c"] = Replica("c", b"c/2", KVState(), (0, 0), log, epoch=E)
    c.view(E, ("a", "b", "c"), to=["c"])
    c.settle()
    assert not any(type(m) is Snapshot for s, d, m in c.sent)
    assert c.r["c"].state.get(b"n", 0) == b"3" and c.r["c"].last_seq == 3


def test_delete_reply_counts_only_live_keys():
    s = KVState()
    s.apply((SET, b"k", b"v", 5, 0), 0)
    assert s.apply((DEL, (b"k",)), 10) == 0


def test_restart_skips_log_entries_the_snapshot_already_holds():
    """The shell may snapshot between a turn's applies and its flush, so the log can repeat
    entries the snapshot covers; replaying them again would count an INCR twice."""
    entries = [(E, s, 1000000 + s, None, (INCRBY, b"n", 1)) for s in (1, 2, 3)]
    state = KVState()
    for e in entries[:2]:
        state.apply(e[4], e[2])
    r = Replica("c", b"c/2", state, (E, 2), entries[1:], epoch=E)
    assert r.state.get(b"n", 0) == b"3"
    assert (r.last_epoch, r.last_seq) == (E, 3)
    assert [e[1] for e in r.window] == [3]


def test_request_watermark_bounds_the_dedup_table_and_refuses_answered_ids():
    """RIFL's watermark: a client says the lowest request it still awaits; replies below it are
    forgotten, and a request below it is refused rather than applied a second time."""
    from catena.chain.state import KVState, INCRBY

    state = KVState()
    for n in range(1, 201):
        state.apply((INCRBY, b"k", 1), 0)
        state.remember((b"c", n, max(1, n - 3)), n, n)
    assert len(state.dedup[b"c"]) <= 4  # only what may still be retried
    assert state.seen((b"c", 200, 197))[:2] == (200, 200)
    assert state.seen((b"c", 10, 197)) is None and state.answered((b"c", 10, 197))
    assert not state.answered((b"c", 199, 197))
    again = KVState.load(state.dump())  # the watermark is part of the replicated state
    assert again.answered((b"c", 10, 0)) and again.seen((b"c", 200, 0))[:2] == (200, 200)


def test_many_forwarded_writes_re_forwarded_after_a_lost_head_apply_once():
    """A member forwards 70 INCRs (more than any fixed per-client dedup window); the head
    applies them but every reply is lost; the member re-forwards all of them: each is
    answered from the dedup table, none applied twice."""
    c = Cluster("h", "m", "t")
    c.view(1, ["h", "m", "t"])
    c.settle()
    c.turn("m", *[(f"w{i}", "INCR", "n") for i in range(70)])
    c.settle(drop=lambda src, dst, msg: type(msg) is WriteReply)
    assert c.r["t"].state.data[b"n"] == b"70"
    c.run("m", c.r["m"].on_timer(NOW + 5))  # the member's retry of unanswered forwards
    c.flush()
    c.settle()
    assert c.r["t"].state.data[b"n"] == b"70"
    assert sorted(c.replies[f"w{i}"] for i in range(70)) == list(range(1, 71))


def test_read_lease_gates_local_reads():
    """With leases on, a member answers reads only under a lease: the coordinator's probe n+1
    grants it for probe n, counted from when we answered probe n. Once it runs out (the
    coordinator may have replaced us) we answer TRYAGAIN rather than possibly stale data; a
    revoked epoch takes no new lease; a probe from a newer epoch fetches the view."""
    r = Replica("a", b"a/1", lease_s=0.5)
    r.on_view(View(0, 1, ("a",)), NOW)
    r.flush()
    r.on_client("w", [b"SET", b"k", b"v"], NOW)
    r.flush()
    assert r.on_client("r1", [b"GET", b"k"], NOW) == [Reply("r1", b"v")]  # no coordinator manages it yet
    assert r.on_probe(1, 1, 0, NOW) == []  # answered, nothing granted yet
    assert r.on_client("r2", [b"GET", b"k"], NOW + 0.1) == [Reply("r2", NOT_SERVING)]
    assert r.on_probe(1, 2, 1, NOW + 0.1) == []  # grants probe 1: lease from NOW
    assert r.on_client("r3", [b"GET", b"k"], NOW + 0.4) == [Reply("r3", b"v")]
    assert r.on_client("r4", [b"GET", b"k"], NOW + 0.55) == [Reply("r4", NOT_SERVING)]
    # A paused member: probe 3 waited in its socket; granting probe 2 (answered at NOW + 0.1)
    # after the pause gives no lease that is still running.
    assert r.on_probe(1, 3, 2, NOW + 5) == []
    assert r.on_client("r5", [b"GET", b"k"], NOW + 5) == [Reply("r5", NOT_SERVING)]
    assert r.on_probe(1, 4, 99, NOW + 5.1) == [] and r.lease_until < NOW + 5  # a grant for another probe
    r.revoke(1)
    assert r.on_probe(1, 5, 4, NOW + 5.2) == [] and r.lease_until < NOW + 5
    assert r.on_probe(2, 6, 5, NOW + 5.3) == [FetchView(2)]


def test_a_wall_clock_step_does_not_stretch_a_read_lease():
    """Two clocks: the lease runs on the monotonic one (`mono`); the wall clock (`now`) stamps
    writes and may step back by seconds without keeping the lease alive."""
    r = Replica("a", b"a/1", lease_s=0.5)
    r.on_view(View(0, 1, ("a",)), NOW)
    r.flush()
    r.on_client("w", [b"SET", b"k", b"v"], NOW, 100.0)
    r.flush()
    r.on_probe(1, 1, 0, 100.0)
    r.on_probe(1, 2, 1, 100.1)  # the lease runs until 100.5 on the monotonic clock
    assert r.on_client("r1", [b"GET", b"k"], NOW, 100.4) == [Reply("r1", b"v")]
    # The wall clock steps back 10 s; 0.2 s pass: the lease is over all the same.
    assert r.on_client("r2", [b"GET", b"k"], NOW - 10, 100.6) == [Reply("r2", NOT_SERVING)]


def test_a_probe_from_a_newer_epoch_or_a_revoke_turns_leases_on():
    """Regression (cluster simulation, seed 90): a member added behind the tail was probed only
    while it still had an older epoch (the probe made it fetch its view), then adopted the view
    that made it the tail and was cut off from everyone but clients. It counted as managed by no
    coordinator and answered reads with no lease, long after the coordinator replaced it (it had
    waited out every lease it granted): stale reads. A probe of any epoch, or a revoke, shows
    that a coordinator manages the member, so from then on reads need a lease."""
    r = Replica("a", b"a/1", lease_s=0.5)
    assert r.on_probe(1, 1, 0, NOW) == [FetchView(1)]  # probed before it learnt epoch 1
    r.on_view(View(0, 1, ("a",)), NOW)
    r.flush()
    assert r.on_client("r1", [b"GET", b"k"], NOW + 0.1) == [Reply("r1", NOT_SERVING)]
    s = Replica("b", b"b/1", lease_s=0.5)
    s.on_view(View(0, 1, ("b",)), NOW)
    s.flush()
    s.revoke(1)  # revoked before any probe reached it
    assert s.on_client("r2", [b"GET", b"k"], NOW) == [Reply("r2", NOT_SERVING)]
    # A member started with a coordinator waits for its first probe: cut off before that probe,
    # it would otherwise answer unchecked after the coordinator replaced it.
    t = Replica("c", b"c/1", lease_s=0.5, managed=True)
    t.on_view(View(0, 1, ("c",)), NOW)
    t.flush()
    assert t.on_client("r3", [b"GET", b"k"], NOW) == [Reply("r3", NOT_SERVING)]
    t.on_probe(1, 1, 0, NOW)
    t.on_probe(1, 2, 1, NOW + 0.1)
    assert t.on_client("r4", [b"GET", b"k"], NOW + 0.2) == [Reply("r4", None)]


def test_append_batches_are_bounded_in_bytes_as_well_as_entries():
    """A window of large values is caught up in frames a successor accepts: at most BATCH entries
    and about FRAME_BYTES of keys and values each (one larger entry alone), in order."""
    from catena.chain.replica import BATCH, FRAME_BYTES, batches

    value = b"v" * (FRAME_BYTES // 5)
    entries = [(1, s, 0, None, (SET, b"k%d" % s, value, None, 0)) for s in range(1, 23)]
    entries += [(1, s, 0, None, (SET, b"k", b"x" * (FRAME_BYTES + 1), None, 0)) for s in (23, 24)]
    entries += [(1, s, 0, None, (INCRBY, b"n", 1)) for s in range(25, 25 + 2 * BATCH + 3)]
    out = list(batches(entries))
    assert [e for b in out for e in b] == entries
    for b in out:
        payload = sum(len(e[4][1]) + len(e[4][2]) if e[4][0] == SET else 8 for e in b)
        assert len(b) <= BATCH and (len(b) == 1 or payload <= FRAME_BYTES)
    assert [len(b) for b in out[:7]] == [4, 4, 4, 4, 4, 2, 1]  # five fifths of a frame overflow it (keys count)
    assert list(batches([])) == [] and list(batches(entries[-3:])) == [tuple(entries[-3:])]


def test_a_middle_forwards_one_appends_entries_as_one_frame_and_rebatches_several(monkeypatch):
    """A middle member sends an Append from its predecessor on as it came (batched within the
    bounds there), before it applies it, when it continues the member's history; Appends it
    forwards from its turn's flush (a resend overlapping what it holds, and what follows that
    turn) are measured again: no frame it sends holds more than about FRAME_BYTES of keys and
    values."""
    from catena.chain import replica as replica_module

    monkeypatch.setattr(replica_module, "FRAME_BYTES", 64 * 2 + 2 * 40)  # two entries of 40-byte values
    b = Replica("b", b"b/1")
    b.on_view(View(0, 1, ("a", "b", "c")), NOW)
    b.on_message("c", Sync(1, 0, 0), NOW)  # the successor's handshake: b now forwards what it applies
    value = b"v" * 38
    entries = [(1, s, 0, None, (SET, b"k%d" % s, value, None, 0)) for s in range(1, 7)]
    frames = list(replica_module.batches(entries))
    assert [len(f) for f in frames] == [2, 2, 2]

    def forwarded(fx):
        return [f.msg.entries for f in fx if type(f) is Send and type(f.msg) is Append]

    assert forwarded(b.on_message("a", Append(1, 0, frames[0]), NOW)) == [frames[0]]  # relayed
    assert forwarded(b.flush()) == []
    overlap = frames[0][1:] + frames[1]  # resent from seq 2 after a reconnect: not relayed
    assert forwarded(b.on_message("a", Append(1, 0, overlap), NOW)) == []
    assert forwarded(b.on_message("a", Append(1, 0, frames[2]), NOW)) == []  # behind entries still to send
    assert forwarded(b.flush()) == frames[1:]  # four entries, more than one frame holds
    assert b.last_seq == 6
    seventh = ((1, 7, 0, None, (SET, b"k7", value, None, 0)),)
    assert forwarded(b.on_message("a", Append(1, 0, seventh), NOW)) == [seventh]
    b.on_view(View(0, 2, ("b", "c")), NOW)  # the head now, in the same turn: its own writes are measured
    b.on_message("c", Sync(2, 1, 7), NOW)
    for i in range(4):
        b.on_client(f"w{i}", [b"SET", b"n%d" % i, value], NOW)
    assert [len(f) for f in forwarded(b.flush())] == [2, 2]


def _middle(succ_ready: bool = True) -> Replica:
    """b: the middle of a, b, c, synced with its successor c (unless not `succ_ready`)."""
    b = Replica("b", b"b/1")
    b.on_view(View(0, 1, ("a", "b", "c")), NOW)
    if succ_ready:
        b.on_message("c", Sync(1, 0, 0), NOW)
    return b


def _sets(first: int, last: int, epoch: int = 1) -> tuple:
    return tuple((epoch, s, 0, None, (SET, b"k%d" % s, b"v", None, 0)) for s in range(first, last + 1))


def test_a_middle_sends_an_append_on_before_it_applies_it():
    """`relay` decides before anything is applied: the Append continues b's history, so b sends
    the same entries on (its own commit point) and `on_message` then applies them without
    forwarding them again, in its effects or in the turn's flush."""
    b = _middle()
    msg = Append(1, 0, _sets(1, 3))
    relayed = b.relay("a", msg)
    assert relayed == [Send("c", Append(1, 0, msg.entries))] and relayed[0].msg.entries is msg.entries
    assert (b.last_seq, b.state.data) == (0, {})  # nothing applied yet
    assert not [f for f in b.on_message("a", msg, NOW) if type(f) is Send]
    assert b.last_seq == 3 and b.state.data[b"k3"] == b"v"
    assert not [f for f in b.flush() if type(f) is Send and type(f.msg) is Append]
    # the commit point goes on as the middle's own, and a shell that did not relay gets it first
    b.on_message("c", Ack(1, 2), NOW)
    fx = b.on_message("a", Append(1, 3, _sets(4, 5)), NOW)
    assert fx[0] == Send("c", Append(1, 2, _sets(4, 5))) and b.last_seq == 5


@pytest.mark.parametrize("case", ["gap", "gap inside", "overlap", "empty", "not the predecessor", "older epoch", "newer epoch",
                                  "entries still to send", "successor not synced", "tail", "learner"])
def test_a_member_relays_only_an_append_that_continues_its_history_with_nothing_before_it(case):
    b = _middle(succ_ready=case != "successor not synced")
    b.on_message("a", Append(1, 0, _sets(1, 2)), NOW)
    b.flush()
    sender, msg = "a", Append(1, 0, _sets(3, 4))
    if case == "gap":
        msg = Append(1, 0, _sets(4, 5))
    elif case == "gap inside":  # (no head sends one: the entries relayed are exactly those applied)
        msg = Append(1, 0, _sets(3, 3) + _sets(5, 5))
    elif case == "overlap":  # a resend after a reconnect
        msg = Append(1, 0, _sets(2, 3))
    elif case == "empty":
        msg = Append(1, 0, ())
    elif case == "not the predecessor":
        sender = "c"
    elif case == "older epoch":
        b.on_view(View(0, 2, ("a", "b", "c")), NOW)
        b.on_message("c", Sync(2, 1, 2), NOW)
    elif case == "newer epoch":
        msg = Append(2, 0, _sets(3, 4, epoch=2))
    elif case == "entries still to send":
        b.relayed = None
        b.out_entries.append(_sets(2, 2)[0])
    elif case == "tail":
        b.on_view(View(0, 2, ("a", "b")), NOW)
        msg = Append(2, 0, _sets(3, 4, epoch=2))
    elif case == "learner":
        b.on_view(View(0, 2, ("a",), learner="b"), NOW)
        msg = Append(2, 0, _sets(3, 4, epoch=2))
    before = (b.last_seq, dict(b.state.data))
    assert b.relay(sender, msg) == []
    assert (b.last_seq, b.state.data) == before and b.relayed is None


def test_a_relayed_append_with_an_op_nobody_applies_leaves_the_middle_and_its_successor_alike():
    """A hostile or broken predecessor: the middle relays an Append before it finds an entry
    whose op it does not apply; it refuses the frame at that entry, and so does its successor
    given the same bytes, so both hold the same prefix and the successor's history stays a
    prefix of the middle's."""
    from catena.errors import RemoteProtocolError

    b = _middle()
    c = Replica("c", b"c/1")
    c.on_view(View(0, 1, ("a", "b", "c")), NOW)
    c.on_message("b", Append(1, 0, ()), NOW)
    c.flush()
    msg = Append(1, 0, _sets(1, 2) + ((1, 3, 0, None, (250, b"k")),))
    relayed = b.relay("a", msg)
    assert [type(f.msg) for f in relayed] == [Append]
    for member, sender, frame in ((b, "a", msg), (c, "b", wire(relayed[0].msg))):
        with pytest.raises(RemoteProtocolError):
            member.on_message(sender, frame, NOW)
    assert (b.last_seq, c.last_seq) == (2, 2) and b.state.data == c.state.data
    assert b.relayed is None


def test_the_head_frames_its_writes_by_the_sizes_it_proved_them_under(monkeypatch):
    """The head measures each write once, when it proves it encodable: a turn's writes that fit
    one frame by those bounds go in one Append without being measured again; writes whose op the
    head completed after the proof (SPOP's members) are measured, and frames stay bounded."""
    from catena.chain import replica as replica_module

    measured = []
    payload = replica_module._payload
    monkeypatch.setattr(replica_module, "_payload", lambda entries: measured.append(len(entries)) or payload(entries))
    a = Replica("a", b"a/1")
    a.on_view(View(0, 1, ("a", "b")), NOW)
    a.on_message("b", Sync(1, 0, 0), NOW)
    a.flush()
    measured.clear()

    def forwarded():
        return [len(fx.msg.entries) for fx in a.flush() if type(fx) is Send and type(fx.msg) is Append]

    for i in range(4):
        a.on_client(f"w{i}", [b"SET", b"n%d" % i, b"v" * 38], NOW)
    assert forwarded() == [4] and measured == []
    a.on_client("s", [b"SADD", b"s", b"m1", b"m2"], NOW)
    a.on_client("p", [b"SPOP", b"s"], NOW)  # its members are chosen after the proof
    assert forwarded() == [2] and measured == [2]
    monkeypatch.setattr(replica_module, "FRAME_BYTES", 64 * 2 + 2 * 40)  # two entries of 40-byte values
    measured.clear()
    for i in range(4):
        a.on_client(f"x{i}", [b"SET", b"n%d" % i, b"v" * 38], NOW)
    assert forwarded() == [2, 2] and measured  # past a frame by the bounds: measured, and split

def test_a_repeated_sync_is_not_answered_with_a_second_snapshot(monkeypatch):
    """A learner re-sends its Sync every RETRY_S until answered; a large Snapshot takes longer
    than that to arrive, and each answer would dump, send and install the whole state again."""
    c = learner_past_the_window(monkeypatch)
    c.settle(hold=lambda src, dst, msg: type(msg) is Snapshot)  # sent, not yet delivered
    sync = next(m for s, d, m in c.sent if d == "c" and s == "d" and type(m) is Sync)
    assert [type(m) for _, _, m in c.queue] == [Snapshot]
    tail = c.r["c"]
    assert tail.on_message("d", sync, NOW + RETRY_S) == []  # the retry, while the Snapshot is on its way
    c.client("a", "w6", "SET", "k6", "v")
    c.settle()
    assert sum(type(m) is Snapshot for s, d, m in c.sent if d == "d") == 1
    assert c.r["d"].state.data == tail.state.data and c.r["d"].last_seq == 7
    tail.on_link("d", True, NOW)  # up after connecting: what was queued meanwhile went out first
    assert tail.on_message("d", sync, NOW + 2 * RETRY_S) == []
    tail.on_link("d", False, NOW)  # the link went down: the Snapshot may be lost with it
    tail.on_link("d", True, NOW)
    assert any(type(f.msg) is Snapshot for f in tail.on_message("d", sync, NOW + 3 * RETRY_S))
