"""`AsyncClient`: routes commands to the right member, retries within a deadline, gives every
write a request id so that a retry after a lost reply applies once, and keeps a session alive
(keys written with `session=True` are deleted when the session ends)."""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import time
import uuid

from catena.client.errors import ClientError, ResponseError, SessionLost, Timeout, Unavailable
from catena.client.router import MAX_REDIRECTS, RetryPolicy, Router, check_value, command_slot, redirect, retryable
from catena.coordinator.address import parse
from catena.coordinator.discovery import CoordinatorClient, NoLeader
from catena.resp.client import ReplyError, RespConnection
from catena.view import View

log = logging.getLogger(__name__)

_TRANSIENT = (OSError, ConnectionError, asyncio.TimeoutError, EOFError)
IDLE_PER_MEMBER = 8
NO_SUCH_SESSION = "ERR no such session"
# A write bound to a session is known to precede any deletion of the session's keys if it was
# acknowledged within this fraction of the TTL after a ping the coordinator answered (the rest
# is margin for the two clocks' rates); past it, the client asks the coordinator.
SESSION_SURE = 0.8


class _Session:
    def __init__(self, sid: str, ttl: float, on_lost, confirmed: float):
        self.id = sid
        self.ttl = ttl
        self.on_lost = on_lost
        self.confirmed = confirmed  # when the newest ping (or attach) that was answered OK was sent
        self.lost = False


class _Pool:
    """Idle connections per member address; a connection carries one request at a time."""

    def __init__(self, password: str | None):
        self.password = password
        self.idle: dict[str, list[RespConnection]] = {}

    async def acquire(self, addr: str, timeout: float) -> RespConnection:
        idle = self.idle.get(addr)
        if idle:
            return idle.pop()
        conn = await RespConnection.open(addr, timeout)
        if self.password is not None:
            await conn.call(b"AUTH", self.password, timeout=timeout)
        return conn

    def release(self, addr: str, conn: RespConnection) -> None:
        idle = self.idle.setdefault(addr, [])
        if len(idle) < IDLE_PER_MEMBER:
            idle.append(conn)
        else:
            conn.close_nowait()

    async def close(self) -> None:
        for conns in self.idle.values():
            for conn in conns:
                await conn.close()
        self.idle.clear()


