"""The coordinator process (shell): admin commands over RESP (credis names), the config
store, and view pushes to members. Decisions are `Reconfig`'s (views) and `CoordinatorMachine`'s
(probes, read leases, revoke-or-wait, failure verdicts; this file runs its effects); this file
persists them before pushing (a view no store has seen never reaches a member) and retries pushes
until each member has the newest view.

Leader and follower: the store (`store.py`) decides who leads. A follower keeps the saved
state in memory (warm standby) and answers leader-only commands with `-NOTLEADER host:port`
(or `-TRYAGAIN` while no leader is known). All leader-only work (pushes, probes, learner
watch, pending admin commands) runs in one TaskGroup that `step_down` cancels. Every change is
decided and saved under one lock: the working state is rolled back to the saved one if the
save fails, and views are pushed and answered from the saved state only.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from pathlib import Path

from catena.chain.node import view_words
from catena.errors import CatenaError
from catena.coordinator.discovery import notleader_error
from catena.coordinator import liveness, sessions
from catena.coordinator.machine import (ADD_TIMEOUT_S, WEDGE_S, AbandonAdd, AskTail, CaughtUp, CheckLiveness,
                                        CoordinatorMachine, Fail, Probe, Restarted, Revoke, decide, told, watched)
from catena.coordinator.reconfig import CoordinatorState, Reconfig
from catena.coordinator.sessions import SessionClock
from catena.coordinator.store import ConfigStore, EmbeddedStore, NotLeader
from catena.membership.agent import MembershipAgent
from catena.metrics import coordinator as why
from catena.resp.client import ReplyError, RespConnection, call, internal_auth
from catena.resp.codec import DEFAULT_MAX_BULK_LEN, OK, Error
from catena.resp.commands import ADMIN, DATA, INTERNAL, CommandTable
from catena.resp.server import RespServer
from catena.view import View

log = logging.getLogger(__name__)

IDENTITY_TIMEOUT_S = 1.0  # MASTER.ADD asks the address who it is, within this
PUSH_RETRY_S = 0.5
SESSION_CHECK_S = 0.1  # how often the leader looks for expired sessions
SESSION_DEL_BATCH = 1000  # keys per DEL when a session ends


_CAUSES = {Fail: why.FAILURE, Restarted: why.RESTART, CaughtUp: why.CAUGHT_UP, AbandonAdd: why.ROLLED_BACK}


def _addr(args) -> str:
    host, port = args[1].decode(), args[2].decode()
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"bad port {port!r}")
    return f"{host}:{int(port)}"


def _text(raw) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def _as_map(raw) -> dict:
    """A map reply (a flat RESP2 list of keys and values) as a dict."""
    return {raw[i]: raw[i + 1] for i in range(0, len(raw) - 1, 2)} if isinstance(raw, list) else {}


class Coordinator:
    def __init__(self, listen: str, store: ConfigStore, password: str | None = None, cluster_id: str | None = None,
                 secret: str | None = None, advertise: str | None = None, admin_password: str | None = None):
        self.listen = listen  # where the server binds
        self.me = advertise or listen  # the address members, clients and the store know us by
        self.secret = secret  # the cluster secret: our calls to members authenticate with it
        self._auth = internal_auth(secret)
        self.store = store
        self.cluster_id = cluster_id
        self.saved = CoordinatorState(cluster_id=cluster_id or "")  # the state the store holds
        self.reconfig = Reconfig(CoordinatorState.from_dict(self.saved.to_dict()))  # working copy
        self.role = "follower"
        self.table = CommandTable(password, server_name="catena-coordinator", cluster_secret=secret,
                                  admin_password=admin_password)
        self.server = RespServer(self.table, DEFAULT_MAX_BULK_LEN, internal=True)
        self._changed = asyncio.Event()  # set (and replaced) whenever the view changes
        self._lock = asyncio.Lock()  # one decision + save at a time
        self._pushed: dict[str, int] = {}  # member -> newest epoch it acknowledged
        self._push_wake: dict[str, asyncio.Event] = {}
        self._main: asyncio.TaskGroup | None = None  # the process's tasks
        self._group: asyncio.TaskGroup | None = None  # leader-only tasks (None while following)
        self._leading: asyncio.Task | None = None
        self._stopping: asyncio.Task | None = None  # the last term's leader work, winding down
        self.machine = CoordinatorMachine(wedge_s=WEDGE_S)  # probes, leases, revoke-or-wait, verdicts, learner hand-over
        self._liveness_ports: dict[str, int] = {}  # member -> its liveness responder's UDP port (its probe answers say)
        self._machine_wake = asyncio.Event()  # set: the machine's next deadline may have moved
        self._probe_conns: dict[str, RespConnection] = {}  # member -> the kept probe connection
        self.membership: MembershipAgent | None = None
        self.metrics = why.CoordinatorMetrics()  # counted events and the event ring (metrics port)
        for name, fn, arity, role in (
            (b"MASTER.ADD", self._add, 3, ADMIN), (b"MASTER.REMOVE", self._remove, 3, ADMIN),
            (b"MASTER.REGISTER", self._register, -3, INTERNAL), (b"MASTER.GET_CHAIN", self._get_chain, -1, DATA),
            (b"MASTER.HEAD", self._head, -1, DATA), (b"MASTER.TAIL", self._tail, -1, DATA),
            (b"MASTER.GET_VIEW", self._get_view, -1, DATA),
        ):
            self.table.register(name, self._leader_only(fn), arity, role=role)
        self.table.register(b"MASTER.STATUS", self._status, -1)
        self.table.register(b"MASTER.LEADER", self._leader, 1)
        for name, fn, arity in ((b"MASTER.SESSION.OPEN", self._session_open, 2),
                                (b"MASTER.SESSION.PING", self._session_ping, 2),
                                (b"MASTER.SESSION.ATTACH", self._session_attach, -3),
                                (b"MASTER.SESSION.CLOSE", self._session_close, 2)):
            self.table.register(name, self._leader_only(fn), arity)
        self._session_clock = SessionClock()  # when each session last pinged (leader only, never saved)
        self._session_enders: dict[str, asyncio.Task] = {}  # session -> the task ending it

    @property
    def add_timeout_s(self) -> float:
        """An add whose learner makes no progress this long is rolled back."""
        return self.machine.add_timeout_s

    @add_timeout_s.setter
    def add_timeout_s(self, seconds: float) -> None:
        self.machine.add_timeout_s = seconds

    @property
    def view(self) -> View:
        """The newest saved view (what members may be told)."""
        return self.saved.views[0]

    # -- leader / follower (called by the store) ---------------------------------------------------

    def lead(self, fence: int, state: dict | None) -> None:
        """We lead under `fence`, starting from `state` (the newest saved; None: a new store)."""
        self.saved = CoordinatorState.from_dict(state) if state else CoordinatorState(
            cluster_id=self.cluster_id or uuid.uuid4().hex)
        self.reconfig = Reconfig(CoordinatorState.from_dict(self.saved.to_dict()))
        self.role = "leader"
        self._leading = self._main.create_task(self._lead(state is None, self._leading or self._stopping))

    def step_down(self, reason: str) -> None:
        """Stop acting now: no admin command is answered as leader from here on; all leader-only
        work is cancelled; the working state goes back to the saved one."""
        if self.role != "leader":
            return
        self.role = "follower"
        log.warning("no longer the leader (%s): cancelling leader work", reason,
                    extra={"event": "leader_change", "cause": reason})
        self.metrics.leading(False, self.me, self.view.epoch, f"{self.me} stopped leading: {reason}")
        if self._leading is not None:
            self._leading.cancel()
            self._stopping, self._leading = self._leading, None
        self.reconfig = Reconfig(CoordinatorState.from_dict(self.saved.to_dict()))

    def follow(self, state: dict) -> None:
        """A follower's warm copy of the saved state (from the store's watch)."""
        if self.role == "leader":
            return
        self.saved = CoordinatorState.from_dict(state)
        self.reconfig = Reconfig(CoordinatorState.from_dict(state))

    def _acting(self) -> bool:
        return self.role == "leader" and self._group is not None and self.store.leading()

    def _not_leader(self) -> Error:
        leader = self.store.leader
        return Error(notleader_error(leader if leader != self.me else None))

    def _leader_only(self, fn):
        def handler(client, args):
            if not self._acting():
                return self._not_leader()
            return fn(client, args)
        return handler

    def _spawn(self, coro) -> asyncio.Future:
        """Run an admin command's work as leader work (cancelled on step-down, not when the
        client disconnects); the returned future is the client's reply."""
        reply = asyncio.get_running_loop().create_future()

        async def guarded():
            try:
                result = await coro
            except NotLeader:
                result = self._not_leader()
            except asyncio.CancelledError:
                if not reply.done():
                    reply.set_result(self._not_leader())
                raise
            except (ValueError, CatenaError) as exc:
                result = Error(f"ERR {exc}")
            if not reply.done():
                reply.set_result(result)

        self._group.create_task(guarded())
        return reply

    # -- commands -------------------------------------------------------------------------------

    def _register(self, client, args):
        """MASTER.REGISTER host port [incarnation [cluster-id epoch]]: a member started with
        --coordinator announces itself; the reply is the cluster id it must keep."""
        addr = _addr(args)
        incarnation = args[3].decode() if len(args) > 3 else "0"
        cluster_id = args[4].decode() if len(args) > 4 else ""
        epoch = int(args[5]) if len(args) > 5 else 0

        async def work():
            changed = await self._change(lambda r: r.register(addr, incarnation, cluster_id=cluster_id, epoch=epoch),
                                         cause=(why.JOIN, addr))
            if isinstance(changed, str):
                log.warning("refused registration of %s: %s", addr, changed)
                return Error(f"ERR refused: {addr} {changed}")
            self.machine.registered(addr, incarnation)  # its probes will answer this one
            return self.saved.cluster_id

        return self._spawn(work())

    def _add(self, client, args):
        addr = _addr(args)

        def decide(r: Reconfig):
            r.state.retired.pop(addr, None)
            return r.add(addr)

        async def work():
            if addr not in self._watched() and (refused := await self._identity_refusal(addr)):
                log.warning("refused MASTER.ADD %s: %s", addr, refused)
                return Error(f"ERR cannot add {addr}: {refused}")
            await self._change(decide, cause=(why.ADMIN_ADD, addr))
            return await self._wait_member(addr)

        return self._spawn(work())

    async def _identity_refusal(self, addr: str) -> str | None:
        """Why `addr` cannot be added (None: it can): a catena member must answer there and know
        itself by that address, the one its peers and views will use (`localhost:P` for a member
        that is `127.0.0.1:P` would never take its place as the learner)."""
        try:
            raw = await call(addr, b"MEMBER.STATUS", timeout=IDENTITY_TIMEOUT_S, auth=self._auth)
        except ReplyError as exc:
            return f"it does not answer as a catena member ({exc})"
        except (OSError, asyncio.TimeoutError, ConnectionError) as exc:
            return f"no catena member answers there ({type(exc).__name__}: {exc or 'no answer'})"
        me = _as_map(raw).get(b"me")
        if not isinstance(me, bytes):
            return "it does not answer as a catena member (no identity in its MEMBER.STATUS)"
        if me.decode() != addr:
            return f"the member there knows itself as {me.decode()}; add it by that address"
        return None

    async def _wait_member(self, addr: str):
        """Until `addr` is in the chain and holds a read lease (so it answers reads at once), or
        its add was rolled back."""
        try:
            async with asyncio.timeout(ADD_TIMEOUT_S):
                while addr not in self.view.members:
                    if addr != self.view.learner and addr not in self.saved.queued:
                        return Error(f"ERR the add of {addr} was rolled back: it made no progress for "
                                     f"{self.add_timeout_s:g} s, or it failed while syncing")
                    await self._changed.wait()
                while addr in self.view.members and not self.machine.granted(addr):
                    await asyncio.sleep(self.machine.health.interval_s / 2)
            return OK
        except TimeoutError:
            return Error(f"ERR {addr} is still catching up with the tail; it joins when it has (see MASTER.GET_CHAIN)")

    def _remove(self, client, args):
        addr = _addr(args)
        state = self.saved
        if addr not in self._watched() and addr not in state.queued and addr not in state.registry:
            return Error(f"ERR {addr} is not a member of the chain")

        async def work():
            refused = await self._change(lambda r: r.retire(addr), also=[addr], cause=(why.ADMIN_REMOVE, addr))
            return Error(refused) if isinstance(refused, str) else OK

        return self._spawn(work())

    def _get_chain(self, client, args):
        return list(self.view.members)

    def _head(self, client, args):
        return self.view.head

    def _tail(self, client, args):
        return self.view.tail

    def _get_view(self, client, args):
        return view_words(self.view)

    def _status(self, client, args):
        """Answered by every coordinator: a follower shows its warm copy of the saved state."""
        v = self.view
        role = "leader" if self._acting() else "follower"
        return {"chain_id": v.chain_id, "epoch": v.epoch, "members": list(v.members), "learner": v.learner,
                "queued": list(self.saved.queued), "fence": self.store.fence if role == "leader" else 0,
                "role": role, "leader": self.me if role == "leader" else self.store.leader,
                "cluster_id": self.saved.cluster_id, "store": str(self.store), "metrics": self.metrics.url}

    def _leader(self, client, args):
        """MASTER.LEADER: the leader's address as this coordinator knows it (nil: none known)."""
        return self.me if self._acting() else self.store.leader

    # -- client sessions ------------------------------------------------------------------------

    def _session_open(self, client, args):
        """MASTER.SESSION.OPEN ttl_ms: a new session; the reply is its id. Its TTL runs from now."""
        ttl_ms = sessions.check_ttl_ms(args[1])
        sid = uuid.uuid4().hex

        async def work():
            if refused := await self._sessions_unguarded():
                return Error(refused)
            await self._change(lambda r: sessions.open_session(r.state.sessions, sid, ttl_ms))
            self._session_clock.track(sid, ttl_ms / 1000, time.monotonic())
            return sid

        return self._spawn(work())

    async def _sessions_unguarded(self) -> str | None:
        """A session's keys are deleted with catena's own credential, so only a caller who could
        write them may attach them: when the members require a password, so must we (the same
        one, given with --requirepass). Why sessions are refused, or None."""
        if self.table.password is not None or self.view.head is None:
            return None
        try:
            raw = await call(self.view.head, b"MEMBER.STATUS", timeout=1.0, auth=self._auth)
        except (OSError, asyncio.TimeoutError, ConnectionError, ReplyError) as exc:
            return f"TRYAGAIN cannot tell whether the members require a password ({exc or type(exc).__name__})"
        if _as_map(raw).get(b"requirepass"):
            return ("NOPERM the members require a password and this coordinator has none: sessions would let "
                    "anyone delete their keys; start the coordinator with the members' --requirepass")
        return None

    def _session_alive(self, sid: str, sessions_table: dict) -> bool:
        """A ping: the session is saved, not being ended, and its TTL has not run out."""
        entry = sessions_table.get(sid)
        return (entry is not None and not entry.get("ending")
                and self._session_clock.ping(sid, entry["ttl_ms"] / 1000, time.monotonic()))

    def _session_ping(self, client, args):
        """MASTER.SESSION.PING id: OK, or `-ERR no such session` (expired, closed or unknown)."""
        return OK if self._session_alive(args[1].decode(errors="replace"), self.saved.sessions) \
            else Error(sessions.NO_SUCH_SESSION)

    def _session_attach(self, client, args):
        """MASTER.SESSION.ATTACH id key…: bind keys to a live session (also counts as a ping)."""
        sid, keys = args[1].decode(errors="replace"), list(args[2:])

        def decide(r: Reconfig):
            if not self._session_alive(sid, r.state.sessions):
                return sessions.NO_SUCH_SESSION
            return sessions.attach(r.state.sessions, sid, keys)

        async def work():
            refused = await self._change(decide)
            return Error(refused) if isinstance(refused, str) else OK

        return self._spawn(work())

    def _session_close(self, client, args):
        """MASTER.SESSION.CLOSE id: delete the session's keys (through the chain), then drop it."""
        sid = args[1].decode(errors="replace")
        if sid not in self.saved.sessions:
            return Error(sessions.NO_SUCH_SESSION)

        async def work():
            await self._end_session(sid)
            return OK

        return self._spawn(work())

    def _end_session(self, sid: str) -> asyncio.Task:
        """The task ending `sid` (one per session, in the leader's TaskGroup)."""
        task = self._session_enders.get(sid)
        if task is None:
            enders = self._session_enders  # this term's (a new term starts a new dict)
            task = enders[sid] = self._group.create_task(self._ending(sid))
            task.add_done_callback(lambda _: enders.pop(sid, None))
        return task

    async def _ending(self, sid: str) -> None:
        """Mark it ending (saved: no more keys or pings; a new leader resumes from here), delete
        its keys through the chain, then drop it (saved)."""
        entry = self.saved.sessions.get(sid)
        if entry is None:
            return
        if not entry.get("ending") and isinstance(
                await self._change(lambda r: sessions.mark_ending(r.state.sessions, sid)), str):
            return
        keys = [sessions.key_bytes(k) for k in self.saved.sessions.get(sid, {}).get("keys", [])]
        await self._delete_session_keys(sid, keys)
        await self._change(lambda r: sessions.drop(r.state.sessions, sid))
        self._session_clock.forget(sid)
        log.info("session %s ended: its %d keys deleted", sid, len(keys))

    async def _delete_session_keys(self, sid: str, keys: list[bytes]) -> None:
        """DEL at the head (a write the head answers is committed), in batches; each batch has
        a request id derived from the session, so a retry (ours, or the next leader's) applies
        once. Retried until the head answers; the chain may be repairing meanwhile."""
        for first in range(0, len(keys), SESSION_DEL_BATCH):
            n = first // SESSION_DEL_BATCH + 1
            pause = SESSION_CHECK_S
            while True:
                head = self.view.head
                try:
                    if head is None:
                        raise ConnectionError("the chain has no members")
                    await call(head, b"CATENA.REQ", f"session:{sid}", n, n, b"DEL",
                               *keys[first:first + SESSION_DEL_BATCH], timeout=2.0, auth=self._auth)
                    break
                except (OSError, asyncio.TimeoutError, ConnectionError, ReplyError) as exc:
                    log.info("deleting the keys of session %s at %s: %s; retrying", sid, head, exc)
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, 1.0)

    async def _expire_sessions(self) -> None:
        """Leader only: end each session whose pings stopped for its TTL, and finish the ends a
        former leader left half done. Sessions it had not timed get a full TTL from now."""
        while True:
            now = time.monotonic()
            saved = self.saved.sessions
            self._session_clock.sync({sid: e["ttl_ms"] / 1000 for sid, e in saved.items()}, now)
            for sid in self._session_clock.expired(now):
                if sid in saved and not saved[sid].get("ending") and sid not in self._session_enders:
                    log.info("session %s expired (no ping for %d ms): deleting its %d keys", sid,
                             saved[sid]["ttl_ms"], len(saved[sid]["keys"]))
                    self._end_session(sid)
            for sid, entry in saved.items():
                if entry.get("ending"):
                    self._end_session(sid)
            await asyncio.sleep(SESSION_CHECK_S)

    # -- persisting and pushing views -----------------------------------------------------------

    async def _change(self, decide, also: list[str] = (), cause: tuple[str, str] = ("", "")):
        """Decide (on the working state) and save, one change at a time, as the leader; then push
        the views that changed (`cause`: why, and the member it is about, for logs and metrics). A failed save puts the working state back to the saved one and
        raises (NotLeader: we lost the term; nothing was pushed)."""
        async with self._lock:
            if not self._acting():
                raise NotLeader(self.store.leader)
            changed = decide(self.reconfig)
            if isinstance(changed, str):
                return changed
            for revoke in self.machine.revokes(self.saved.views[0], self.reconfig.view(0)):
                await self._revoke(revoke)
            new = self.reconfig.state.to_dict()
            if new != self.saved.to_dict():
                try:
                    await self.store.save(new)
                except BaseException:
                    self.reconfig = Reconfig(CoordinatorState.from_dict(self.saved.to_dict()))
                    raise
                self.saved = CoordinatorState.from_dict(new)
            self._after_save(changed, also, cause)
            return changed

    async def _revoke(self, revoke: Revoke) -> None:
        """Before a view without `revoke.member` is saved: it gives its read lease back when
        asked; if it cannot be asked, its lease runs out first (the machine says when)."""
        addr = revoke.member
        try:
            await call(addr, b"MEMBER.REVOKE", revoke.epoch, timeout=revoke.timeout_s, auth=self._auth)
            return
        except (OSError, asyncio.TimeoutError, ConnectionError, ReplyError):
            pass
        delay = self.machine.revoke_unanswered(addr) - time.monotonic()
        if delay > 0:
            log.info("waiting %.2f s for the read lease of %s to run out before replacing it", delay, addr)
            await asyncio.sleep(delay)

    def _after_save(self, changed: list[View], also: list[str] = (), cause: tuple[str, str] = ("", "")) -> None:
        """Push to every member the view names (and to removed ones); probe and watch as needed."""
        if not changed:
            return
        for view in changed:
            log.info("view epoch %d (%s): members=%s learner=%s", view.epoch, why.describe(*cause),
                     ",".join(view.members), view.learner,
                     extra={"event": "view_change", "cause": cause[0], "chain": view.chain_id, "epoch": view.epoch})
            self.metrics.view_changed(view, *cause)
        targets = set(self.view.members) | set(also) | ({self.view.learner} - {None})
        for old in changed:
            targets |= set(old.members)
        for addr in targets:
            self._ensure_pusher(addr).set()
        self._execute(self.machine.on_saved(self.view, time.monotonic()))
        self._changed.set()
        self._changed = asyncio.Event()

    def _ensure_pusher(self, addr: str) -> asyncio.Event:
        wake = self._push_wake.get(addr)
        if wake is None:
            wake = self._push_wake[addr] = asyncio.Event()
            self._group.create_task(self._pusher(addr, wake))
        return wake

    async def _pusher(self, addr: str, wake: asyncio.Event) -> None:
        """Push the newest view to `addr` until it has it; stops once it left the chain and knows."""
        while True:
            await wake.wait()
            wake.clear()
            view = self.view
            if self._pushed.get(addr, -1) >= view.epoch:
                continue
            try:
                await call(addr, b"MEMBER.VIEW", *view_words(view), timeout=1.0, auth=self._auth)
                self._pushed[addr] = view.epoch
            except (OSError, asyncio.TimeoutError, ConnectionError, ReplyError) as exc:
                log.debug("push of epoch %d to %s failed: %s", view.epoch, addr, exc)
                if addr in view.members or addr == view.learner:
                    await asyncio.sleep(PUSH_RETRY_S)
                    wake.set()

    def _watched(self) -> set[str]:
        return watched(self.view)

    # -- executing the machine's effects ----------------------------------------------------------

    def _execute(self, effects: list, rearm: bool = True) -> None:
        """Run the machine's effects as leader tasks; close the probe connections of members it
        no longer probes; re-arm its timer (its deadline may have moved)."""
        for fx in effects:
            if isinstance(fx, Probe):
                self._group.create_task(self._probe(fx))
            elif isinstance(fx, CheckLiveness):
                self._group.create_task(self._check_liveness(fx))
            elif isinstance(fx, AskTail):
                self._group.create_task(self._ask_tail(fx))
            else:
                self._group.create_task(self._decide(fx))
        for addr in [a for a in self._probe_conns if not self.machine.probing(a)]:
            self._group.create_task(self._probe_conns.pop(addr).close())
        if rearm:
            self._machine_wake.set()

    async def _machine_timer(self) -> None:
        """The machine's one timer: feed it `on_timer` at its next deadline."""
        while True:
            due = self.machine.next_deadline()
            try:
                async with asyncio.timeout(None if due is None else max(0.0, due - time.monotonic())):
                    await self._machine_wake.wait()
            except TimeoutError:
                pass
            self._machine_wake.clear()
            self._execute(self.machine.on_timer(time.monotonic()), rearm=False)

    async def _probe(self, probe: Probe) -> None:
        """MEMBER.PROBE on the member's kept connection (it also renews the member's read lease)."""
        addr, conn = probe.member, self._probe_conns.pop(probe.member, None)
        try:
            if conn is None:
                conn = await RespConnection.open(addr, probe.timeout_s, self._auth)
            sent = time.monotonic()
            answer = await conn.call(b"MEMBER.PROBE", probe.epoch, probe.nonce, probe.grant, timeout=probe.timeout_s)
            self.metrics.probed(time.monotonic() - sent, True)
        except (OSError, asyncio.TimeoutError, ConnectionError, ReplyError) as exc:
            self.metrics.probed(0.0, False)
            broken = conn is not None and not isinstance(exc, asyncio.TimeoutError)
            fx = self.machine.on_probe_failed(addr, probe.nonce, time.monotonic(),
                                              refused=isinstance(exc, ConnectionRefusedError), broken=broken)
        else:
            self._probe_conns[addr], conn = conn, None  # kept for the next probe
            incarnation, port = answer if isinstance(answer, list) and len(answer) == 2 else (answer, None)
            if isinstance(port, int) and port:
                self._liveness_ports[addr] = port
            fx = self.machine.on_probe_answer(addr, probe.nonce, _text(incarnation), time.monotonic())
        finally:
            if conn is not None:
                await conn.close()
        self._execute(fx)

    async def _check_liveness(self, check: CheckLiveness) -> None:
        """Ask the member's liveness responder (off its event loop) how its process and loop are."""
        addr, port = check.member, self._liveness_ports.get(check.member)
        secret = self.secret.encode() if self.secret else None
        alive = None if port is None else await liveness.ask(addr.rpartition(":")[0], port, secret, check.timeout_s)
        if alive is not None:
            log.info("member %s missed its probe but answers liveness (loop beat %d, current turn %.2f s)",
                     addr, alive.beats, alive.turn_s)
        self._execute(self.machine.on_liveness(addr, check.nonce, time.monotonic(),
                                               None if alive is None else str(alive.incarnation),
                                               0.0 if alive is None else alive.turn_s))

    async def _ask_tail(self, ask: AskTail) -> None:
        """How far the learner got, as the tail says (MEMBER.STATUS)."""
        try:
            status = _as_map(await call(ask.tail, b"MEMBER.STATUS", timeout=ask.timeout_s, auth=self._auth))
        except (OSError, asyncio.TimeoutError, ConnectionError, ReplyError) as exc:
            log.debug("learner progress from %s: %s", ask.tail, exc)
            fx = self.machine.on_tail_status(ask, time.monotonic())
        else:
            acked = status.get(b"learner_acked", -1)
            fx = self.machine.on_tail_status(ask, time.monotonic(), epoch=status.get(b"epoch"),
                                             caught_up=status.get(b"learner_caught_up") == 1,
                                             acked=acked if isinstance(acked, int) else -1)
        self._execute(fx)

    async def _decide(self, fx: Fail | Restarted | CaughtUp | AbandonAdd) -> None:
        """A verdict of the machine, decided and saved like any change."""
        addr = fx.member
        cause = _CAUSES[type(fx)]
        repair = {"event": "repair", "cause": cause}
        if isinstance(fx, AbandonAdd):
            log.warning("the add of %s made no progress for %.0f s: rolled it back", addr, fx.quiet_s, extra=repair)
        changed = await self._change(lambda r: decide(fx, r), also=told(fx), cause=(cause, addr))
        if isinstance(fx, Restarted) and changed:
            log.warning("member %s restarted (new incarnation): added it again behind the tail", addr, extra=repair)
        elif isinstance(fx, Fail):
            why = (f": its event loop has not turned for {self.machine.wedge_s:g} s (wedged)" if fx.wedged
                   else f" failed {fx.misses} probes in a row")
            log.warning("member %s%s: %s", addr, why, "removed it from the chain"
                        if changed else "it is the last member of its chain: keeping it; the chain waits for it",
                        extra=repair)
        self._execute(self.machine.decided(fx, bool(changed), time.monotonic()))

    async def _lead(self, initialize: bool, previous: asyncio.Task | None) -> None:
        """All leader-only work, in one TaskGroup: cancelled as a whole by `step_down`. A new
        leader first finishes what its predecessor left half done: it pushes the saved view to
        every member (idempotent: members ignore an epoch they have), probes them, and resumes
        watching an add in progress (the learner in the view; queued adds follow it)."""
        if previous is not None and not previous.done():
            previous.cancel()
            await asyncio.wait({previous})  # the last term's tasks are gone before this one starts
        self._pushed, self._push_wake = {}, {}
        self.machine.lead(time.monotonic())  # leases a former leader granted run out by then + LEASE_S
        self._session_clock, self._session_enders = SessionClock(), {}  # full TTLs from our takeover
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                group.create_task(self._expire_sessions())
                if initialize:
                    async with self._lock:
                        await self.store.save(self.saved.to_dict())
                view = self.view
                log.info("leading under fence %d: epoch %d, chain %s%s", self.store.fence, view.epoch,
                         ",".join(view.members) or "(empty)",
                         f", finishing the add of {view.learner}" if view.learner else "",
                         extra={"event": "leader_change", "cause": "elected", "epoch": view.epoch})
                self.metrics.leading(True, self.me, view.epoch, f"{self.me} leads (fence {self.store.fence})")
                for addr in set(view.members) | ({view.learner} - {None}):
                    self._ensure_pusher(addr).set()
                group.create_task(self._machine_timer())
                self._execute(self.machine.on_saved(view, time.monotonic()))  # and an add under way
                if self.membership is not None:
                    group.create_task(self._follow_membership(self.membership.events()))
                self._changed.set()
                self._changed = asyncio.Event()
                await asyncio.Future()
        except* NotLeader:
            pass  # the store steps us down (it already has, or will at its next check)
        finally:
            self._group = None
            self.machine.step_down()
            for conn in self._probe_conns.values():
                await conn.close()
            self._probe_conns = {}

    async def _follow_membership(self, events) -> None:
        """Membership says a chain member failed or left: probe it now rather than at its turn
        (the probe, not the heartbeat, confirms the failure and decides the repair)."""
        async for event in events:
            addr = event.member.addr
            if event.kind in ("failed", "leave") and self.machine.suspect(addr, time.monotonic()):
                log.info("membership: %s %s; probing it now", addr, event.kind)
                self._machine_wake.set()

    async def run(self, started: asyncio.Event | None = None) -> None:
        host, port = self.listen.rsplit(":", 1)
        async with asyncio.TaskGroup() as group:
            self._main = group
            await self.server.start(host, int(port))
            log.info("coordinator %s listening on %s, store %s", self.me, self.listen, self.store)
            # Members join the membership group through us (same port number, UDP).
            agent = MembershipAgent(self.me, (), table=self.table, secret=self.secret, bind=self.listen)
            try:
                await agent.start()
                self.membership = agent
            except OSError as exc:  # our own probes still find failures, only later
                log.warning("membership disabled: cannot bind UDP %s (%s)", self.listen, exc)
            if started is not None:
                started.set()
            try:
                # Only now may we lead: the address we publish answers.
                await self.store.run(self)
            finally:
                self.step_down("shutting down")
                if self.membership is not None:
                    await agent.close()
                await self.server.close()


