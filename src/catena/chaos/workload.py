"""The chaos workload: concurrent clients on a small key space, every operation recorded.

`workers` coroutines share one event loop (so the `History` is written from one thread), each
with its own `AsyncClient` (its own client id, so its writes carry their own request ids).

Two kinds of keys:
- registers `r<gen>:<i>`: get / set / incr / del / set-if-absent, a few keys at a time so that
  operations conflict; the generation moves on every `GENERATION_S` seconds, which keeps each
  key's history small enough for the exhaustive linearizability search. catena has no CAS
  command; `SET key value NX` is recorded as compare-and-set from "absent" (the checker's
  `cas (None, value)`), the one compare-and-set Redis offers.
- counters `c<i>`: INCR only, checked by arithmetic at the end (every acknowledged increment
  counted once, none applied twice).

Outcomes: a reply completes the operation; a `Timeout` (or a write refused after it may have
reached the chain) leaves it open, i.e. of unknown outcome; a read that failed had no effect and
is dropped (`History.fail`).
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from dataclasses import dataclass, field

from catena.check import History
from catena.client import AsyncClient, ClientError, ResponseError, Timeout

GENERATION_S = 3.0
REGISTERS = 4
COUNTERS = 3
OP_TIMEOUT_S = 1.0
FINAL_TIMEOUT_S = 15.0


@dataclass
class Sample:
    """One operation for the timeline: when it started/ended (monotonic s), how, and whether
    it was a write."""

    start: float
    end: float
    outcome: str  # "ok", "unknown", "fail"
    write: bool = True
    key: str = ""  # (the key it touched: a slot's writes, for the moves' figures)


@dataclass
class Counter:
    acked: list[int] = field(default_factory=list)  # the results of acknowledged INCRs
    unknown: int = 0  # INCRs whose outcome is unknown


class Workload:
    def __init__(self, coordinator: str, seed: int, prefix: str, workers: int = 6, password: str | None = None):
        self.coordinator = coordinator
        self.password = password  # the cluster's data password, if it has one
        self.seed = seed
        self.prefix = prefix
        self.workers = workers
        self.history = History()
        self.samples: list[Sample] = []
        self.counters: dict[str, Counter] = {f"{prefix}:c{i}": Counter() for i in range(COUNTERS)}
        self.registers: set[str] = set()
        self.errors: dict[str, int] = {}  # kinds of trouble seen, counted
        self.t0 = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._done = threading.Event()
        self.failure: BaseException | None = None

    # -- running --------------------------------------------------------------------------------

    def start(self) -> None:
        self.t0 = time.monotonic()
        self._thread = threading.Thread(target=self._main, name="chaos-workload", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=OP_TIMEOUT_S * 3 + 10)

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as exc:  # noqa: BLE001 - shown in the verdict
            self.failure = exc

    async def _run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            for w in range(self.workers):
                tg.create_task(self._worker(w))

    def _note(self, exc: BaseException) -> None:
        name = type(exc).__name__
        if isinstance(exc, ResponseError):
            name += f": {str(exc)[:60]}"
        self.errors[name] = self.errors.get(name, 0) + 1

    async def _worker(self, w: int) -> None:
        rng = random.Random(f"{self.seed}-{w}")
        client = AsyncClient(self.coordinator, timeout=OP_TIMEOUT_S, password=self.password,
                             client_id=f"chaos-{self.seed}-{w}-{time.time_ns()}",
                             seed=rng.randrange(1 << 30))
        n = 0
        try:
            while not self._stop.is_set():
                n += 1
                if rng.random() < 0.15:
                    await self._incr_counter(client, w, rng.choice(list(self.counters)))
                    continue
                key = self.register(rng.randrange(REGISTERS))
                self.registers.add(key)
                value = w * 10_000_000 + n  # unique per write, and an integer so INCR applies
                roll = rng.random()
                if roll < 0.40:
                    await self._op(client, w, "get", key, None, client.get(key), write=False)
                elif roll < 0.65:
                    await self._op(client, w, "set", key, value, client.set(key, value), write=True)
                elif roll < 0.80:
                    await self._op(client, w, "incr", key, 1, client.incr(key), write=True)
                elif roll < 0.90:
                    await self._op(client, w, "del", key, None, client.delete(key), write=True)
                else:
                    await self._op(client, w, "cas", key, (None, value), client.set(key, value, nx=True),
                                   write=True, result=lambda r: r is True)
        finally:
            await client.close()

    async def _op(self, client, w, kind, key, arg, call, write, result=lambda r: r) -> None:
        start = time.monotonic()
        op = self.history.invoke(w, kind, key, arg, start)
        try:
            reply = await call
        except asyncio.CancelledError:
            raise
        except Timeout as exc:
            self._note(exc)
            if write:
                self.samples.append(Sample(start, time.monotonic(), "unknown", key=key))
            else:
                self.history.fail(op, time.monotonic())
                self.samples.append(Sample(start, time.monotonic(), "fail", write=False, key=key))
            return
        except (ClientError, OSError) as exc:
            self._note(exc)
            if write:  # refused, or unreachable: it may still have reached the head before
                self.samples.append(Sample(start, time.monotonic(), "unknown", key=key))
            else:
                self.history.fail(op, time.monotonic())
                self.samples.append(Sample(start, time.monotonic(), "fail", write=False, key=key))
            await asyncio.sleep(0.01)
            return
        end = time.monotonic()
        self.history.complete(op, result(reply), end)
        self.samples.append(Sample(start, end, "ok", write, key))

    async def _incr_counter(self, client, w, key) -> None:
        start = time.monotonic()
        try:
            value = await client.incr(key)
        except asyncio.CancelledError:
            raise
        except (ClientError, OSError) as exc:
            self._note(exc)
            self.counters[key].unknown += 1
            self.samples.append(Sample(start, time.monotonic(), "unknown", key=key))
            return
        self.counters[key].acked.append(int(value))
        self.samples.append(Sample(start, time.monotonic(), "ok", key=key))

    def register(self, i: int) -> str:
        """Register `i` of the generation now."""
        return f"{self.prefix}:r{int((time.monotonic() - self.t0) / GENERATION_S)}:{i}"

    def hot(self) -> list[str]:
        """The keys written now: the counters and this generation's registers."""
        return [*self.counters, *(self.register(i) for i in range(REGISTERS))]

    # -- the final reads --------------------------------------------------------------------------

    def final_reads(self) -> tuple[dict[str, int | None], list[str]]:
        """Read every register (recorded in the history, client "final") and every counter once
        the cluster is whole again; returns the counters' values and the keys that could not be
        read."""
        return asyncio.run(self._final())

    async def _final(self):
        unread: list[str] = []
        counters: dict[str, int | None] = {}
        async with AsyncClient(self.coordinator, timeout=FINAL_TIMEOUT_S, password=self.password,
                               client_id=f"chaos-final-{time.time_ns()}") as c:
            for key in sorted(self.registers):
                start = time.monotonic()
                op = self.history.invoke("final", "get", key, None, start)
                try:
                    value = await c.get(key)
                except ClientError as exc:
                    self.history.fail(op, time.monotonic())
                    unread.append(f"{key}: {exc}")
                    continue
                self.history.complete(op, value, time.monotonic())
            for key in sorted(self.counters):
                try:
                    value = await c.get(key)
                except ClientError as exc:
                    unread.append(f"{key}: {exc}")
                    counters[key] = None
                    continue
                counters[key] = 0 if value is None else int(value)
        return counters, unread