class AsyncClient:
    """`AsyncClient("host:port,host:port")` or `AsyncClient("etcd://host:port/prefix")`: where
    to find the coordinator leader. `timeout` is every call's deadline in seconds."""

    def __init__(self, coordinators: str, *, timeout: float = 5.0, password: str | None = None,
                 client_id: str | None = None, seed: int | None = None):
        self.coordinators = CoordinatorClient(parse(coordinators), rng=random.Random(seed), password=password)
        self.policy = RetryPolicy(deadline_s=timeout)
        self.rng = random.Random(seed)
        self.router = Router(self.rng)
        self.client_id = client_id or uuid.uuid4().hex
        self._requests = itertools.count(1)
        self._unanswered: dict[int, None] = {}  # request numbers in flight, oldest first
        self._pool = _Pool(password)
        self._ever_routed = False
        self._refreshing: asyncio.Future | None = None  # the one MASTER.GET_VIEW in flight
        self._session: _Session | None = None
        self._pinger: asyncio.Task | None = None

    # -- the API ------------------------------------------------------------------------------

    async def get(self, key):
        return await self._read([b"GET", key])

    async def mget(self, keys):
        return await self._read([b"MGET", *keys])

    async def exists(self, *keys) -> int:
        return await self._read([b"EXISTS", *keys])

    async def set(self, key, value, *, ex: int | None = None, px: int | None = None, nx: bool = False,
                  xx: bool = False, session: bool = False) -> bool | None:
        """`session=True`: the key is bound to this client's session (see `open_session`) and
        deleted when the session ends; raises SessionLost once the session is gone."""
        args = [b"SET", key, check_value(value)]
        if ex is not None:
            args += [b"EX", ex]
        if px is not None:
            args += [b"PX", px]
        if nx:
            args.append(b"NX")
        if xx:
            args.append(b"XX")
        if session:
            return await self._session_set(key, args, conditional=nx or xx)
        reply = await self._write(args)
        return True if reply == b"OK" else None

    async def delete(self, *keys) -> int:
        return await self._write([b"DEL", *keys])

    async def incr(self, key, amount: int = 1) -> int:
        return await self._write([b"INCRBY", key, amount])

    async def mset(self, mapping: dict) -> bool:
        args = [b"MSET"]
        for k, v in mapping.items():
            args += [k, check_value(v)]
        return await self._write(args) == b"OK"

    def pipeline(self) -> "AsyncPipeline":
        return AsyncPipeline(self)

    async def close(self) -> None:
        """Close the session (its keys are deleted; if no coordinator answers in time they go
        when it expires), then the connections."""
        try:
            await self.close_session()
        except ClientError as exc:
            log.warning("could not close session: %s (its keys go when it expires)", exc)
        await self._pool.close()
        await self.coordinators.close()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.close()

    # -- sessions -------------------------------------------------------------------------------

    @property
    def session_id(self) -> str | None:
        """The open session's id (None: no session, or it was lost)."""
        return self._session.id if self._session is not None and not self._session.lost else None

    async def open_session(self, ttl: float = 10.0, on_lost=None) -> str:
        """Open a session with `ttl` seconds to live without a ping; a task of this client pings
        the coordinator leader every ttl/3 (following it through failovers) until `close()` or
        `close_session()`. When the coordinator says the session is gone (expired: no ping
        reached it for `ttl`), `on_lost(session_id)` is called once and `set(..., session=True)`
        raises SessionLost. Returns the session id."""
        if self.session_id is not None:
            raise ClientError(f"this client already has session {self.session_id}; close_session() first")
        await self.close_session()  # a lost one: stop its pinger
        sent = time.monotonic()
        sid = await self._coordinator(b"MASTER.SESSION.OPEN", round(ttl * 1000), unreachable=Unavailable)
        self._session = _Session(sid.decode(), ttl, on_lost, sent)
        self._pinger = asyncio.create_task(self._keep_alive(self._session), name=f"catena-session-{sid.decode()}")
        return self._session.id

    async def close_session(self) -> None:
        """Stop pinging and end the session at the coordinator: its keys are deleted."""
        session, self._session = self._session, None
        if self._pinger is not None:
            self._pinger.cancel()
            await asyncio.wait({self._pinger})
            self._pinger = None
        if session is not None and not session.lost:
            session.lost = True  # closed on purpose: no on_lost
            try:
                await self._coordinator(b"MASTER.SESSION.CLOSE", session.id)
            except SessionLost:
                pass  # expired meanwhile: its keys are deleted all the same

    async def _keep_alive(self, session: _Session) -> None:
        """Ping every ttl/3; after a failed ping, again at once (the coordinator client follows
        redirects and rediscovers the leader with its own backoff) until one is answered."""
        interval = session.ttl / 3
        while not session.lost:
            await asyncio.sleep(max(0.0, session.confirmed + interval - time.monotonic()))
            sent = time.monotonic()
            try:
                await self.coordinators.call(b"MASTER.SESSION.PING", session.id, timeout=max(0.1, interval))
                session.confirmed = max(session.confirmed, sent)
            except ReplyError as exc:
                if str(exc).startswith(NO_SUCH_SESSION):
                    self._lose(session)
                    return
                log.info("session %s: ping refused: %s", session.id, exc)
                await asyncio.sleep(min(interval, 0.1))
            except NoLeader as exc:
                log.info("session %s: no coordinator answered the ping yet: %s", session.id, exc)

    def _lose(self, session: _Session) -> None:
        if session.lost:
            return
        session.lost = True
        log.warning("session %s is gone (expired or closed at the coordinator)", session.id)
        if session.on_lost is not None:
            try:
                session.on_lost(session.id)
            except Exception:  # noqa: BLE001 - the caller's callback must not stop the client
                log.exception("on_lost callback of session %s failed", session.id)

    def _live_session(self) -> _Session:
        session = self._session
        if session is None:
            raise ClientError("set(..., session=True) needs an open session: call open_session() first")
        if session.lost:
            raise SessionLost(f"session {session.id} expired or was closed; open a new one")
        return session

    async def _coordinator(self, *args, deadline: float | None = None, unreachable=Timeout):
        """One command to the coordinator leader within the deadline; `-ERR no such session`
        raises SessionLost (the caller marks the session lost)."""
        deadline = deadline or time.monotonic() + self.policy.deadline_s
        try:
            return await self.coordinators.call(*args, timeout=max(0.05, deadline - time.monotonic()))
        except NoLeader as exc:
            raise unreachable(str(exc)) from None
        except ReplyError as exc:
            if str(exc).startswith(NO_SUCH_SESSION):
                raise SessionLost(f"session {args[1]} expired or was closed") from None
            raise ResponseError(str(exc)) from None

    async def _session_call(self, session: _Session, *args, deadline: float | None = None) -> None:
        """ATTACH or PING for `session`; either proves it alive when sent. SessionLost marks it lost."""
        sent = time.monotonic()
        try:
            await self._coordinator(*args, deadline=deadline)
        except SessionLost:
            self._lose(session)
            raise
        session.confirmed = max(session.confirmed, sent)

    async def _session_set(self, key, args: list, conditional: bool) -> bool | None:
        """An unconditional SET binds the key first, then writes it: a client that dies between
        the two leaves a bound key that is not there yet (its deletion is harmless), never a
        written key that no session owns. After the write, if the session might have expired
        since its last answered ping (so its keys' deletion could have run before our write),
        the client asks; if it did, the client deletes the key itself and raises SessionLost.
        A conditional SET (nx/xx) writes first and binds the key only if it wrote it, so a
        failed `nx` never binds (and later deletes) a key someone else owns."""
        session = self._live_session()
        deadline = time.monotonic() + self.policy.deadline_s
        attach = (b"MASTER.SESSION.ATTACH", session.id, key)
        if not conditional:
            await self._session_call(session, *attach, deadline=deadline)
        written = await self._write(args, deadline) == b"OK"
        try:
            if written and conditional:
                await self._session_call(session, *attach, deadline=deadline)
            elif time.monotonic() >= session.confirmed + SESSION_SURE * session.ttl:
                await self._session_call(session, b"MASTER.SESSION.PING", session.id, deadline=deadline)
        except SessionLost:
            if written:
                try:
                    await self.delete(key)
                except ClientError as exc:
                    log.warning("session %s lost: could not delete %r: %s", session.id, key, exc)
            raise
        return True if written else None

    # -- routing and retries ------------------------------------------------------------------

    def tag(self, args: list) -> list:
        """A write with this client's next request id (kept across its retries) and the lowest
        id still awaiting an answer, below which the chain may forget replies."""
        n = next(self._requests)
        self._unanswered[n] = None
        return [b"CATENA.REQ", self.client_id, n, next(iter(self._unanswered)), *args]

    def answered(self, commands: list[list]) -> None:
        for command in commands:
            if command[0] == b"CATENA.REQ":
                self._unanswered.pop(command[2], None)

    async def _write(self, args: list, deadline: float | None = None):
        return (await self.execute([self.tag(args)], write=True, deadline=deadline))[0]

    async def _read(self, args: list):
        return (await self.execute([args], write=False))[0]

    async def execute(self, commands: list[list], write: bool, deadline: float | None = None) -> list:
        """Send `commands` as one pipeline to the head (writes) or a member (reads), retrying
        on transient trouble until the deadline; raise ResponseError for a refused command."""
        try:
            return await self._execute(commands, write, deadline)
        finally:
            self.answered(commands)  # answered, or given up on: never retried again

    async def _execute(self, commands: list[list], write: bool, deadline: float | None) -> list:
        if deadline is None:
            deadline = time.monotonic() + self.policy.deadline_s
        replies: list = [None] * len(commands)
        pending = list(range(len(commands)))  # commands still to (re)send, in order
        ask: dict[int, str] = {}  # command -> the member an ASK named, for one attempt
        attempt, redirects, last = 0, 0, None
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Timeout(f"no answer within {self.policy.deadline_s:.1f} s (last trouble: {last})")
            backoff = False
            try:
                if self.router.view is None:
                    await self.refresh(remaining)
                groups = self._groups(commands, pending, write, ask)
                sent = await asyncio.gather(*(self._send(addr, [commands[i] for i in idx], asking, remaining)
                                              for (addr, asking), idx in groups.items()), return_exceptions=True)
                pending, ask = [], {}
                for ((addr, _), idx), got in zip(groups.items(), sent):
                    if isinstance(got, BaseException):
                        if not isinstance(got, _TRANSIENT):
                            raise got
                        last, backoff = f"{type(got).__name__}: {got}", True
                        self.router.forget(addr)
                        pending += idx
                        continue
                    trouble = self._troubles(idx, got, ask)
                    if trouble is None:
                        for i, reply in zip(idx, got):
                            replies[i] = ResponseError(str(reply)) if isinstance(reply, ReplyError) else reply
                        continue
                    pending += idx  # the whole group again, in order: its writes carry request ids
                    last, redirected = trouble
                    redirects += redirected
                    backoff = backoff or not redirected
                if not pending:
                    errors = [r for r in replies if isinstance(r, ResponseError)]
                    if errors and len(commands) == 1:
                        raise errors[0]
                    return replies
                pending.sort()
                if redirects > MAX_REDIRECTS:
                    raise ResponseError(f"too many redirects (last: {last})")
            except Unavailable as exc:
                if not self._ever_routed:
                    raise  # nothing ever answered: fail fast, naming what was tried
                last, backoff = str(exc), True
            if backoff:
                self.router.view = None  # refresh before the next attempt
                await asyncio.sleep(min(self.policy.backoff(attempt, self.rng), max(0.0, deadline - time.monotonic())))
                attempt += 1

    def _groups(self, commands, pending, write: bool, ask: dict) -> dict:
        """(address, after ASKING) -> the pending commands to send there, by their keys' slots."""
        groups: dict = {}
        for i in pending:
            slot = command_slot(commands[i])
            addr = ask.get(i) or (self.router.write_target(slot) if write else self.router.read_target(slot))
            if addr is None:
                raise Unavailable("the chain has no members")
            groups.setdefault((addr, i in ask), []).append(i)
        return groups

    async def _send(self, addr: str, commands: list[list], asking: bool, timeout: float) -> list:
        conn = await self._pool.acquire(addr, timeout)
        try:
            replies = await conn.call_many([[b"ASKING"], *commands] if asking else commands, timeout=timeout)
        except BaseException:
            await conn.close()
            raise
        self._pool.release(addr, conn)
        return replies[1:] if asking else replies

    def _troubles(self, idx: list[int], replies: list, ask: dict) -> tuple[str, int] | None:
        """None if a group's replies are final; else (what went wrong, 1 if it was a redirect),
        the redirects recorded (MOVED for good, ASK for the next attempt)."""
        trouble = None
        for i, reply in zip(idx, replies):
            if not isinstance(reply, ReplyError):
                continue
            moved = redirect(str(reply))
            if moved is not None:
                kind, slot, addr = moved
                if kind == "MOVED":
                    self.router.on_moved(slot, addr)
                else:
                    ask[i] = addr
                trouble = (str(reply), 1)
            elif retryable(str(reply)) and trouble is None:
                trouble = (str(reply), 0)
        return trouble

    async def refresh(self, timeout: float) -> None:
        """Fetch the chain's view from the coordinator leader (following redirects). Calls that
        need a view at the same time wait for one fetch (300 concurrent commands on a fresh
        client asked the coordinator 300 times, and under load one of them timed out)."""
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.ensure_future(self._fetch_view(timeout))
        await asyncio.shield(self._refreshing)

    async def _fetch_view(self, timeout: float) -> None:
        try:
            raw = await self.coordinators.call(b"MASTER.GET_VIEW", timeout=min(timeout, 1.0))
        except (NoLeader, ReplyError) as exc:
            raise Unavailable(str(exc)) from None
        self.router.on_view(View.from_words(raw))
        self._ever_routed = True


class AsyncPipeline:
    """Commands queued, then sent in one round trip to the head; writes carry request ids, so
    the whole pipeline may be retried safely."""

    def __init__(self, client: AsyncClient):
        self.client = client
        self.commands: list[list] = []

    def _queue(self, args: list, write: bool) -> "AsyncPipeline":
        self.commands.append(self.client.tag(args) if write else args)
        return self

    def get(self, key):
        return self._queue([b"GET", key], False)

    def set(self, key, value):
        return self._queue([b"SET", key, check_value(value)], True)

    def delete(self, *keys):
        return self._queue([b"DEL", *keys], True)

    def incr(self, key, amount: int = 1):
        return self._queue([b"INCRBY", key, amount], True)

    def mget(self, keys):
        return self._queue([b"MGET", *keys], False)

    async def execute(self) -> list:
        commands, self.commands = self.commands, []
        return await self.client.execute(commands, write=True) if commands else []
