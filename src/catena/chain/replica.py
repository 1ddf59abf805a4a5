"""The chain replication machine of one member (pure: no I/O, no clocks, no randomness).

van Renesse & Schneider's protocol with CRAQ reads. The head stamps each write with
(epoch, seq, ts) and applies it; every member applies entries in seq order and forwards them to
its successor; the tail commits and acks flow upstream, trimming each sent list (the entries
above `commit_seq`). The tail sends its acks to the head as well (`acks_head`), which answers a
write once the first ack of it arrives: a hop sooner than through the middle members. A middle
member sends an Append on before it applies it (`relay`) when the Append continues its history
exactly: its successor works on the entries while it applies them. A member
answers a read itself when every key it touches is clean (no uncommitted entry touches it), else
asks the tail.

One handshake serves a new tail, a removed middle member and a restarted member: under each new
epoch the successor sends `Sync(last_epoch, last_seq)` and the predecessor answers with the
entries after it (`Append`, possibly empty) or, when the successor's history is not a prefix of
its own or the entries are gone from its window, with a `Snapshot` followed by the rest.

`now` is wall-clock seconds: expiry deadlines are absolute and must mean the same after a
restart. Inputs are `on_view`, `on_client`, `on_message`, `on_link`, `on_timer`; each returns
effects to execute at once (replies to reads, forwards; a shell that sends `relay(sender, msg)`'s
effects before giving it `msg` gets the rest from `on_message`), and `flush()` returns what the event
loop turn batched: one Persist of the new entries, then one Append per successor and one Ack
per predecessor, then the replies to committed writes.
"""

from __future__ import annotations

import itertools
from collections import deque

from catena.chain import blocking, key_info, ops, pubsub, slot_ops, sort, transactions  # noqa: F401 - these register their commands
from catena.chain.blocking import AGAIN, ANSWER, Attempt, Blocked
from catena.chain.messages import (
    MAX_ENTRY, Ack, Append, Forward, Read, ReadReply, Snapshot, Stale, Sync, SyncRequest, WriteReply, size_bound,
)
from catena.chain.slot_guard import ClusterMode
from catena.chain.state import DEL, PURGE, KVState, op_keys, valid_op
from catena.chain.state_load import StateLoad
from catena.chain.strings import FLUSH
from catena.chain.values import Lcg
from catena.errors import RemoteProtocolError
from catena.leases import LEASE_S  # noqa: F401 (members with a coordinator; node.py takes it from here)
from catena.effects import Deliver, FetchView, LearnerCaughtUp, Persist, PersistSnapshot, Reply, Send
from catena.resp.codec import NULL_ARRAY, Error
from catena.view import View

WINDOW = 100_000  # committed entries kept for delta catch-up of a successor
RESEND_BYTES = 1024 * 1024  # ... of at most this many bytes of keys and values (Redis's default
# repl-backlog-size); further behind, a successor gets a Snapshot, which the shell dumps and
# streams a slice per turn: resent from the window, a new learner's 10 MB of Appends
# queued ahead of every later effect of the tail (its acks and replies) and stalled the chain 0.7 s
RETRY_S = 1.0  # resend Sync / forwarded writes after this long without an answer
READ_TIMEOUT_S = 5.0
BATCH = 4096  # entries per Append frame at most ...
FRAME_BYTES = 64 * 1024 * 1024  # ... and about this many bytes of keys and values (an entry
# larger than that goes alone: the head proved it fits a frame), so no frame outgrows MAX_FRAME
# Active expiry: deadlines examined per PURGE entry, and entries per 100 ms tick at most: 8,000
# keys, 25-30 ms of the head's loop (measured on a busy 2-core machine), 80,000 keys/s
EXPIRE_SAMPLE, EXPIRE_ROUNDS = 1000, 8
DEL_SLICE = 10_000  # keys per entry of a larger DEL/UNLINK: the head assigns one such entry per turn
LEARNER_LAG = 1000  # entries a learner may trail the tail by and still be promoted  # entries per Append frame when catching a successor up

NO_VIEW = Error("TRYAGAIN this member has no view of its chain yet")
NOT_SERVING = Error("TRYAGAIN the chain is being reconfigured, retry")
REQ = ops.REQ
UNREPLICABLE = Error(f"ERR command cannot be replicated: its entry must encode in {MAX_ENTRY} bytes with "
                     "integers of 64 bits")
ANSWERED = Error("ERR this request id was answered before and is not applied again")
# A write forwarded to the head carries a deadline this long after the member received it: the
# head assigns it no seq after that, so it never lands behind writes made long after its
# client gave up (on one host, members share the wall clock the deadline is stamped with).
WRITE_TIMEOUT_S = 5.0
PAST_DEADLINE = Error("ERR write not applied: it reached the head after its deadline (a partition or "
                      "a slow link); retry it")
_UNSET = object()
LATER = object()  # `read_now`: not a read this member answers at once
OUTCOME_UNKNOWN = Error("ERR write forwarded to the head got no reply before its deadline; it may or may "
                        "not have been applied")


