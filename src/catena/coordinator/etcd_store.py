"""The etcd config store (shell): several coordinators on one key prefix, one fenced leader.

Keys under the prefix (docs/protocol.md, "Coordinator discovery and etcd layout"):

- `<prefix>/leader`: the leader's RESP address `host:port`, attached to its lease. Created only
  by a create-if-absent transaction; its create revision is the leader's **fence**.
- `<prefix>/<part>`: the coordinator state, one JSON value per part (`coordinator/layout.py`:
  `cluster`, `chains/<id>`, `sessions/<id>`, `slots`, `moves/<slot>`). Written only by
  transactions that compare the leader key's create revision with the writer's fence, each
  writing just the parts a change touched (each value names the `fence` it was written
  under). Schema 1's single `<prefix>/state` is read as parts and replaced by them in the new
  leader's first write.

Followers read the prefix and then watch it (resumed from the last revision + 1 after a
reconnect), so they hold the full state in memory and take over without reloading; the
campaign transaction reads the whole prefix in the same transaction that creates the leader
key, so a new leader starts from exactly the state its predecessor last wrote. Election decisions are
the pure `election.Election`'s; this file executes them.

etcd trouble (unreachable, restarted, changing its own leader) is logged as etcd's, retried with
exponential backoff and jitter up to a bounded maximum, and moves to the next endpoint; every
call has a deadline. The leader stops acting at its local deadline when renewals fail.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time

from catena.coordinator import layout
from catena.coordinator.address import EtcdAddress
from catena.coordinator.election import Backoff, Campaign, Election, Lead, Renew, Revoke, StepDown
from catena.coordinator.store import NotLeader
from catena.errors import CatenaError
from catena.resp.client import open_tcp

log = logging.getLogger(__name__)

OP_TIMEOUT_S = 2.0
FOLLOWER_POLL_S = 1.0  # a follower also reads the leader key this often (a watch can go quiet)
REACH_CHECK_S = 0.25  # a follower checks this often whether it reaches the members
SIT_OUT_S = 2.0  # a resigned leader campaigns again only after this (a standby that reaches the members wins first)
GRPC_OPTIONS = {
    # Short reconnect backoff: gRPC's default grows to 120 s, the failover stall Mooncake hit.
    "grpc.initial_reconnect_backoff_ms": 100,
    "grpc.min_reconnect_backoff_ms": 100,
    "grpc.max_reconnect_backoff_ms": 1000,
    # Find a dead connection (etcd refuses pings more often than every 5 s by default).
    "grpc.keepalive_time_ms": 5000,
    "grpc.keepalive_timeout_ms": 2000,
    "grpc.keepalive_permit_without_calls": 1,
}


_POLL = object()  # timer task: read the leader key now


class EtcdUnavailable(CatenaError):
    """etcd did not answer (unreachable, restarting, no quorum, or too slow)."""


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class EtcdConnection:
    """An aetcd client on one of several endpoints; after a failed call the next call goes to
    the next endpoint (on a fresh channel). Every call has a deadline."""

    def __init__(self, endpoints, op_timeout: float = OP_TIMEOUT_S):
        self.endpoints = list(endpoints)
        self.op_timeout = op_timeout
        self._i = 0
        self._client = None
        self._gen = 0  # bumped on each rotation; a late failure of an old channel rotates nothing
        self.errors = 0  # calls that failed (the metrics port's catena_etcd_errors_total)

    @property
    def endpoint(self) -> str:
        return self.endpoints[self._i % len(self.endpoints)]

    async def client(self):
        import aetcd

        if self._client is None:
            host, port = self.endpoint.rsplit(":", 1)
            self._client = aetcd.Client(host, int(port), timeout=self.op_timeout, options=GRPC_OPTIONS)
        await self._client.connect()
        return self._client

    async def run(self, fn, what: str, timeout: float | None = None):
        """`await fn(client)` within the deadline; EtcdUnavailable (naming the endpoint and what
        we were doing) on any failure, after switching to the next endpoint."""
        import aetcd

        gen, endpoint = self._gen, self.endpoint
        try:
            async with asyncio.timeout(self.op_timeout if timeout is None else max(0.01, timeout)):
                return await fn(await self.client())
        except (aetcd.ClientError, OSError, TimeoutError, ValueError, RuntimeError) as exc:
            # etcd's own answers (e.g. "lease not found") leave the channel alone; anything that
            # looks like a connection problem moves to the next endpoint.
            if not isinstance(exc, aetcd.ClientError) or isinstance(exc, (
                    aetcd.exceptions.ConnectionFailedError, aetcd.exceptions.ConnectionTimeoutError,
                    aetcd.exceptions.InternalError)) or type(exc) is aetcd.ClientError and "etcdserver" not in str(exc):
                await self.rotate(gen)
            self.errors += 1
            raise EtcdUnavailable(f"etcd at {endpoint} could not {what}: {_describe(exc)}") from None

    async def rotate(self, gen: int | None = None) -> None:
        if gen is not None and gen != self._gen:
            return
        self._gen += 1
        self._i += 1
        old, self._client = self._client, None
        if old is not None:
            try:
                async with asyncio.timeout(1.0):
                    await old.close()
            except Exception as exc:  # noqa: BLE001 - a broken channel may fail to close; it is dropped
                log.debug("closing etcd channel: %s", _describe(exc))

    async def close(self) -> None:
        await self.rotate()


def _range_end(key: bytes, exact: bool) -> bytes:
    if exact:
        return key + b"\0"
    from aetcd.utils import prefix_range_end

    return prefix_range_end(key)


async def watch_prefix(conn: EtcdConnection, key: bytes, exact: bool = False, rng: random.Random | None = None):
    """Follow a key (exact) or a prefix for ever: yields ("snapshot", {key: kv}, revision) first,
    then ("put" | "delete", kv, revision) for each change. After a broken stream it resumes from
    the last revision + 1; if etcd compacted past it, it yields a fresh snapshot."""
    backoff = Backoff(rng or random.Random())
    end = _range_end(key, exact)
    rev = None
    while True:
        try:
            if rev is None:
                got = await conn.run(lambda c: c.get_range(key, end), f"read {key.decode()}")
                rev = got.header.revision
                yield "snapshot", {kv.key: kv for kv in got}, rev
            watch = await conn.run(lambda c: c.watch(key, range_end=end, start_revision=rev + 1),
                                   f"watch {key.decode()} from revision {rev + 1}")
            backoff.reset()
            async for ev in watch:
                rev = max(rev, ev.kv.mod_revision)
                yield ("put" if ev.kind == "PUT" else "delete"), ev.kv, rev
            log.warning("etcd at %s: the watch on %s ended; resuming from revision %d", conn.endpoint, key.decode(),
                        rev + 1)
        except EtcdUnavailable as exc:
            log.warning("%s; retrying", exc)
        except Exception as exc:  # noqa: BLE001 - aetcd raises its errors out of the watch iterator
            import aetcd

            if isinstance(exc, aetcd.exceptions.RevisionCompactedError):
                log.warning("etcd compacted past revision %d of %s: reading it again", rev + 1, key.decode())
                rev = None
            elif isinstance(exc, aetcd.ClientError):
                log.warning("etcd at %s: the watch on %s broke (%s); resuming from revision %s", conn.endpoint,
                            key.decode(), _describe(exc), "start" if rev is None else rev + 1)
                await conn.rotate()
            else:
                raise
        await asyncio.sleep(backoff.next())


class EtcdStore:
    """The coordinator's store and election on etcd (see the module docstring). The coordinator
    calls `run(coordinator)` once its listener is up; `save(state)` is fenced; `leading()` says
    whether it may act right now."""

    def __init__(self, address: EtcdAddress, advertise: str, lease_ttl_s: int = 2, cluster_id: str | None = None,
                 rng: random.Random | None = None):
        self.address = address
        self.advertise = advertise
        self.lease_ttl_s = max(1, int(lease_ttl_s))
        self.cluster_id = cluster_id
        self.rng = rng or random.Random()
        self.conn = EtcdConnection(address.endpoints)
        self.election = Election(advertise, self.rng)
        self.coordinator = None
        self._wake = asyncio.Event()
        self._pending: list = []  # effects for the timer task, in order
        self._campaign_state: dict | None = None
        self._parts: dict = {}  # the newest parts seen (followers: from the watch)
        self._legacy: dict | None = None  # schema-1 state read as parts: written out with the next save

    def __str__(self) -> str:
        return str(self.address)

    # -- what the coordinator asks --------------------------------------------------------------

    @property
    def fence(self) -> int:
        return self.election.fence

    @property
    def leader(self) -> str | None:
        return self.election.leader

    def leading(self) -> bool:
        return self.election.leading(time.monotonic())

    async def save(self, parts: dict) -> None:
        """Write `parts` (None deletes one) in one transaction under our fence; retried while
        etcd does not answer, until our local deadline. Raises NotLeader when we do not (or no
        longer) lead."""
        el = self.election
        fence = el.fence
        legacy, lkey = self._legacy, self.address.leader_key
        if legacy is not None:  # schema 1's state key goes, its parts come, in this same write
            parts = {**legacy, layout.LEGACY: None, **parts}
        backoff = Backoff(self.rng)

        async def txn(c):
            t = c.transactions
            ops = [t.delete(self.address.part_key(name)) if value is None else
                   t.put(self.address.part_key(name), json.dumps({**value, "fence": fence}).encode())
                   for name, value in parts.items()]
            return await c.transaction(compare=[t.create(lkey) == fence], success=ops, failure=[t.get(lkey)])

        while True:
            now = time.monotonic()
            if not el.leading(now) or el.fence != fence:
                raise NotLeader(el.leader)
            try:
                ok, responses = await self.conn.run(txn, "write the coordinator state", timeout=el.deadline - now)
            except EtcdUnavailable as exc:
                log.warning("%s; retrying until the lease deadline", exc)
                await asyncio.sleep(min(backoff.next(), max(0.0, el.deadline - time.monotonic())))
                continue
            if ok:
                if legacy is not None and self._legacy is legacy:
                    self._legacy = None
                return
            holder = responses[0][0][0].decode() if responses and responses[0] else None
            self._apply(el.on_fenced(fence, time.monotonic()))
            raise NotLeader(holder if holder != self.advertise else None)

    # -- running ----------------------------------------------------------------------------------

    async def run(self, coordinator) -> None:
        """Check the prefix, then follow, campaign and lead for ever (cancel to stop; a leader
        gives its lease back on the way out)."""
        self.coordinator = coordinator
        await self._check_prefix()
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._watch())
                group.create_task(self._timer())
                group.create_task(self._check_reach())
        finally:
            # Shutting down: stop leading and give the lease back so a standby takes over now.
            lease = self.election.lease_id
            if self.election.on_stop():
                self.coordinator.step_down("shutting down")
                await self._revoke(lease)
            await self.conn.close()

    async def _check_prefix(self) -> None:
        """Refuse a prefix that holds something other than catena's keys, or a state of another
        cluster or an unknown schema. Retries (with a plain log line) while etcd is unreachable."""
        backoff = Backoff(self.rng, max_s=2.0)
        while True:
            try:
                got = await self.conn.run(lambda c: c.get_prefix(self.address.range_prefix),
                                          f"read the prefix {self.address.prefix}")
                break
            except EtcdUnavailable as exc:
                log.warning("%s; retrying (the coordinator needs etcd to start)", exc)
                await asyncio.sleep(backoff.next())
        foreign = sorted(kv.key.decode(errors="replace") for kv in got
                         if kv.key != self.address.leader_key and self.address.part_name(kv.key) is None)
        if foreign:
            raise CatenaError(f"the etcd prefix {self.address.prefix} holds keys catena does not write "
                              f"({', '.join(foreign[:3])}{' …' if len(foreign) > 3 else ''}): it belongs to something "
                              "else; refusing to start. Give the coordinators a prefix of their own")
        parts = self._decode((kv.key, kv.value) for kv in got if kv.key != self.address.leader_key)
        log.info("etcd store %s: %s", self.address, "existing state" if parts else "empty prefix")

    def _decode(self, kvs) -> dict | None:
        """The parts the (key, value) pairs hold (a schema-1 state read as parts); None: none."""
        parts = {}
        for key, raw in kvs:
            name = self.address.part_name(key)
            try:
                parts[name] = json.loads(raw)
            except ValueError:
                raise CatenaError(f"{key.decode(errors='replace')} in etcd is not catena state (not JSON); "
                                  "refusing to use this prefix") from None
        if not parts:
            return None
        return layout.check(parts, f"the etcd prefix {self.address.prefix}", self.cluster_id)

    async def _watch(self) -> None:
        lkey = self.address.leader_key
        async for kind, kv, _rev in watch_prefix(self.conn, self.address.range_prefix, rng=self.rng):
            now = time.monotonic()
            if kind == "snapshot":
                self._parts = {k: v.value for k, v in kv.items() if k != lkey}
                self._follow_state()
                leader = kv.get(lkey)
                self._apply(self.election.on_leader_key(leader.value.decode() if leader else None,
                                                        leader.create_revision if leader else 0,
                                                        leader.lease if leader else 0, now))
            elif kv.key == lkey:
                if kind == "put":
                    self._apply(self.election.on_leader_key(kv.value.decode(), kv.create_revision, kv.lease, now))
                else:
                    self._apply(self.election.on_leader_key(None, 0, 0, now))
            elif self.address.part_name(kv.key) is not None:
                if kind == "put":
                    self._parts[kv.key] = kv.value
                else:
                    self._parts.pop(kv.key, None)
                self._follow_state()
            self._wake.set()

    def resign(self, reason: str) -> None:
        """Hand leadership to a standby (the lease goes back) and sit out the campaigns for
        `SIT_OUT_S`: the machine found it cannot reach most members."""
        self._apply(self.election.resign(reason, time.monotonic(), SIT_OUT_S))

    def _follow_state(self) -> None:
        """Followers keep the newest state in memory (warm standby); the leader's own writes come
        back here too and are ignored (its memory is ahead or equal). The watch brings a
        transaction's parts one by one: a new store's first parts make a state only together."""
        if self.election.role == "leader" or not layout.whole(map(self.address.part_name, self._parts)):
            return
        if (parts := self._decode(self._parts.items())) is not None:
            self.coordinator.follow(parts)

    def _apply(self, effects: list) -> None:
        """Effects that must happen now (start or stop leading) are executed here, synchronously;
        the ones that talk to etcd are queued for the timer task, which runs them in order."""
        for fx in effects:
            if isinstance(fx, Lead):
                state, self._campaign_state = self._campaign_state, None
                log.debug("leading under fence %d (lease %x, ttl %g s) as %s", fx.fence, self.election.lease_id,
                         self.election.ttl, self.advertise)
                self.coordinator.lead(fx.fence, state)
            elif isinstance(fx, StepDown):
                log.debug("stepping down: %s", fx.reason)  # the coordinator logs it
                self.coordinator.step_down(fx.reason)
                self._pending += [Revoke(fx.lease_id), _POLL]
            else:
                self._pending.append(fx)
        if self._pending:
            self._wake.set()

    async def _timer(self) -> None:
        el = self.election
        while True:
            while self._pending:
                fx = self._pending.pop(0)
                if isinstance(fx, Campaign):
                    await self._campaign()
                elif isinstance(fx, Renew):
                    await self._renew(fx.lease_id)
                elif isinstance(fx, Revoke):
                    await self._revoke(fx.lease_id)
                elif fx is _POLL:
                    await self._poll_leader_key()
            now = time.monotonic()
            due = el.next_deadline()
            if due is not None and now >= due:
                self._apply(el.on_timer(now))
                continue
            wait = FOLLOWER_POLL_S if due is None else min(due - now, FOLLOWER_POLL_S)
            self._wake.clear()
            if self._pending:
                continue
            try:
                async with asyncio.timeout(max(0.0, wait)):
                    await self._wake.wait()
            except TimeoutError:
                if el.role == "follower" and el.next_deadline() is None:
                    self._pending.append(_POLL)

    async def _check_reach(self) -> None:
        """While following: do we reach most members of the saved view? (A TCP connect each,
        from our source address; a refused one counts: its host answered.) The election
        campaigns only if so."""
        while True:
            members = list(self.coordinator.view.members)
            if self.election.role == "follower" and members:
                reached = await asyncio.gather(*(_reaches(m) for m in members))
                self._apply(self.election.on_reach(sum(reached) * 2 > len(members), time.monotonic()))
            elif not members:
                self.election.reaches = True
            await asyncio.sleep(REACH_CHECK_S)

    async def _poll_leader_key(self) -> None:
        try:
            kv = await self.conn.run(lambda c: c.get(self.address.leader_key), "read the leader key",
                                     timeout=1.0)
        except EtcdUnavailable as exc:
            log.warning("%s (following; will retry)", exc)
            return
        self._apply(self.election.on_leader_key(kv.value.decode() if kv else None, kv.create_revision if kv else 0,
                                                kv.lease if kv else 0, time.monotonic()))

    async def _campaign(self) -> None:
        el, lkey, prefix = self.election, self.address.leader_key, self.address.range_prefix
        sent_at = time.monotonic()
        lease_id = 0
        try:
            lease = await self.conn.run(lambda c: c.lease(self.lease_ttl_s), "grant a lease")
            lease_id, ttl = lease.id, float(lease.ttl)
            if ttl > self.lease_ttl_s:
                log.info("etcd granted a %g s lease (asked %d s): its minimum follows its election timeout",
                         ttl, self.lease_ttl_s)

            async def txn(c):
                t = c.transactions
                return await c.transaction(compare=[t.create(lkey) == 0],
                                           success=[t.put(lkey, self.advertise.encode(), lease=lease_id),
                                                    t.get(prefix, _range_end(prefix, False))],
                                           failure=[t.get(lkey)])

            ok, responses = await self.conn.run(txn, "run the leader campaign")
        except EtcdUnavailable as exc:
            log.warning("%s; campaigning again after a backoff", exc)
            if lease_id:
                await self._revoke(lease_id)
            self._apply(el.on_campaign_failed(time.monotonic()))
            return
        now = time.monotonic()
        if ok:
            fence = responses[0].response_put.header.revision
            kvs = [(meta.key, value) for value, meta in responses[1] if meta.key != lkey]
            self._campaign_state = self._decode(kvs)
            self._legacy = (self._campaign_state if any(self.address.part_name(k) == layout.LEGACY for k, _ in kvs)
                            else None)
            self._apply(el.on_campaign_result(True, fence, lease_id, ttl, sent_at, now))
        else:
            got = responses[0]
            holder, fence = (got[0][0].decode(), got[0][1].create_revision) if got else (None, 0)
            self._apply(el.on_campaign_result(False, fence, lease_id, ttl, sent_at, now, holder))

    async def _renew(self, lease_id: int) -> None:
        el = self.election
        sent_at = time.monotonic()
        try:
            reply = await self.conn.run(lambda c: c.refresh_lease(lease_id), "renew the leader lease",
                                        timeout=min(el.deadline - sent_at, max(0.2, el.ttl / 3)))
        except EtcdUnavailable as exc:
            log.warning("%s; the leader acts until its local deadline (%.2f s from now)", exc,
                        el.deadline - time.monotonic())
            self._apply(el.on_renew_failed(lease_id, time.monotonic()))
            return
        ttl_left = reply.TTL if reply is not None else 0
        self._apply(el.on_renewed(lease_id, sent_at, ttl_left, time.monotonic()))

    async def _revoke(self, lease_id: int) -> None:
        if not lease_id:
            return
        try:
            await self.conn.run(lambda c: c.revoke_lease(lease_id), f"revoke lease {lease_id:x}", timeout=1.0)
        except EtcdUnavailable as exc:
            log.info("%s (it expires by itself)", exc)
        except Exception as exc:  # noqa: BLE001 - e.g. the lease is already gone
            log.debug("revoke lease %x: %s", lease_id, _describe(exc))


async def _reaches(member: str) -> bool:
    """Does a TCP connection to `member` get an answer (accepted or refused) within 0.3 s?"""
    host, port = member.rsplit(":", 1)
    try:
        async with asyncio.timeout(0.3):
            _, writer = await open_tcp(host.strip("[]"), int(port))
    except ConnectionRefusedError:
        return True
    except (OSError, TimeoutError):
        return False
    writer.close()
    return True
