"""`AsyncClient`: routes commands to the right member, retries within a deadline, and gives
every write a request id so that a retry after a lost reply applies once."""

from __future__ import annotations

import asyncio
import itertools
import random
import time
import uuid

from catena.chain.node import parse_view
from catena.client.errors import ResponseError, Timeout, Unavailable
from catena.client.router import RetryPolicy, Router, check_value, retryable
from catena.coordinator.discovery import CoordinatorClient, NoLeader, parse
from catena.resp.client import ReplyError, RespConnection

_TRANSIENT = (OSError, ConnectionError, asyncio.TimeoutError, EOFError)
IDLE_PER_MEMBER = 8


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
        self.coordinators = CoordinatorClient(parse(coordinators), rng=random.Random(seed))
        self.policy = RetryPolicy(deadline_s=timeout)
        self.rng = random.Random(seed)
        self.router = Router(self.rng)
        self.client_id = client_id or uuid.uuid4().hex
        self._requests = itertools.count(1)
        self._unanswered: dict[int, None] = {}  # request numbers in flight, oldest first
        self._pool = _Pool(password)
        self._ever_routed = False

    # -- the API ------------------------------------------------------------------------------

    async def get(self, key):
        return await self._read([b"GET", key])

    async def mget(self, keys):
        return await self._read([b"MGET", *keys])

    async def exists(self, *keys) -> int:
        return await self._read([b"EXISTS", *keys])

    async def set(self, key, value, *, ex: int | None = None, px: int | None = None, nx: bool = False,
                  xx: bool = False) -> bool | None:
        args = [b"SET", key, check_value(value)]
        if ex is not None:
            args += [b"EX", ex]
        if px is not None:
            args += [b"PX", px]
        if nx:
            args.append(b"NX")
        if xx:
            args.append(b"XX")
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
        await self._pool.close()
        await self.coordinators.close()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.close()

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

    async def _write(self, args: list):
        return (await self.execute([self.tag(args)], write=True))[0]

    async def _read(self, args: list):
        return (await self.execute([args], write=False))[0]

    async def execute(self, commands: list[list], write: bool) -> list:
        """Send `commands` as one pipeline to the head (writes) or a member (reads), retrying
        on transient trouble until the deadline; raise ResponseError for a refused command."""
        try:
            return await self._execute(commands, write)
        finally:
            self.answered(commands)  # answered, or given up on: never retried again

    async def _execute(self, commands: list[list], write: bool) -> list:
        deadline = time.monotonic() + self.policy.deadline_s
        attempt, last = 0, None
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Timeout(f"no answer within {self.policy.deadline_s:.1f} s (last trouble: {last})")
            try:
                if self.router.view is None:
                    await self.refresh(remaining)
                addr = self.router.write_target() if write else self.router.read_target()
                if addr is None:
                    raise Unavailable("the chain has no members")
                conn = await self._pool.acquire(addr, remaining)
                try:
                    replies = await conn.call_many(commands, timeout=remaining)
                except BaseException:
                    await conn.close()
                    raise
                self._pool.release(addr, conn)
                errors = [r for r in replies if isinstance(r, ReplyError)]
                if not any(retryable(str(e)) for e in errors):
                    if errors and len(commands) == 1:
                        raise ResponseError(str(errors[0]))
                    return [ResponseError(str(r)) if isinstance(r, ReplyError) else r for r in replies]
                last = next(str(e) for e in errors if retryable(str(e)))
            except _TRANSIENT as exc:
                last = f"{type(exc).__name__}: {exc}"
            except Unavailable as exc:
                if not self._ever_routed:
                    raise  # nothing ever answered: fail fast, naming what was tried
                last = str(exc)
            self.router.view = None  # refresh before the next attempt
            await asyncio.sleep(min(self.policy.backoff(attempt, self.rng), max(0.0, deadline - time.monotonic())))
            attempt += 1

    async def refresh(self, timeout: float) -> None:
        """Fetch the chain's view from the coordinator leader (following redirects)."""
        try:
            raw = await self.coordinators.call(b"MASTER.GET_VIEW", timeout=min(timeout, 1.0))
        except (NoLeader, ReplyError) as exc:
            raise Unavailable(str(exc)) from None
        self.router.on_view(parse_view(raw))
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
