"""The member process (shell): RESP server, durable log, peer links and the coordinator, around
one `Replica` machine. No protocol decisions here: inputs go to the machine, its effects are
executed in order (persist before send), and one flush per event-loop turn batches the chain
traffic. A write or fsync that fails or stalls stops the process on the spot (chain/disk.py).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from operator import is_
from pathlib import Path
from typing import NamedTuple, NoReturn

import msgpack

from catena import gcstats
from catena.chain import (blocking, cluster_commands, disk, info, messages, ops, receive, removal, resp3,
                          slot_ops, snapshotter, transactions)
from catena.chain.debug import debug_command
from catena.chain.keys_walk import walk_keys
from catena.chain.link_watch import LinkWatch
from catena.chain.links import PeerInbound, PeerLinks
from catena.chain.liveness import LivenessResponder
from catena.chain.log import MAX_RECORD, DurableLog
from catena.chain.messages import Append, Read, ReadReply, Snapshot
from catena.chain.multi import Transactions
from catena.chain.slot_guard import ClusterMode
from catena.chain.snapshotter import snapshot_parts
from catena.chain.transfer import Dump, Transfers
from catena.chain.replica import LATER, LEASE_S, NOT_SERVING, REQ, Replica
from catena.chain.state import KVState
from catena.coordinator.discovery import CoordinatorClient, NoLeader
from catena.effects import Deliver, FetchView, LearnerCaughtUp, Persist, PersistSnapshot, Reply, Send
from catena.errors import CatenaError, CorruptLog, RemoteProtocolError
from catena.gcstats import GcStats
from catena.loopstats import LoopMonitor
from catena.membership.agent import JoinError, MembershipAgent
from catena.metrics.member import MemberMetrics
from catena.resp.client import ReplyError, internal_auth
from catena.resp.codec import DEFAULT_MAX_BULK_LEN, OK, Error
from catena.resp.commands import ADMIN, DATA, INTERNAL, CommandTable, exec_request, parse_int
from catena.resp.limits import Limits
from catena.resp.pubsub import PubSub, restricted
from catena.resp.server import Deferred, RespServer, Takeover
from catena.control import MasterCaughtUp, MasterRegister, ProbeAnswer, Slowness, encode, encode_answer
from catena.control import decode as decode_control
from catena.view import View

log = logging.getLogger(__name__)

TICK_S = 0.1
SNAPSHOT_MIN_BYTES = 16 * 1024 * 1024  # a log this large, and larger than the last snapshot,
# triggers a snapshot (and log truncation): restart replay stays bounded, snapshots amortised
SNAPSHOT_SPREAD = 0.5  # ... times a factor drawn from [1, 1 + this) for each snapshot: a chain's
# members log the same entries, and without it all of them snapshotted at the same moment
VIEW_POLL_S = 1.0
CLIENT_RIDS = b"client/"  # prefix of data clients' request-id client names (member ids have no "/" before ":")
INDEX_STEP = 20_000  # loaded keys entered in the slot index per loop turn
BIG_EFFECT_BYTES = 8 * 1024 * 1024  # an effect moving more is split in steps, a turn each (see _execute)
TURN_BYTES = 1024 * 1024  # effects moving more in all end the loop turn: the rest waits for the next
MEMBERSHIP_RETRY_S = 1.0
# catena's own commands: without a cluster secret, a connection above maxclients that starts with
# one of these is admitted (to these only); with one, `AUTH catena <secret>` admits it
RESERVED_COMMANDS = frozenset({b"PEER", b"MEMBER.PROBE", b"MEMBER.VIEW", b"MEMBER.REVOKE", b"MEMBER.STATUS"})


class MemberNode:
    def __init__(self, listen: str, data_dir: Path, coordinator: str | None = None,
                 password: str | None = None, fsync: str = "everysec", secret: str | None = None,
                 max_bulk_len: int = DEFAULT_MAX_BULK_LEN, advertise: str | None = None,
                 disk_stall_timeout_s: float = disk.DEFAULT_STALL_TIMEOUT_S, limits: Limits = Limits(),
                 debug_commands: bool = False, liveness_port: int = 0, cluster_enabled: bool = False,
                 chain_id: int = 0):
        self.chain_id = chain_id  # the chain it registers into (with a coordinator)
        self.cluster_enabled = cluster_enabled  # serve only the slots the chain's table gives it (docs/sharding.md)
        self.listen = listen  # where the server binds
        self.me = advertise or listen  # this member's address in views, links and membership
        self.data_dir = Path(data_dir)
        self.coordinator = coordinator
        # Finds the coordinator leader: host:port[,host:port…] (followers redirect) or
        # etcd://…/prefix (the leader key, watched). A bad address fails here, before serving.
        self.discovery = (CoordinatorClient(coordinator, on_change=self._leader_changed, auth=internal_auth(secret))
                          if coordinator else None)
        self.secret = secret
        self.metrics = MemberMetrics()  # what the metrics port cannot read from the state later
        self.io = self.metrics.io  # the data directory's write or fsync in progress (timed)
        self.watchdog = disk.StallWatchdog(self.io, disk_stall_timeout_s, self._disk_stalled)
        self.sync_io = self.metrics.sync_io  # the log's fsync under everysec, in a thread (`_sync_log`)
        self.sync_watchdog = disk.StallWatchdog(self.sync_io, disk_stall_timeout_s, self._disk_stalled)
        self.snapshot_io = self.metrics.snapshot_io  # the snapshot writer thread's (snapshotter.LiveSnapshot)
        self.snapshot_watchdog = disk.StallWatchdog(self.snapshot_io, disk_stall_timeout_s, self._disk_stalled)
        self._snapshot_bytes = 0
        self._snapshot_skew = 1.0 + random.random() * SNAPSHOT_SPREAD  # (drawn again after each snapshot)
        self._snapshotting: snapshotter.LiveSnapshot | None = None  # taking a snapshot (catena.chain.snapshotter)
        self._loaded_steps = 0  # slices of received states loaded, ever (receive.loaded)
        self._store: snapshotter.Store | None = None  # storing a snapshot from a thread: effects wait
        try:
            self.log = DurableLog(self.data_dir / "log", fsync, self.io)
            self.replica = self._recover()
            self.replica.acks_head = self.log.fsync != "always"
        except OSError as exc:
            self._disk_failed("recovering the log", exc)
        except CorruptLog as exc:
            raise CorruptLog(f"{exc}. The records before it are gone, so this member cannot start from its data: "
                             f"move {self.data_dir} aside to have it rejoin empty and copy the chain's data "
                             "(unless it is its chain's last member: then it holds the only copy)") from None
        self.table = CommandTable(password, server_name="catena-member", cluster_secret=secret)
        self.server = RespServer(self.table, max_bulk_len, limits, RESERVED_COMMANDS)
        self._register_commands()
        self.table.register(b"DEBUG", debug_command(debug_commands), -2, role=ADMIN)
        self._flush_scheduled = False
        self._fetch = asyncio.Event()
        self.links: PeerLinks | None = None
        self.link_watch = LinkWatch()  # what the probe answers say about our links
        self.heard: dict[str, float] = {}  # peer -> when bytes last arrived on its link to us (monotonic)
        self.transfers = Transfers(lambda to, frame: self.links.send(to, frame),
                                   lambda to: self.links.reset(to))  # Snapshots streamed to successors
        self.membership: MembershipAgent | None = None
        self.started = time.time()
        self.ready = asyncio.Event()
        self.loop_monitor = LoopMonitor()
        self.gc_stats = GcStats()
        self.gc_schedule = gcstats.Schedule()
        self.liveness: LivenessResponder | None = None  # answers the coordinator off the loop (while running)
        self.liveness_port = liveness_port  # its UDP port (0: any free one)
        self._stopped: asyncio.Future | None = None  # run() waits on it: cancelled, or a fail-stop
        self._failed = False  # an effect could not be executed: execute nothing more
        self._group: asyncio.TaskGroup | None = None
        self._later: deque = deque()  # effects to execute, in order (see _execute)
        self._drain_at: asyncio.TimerHandle | None = None  # a later turn executes `_later`
        self._owed = False  # a deferred append's fdatasync is still to come (`_append`)
        self._encoded: tuple | None = None  # (entries, their msgpack) last packed or received (`_encoding`)

    # -- recovery ------------------------------------------------------------------------------

    def _recover(self) -> Replica:
        blob, records = self.log.recover()
        self.incarnation = time.time_ns()  # a restarted process is a new incarnation
        incarnation = b"%s/%d" % (self.me.encode(), self.incarnation)
        if blob is None:
            state, last = KVState(), (0, 0)
        else:
            last_epoch, last_seq, state_blob = msgpack.unpackb(blob, raw=True)
            state, last = KVState.load(state_blob), (last_epoch, last_seq)
            state.index_step(len(state.unindexed))  # before serving: no turn to spare yet
        entries = [e for r in records for e in msgpack.unpackb(r, raw=True, use_list=False)]
        kept = contiguous(entries, last[1])
        gap = kept < len(entries)
        if gap:
            before = max([last[1]] + [e[1] for e in entries[:kept]])
            log.warning("the log skips from seq %d to seq %d: keeping the history up to seq %d and dropping "
                        "%d entries after it; the chain holds them and this member catches up from it",
                        before, entries[kept][1], before, len(entries) - kept)
            entries = entries[:kept]
        # With a coordinator, reads wait for its first probe's lease: a member cut off before that
        # probe must not answer unchecked once the coordinator has replaced it.
        replica = Replica(self.me, incarnation, state, last, entries, epoch=self._load_epoch(),
                          lease_s=LEASE_S, managed=self.coordinator is not None, rng=random.Random(),
                          gone=_disconnected, cluster=self.cluster_enabled)
        log.info("recovered %d keys, history up to (%d, %d), highest epoch seen %d",
                 len(replica.state.data), replica.last_epoch, replica.last_seq, replica.epoch)
        if gap:  # cut the log back to what we keep before anything is appended after it
            self._snapshot(replica)
        return replica

    def _epoch_file(self) -> Path:
        return self.data_dir / "epoch"

    def _load_epoch(self) -> int:
        try:
            return int(self._epoch_file().read_text())
        except (FileNotFoundError, ValueError):
            return 0

    def _save_epoch(self, epoch: int) -> None:
        self._replace_file(self._epoch_file(), str(epoch).encode())

    def _replace_file(self, path: Path, data: bytes) -> None:
        try:
            disk.replace_file(path, data, self.io)
        except OSError as exc:
            self._disk_failed(f"writing {path.name}", exc)

    # -- commands ------------------------------------------------------------------------------

    def _register_commands(self) -> None:
        t = self.table
        internal = transactions.COMMANDS | slot_ops.COMMANDS  # catena's own: not for data clients
        for name, (arity, _) in ops.WRITES.items():
            t.register(name, self._data, arity, role=INTERNAL if name in internal else DATA)
        for name, (arity, _, _) in ops.READS.items():
            t.register(name, self._read, arity, ordered=True, role=INTERNAL if name in internal else DATA)
        for name, (arity, _, _) in blocking.COMMANDS.items():
            t.register(name, self._data, arity)
        self.transactions = Transactions(t, self._submit)
        self.pubsub = PubSub(t, self._submit)
        t.guard = restricted
        t.register(b"KEYS", self._keys_cmd, 2, ordered=True)  # in slices across loop turns
        t.register(REQ, self._req, -4)
        t.register(b"INFO", self._info, -1)
        t.register(b"WAIT", self._wait, 3, ordered=True)
        t.settings.update({"appendfsync": self.log.fsync, "port": self.listen.rpartition(":")[2],
                           "cluster-enabled": "yes" if self.cluster_enabled else "no"})
        cluster_commands.register(t, lambda: self.replica)
        t.register(b"PEER", self._peer, -2, role=INTERNAL)
        t.register(b"MEMBER.VIEW", self._view_cmd, -4, role=INTERNAL)
        t.register(b"MEMBER.STATUS", lambda c, a: {**self.replica.status(), **self.metrics.status(),
                                                   "state_transfer": self.transfers.progress() + self._loaded_steps,
                                                   "requirepass": int(bool(self.table.password))}, 1)
        t.register(b"MEMBER.PROBE", self._probe_cmd, 4, role=INTERNAL)
        t.register(b"MEMBER.REVOKE", self._revoke_cmd, 2, role=INTERNAL)

    def _probe_cmd(self, client, args):
        """MEMBER.PROBE epoch nonce grant: the coordinator's health probe, which carries the
        read lease for the previous probe we answered in time; answers this process's
        incarnation (a restart shows as a new one), the UDP port of its liveness responder and
        the report on its links (link_watch.py)."""
        probe, now = decode_control(args), time.monotonic()
        self._run(self.replica.on_probe(probe.epoch, probe.nonce, probe.grant, now))
        view, agent = self.replica.view, self.membership
        lost = tuple(agent.machine.not_alive(view.members)) if view and agent and agent.machine else ()
        fsync_s = max(self.io.slowest_fsync(now), self.sync_io.slowest_fsync(now))
        slow = Slowness(int(self.loop_monitor.recent_s(now, 2) * 1000), int(fsync_s * 1000))
        return encode_answer(ProbeAnswer(self.incarnation, self.liveness.port if self.liveness else 0,
                                         self.link_watch.report(self.replica, self.heard, lost, now), slow))

    def _revoke_cmd(self, client, args):
        """MEMBER.REVOKE epoch: the coordinator is replacing that view; give the lease back."""
        self.replica.revoke(decode_control(args).epoch)
        return OK

    def _read(self, client, args):
        """A read: answered in this call when this member may answer it from its own data (the
        machine's `read_now`), else as any data command."""
        value = self.replica.read_now(args, time.time(), time.monotonic())
        if value is LATER:
            return self._data(client, args)
        self.metrics.answered(args, value)
        return resp3.shaped(args, value) if client.resp3 else value

    def _data(self, client, args):
        reply = Deferred()
        token = resp3.token_for(reply, args, True) if client.resp3 else reply
        self._run(self.replica.on_client(self.metrics.track(token, args), args, time.time(), time.monotonic()))
        return reply

    def _submit(self, token, args) -> None:
        self._run(self.replica.on_client(token, args, time.time(), time.monotonic()))

    def _req(self, client, args):
        """CATENA.REQ: a data client's request ids live in their own namespace, so it can never
        name (and so pre-record or replay) the ids members forward writes under, or catena's own.
        `CATENA.REQ id n [low] EXEC` runs the transaction under that request id."""
        if client.user != "catena":
            args = [args[0], CLIENT_RIDS + args[1], *args[2:]]
        if exec_request(args):
            return self.transactions.exec(client, args, rid=tuple(args[:-1]))
        return self._data(client, args)

    def _keys_cmd(self, client, args):
        reply = Deferred()
        self._group.create_task(self._keys(reply, args))
        return reply

    async def _keys(self, reply: Deferred, args) -> None:
        """KEYS in slices across loop turns; if this member may not answer it from its own data,
        the machine asks the tail (which walks in slices too), or refuses it (a removed chain)."""
        removed = self.replica.cluster is not None and self.replica.cluster.removed is not None
        try:
            found = None if removed else await walk_keys(self.replica, args[1], encoded=True)
        except Exception as exc:  # a bug here must not take the member down with it
            log.exception("KEYS failed")
            found = Error(f"ERR KEYS failed: {exc}")
        if found is None:
            self._run(self.replica.on_client(reply, args, time.time(), time.monotonic()))
        else:
            reply.resolve(found)

    async def _keys_for_peer(self, sender: str, msg: Read) -> None:
        try:
            found = await walk_keys(self.replica, msg.args[1], encoded=False)
        except Exception as exc:
            log.exception("KEYS for %s failed", sender)
            found = Error(f"ERR KEYS failed: {exc}")
        self._execute([Send(sender, ReadReply(msg.token, NOT_SERVING if found is None else found))])

    def _peer(self, client, args):
        if self.secret is not None and (len(args) < 3 or args[2].decode() != self.secret):
            return Error("WRONGPASS bad cluster secret on a peer link")
        sender = args[1].decode()
        return Takeover(lambda transport: PeerInbound(transport, sender, self._on_peer_message, self.heard,
                                                      self._received))

    def _view_cmd(self, client, args):
        """MEMBER.VIEW chain_id epoch learner|- member ... (pushed by the coordinator)."""
        self._on_view(decode_control(args).view)
        return OK

    def _info(self, client, args):
        return info.render(self, args)

    def _wait(self, client, args):
        """WAIT numreplicas timeout: a write is acknowledged only once every member of the chain
        holds it, so every other member has this connection's earlier writes already."""
        if parse_int(args[2]) < 0:
            return Error("ERR timeout is negative")
        parse_int(args[1])
        view = self.replica.view
        return max(len(view.members) - 1, 0) if view else 0

    # -- machine inputs and effects -------------------------------------------------------------

    async def _register(self) -> None:
        """Announce this incarnation; keep the cluster id the coordinator answers with. Data
        from another cluster, or an epoch newer than the coordinator's, is refused there."""
        path = self.data_dir / "cluster_id"
        known = path.read_text().strip() if path.exists() else ""
        register = MasterRegister(self.me, self.incarnation, known, self.replica.epoch, self.chain_id)
        reply = await self.discovery.call(*encode(register), timeout=2.0)
        cluster_id = reply.decode() if isinstance(reply, bytes) else ""
        if cluster_id and not known:
            self._replace_file(path, (cluster_id + "\n").encode())

    def _left_chain(self) -> bool:
        view = self.replica.view
        return view is not None and self.me not in view.members and view.learner != self.me

    def _chain_removed(self, view: View) -> None:
        """Our chain was removed (chain/removal.py): refuse every client command from now on;
        the caller stops polling and leaves the membership group."""
        log.warning("chain %d was removed from the cluster (MASTER.REMOVECHAIN, epoch %d): this member serves "
                    "nothing more (clients get -MOVED or an error naming the removal), leaves the membership "
                    "group and may be stopped", view.chain_id, view.epoch,
                    extra={"event": "chain_removed", "chain": view.chain_id, "epoch": view.epoch})
        if self.replica.cluster is None:
            self.replica.cluster = ClusterMode()
        self.replica.cluster.remove(view.chain_id)

    def _on_view(self, view: View) -> None:
        if view.epoch > self.replica.epoch or self.replica.view is None:
            log.info("view epoch %d: %s learner=%s (%s)", view.epoch, ",".join(view.members), view.learner,
                     view.role(self.me), extra={"event": "view_change", "chain": view.chain_id, "epoch": view.epoch})
            self._run(self.replica.on_view(view, time.time()))
            self._save_epoch(self.replica.epoch)
            self.ready.set()

    def _on_peer_message(self, sender: str, msg) -> asyncio.Future | None:
        """A peer's message to the machine; a state transfer is loaded first, across loop turns,
        and the future returned holds the link's later frames until it is installed."""
        if type(msg) is Read and _is_keys(msg.args) and msg.epoch <= self.replica.epoch:
            self._group.create_task(self._keys_for_peer(sender, msg))
            return None
        if type(msg) is Snapshot and type(msg.state) is bytes and self._group is not None:
            installed = asyncio.get_running_loop().create_future()
            self._group.create_task(self._receive(sender, msg, installed))
            return installed
        if type(msg) is Append and self._relays(msg):
            for fx in self.replica.relay(sender, msg):  # sent on first: the successor works on it while we apply it
                self.transfers.send(fx.to, self._frame(fx.msg))
                self.links.flush()
        self._run(self.replica.on_message(sender, msg, time.time(), time.monotonic()))
        return None

    def _relays(self, msg: Append) -> bool:
        """May `msg` be sent on before it is applied (`Replica.relay`)? When nothing waits to be
        executed before it, and it came small and encoded as it will leave (a large one goes
        through `_execute`, which ends the loop turn before it)."""
        known = self._encoded
        return (not self._later and self._drain_at is None and self._store is None and not self._failed
                and known is not None and known[0] is msg.entries and len(known[1]) <= BIG_EFFECT_BYTES)

    async def _receive(self, sender: str, msg: Snapshot, installed: asyncio.Future) -> None:
        try:
            msg = await receive.loaded(sender, msg, self._loading)
            self._run(self.replica.on_message(sender, msg, time.time(), time.monotonic()))
        except Exception as exc:  # noqa: BLE001 - the link closes (a bad dump); the member goes on
            if not isinstance(exc, RemoteProtocolError):
                log.exception("installing the Snapshot from %s failed", sender)
            installed.set_exception(exc)
        else:
            installed.set_result(None)
        finally:
            if not installed.done():  # cancelled: the member stops
                installed.cancel()

    def _loading(self) -> None:
        """A received state's load went on (MEMBER.STATUS `state_transfer` grows with it)."""
        self._loaded_steps += 1

    def _on_link(self, addr: str, up: bool) -> None:
        if not up:
            self.transfers.abandon(addr)
        self._run(self.replica.on_link(addr, up, time.time()))

    def _run(self, effects: list) -> None:
        if effects:
            self._execute(effects)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        """The turn's batch, executed; its frames and replies leave now, not a loop iteration
        later (after another poll for input, which the replies would wait behind)."""
        self._flush_scheduled = False
        self._execute(self.replica.flush())
        if self.links is not None:
            self.links.flush()
        self.server.flush_ready()
        if self.replica.backlog and not self._flush_scheduled:  # a large DEL: a slice per turn
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _execute(self, effects: list, next_turn: bool = False) -> None:
        """Execute effects in order, in this turn unless a big one came before. A large value or
        a snapshot costs several copies of itself (pack, checksum, write, send); each such step
        that moves more than BIG_EFFECT_BYTES ends the loop turn, and so do many small effects
        once they moved TURN_BYTES in all (a learner's catch-up: the whole window resent, 10 MB
        of Appends, held the tail's loop 0.7 s); the rest (and whatever comes meanwhile) runs
        in a later turn, after the I/O already waiting (client requests, probes, heartbeats). A snapshot is taken at once (its history point is the machine's now)
        and stored in order with the rest. `next_turn`: start in the next turn."""
        later = self._later
        if not later and self._drain_at is None and self._store is None and not next_turn:
            done = 0  # the common case (a read's reply): nothing waits, so answer in place
            for fx in effects:
                if type(fx) is not Reply:
                    break
                fx.token.resolve(fx.value)
                done += 1
            else:
                return
            effects = effects[done:]
        for fx in effects:
            if type(fx) is PersistSnapshot:  # the replica installed a state from its predecessor
                fx = _Snapshot(self.replica.last_epoch, self.replica.last_seq, fx.state)
                if self._group is not None:
                    self._group.create_task(self._index_state())
                else:  # not serving yet: nothing to keep waiting
                    while not self.replica.state.index_step(INDEX_STEP):
                        pass
            later.append(fx)
        if self._store is not None:  # `_stored` drains them
            return
        if next_turn and self._drain_at is None:
            self._drain_at = asyncio.get_running_loop().call_later(0, self._drain)
        if self._drain_at is None:
            self._drain()

    async def _index_state(self) -> None:
        """A state loaded from a snapshot enters its keys in the slot index a slice per turn."""
        while not self.replica.state.index_step(INDEX_STEP):
            await asyncio.sleep(0)

    def _drain(self) -> None:
        self._drain_at = None
        later = self._later
        moved = 0  # bytes this turn's effects moved (packed, checksummed, written, sent)
        while later and not self._failed:
            fx = later.popleft()
            try:
                if self._owed and not _forwards(fx):
                    self._settle()
                if type(fx) is Reply:  # most effects (a write's reply): no step to split off
                    fx.token.resolve(fx.value)
                    continue
                if type(fx) is _StoreSnapshot and self._group is not None:
                    self._store_off_loop(fx.blob)  # the rest waits for it (`_stored`)
                    return
                size, rest = self._execute_one(fx)
            except Exception as exc:  # an effect that cannot be executed (say, encoded): stop, never wedge
                self._fail(exc)
                return
            if rest is not None:
                later.appendleft(rest)
            moved += size
            if moved > TURN_BYTES and later:
                if self._owed:  # no turn ends with a sync owed (a read served then would see it)
                    self._settle()
                self._drain_at = asyncio.get_running_loop().call_later(0, self._drain)
                return
        if self._owed:
            self._settle()
        if self._encoded is not None and len(self._encoded[1]) > BIG_EFFECT_BYTES:
            self._encoded = None  # a large value's Append was sent: not held longer

    def _execute_one(self, fx) -> tuple[int, object]:
        """Execute one effect, or its first step: (bytes it moved, the step left, or None)."""
        kind = type(fx)  # (a Reply is resolved by `_drain` itself)
        if kind is Send:
            if type(fx.msg) is Snapshot and type(fx.msg.state) is Dump:  # dumped in slices: streamed
                self.transfers.start(fx.to, fx.msg)
                return 0, None
            frame = self._frame(fx.msg)
            size = len(frame) if type(frame) is bytes else sum(map(len, frame))
            if size > BIG_EFFECT_BYTES:
                return size, _Out(fx.to, frame)
            self.transfers.send(fx.to, frame)
            return size, None
        elif kind is Persist:
            # One record per batch: one checksum per event-loop turn, and at most one msgpack call
            # (one per entry for a batch too big for a record).
            record = self._encoding(fx.entries)
            if len(record) > MAX_RECORD:
                records = [msgpack.packb([e], use_bin_type=True) for e in fx.entries]
                return len(record), _Out(None, records)
            if len(record) > BIG_EFFECT_BYTES:
                return len(record), _Out(None, [record])
            self._append([record], defer_sync=True)
            return len(record), None
        elif kind is _Out:
            if fx.to is None:
                self._append(fx.data, defer_sync=True)
                return sum(map(len, fx.data)), None
            self.transfers.send(fx.to, fx.data)
            return len(fx.data) if type(fx.data) is bytes else sum(map(len, fx.data)), None
        elif kind is _Snapshot:
            return len(fx.state), _StoreSnapshot(snapshot_parts(fx.last_epoch, fx.last_seq, fx.state))
        elif kind is _StoreSnapshot:
            self._store_snapshot(fx.blob)
            return sum(map(len, fx.blob)), None
        elif kind is FetchView:
            self._fetch.set()
        elif kind is Deliver:
            self.pubsub.deliver(fx.channel, fx.message)
        elif kind is LearnerCaughtUp and self.discovery is not None and self._group is not None:
            self._group.create_task(self._tell_caught_up(fx))
        return 0, None

    async def _tell_caught_up(self, fx: LearnerCaughtUp) -> None:
        """Tell the coordinator our learner caught up (it also asks us now and then, should
        this word be lost)."""
        try:
            await self.discovery.call(*encode(MasterCaughtUp(fx.chain_id, fx.epoch, fx.learner)), timeout=2.0)
        except (OSError, asyncio.TimeoutError, ConnectionError, CatenaError, ReplyError) as exc:
            log.info("telling the coordinator that %s caught up: %s", fx.learner, exc or type(exc).__name__)

    def _frame(self, msg) -> bytes | list[bytes]:
        """`msg` packed; an Append around its entries' encoding (`_encoding`)."""
        if type(msg) is Append:
            return messages.append_frame(msg.epoch, msg.commit_seq, self._encoding(msg.entries))
        return messages.pack(msg)

    def _encoding(self, entries) -> bytes:
        """msgpack of `entries` (a log record; the tail of the Append that forwards them): the
        bytes last packed or received for the very same entries, so that a batch is packed at
        most once at the head and not at all by the members it reaches; else packed now."""
        known = self._encoded
        if known is not None and len(known[0]) == len(entries) and all(map(is_, known[0], entries)):
            return known[1]
        record = msgpack.packb(entries, use_bin_type=True)
        self._encoded = (entries, record)
        return record

    def _received(self, entries: tuple, encoded: bytes) -> None:
        """A predecessor's Append brought `entries` encoded so (links.PeerInbound)."""
        self._encoded = (entries, encoded)

    def _append(self, records: list[bytes], defer_sync: bool = False) -> None:
        """Append records to the log. Any failure stops the process here: no later effect (a
        Send, an Ack, a Reply) is executed. `defer_sync` (the batches of the chain's entries):
        under --fsync always, the fdatasync waits until the Append that forwards them to our
        successor is sent (`_settle`), so the members' fsyncs overlap; nothing else, no Ack and
        no Reply, goes out before it (`_drain`)."""
        try:
            self.log.append(records, defer_sync)
        except Exception as exc:  # noqa: BLE001 - whatever it is, the entries are not stored
            self._disk_failed("appending to the log", exc)
        self._owed = defer_sync and self.log.fsync == "always"

    def _settle(self) -> None:
        """The fdatasync a deferred append owes, before anything acknowledges its entries. The
        Append forwarding them leaves first (links write a turn's frames at its end): the
        successor stores them while we sync."""
        self._owed = False
        if self.links is not None:
            self.links.flush()
        try:
            self.log.settle()
        except Exception as exc:  # noqa: BLE001 - the entries may not be stored
            self._disk_failed("syncing the log", exc)

    def _fail(self, exc: BaseException) -> None:
        """An effect could not be executed: execute nothing more, and stop (the coordinator
        replaces this member) rather than leave the chain wedged behind it."""
        self._failed = True
        log.critical("cannot execute the chain's effects; stopping this member", exc_info=exc)
        if self._stopped is not None and not self._stopped.done():
            self._stopped.set_exception(CatenaError(f"member stopped: cannot execute its effects: {exc!r}"))

    def _disk_failed(self, what: str, exc: BaseException) -> NoReturn:
        disk.fail_stop(self.data_dir, what, exc)

    def _disk_stalled(self, what: str, seconds: float) -> None:
        """From the watchdog thread: the loop is stuck in this I/O, so stop from here."""
        disk.fail_stop(self.data_dir, what, f"still running after {seconds:.1f} s, past the "
                       f"{self.watchdog.timeout_s:g} s bound (--disk-stall-timeout-ms): a fail-slow disk")

    def _snapshot(self, replica: Replica | None = None, state: bytes | None = None) -> None:
        """Snapshot the replica's state (`state`: its dump, when the caller has one already)."""
        replica = replica or self.replica
        if state is None:
            state = replica.state.dump()
        self._store_snapshot(snapshot_parts(replica.last_epoch, replica.last_seq, state))

    def _store_snapshot(self, blob: list[bytes]) -> None:
        self._end_snapshotting()
        try:
            self.metrics.timed_snapshot(self.log.snapshot, blob)
        except OSError as exc:
            self._disk_failed("writing a snapshot", exc)
        self._snapshot_taken(sum(map(len, blob)))

    def _store_off_loop(self, blob: list[bytes]) -> None:
        """Store a snapshot from a thread (snapshotter.Store) while the loop serves; the effects
        after it (the entries after it to log, the acks that say they are stored) wait for it:
        nothing is appended to the log meanwhile, so a crash leaves the older snapshot and its
        segments, or this one."""
        self._end_snapshotting()
        size = sum(map(len, blob))
        self._store = snapshotter.Store(lambda: self.metrics.timed_snapshot(self.log.snapshot, blob),
                                        lambda error: self._stored(size, error))

    def _stored(self, size: int, error: BaseException | None) -> None:
        self._store.join()
        self._store = None
        if error is not None:
            self._disk_failed("writing a snapshot", error)
        self._snapshot_taken(size)
        if self._drain_at is None:
            self._drain()

    def _end_snapshotting(self) -> None:
        if self._snapshotting is not None:  # the snapshot about to be stored is newer
            self._snapshotting.abandon()
            self._snapshotting = None

    def _snapshot_taken(self, size: int) -> None:
        self._snapshot_bytes = size
        self._snapshot_skew = 1.0 + random.random() * SNAPSHOT_SPREAD

    # -- lifecycle --------------------------------------------------------------------------------

    async def run(self, started: asyncio.Event | None = None) -> None:
        gcstats.tune()  # the recovered state is long-lived: never walked by the collector
        self.gc_stats.start()
        host, port = self.listen.rsplit(":", 1)
        async with asyncio.TaskGroup() as group:
            self._group = group  # also runs KEYS walks
            self.links = PeerLinks(self.me, group, self._on_link, self.secret)
            self.replica.dump_state = self.transfers.dump  # a Snapshot to a successor: dumped in slices
            self.liveness = LivenessResponder(host, self.incarnation, self.loop_monitor,
                                              self.secret.encode() if self.secret else None, self.liveness_port)
            await self.server.start(host, int(port))
            self.liveness.start()
            log.info("member %s listening on %s, data in %s", self.me, self.listen, self.data_dir)
            for dog in self._watchdogs():
                dog.start()
            if started is not None:
                started.set()
            try:
                group.create_task(self._ticker())
                group.create_task(self.loop_monitor.run())
                if self.coordinator:
                    group.create_task(self._coordinator_loop())
                self._stopped = asyncio.get_running_loop().create_future()
                await self._stopped  # until cancelled, or a fail-stop
            finally:
                self.links.close()
                self.transfers.close()
                self.liveness.stop()
                await self.server.close()
                self.gc_stats.stop()
                if self._snapshotting is not None:  # its snapshot.tmp is dropped (recovery would too)
                    self._snapshotting.abandon()  # (waits for its writer: a hung disk trips the watchdog)
                if self._store is not None:  # the log is the thread's until it is done
                    self._store.join()
                try:
                    self.log.close()
                except OSError as exc:
                    self._disk_failed("syncing the log at shutdown", exc)
                for dog in self._watchdogs():  # (after the log's last fsync: it may hang too)
                    dog.stop()

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            now = time.time()
            self._run(self.replica.on_timer(now))
            await asyncio.sleep(0)  # each of these may be long after a large value: separate turns
            self.gc_schedule.tick()  # the young generation holds what one tick allocated (gcstats)
            if self._store is None:  # (else a thread is storing a snapshot: the log is its alone)
                await self._sync_log()
            if self._store is not None:
                continue
            if self._snapshotting is not None:
                self._poll_snapshotting()
            elif (self.log.size_bytes() >= max(SNAPSHOT_MIN_BYTES, self._snapshot_bytes) * self._snapshot_skew
                    and not any(type(fx) in (_Snapshot, _StoreSnapshot) for fx in self._later)):
                self._start_snapshot()

    async def _sync_log(self) -> None:
        """The log's fdatasync under --fsync everysec, once a second when something was written:
        in a thread, so the loop serves meanwhile (on the loop it held every client 1-2 ms a
        second, up to 9 ms). A failure stops the member, as any failed fsync."""
        try:
            sync = self.log.detach_sync(time.monotonic(), self.sync_io)
            if sync is not None:
                await asyncio.to_thread(sync.run)
        except OSError as exc:
            self.log.sync_failed(exc)
            self._disk_failed("syncing the log", exc)

    def _watchdogs(self) -> tuple[disk.StallWatchdog, ...]:
        """One per thread that writes the data directory: the loop's, the everysec fsync's and
        the snapshot writer's."""
        return self.watchdog, self.sync_watchdog, self.snapshot_watchdog

    def _start_snapshot(self) -> None:
        """A snapshot of the state as of now, taken while the loop serves (snapshotter.LiveSnapshot)."""
        replica = self.replica
        try:
            self._snapshotting = snapshotter.LiveSnapshot(self.log, replica.last_epoch, replica.last_seq, replica.state,
                                                          self.snapshot_io)
        except OSError as exc:
            self._disk_failed("starting a snapshot", exc)

    def _poll_snapshotting(self) -> None:
        try:
            took = self._snapshotting.poll()
        except OSError as exc:
            self._disk_failed("installing a snapshot", exc)
        if took is not None:
            log.info("snapshot of %d bytes taken in %.2f s while serving", self.log.snapshot_bytes(), took)
            self._snapshotting = None
            self.metrics.snapshot.observe(took)
            self._snapshot_taken(self.log.snapshot_bytes())

    def _leader_changed(self, leader: str) -> None:
        log.info("coordinator leader is %s", leader)
        self._fetch.set()  # ask the new leader for the view now

    async def _coordinator_loop(self) -> None:
        """Register with the coordinator leader, then keep our view current (push + poll). While
        no coordinator leads, keep serving with the view we have."""
        try:
            async with asyncio.TaskGroup() as group:
                watch = group.create_task(self.discovery.watch())  # etcd addresses: follow the leader key
                membership = group.create_task(self._membership())
                try:
                    await self._poll_coordinator()  # returns once our chain was removed
                finally:
                    await self.discovery.close()
                watch.cancel()
                membership.cancel()  # leave the membership group: no more heartbeats
        except ExceptionGroup as group_exc:  # surface a refusal as itself (the process exits with it)
            if len(group_exc.exceptions) == 1:
                raise group_exc.exceptions[0] from None
            raise

    async def _membership(self) -> None:
        """Join the membership group (UDP heartbeats on our port number) through the coordinator
        leader, retrying until admitted; on shutdown announce the leave. The coordinator hears
        of our failure from our ring monitors, then confirms it with its own probe."""
        agent = None
        try:
            while agent is None:
                leader = self.discovery.leader
                if leader:
                    candidate = MembershipAgent(self.me, [leader], table=self.table, secret=self.secret,
                                                bind=self.listen)
                    try:
                        await candidate.start()
                        agent = self.membership = candidate
                        break
                    except (JoinError, OSError) as exc:
                        log.warning("membership: %s; retrying", exc)
                await asyncio.sleep(MEMBERSHIP_RETRY_S)
            await asyncio.Future()
        finally:
            if agent is not None:
                await agent.leave()

    async def _poll_coordinator(self) -> None:
        registered = False
        while True:
            try:
                if not registered:
                    await self._register()
                    registered = True
                raw = await self.discovery.call(b"MASTER.GET_VIEW", self.me, b"%d" % self.chain_id, timeout=2.0)
                if raw and removal.removed(view := View.from_words(raw), self.chain_id):
                    self._chain_removed(view)
                    return
                if raw:
                    self._on_view(view)
                if self._left_chain():
                    registered = False  # removed (e.g. after a pause): rejoin as a learner
            except ReplyError as exc:
                if str(exc).startswith("ERR refused"):
                    raise CatenaError(f"the coordinator {self.discovery.leader} refused this member: {exc}") from None
                if str(exc).startswith(("WRONGPASS", "NOAUTH", "NOPERM")):
                    raise CatenaError(
                        f"the coordinator {self.discovery.leader or self.coordinator} refused this member's "
                        f"credentials ({exc}): give "
                        "every catena process the same cluster secret (--secret-file FILE or CATENA_SECRET)") from None
                log.warning("coordinator %s: %s", self.discovery.leader or self.coordinator, exc)
            except NoLeader as exc:
                log.warning("%s; serving with the view of epoch %d meanwhile", exc, self.replica.epoch)
            try:
                async with asyncio.timeout(VIEW_POLL_S):
                    await self._fetch.wait()
            except TimeoutError:
                pass
            self._fetch.clear()


def contiguous(entries, last_seq: int) -> int:
    """How many of the recovered `entries` form an unbroken history after `last_seq` (the
    snapshot's): entries the snapshot already holds may repeat; the first gap ends it."""
    expected = last_seq + 1
    for i, entry in enumerate(entries):
        seq = entry[1]
        if seq > expected:
            return i
        if seq == expected:
            expected += 1
    return len(entries)


def _forwards(fx) -> bool:
    """An effect that may go out before the fdatasync our entries still owe: the Append that
    forwards them to our successor (or the log write of a large batch). The successor stores them
    meanwhile; only acks and replies say they are stored, and those wait."""
    kind = type(fx)
    return (kind is Send and type(fx.msg) is Append) or (kind is _Out and fx.to is None)


class _Out(NamedTuple):
    """The second step of a large Persist (to None: the log, records) or Send (to: a peer, a frame or its parts)."""

    to: str | None
    data: list[bytes] | bytes


class _Snapshot(NamedTuple):
    """The replica's state dump at (last_epoch, last_seq): to pack, then store."""

    last_epoch: int
    last_seq: int
    state: bytes


class _StoreSnapshot(NamedTuple):
    blob: list[bytes]  # snapshot_parts: the blob in parts


def _disconnected(token) -> bool:
    """Has the client awaiting the reply `token` (a Deferred, or one wrapped by `resp3.Shaped`
    and by the metrics' sampling) gone (its connection closed)?"""
    reply = token
    while hasattr(reply, "deferred"):
        reply = reply.deferred
    return reply.conn is None and not reply.done


def _is_keys(args) -> bool:
    return len(args) == 2 and args[0].upper() == b"KEYS"