def embedded(listen: str, data_dir: Path, password: str | None = None, cluster_id: str | None = None,
             secret: str | None = None, advertise: str | None = None,
             admin_password: str | None = None) -> Coordinator:
    return Coordinator(listen, EmbeddedStore(data_dir, advertise or listen, cluster_id), password, cluster_id,
                       secret, advertise, admin_password)


def with_store(listen: str, store: str, data_dir: Path | None = None, password: str | None = None,
               cluster_id: str | None = None, lease_ttl_s: int = 2, advertise: str | None = None,
               secret: str | None = None, admin_password: str | None = None) -> Coordinator:
    """`store`: "embedded" (needs `data_dir`) or `etcd://host:port[,host:port]/prefix`."""
    from catena.coordinator.discovery import EtcdAddress, parse

    if store == "embedded":
        if data_dir is None:
            raise CatenaError("the embedded store needs --data-dir")
        return embedded(listen, data_dir, password, cluster_id, secret, advertise, admin_password)
    address = parse(store)
    if not isinstance(address, EtcdAddress):
        raise CatenaError(f"--store {store!r}: expected 'embedded' or etcd://host:port[,host:port]/prefix")
    from catena.coordinator.etcd_store import EtcdStore

    return Coordinator(listen, EtcdStore(address, advertise or listen, lease_ttl_s, cluster_id), password,
                       cluster_id, secret, advertise, admin_password)