class Replica:
    write_timeout_s = WRITE_TIMEOUT_S  # the deadline of the writes this member forwards
    # The tail's acks go to the head as well, a hop sooner, unless the chain fsyncs each batch
    # before acking it (--fsync always): a middle member forwards a batch before its fsync, so
    # only its own ack says the batch is stored there. (Set by the shell from its policy.)
    acks_head = True

    def __init__(self, me: str, client_id: bytes, state: KVState | None = None,
                 last: tuple[int, int] = (0, 0), entries=(), epoch: int = 0, lease_s: float | None = None,
                 managed: bool = False, rng=None, gone=None, cluster: bool = False):
        self.me = me
        self.cluster = ClusterMode() if cluster else None  # serve only the slots the chain's table gives it
        # Random choices (SPOP's members at the head, SRANDMEMBER's picks): the shell's source
        # (random.Random's `randrange`), or a fixed seed.
        self.rng = rng or Lcg()
        self.client_id = client_id  # names the writes this member forwards on behalf of clients
        # Clients blocked in BLPOP and kin; `gone(token)`: has that client disconnected (the
        # shell's answer; a gone client's pop is never sent again)?
        self.blocked = Blocked()
        self.gone = gone or (lambda token: False)
        self.now = 0.0  # of the latest input (a blocked client's pop sent again from `flush`)
        self.state = state or KVState()
        self.last_epoch, self.last_seq = last
        self.window: deque = deque()  # recent entries in seq order; all above commit_seq are here
        self.base = last  # (epoch, seq) of the entry just before window[0]
        self.view: View | None = None
        self.epoch = epoch  # highest epoch seen (persisted by the shell across restarts)
        self.commit_seq = 0  # highest seq known committed
        self.dirty: dict[bytes, int] = {}  # key -> uncommitted entries touching it
        self.dirtied: deque = deque()  # (seq, keys) of the entries counted in `dirty`, in seq order
        self.dirty_until = 0  # after a snapshot: anything up to here may be uncommitted
        self.in_chain = False  # a member of the chain since this process learnt it (not a learner)
        self.lease_s = lease_s  # None: no read leases (a fail-stop world, as in the simulator)
        self.lease_until = float("-inf")
        self.revoked_epoch = -1
        self.probe_nonce, self.probe_answered_at = 0, float("-inf")
        # A coordinator manages us (we were started with one, or its probe or revoke reached us):
        # it may replace us, so reads need its lease.
        self.managed = managed and lease_s is not None
        self.barrier: int | None = None  # a new tail serves reads once last_seq reaches this
        # successor link
        self.succ: str | None = None
        self.succ_ready = False
        self.out_entries: list = []
        # out_entries came from one Append of our predecessor's and nothing else: they are one
        # frame already, batched within the same bounds (`batches`), so need no measuring again
        self.out_framed = False
        # ... or `out_bounded` of them are the head's own writes, measured when proven encodable
        # (`_write`) at `out_bound` bytes in all: when that is all of them, no measuring either
        self.out_bounded = self.out_bound = 0
        self.relayed = None  # the Append `relay` sent on, until `on_message` applies it
        # (successor, epoch, its Sync's point) we answered with a Snapshot on the link that is still
        # up: a Sync repeating it is impatience (the link delivers that Snapshot in order), not loss
        self.snapshot_out: tuple | None = None
        # A Snapshot's state, as of the history point it names: the dump itself, or the shell's
        # handle to the same bytes, dumped a slice per loop turn (chain/transfer.py)
        self.dump_state = KVState.dump
        self.learner_acked = -1  # the learner's progress under the current epoch (-1: none yet)
        self.handing_over = False  # the tail commits only what its caught-up learner acked
        self.told_caught_up = False  # ... and has said so (`LearnerCaughtUp`) under this epoch
        self.commits_on_apply = False  # (`_recommit`)
        # predecessor link
        self.pred: str | None = None
        self.pred_synced = False
        self.sync_sent_at = 0.0
        self.out_ack: int | None = None
        # the head: replies waiting for their seq to commit: seq -> [(origin | None, token, reply)]
        self.waiting: dict[int, list] = {}
        # the head: a DEL of more than DEL_SLICE keys (or a FLUSH) and the writes that arrived after it, in
        # order: [op, now_ms, rid, [(origin, token)...], keys assigned, keys deleted]
        self.backlog: deque = deque()
        # requests this member sent elsewhere: token -> record
        self._tokens = itertools.count(1)
        self._rids = itertools.count(1)
        self.forwarded: dict[int, list] = {}  # token -> [local token, rid, args, sent_at, deadline_ms]
        self.forwarded_total = 0  # client writes forwarded to the head since start (metrics)
        self.reads: dict[int, tuple] = {}  # token -> (local token, sent_at)
        self.to_persist: list = []
        self.deferred: list = []
        self.published: deque = deque()  # (seq, channel, message) of applied PUBLISHes not yet committed
        self.state.versions.forget(self.last_seq)
        for entry in entries:
            if entry[1] > self.last_seq:  # the log may repeat entries the snapshot holds
                self._apply(entry, dirty=False)
        self.to_persist.clear()
        self.published.clear()  # delivered (or not) before the restart
        # Recovered entries are in no sent list (a restarted process rejoins as a learner), so
        # the window keeps only its bound of them, for a delta catch-up of a successor.
        while len(self.window) > WINDOW:
            entry = self.window.popleft()
            self.base = (entry[0], entry[1])

    # -- queries -------------------------------------------------------------------------------

    @property
    def role(self) -> str:
        return self.view.role(self.me) if self.view else "none"

    def is_tail(self) -> bool:
        return self.view is not None and self.view.tail == self.me

    def _recommit(self) -> None:
        """The tail commits what it applies, unless it is handing over to a caught-up learner:
        `commits_on_apply`, recomputed whenever `view` or `handing_over` changes."""
        self.commits_on_apply = self.is_tail() and not self.handing_over

    def is_head(self) -> bool:
        return self.view is not None and self.view.head == self.me

    def serving_reads(self) -> bool:
        return self.in_chain and (self.barrier is None or (self.pred_synced and self.last_seq >= self.barrier))

    def sent_list_len(self) -> int:
        return self.last_seq - self.commit_seq

    def status(self) -> dict:
        return {
            "me": self.me, "role": self.role, "epoch": self.epoch, "chain_id": self.view.chain_id if self.view else 0,
            "last_epoch": self.last_epoch, "last_seq": self.last_seq, "commit_seq": self.commit_seq,
            "sent_list": self.sent_list_len(), "keys": len(self.state.data),
            "members": ",".join(self.view.members) if self.view else "", "learner": (self.view and self.view.learner) or "",
            "serving_reads": int(self.serving_reads()), "learner_caught_up": int(self.learner_caught_up()), "waiting_writes": sum(len(w) for w in self.waiting.values()),
            "learner_acked": self.learner_acked,
        }

    def snapshot_blob(self) -> tuple[int, int, bytes]:
        return self.last_epoch, self.last_seq, self.state.dump()

    # -- views -----------------------------------------------------------------------------------

    def on_view(self, view: View, now: float) -> list:
        """Adopt a newer view; older ones are ignored (never act on an old view). After a restart
        the view of the highest epoch seen is adopted once more."""
        if view.epoch < self.epoch or (view.epoch == self.epoch and self.view is not None):
            return []
        if self.managed and (self.epoch, self.last_seq) == (0, 0) and self.me in view.members and len(view.members) > 1:
            # A process that never adopted a view (a new data dir) named among a chain's members
            # runs at a former member's address (its disk was lost): the coordinator's push is for
            # the old incarnation. Acting on it, it would hand its empty history down the chain
            # (as head: a snapshot wiping its successors). It waits to join as a learner.
            return []
        fx: list = []
        old = self.view
        self.view, self.epoch = view, view.epoch
        if self.cluster:
            self.cluster.on_view(view)
        in_chain = self.me in view.members
        was_in_chain = self.in_chain
        self.in_chain = in_chain and (was_in_chain or view.role(self.me) in ("tail", "head+tail"))
        if self.in_chain and not was_in_chain:
            # Joined as the tail (a learner promoted) or founded the chain: serve reads only
            # once the predecessor's committed prefix is here (set by its first Append).
            self.barrier = None if view.predecessor(self.me) is None else 0
        if not in_chain:
            self.in_chain = False
            fx += self._fail_waiting(NOT_SERVING)
        if self.backlog and view.head != self.me:
            fx += [self._answer(origin, token, NOT_SERVING) for rec in self.backlog for origin, token in rec[3]]
            self.backlog.clear()
        # successor: always re-handshake under the new epoch
        self.succ = view.successor(self.me)
        self.succ_ready = False
        self.learner_acked = -1
        self.handing_over = self.told_caught_up = False
        self._recommit()
        self._clear_out()
        if self.succ:
            fx.append(Send(self.succ, SyncRequest(self.epoch)))
        # predecessor
        self.pred = view.predecessor(self.me)
        self.pred_synced = self.pred is None
        self.out_ack = None
        if self.pred:
            fx.append(self._sync(now))
        if self.commits_on_apply:
            self._commit_to(self.last_seq)
        if old is None or old.head != view.head:
            fx += self._reforward(now)
        return self._route(fx, now)

    def _sync(self, now: float) -> Send:
        self.sync_sent_at = now
        return Send(self.pred, Sync(self.epoch, self.last_epoch, self.last_seq))

    # -- client commands ---------------------------------------------------------------------------

    def on_client(self, token, args: list[bytes], now: float, mono: float | None = None) -> list:
        """A data command from a local client; the reply comes as Reply(token, ...). `now`: wall
        seconds (stamps, expiry); `mono`: monotonic seconds, the read lease's clock (default: now)."""
        return self._route(self._on_client(token, args, now, now if mono is None else mono), now)

    def _on_client(self, token, args: list[bytes], now: float, mono: float) -> list:
        rid = None
        name = args[0].upper()
        if name == REQ:
            parsed = ops.request(args)
            if type(parsed) is Error:
                return [Reply(token, parsed)]
            rid, args = parsed
            name = args[0].upper()
        if self.cluster and (why := self.cluster.check_command(self.state.table, args)):
            return [Reply(token, why)]
        if ops.is_write(args, name):
            return self._write(None, token, rid, args, now, name)
        if name in blocking.COMMANDS and rid is None:
            waiter = self.blocked.start(token, args, int(now * 1000))
            return [Reply(token, waiter)] if type(waiter) is Error else self._pop(waiter, now)
        if name in ops.READS:
            return self._read(token, args, now, mono)
        return [Reply(token, Error(f"ERR unknown command '{args[0].decode(errors='replace')}'"))]

    def read_now(self, args: list[bytes], now: float, mono: float):
        """The reply to a plain read this member may answer from its own data at once, or LATER
        (then `on_client` takes the command: a write, a read for the tail, a blocking pop…).
        The shell answers most reads this way, without a token or an effect."""
        name = args[0].upper()
        entry = ops.READS.get(name)  # (no blocking command, nor REQ, is in READS)
        if entry is None or (name in ops.WRITE_FORMS and ops.is_write(args)):
            return LATER
        if self.cluster and (why := self.cluster.check_command(self.state.table, args)):
            return why  # a slot this chain does not serve (now): MOVED, TRYAGAIN, CROSSSLOT
        if (self.to_persist and self.commits_on_apply) or not self.can_answer(ops.keys_of(entry, args), mono):
            return LATER  # (see `_read`)
        return ops.answer(self.state, name, entry, args, int(now * 1000), self.rng)

    def _write(self, origin, token, rid, args, now, name: bytes | None = None) -> list:
        """A write command (`name`: args[0] upper-cased, when the caller has it)."""
        view = self.view
        if view is None or not view.members:
            return [self._answer(origin, token, NO_VIEW)]
        if view.members[0] != self.me:  # (not the head)
            if origin is not None:  # a forward reached a member that is not the head
                return [Send(origin, Stale(self.epoch))]
            ftoken = next(self._tokens)
            if rid is None:  # our own request id: a re-forward after a head change applies once
                n = next(self._rids)
                # The watermark: our oldest unanswered own request (not a client's CATENA.REQ).
                mine = self.client_id
                low = next((rec[1][1] for rec in self.forwarded.values() if rec[1][0] == mine), n)
                rid = (mine, n, low)
            deadline_ms = int((now + self.write_timeout_s) * 1000)
            self.forwarded[ftoken] = [token, rid, tuple(args), now, deadline_ms]
            self.forwarded_total += 1
            return [Send(view.head, Forward(self.epoch, ftoken, rid, tuple(args), deadline_ms))]
        if rid is not None:
            seen = self.state.seen(rid)
            if seen is None and self.state.answered(rid):
                return [self._answer(origin, token, ANSWERED)]
            if seen is not None:
                seq, reply, _ = seen
                if seq <= self.commit_seq:
                    return [self._answer(origin, token, reply)]
                self.waiting.setdefault(seq, []).append((origin, token, reply))
                return []
        now_ms = int(now * 1000)
        op = ops.to_op(args, now_ms, name)
        if type(op) is Error:
            return [self._answer(origin, token, op)]
        # proven encodable before it has a seq ((None, op) encodes to 6 bytes more than op)
        bound = size_bound(op) if rid is None else size_bound((rid, op)) - 6
        if not 0 <= bound <= MAX_ENTRY - 6:
            return [self._answer(origin, token, UNREPLICABLE)]
        if self.backlog or ((op[0] == DEL or op[0] == FLUSH) and _big_del(op)):
            return self._queue(origin, token, rid, op, now_ms)
        seq, reply = self._assign_write(op, rid, now_ms, bound)
        self._await_commit(seq, origin, token, reply)
        return []  # a sole member commits it in `flush`, once it is persisted

    def _assign(self, op, rid, now_ms: int, bound: int | None = None):
        """The head: give `op` the next seq under the current epoch and apply it; (seq, reply).
        An EXEC whose watched key changed gets no seq: (last seq, None), its nil reply then
        waits for the commit of everything it saw. `bound`: what `_write` proved (rid, op)
        encodes to at most, if it did."""
        seq = self.last_seq + 1
        self.out_framed = False
        dirty = not self.commits_on_apply
        if op[0] == transactions.EXEC:
            run = transactions.at_head(self.state, op, now_ms, self.rng)
            if run is None:
                return self.last_seq, None
            return seq, self._apply((self.epoch, seq, now_ms, rid, run[0]), dirty, run[1])
        decided = ops.decide(self.state, op, now_ms, self.rng)
        if bound is not None and decided is op and self.succ_ready:  # (then `_apply` adds it to out_entries)
            self.out_bounded += 1
            self.out_bound += bound
        return seq, self._apply((self.epoch, seq, now_ms, rid, decided), dirty)

    def _assign_write(self, op, rid, now_ms: int, bound: int | None = None):
        """A client's write: in cluster mode refused (no seq; the refusal answered once all it saw
        is committed) unless the table, as every earlier entry left it, serves its slot."""
        if self.cluster and (why := self.cluster.check_write(self.state.table, op)):
            return self.last_seq, why
        return self._assign(op, rid, now_ms, bound)

    def _await_commit(self, seq: int, origin, token, reply) -> None:
        """Answer `token` (of `origin`) with `reply` once `seq` is committed (at once if it is)."""
        if seq <= self.commit_seq:
            self.deferred.append(self._answer(origin, token, reply))
            return
        waits = self.waiting.get(seq)
        if waits is None:
            self.waiting[seq] = [(origin, token, reply)]
        else:
            waits.append((origin, token, reply))

    def _queue(self, origin, token, rid, op, now_ms: int) -> list:
        """The head: a DEL of more than DEL_SLICE keys is assigned one slice (entry) per loop
        turn, in `flush`, so no member applies more than a slice in one turn; writes arriving
        meanwhile wait behind it in order (seqs stay consecutive, a pipeline's later write is
        never overtaken). A retry of a queued request joins it."""
        for rec in self.backlog:
            if rid is not None and rec[2] == rid:
                rec[3].append((origin, token))
                return []
        self.backlog.append([op, now_ms, rid, [(origin, token)], 0, 0])
        return []

    def _assign_backlog(self) -> None:
        """One slice of the DEL in front, or the writes queued behind it once it is done. The
        DEL is answered when its last slice commits; its request id goes with that slice."""
        backlog, sliced = self.backlog, False
        while backlog:
            rec = backlog[0]
            op, now_ms, rid, waiters, done, deleted = rec
            if _big_del(op):
                if sliced:
                    return
                if op[1] is None:  # a FLUSH at the front: the keys there are now
                    op = rec[0] = ops.decide(self.state, op, now_ms, self.rng)
                keys, sliced, kind = op[1], True, op[0]
                if done == 0 and self.cluster and (why := self.cluster.check_write(self.state.table, op)):
                    backlog.popleft()
                    for origin, token in waiters:
                        self._await_commit(self.last_seq, origin, token, why)
                    continue
                last = done + DEL_SLICE >= len(keys)
                seq, n = self._assign((kind, keys[done:done + DEL_SLICE]), rid if last else None, now_ms)
                rec[4], rec[5] = done + DEL_SLICE, deleted + n if kind == DEL else n
                if not last:
                    return
                reply = rec[5]
            else:
                seq, reply = self._assign_write(op, rid, now_ms)
            backlog.popleft()
            for origin, token in waiters:
                self._await_commit(seq, origin, token, reply)

    def _answer(self, origin, token, value):
        return Reply(token, value) if origin is None else Send(origin, WriteReply(token, value))

    def _read(self, token, args, now, mono: float) -> list:
        if self.can_answer(ops.read_keys(args), mono):
            reply = Reply(token, ops.read(self.state, args, int(now * 1000), self.rng))
            if self.to_persist and self.commits_on_apply:
                # A member that commits what it applies (the tail, a sole member): its newest
                # entries may be durable nowhere until `flush` persists them; a read that may see
                # them is answered after that (under --fsync always, after their fdatasync).
                self.deferred.append(reply)
                return []
            return [reply]
        if self.view is None or not self.view.members:
            return [Reply(token, NO_VIEW)]
        tail = self.view.tail
        if tail == self.me:
            return [Reply(token, NOT_SERVING)]
        rtoken = next(self._tokens)
        self.reads[rtoken] = (token, now)
        return [Send(tail, Read(self.epoch, rtoken, tuple(args)))]

    def can_answer(self, keys, mono: float) -> bool:
        """CRAQ: committed data only; the tail's is always committed, others' when clean. And
        only under a read lease, when leases are on: a member the coordinator can no longer
        reach may have been replaced, and must not answer from data others have moved past.
        Leases hold from the start for a member started with a coordinator, else from the first
        probe (of any epoch, even one newer than ours) or revocation on: a member no coordinator
        manages (a view set by hand) has nobody to be replaced by. `mono`: monotonic seconds (a
        step of the wall clock must not stretch a lease)."""
        if not self.serving_reads():
            return False
        if self.lease_s is not None and self.managed and mono >= self.lease_until:
            return False
        if self.commits_on_apply:
            return True
        if self.commit_seq < self.dirty_until:
            return False
        if keys is None:
            return not self.dirty
        dirty = self.dirty
        return not dirty or not any(k in dirty for k in keys)

    # -- applying and committing -------------------------------------------------------------------

    def _apply(self, entry, dirty: bool, reply=_UNSET):
        """Apply `entry` (`reply`: the head applied its op already, answering that)."""
        epoch, seq, ts, rid, op = entry
        state = self.state
        if reply is _UNSET:
            reply = state.apply(op, ts)
        keys = op_keys(op)
        state.versions.touch(keys, seq)
        if rid is not None:
            state.remember(rid, seq, reply, keys[0] if keys else None)
        self.last_epoch, self.last_seq = epoch, seq
        self.window.append(entry)
        self.to_persist.append(entry)
        if dirty:
            counts = self.dirty
            for key in keys:
                counts[key] = counts.get(key, 0) + 1
            self.dirtied.append((seq, keys))
        if self.succ_ready:
            self.out_entries.append(entry)
        blocked = self.blocked
        if blocked.by_key or blocked.waiters:
            blocked.touch(keys, state.data.get)
        if op[0] in pubsub.CARRIERS and not self._learning():  # a learner has no subscribers yet
            self.published += [(seq, channel, message) for channel, message in pubsub.messages(op)]
        return reply

    def _commit_to(self, seq: int) -> None:
        seq = min(seq, self.last_seq)
        if seq <= self.commit_seq:
            return
        old = self.commit_seq
        self.commit_seq = seq
        dirtied = self.dirtied
        if dirtied and seq == self.last_seq:  # every applied entry is committed now: nothing is dirty
            self.dirty.clear()
            dirtied.clear()
        elif dirtied:
            counts = self.dirty
            while dirtied and dirtied[0][0] <= seq:
                for key in dirtied.popleft()[1]:
                    n = counts[key] - 1
                    if n:
                        counts[key] = n
                    else:
                        del counts[key]
        published = self.published
        while published and published[0][0] <= seq:
            _, channel, message = published.popleft()
            self.deferred.append(Deliver(channel, message))  # before the publisher's reply
        waiting = self.waiting
        if waiting:
            for s in range(old + 1, seq + 1):
                for origin, token, reply in waiting.pop(s, ()):
                    self.deferred.append(self._answer(origin, token, reply))
        if self.pred is not None and not self._learning():
            self.out_ack = seq
        self._trim()

    def _learning(self) -> bool:
        return self.view is not None and self.view.learner == self.me

    def _trim(self) -> None:
        window = self.window
        bound = self.last_seq - WINDOW
        keep_from = bound if self._learning() else min(self.commit_seq, bound)
        while window and window[0][1] <= keep_from:
            entry = window.popleft()
            self.base = (entry[0], entry[1])

    # -- peer messages ----------------------------------------------------------------------------

    def on_message(self, sender: str, msg, now: float, mono: float | None = None) -> list:
        """A peer message; `now` and `mono` as for `on_client`."""
        return self._route(self._on_message(sender, msg, now, now if mono is None else mono), now)

    def _on_message(self, sender: str, msg, now: float, mono: float) -> list:
        kind = type(msg)
        if kind is WriteReply:
            rec = self.forwarded.pop(msg.token, None)
            return [Reply(rec[0], msg.reply)] if rec else []
        if kind is ReadReply:
            read = self.reads.pop(msg.token, None)
            return [Reply(read[0], msg.reply)] if read else []
        if kind is Stale:
            return [FetchView(msg.epoch)] if msg.epoch > self.epoch else []
        if kind is Read and msg.epoch > self.epoch:
            return [FetchView(msg.epoch), Send(sender, ReadReply(msg.token, NOT_SERVING))]
        if msg.epoch > self.epoch:
            return [FetchView(msg.epoch)]
        if kind is Forward:
            rid = tuple(msg.rid) if msg.rid else None
            if self.is_head() and self._past_deadline(rid, msg.deadline_ms, now):
                return [Send(sender, WriteReply(msg.token, PAST_DEADLINE))]
            return self._write(sender, msg.token, rid, list(msg.args), now)
        if kind is Read:
            if self.cluster and (why := self.cluster.check_command(self.state.table, list(msg.args))):
                reply = why  # the tail's table may be behind the asking member's (docs/sharding.md, I5)
            elif self.can_answer(ops.read_keys(list(msg.args)), mono):
                reply = ops.read(self.state, list(msg.args), int(now * 1000), self.rng)
            else:
                reply = NOT_SERVING
            return [Send(sender, ReadReply(msg.token, reply))]
        if msg.epoch < self.epoch:
            return [Send(sender, Stale(self.epoch))]
        if kind is Append:
            if sender != self.pred:
                return []
            fx = [] if self.relayed is msg else self.relay(sender, msg)  # (unless the shell sent it already)
            return fx + self._on_append(sender, msg, now)
        if kind is Ack:
            if sender == self.succ:
                return self._on_ack(sender, msg)
            if self.is_head() and sender == self.view.tail:  # the tail's own word: committed
                self._commit_to(msg.seq)  # everywhere (the middle's ack follows)
            return []
        if kind is Sync:
            return self._on_sync(sender, msg) if sender == self.succ else []
        if kind is Snapshot:
            return self._on_snapshot(sender, msg, now) if sender == self.pred else []
        if kind is SyncRequest:
            return [self._sync(now)] if sender == self.pred else []
        return []

    def _on_sync(self, sender, msg: Sync) -> list:
        """Our successor says where its history ends: resend from there, or send a snapshot."""
        point = (msg.last_epoch, msg.last_seq)
        if self.snapshot_out == (sender, self.epoch, point):
            return []  # that Snapshot is on its way, and the entries after it behind it
        commit = self.last_seq if self.commits_on_apply else self.commit_seq
        self.succ_ready = True
        self._clear_out()
        if point == (self.last_epoch, self.last_seq) or self._holds(point):
            entries = self._resend_after(msg.last_seq)
            if entries is not None:
                fx = [Send(sender, Append(self.epoch, commit, batch)) for batch in batches(entries)]
                return fx or [Send(sender, Append(self.epoch, commit, ()))]
        self.snapshot_out = (sender, self.epoch, point)
        return [Send(sender, Snapshot(self.epoch, self.last_epoch, self.last_seq, commit, self.dump_state(self.state)))]

    def _resend_after(self, seq: int) -> list | None:
        """The window's entries after `seq`, or None once they hold more than RESEND_BYTES (a
        Snapshot then): counted only that far, so a new learner's Sync no longer walks a whole
        window of small entries (37,500 of them, 60 ms of the tail's loop, at the add of a member
        to a 300,000-key chain)."""
        window = self.window
        entries, size = [], 0
        for entry in itertools.islice(window, max(0, seq + 1 - window[0][1]) if window else 0, None):
            size += _payload((entry,))
            if size > RESEND_BYTES:
                return None
            entries.append(entry)
        return entries

    def _holds(self, point) -> bool:
        """Is (epoch, seq) an entry of our history from which the window can resend?"""
        epoch, seq = point
        if seq > self.last_seq:
            return False
        if (epoch, seq) == self.base:
            return True
        window = self.window
        if not window or seq < window[0][1]:
            return False
        return window[seq - window[0][1]][0] == epoch

    def relay(self, sender: str, msg) -> list:
        """A middle member's Append from its predecessor, sent on before it is applied: the
        successor works on the entries while this member applies them. Only an Append that
        continues this member's history exactly, with nothing of its own still to send before
        it: then the successor's history stays a prefix of this member's (it applies them in
        the same step, `on_message`). [Send] or []; `on_message(sender, msg)` must follow."""
        if type(msg) is not Append or sender != self.pred or msg.epoch != self.epoch:
            return []
        entries = msg.entries
        if (not self.succ_ready or self.out_entries or self.commits_on_apply or not entries or self._learning()
                or entries[0][1] != self.last_seq + 1 or entries[-1][1] != self.last_seq + len(entries)):
            return []
        self.relayed = msg
        return [Send(self.succ, Append(self.epoch, self.commit_seq, entries))]

    def _on_append(self, sender, msg: Append, now: float) -> list:
        relayed, self.relayed = self.relayed is msg, None
        tail = self.commits_on_apply
        learning = self._learning()  # serves no reads and has no sent list
        framed = not self.out_entries
        fx = []
        for entry in msg.entries:
            seq = entry[1]
            if seq <= self.last_seq:
                continue  # resent after a reconnect: apply is idempotent by seq
            if seq != self.last_seq + 1:
                fx.append(self._sync(now))  # a gap: ask for the missing entries
                break
            if not valid_op(entry[4]):
                raise RemoteProtocolError(f"entry {seq} from {sender} holds no op this member applies")
            self._apply(entry, dirty=not tail and not learning)
        if relayed:
            self._clear_out()  # sent on already
        self.out_framed = framed
        if learning:
            self._trim()
        self._synced_with_pred(msg.commit_seq)
        return fx

    def _synced_with_pred(self, commit_seq: int) -> None:
        """After an Append or Snapshot: commit what we can and tell the predecessor."""
        first = not self.pred_synced
        self.pred_synced = True
        if first and self.barrier is not None:
            self.barrier = commit_seq
        if self.commits_on_apply:
            self._commit_to(self.last_seq)
        if self._learning():
            self.out_ack = self.last_seq  # a learner's ack reports progress, not commit
        elif first and self.commit_seq:
            self.out_ack = self.commit_seq  # a new predecessor may not know how far we committed
        if self.barrier is not None and self.pred_synced and self.last_seq >= self.barrier:
            self.barrier = None

    def _on_snapshot(self, sender, msg: Snapshot, now: float) -> list:
        """Install the predecessor's state: its dump (bytes), or a `StateLoad` of it that the
        shell completed across loop turns (chain/state_load.py)."""
        blob = msg.state
        if type(blob) is StateLoad:
            state, blob = blob.state, blob.blob
        else:
            try:
                state = KVState.load(blob)
            except Exception as exc:  # anything msgpack or the shape check raises: nothing changed yet
                raise RemoteProtocolError(f"snapshot from {sender} is not a state dump: {exc!r}"[:200]) from None
        self.state = state
        self.last_epoch, self.last_seq = msg.last_epoch, msg.last_seq
        self.window.clear()
        self.base = (msg.last_epoch, msg.last_seq)
        self.to_persist.clear()
        self.dirty.clear()
        self.dirtied.clear()
        self.commit_seq = min(msg.commit_seq, msg.last_seq)
        self.dirty_until = msg.last_seq
        state.versions.forget(msg.last_seq)
        self.published.clear()
        fx: list = [PersistSnapshot(blob)]
        self._synced_with_pred(msg.commit_seq)
        self.snapshot_out = None  # a Snapshot we sent is of the state just replaced
        if self.succ:  # our successor's history may no longer be a prefix of ours
            self.succ_ready = False
            fx.append(Send(self.succ, SyncRequest(self.epoch)))
        return fx

    def _on_ack(self, sender, msg: Ack) -> list:
        view = self.view
        if view.learner == sender:
            self.learner_acked = msg.seq
            if self.handing_over:
                self._commit_to(msg.seq)
            return self._maybe_hand_over()
        self._commit_to(msg.seq)
        return []

    # -- read leases --------------------------------------------------------------------------

    def on_probe(self, epoch: int, nonce: int, grant: int, now: float) -> list:
        """The coordinator's probe `nonce` under `epoch`. We answer it at `now` (monotonic
        seconds: the lease's clock, as in `can_answer`); the next probe names it in `grant` only
        if our answer reached the coordinator in time, and then the lease runs from `now` of
        that answer (the coordinator counts from when it got it, which is later). A probe delayed in our socket (we were paused) grants nothing new. The
        coordinator installs no view without us before our lease ran out, unless we gave it
        back (`revoke`). A probe from a newer epoch: we are stale (and managed all the same: a
        coordinator that probed us may replace us, whether or not our epoch was current)."""
        self.managed = self.lease_s is not None
        if epoch > self.epoch:
            return [FetchView(epoch)]
        if epoch != self.epoch or epoch == self.revoked_epoch or self.lease_s is None:
            return []
        if grant and grant == self.probe_nonce:
            self.lease_until = max(self.lease_until, self.probe_answered_at + self.lease_s)
        self.probe_nonce, self.probe_answered_at = nonce, now
        return []

    def revoke(self, epoch: int) -> None:
        """The coordinator is about to replace the view of `epoch`: stop answering reads from
        local data now, and take no new lease under it."""
        self.managed = self.lease_s is not None
        if epoch >= self.epoch:
            self.lease_until = float("-inf")
            self.revoked_epoch = epoch

    # -- links and timers -----------------------------------------------------------------------------

    def on_link(self, peer: str, up: bool, now: float) -> list:
        """The shell's connection to `peer` went down or came back: redo the handshake."""
        fx = []
        if peer == self.succ:
            self.succ_ready = False
            self._clear_out()
            if not up:  # a Snapshot sent is lost with the link (frames queued before it came up are not)
                self.snapshot_out = None
            if up:
                fx.append(Send(peer, SyncRequest(self.epoch)))
        if peer == self.pred:
            self.pred_synced = False
            if up:
                fx.append(self._sync(now))
        if up and self.view is not None and peer == self.view.head:
            fx += self._reforward(now, older_than=0.0)
        return self._route(fx, now)

    def on_timer(self, now: float) -> list:
        fx = self._maybe_hand_over()
        if self.pred and not self.pred_synced and now - self.sync_sent_at >= RETRY_S:
            fx.append(self._sync(now))
        fx += self._reforward(now, older_than=RETRY_S)
        for rtoken, (token, sent) in list(self.reads.items()):
            if now - sent >= READ_TIMEOUT_S:
                del self.reads[rtoken]
                fx.append(Reply(token, NOT_SERVING))
        if self.is_head():
            self._expire_cycle(int(now * 1000))
        fx += [Reply(token, NULL_ARRAY) for token in self.blocked.expired(int(now * 1000), self.gone)]
        return self._route(fx, now)

    def _expire_cycle(self, now_ms: int) -> None:
        """Active expiry, adaptive like Redis's cycle: purge a sample of the due deadlines (one
        PURGE entry), and repeat while more than a quarter of the sample was expired, at most
        EXPIRE_ROUNDS times a tick (a bounded share of the loop's time)."""
        for _ in range(EXPIRE_ROUNDS):
            keys, seen = self.state.expired_keys(now_ms, EXPIRE_SAMPLE)
            if keys:
                self._assign((PURGE, tuple(keys)), None, now_ms)
            if seen < EXPIRE_SAMPLE or 4 * len(keys) <= seen:
                return

    def learner_caught_up(self) -> bool:
        """The tail's word that its learner holds every write the chain committed (told to the
        coordinator once, `LearnerCaughtUp`, and in MEMBER.STATUS): the coordinator then
        promotes the learner. The tail commits only what the learner acked from the hand-over
        on, so the word stays true and the coordinator may act on it at any later time."""
        view = self.view
        return (view is not None and view.learner is not None and self.is_tail() and self.handing_over
                and self.learner_acked >= self.commit_seq)

    def _maybe_hand_over(self) -> list:
        """Once the learner is close behind, put it in the commit path (`handing_over`): from
        then on whatever we acknowledge it holds. Once it also holds what we acknowledged
        before, tell the coordinator: nothing acknowledged is lost if we are removed (or fail)
        before we learn of the view that makes the learner the tail."""
        if self.view is None or self.view.learner is None or not self.is_tail():
            return []
        if not self.handing_over:
            # Only a tail synced with its predecessor under this epoch knows the chain's committed
            # prefix: until then the learner would inherit a commit point that misses acknowledged
            # writes (the barrier it gets from us is our commit_seq).
            synced = self.serving_reads() and (self.pred is None or self.pred_synced)
            if not (self.succ_ready and synced and self.learner_acked >= 0
                    and self.last_seq - self.learner_acked <= LEARNER_LAG):
                return []
            self.handing_over = True
            self._recommit()
        if self.told_caught_up or not self.learner_caught_up():
            return []
        self.told_caught_up = True
        return [LearnerCaughtUp(self.view.chain_id, self.view.epoch, self.view.learner)]

    def next_deadline(self, now: float) -> float:
        return now + 0.1

    def _past_deadline(self, rid, deadline_ms: int, now: float) -> bool:
        """The head: is this forwarded write past its deadline and not applied already (a
        resend of an applied one is answered with its reply, as any retry)?"""
        return (bool(deadline_ms) and now * 1000 > deadline_ms
                and (rid is None or (self.state.seen(rid) is None and not self.state.answered(rid))))

    def _reforward(self, now: float, older_than: float = 0.0) -> list:
        """Resend our outstanding forwards to the head (those sent `older_than` ago), or, once
        we are the head, apply them. One past its deadline is sent no more: its client is
        answered that the outcome is unknown (the head may have applied an earlier send)."""
        view = self.view
        if not self.forwarded or view is None or not view.head:
            return []
        fx = []
        if view.head == self.me:  # we became the head: apply our own outstanding forwards (dedup by rid)
            for ftoken, (token, rid, args, _, deadline_ms) in list(self.forwarded.items()):
                del self.forwarded[ftoken]
                if self._past_deadline(rid, deadline_ms, now):
                    fx.append(Reply(token, PAST_DEADLINE))
                else:
                    fx += self._write(None, token, rid, list(args), now)
            return fx
        for ftoken, rec in list(self.forwarded.items()):
            token, rid, args, sent_at, deadline_ms = rec
            if now * 1000 > deadline_ms:
                del self.forwarded[ftoken]
                fx.append(Reply(token, OUTCOME_UNKNOWN))
            elif now - sent_at >= older_than:
                rec[3] = now
                fx.append(Send(view.head, Forward(self.epoch, ftoken, rid, args, deadline_ms)))
        return fx

    def _fail_waiting(self, error) -> list:
        fx = [self._answer(None, token, error) for waits in self.waiting.values()
              for origin, token, _ in waits if origin is None]
        self.waiting.clear()
        return fx

    # -- blocked clients (catena.chain.blocking) ----------------------------------------------------

    def _pop(self, waiter, now: float) -> list:
        """Send a blocked client's pop, as a write of this member's own."""
        return self._write(None, Attempt(waiter), None, list(waiter.pop), now)

    def _route(self, fx: list, now: float) -> list:
        """The replies to blocked clients' pops go to `blocked` (answered, sent again, or
        blocked), and the clients that applied writes woke send theirs."""
        self.now = now
        blocked = self.blocked
        if not blocked.waiters:
            return fx
        now_ms, out = int(now * 1000), []
        while fx:
            more = []
            for effect in fx:
                if type(effect) is Reply and type(effect.token) is Attempt:
                    waiter = effect.token.waiter
                    verdict, reply = blocked.answered(waiter, effect.value, now_ms, self.gone)
                    if verdict == ANSWER:
                        out.append(Reply(waiter.token, reply))
                    elif verdict == AGAIN:
                        more += self._pop(waiter, now)
                else:
                    out.append(effect)
            if blocked.written:
                for waiter in blocked.woken(lambda key: self.state.get(key, now_ms), self.gone):
                    more += self._pop(waiter, now)
            fx = more
        return out

    # -- the batch of one event-loop turn ---------------------------------------------------------

    def flush(self) -> list:
        """The turn's batch. While `backlog` holds writes, the shell calls this once more next turn.
        Blocked clients' pops sent again meanwhile go in a batch of their own (a few at most)."""
        fx = self._route(self._batch(), self.now)
        for _ in range(3):
            if not (self.to_persist or self.out_entries or self.deferred or self.out_ack is not None):
                break
            fx += self._route(self._batch(backlog=False), self.now)  # still one DEL slice a turn
        return fx

    def _clear_out(self) -> None:
        """Nothing is to be sent to the successor (of what `_apply` added)."""
        self.out_entries.clear()
        self.out_bounded = self.out_bound = 0

    def _batch(self, backlog: bool = True) -> list:
        fx = []
        if backlog and self.backlog and self.is_head():
            self._assign_backlog()
        if self.to_persist:
            fx.append(Persist(self.to_persist))
            self.to_persist = []
        commits = self.commits_on_apply
        if commits and self.commit_seq < self.last_seq:
            self._commit_to(self.last_seq)  # persisted above (a sole member's own writes)
        if self.out_entries:
            commit = self.last_seq if commits else self.commit_seq
            out = self.out_entries
            # bounded frames: a successor's turn stays short
            whole = len(out) <= BATCH and (self.out_framed or (
                self.out_bounded == len(out) and self.out_bound + 64 * len(out) <= FRAME_BYTES))  # (see _payload)
            for batch in (tuple(out),) if whole else batches(out):
                fx.append(Send(self.succ, Append(self.epoch, commit, batch)))
            self._clear_out()
            self.out_framed = False
        if self.out_ack is not None:
            ack = Ack(self.epoch, self.out_ack)
            fx.append(Send(self.pred, ack))
            if self.acks_head and self.is_tail() and self.view.head not in (self.pred, self.me):
                fx.append(Send(self.view.head, ack))  # the head's clients' replies wait on it
            self.out_ack = None
        if self.deferred:
            fx += self.deferred
            self.deferred = []
        return fx


