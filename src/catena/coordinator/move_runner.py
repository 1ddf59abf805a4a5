"""Runs one slot move (`catena.coordinator.migration`) against real chains: the thin shell that
executes the machine's effects, one at a time (the machine never has two calls out). A call goes
to the chain's head under one request id per call (`CATENA.REQ <driver> <token>`, kept across
re-sends), so a re-sent call applies once. Saving the intent and the map is the caller's
(`save`, `save_map`: the coordinator's fenced store next; a benchmark keeps them in memory).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import deque
from typing import Awaitable, Callable

from catena.coordinator.migration import NO_ANSWER, Call, Finished, Migration, Move, Save, SaveMap
from catena.resp.client import ReplyError, RespConnection

log = logging.getLogger(__name__)
CALL_TIMEOUT_S = 5.0


async def _nothing(*args) -> None:
    return None


async def run_move(heads: Callable[[int], str | None], slot: int = 0, source: int = 0, target: int = 0, *,
                   resume: Move | None = None, save: Callable[[Move], Awaitable] = _nothing,
                   save_map: Callable[[int, int], Awaitable] = _nothing, auth: tuple | None = None,
                   fence: int = 0) -> Move:
    """Move `slot` from chain `source` to chain `target` (or go on with the saved `resume`)
    under the driving leader's `fence` (0: none); `heads(chain)` names a chain's head now
    (None: it has none yet; the call is retried). Returns the final intent (done or undone)."""
    now = time.monotonic
    machine, fx = (Migration.resume(resume, now(), fence or None) if resume
                   else Migration.start(slot, source, target, now(), fence))
    driver = f"mover/{uuid.uuid4().hex[:12]}".encode()
    conns: dict[str, RespConnection] = {}
    todo = deque(fx)
    try:
        while True:
            if not todo:
                deadline = machine.next_deadline()
                if deadline is not None:
                    await asyncio.sleep(max(0.0, deadline - now()))
                todo += machine.on_timer(now())
                continue
            f = todo.popleft()
            if type(f) is Save:
                await save(f.move)
                todo += machine.on_saved(f.move, now())
            elif type(f) is SaveMap:
                await save_map(f.slot, f.chain)
                todo += machine.on_saved(machine.move, now())
            elif type(f) is Call:
                reply = await _call(conns, heads(f.chain), driver, f, auth)
                if isinstance(reply, ReplyError):
                    log.info("slot %d move, phase %s: chain %d answered %s", machine.move.slot, machine.move.phase,
                             f.chain, reply)
                todo += machine.on_reply(f.token, reply, now())
            elif type(f) is Finished:
                return f.move
    finally:
        for conn in conns.values():
            await conn.close()


async def _call(conns: dict, addr: str | None, driver: bytes, call: Call, auth):
    if addr is None:
        return NO_ANSWER
    words = list(call.words)
    if words[0] != b"CATENA.SLOTDUMP":  # a write: under the call's own request id
        words = [b"CATENA.REQ", driver, b"%d" % call.token, *words]
    try:
        conn = conns.get(addr)
        if conn is None:
            conn = conns[addr] = await RespConnection.open(addr, CALL_TIMEOUT_S, auth)
        return await conn.call(*words, timeout=CALL_TIMEOUT_S)
    except ReplyError as exc:
        return exc
    except (OSError, ConnectionError, TimeoutError, EOFError):
        stale = conns.pop(addr, None)
        if stale is not None:
            stale.close_nowait()
        return NO_ANSWER