def _big_del(op) -> bool:
    """A DEL of more keys than a slice, or a FLUSH (it names its keys when its turn comes)."""
    return (op[0] == DEL and len(op[1]) > DEL_SLICE) or op[0] == FLUSH


def batches(entries: list):
    """`entries` in Append-sized batches: at most BATCH entries and about FRAME_BYTES of keys and
    values each, so that no frame outgrows what a successor accepts, whatever the values."""
    if len(entries) <= BATCH and _payload(entries) <= FRAME_BYTES:
        if entries:
            yield tuple(entries)
        return
    batch, size = [], 0
    for entry in entries:
        n = _payload((entry,))
        if batch and (len(batch) == BATCH or size + n > FRAME_BYTES):
            yield tuple(batch)
            batch, size = [], 0
        batch.append(entry)
        size += n
    if batch:
        yield tuple(batch)


def _payload(entries) -> int:
    """About how many bytes the ops of `entries` encode to: their keys and values, plus a little
    (one call for a whole batch: it runs for the entries `_batch` has no bound of yet)."""
    n = 64 * len(entries)
    for entry in entries:
        for part in entry[4]:  # (the kind, an int, adds nothing)
            kind = type(part)
            if kind is bytes:
                n += len(part)
            elif kind is tuple:
                n += sum(map(len, part)) + 5 * len(part)
    return n
