"""The coordinator's status page on its metrics port: `/` (plain HTML whose inline script
polls `/status.json` every second) and `/status.json`: the chain with each member's role,
epoch, seqs, lag behind the head and health, the leader, live read and write rates, and the
recent events of the coordinator's ring. Members are asked (MEMBER.STATUS) at each request."""

from __future__ import annotations

import asyncio
import json
import time
from importlib.resources import files

from catena.resp.client import ReplyError
from catena.status import member_status

MEMBER_TIMEOUT_S = 0.5
RATE_MIN_INTERVAL_S = 0.5  # rates are computed over at least this long


def _text(v):
    return v.decode(errors="replace") if isinstance(v, bytes) else v


class StatusPage:
    def __init__(self, coord):
        self.coord = coord
        self._samples: dict[str, tuple[float, int, int]] = {}  # member -> (monotonic, reads, writes)
        self._rates: dict[str, tuple[float, float]] = {}  # member -> (reads/s, writes/s)

    def routes(self) -> dict:
        return {"/": self.page, "/status.json": self.json}

    async def page(self) -> tuple[str, bytes]:
        return "text/html; charset=utf-8", files("catena.metrics").joinpath("status.html").read_bytes()

    async def json(self) -> tuple[str, bytes]:
        return "application/json", json.dumps(await self.snapshot()).encode()

    async def snapshot(self) -> dict:
        c = self.coord
        view = c.view
        leading = c.acting()
        addrs = list(view.members) + ([view.learner] if view.learner else [])
        answers = await asyncio.gather(*(self._ask(a) for a in addrs))
        health = getattr(c.machine, "health", None)
        head = answers[0] if answers and answers[0] else {}
        members = []
        for addr, s in zip(addrs, answers):
            misses = health.misses.get(addr, 0) if leading and health is not None else 0
            if s is None:
                members.append({"addr": addr, "role": "learner" if addr == view.learner else "?",
                                "health": "unreachable", "misses": misses})
                continue
            reads, writes = self._rate(addr, s.get("reads", 0), s.get("writes", 0))
            members.append({
                "addr": addr, "role": _text(s["role"]), "epoch": s["epoch"], "last_seq": s["last_seq"],
                "commit_seq": s["commit_seq"], "lag": max(0, head.get("last_seq", 0) - s["last_seq"]),
                "sent_list": s["sent_list"], "keys": s["keys"], "serving_reads": bool(s["serving_reads"]),
                "health": "ok" if not misses else f"missed {misses} probe{'s' if misses > 1 else ''}",
                "misses": misses, "reads_per_s": reads, "writes_per_s": writes,
                "metrics": _text(s.get("metrics", "")),
            })
        return {
            "time": time.time(), "coordinator": c.me, "role": "leader" if leading else "follower",
            "leader": c.me if leading else c.store.leader, "store": str(c.store),
            "chains": [{"chain": view.chain_id, "epoch": view.epoch, "learner": view.learner,
                        "queued": list(c.machine.saved.queued), "members": members}],
            "rates": {"reads_per_s": sum(m.get("reads_per_s", 0) for m in members),
                      "writes_per_s": sum(m.get("writes_per_s", 0) for m in members)},
            "sessions": len(c.machine.saved.sessions),
            "events": c.metrics.events.recent(),
        }

    async def _ask(self, addr: str) -> dict | None:
        try:
            return await member_status(addr, self.coord.auth, MEMBER_TIMEOUT_S)
        except (OSError, asyncio.TimeoutError, ConnectionError, ReplyError):
            return None

    def _rate(self, addr: str, reads: int, writes: int) -> tuple[float, float]:
        """Reads and writes per second this member answered since the previous sample."""
        now = time.monotonic()
        last = self._samples.get(addr)
        if last is None or reads < last[1] or writes < last[2]:  # first sample, or a restart
            self._samples[addr] = (now, reads, writes)
            self._rates[addr] = (0.0, 0.0)
        elif now - last[0] >= RATE_MIN_INTERVAL_S:
            dt = now - last[0]
            self._rates[addr] = (round((reads - last[1]) / dt, 1), round((writes - last[2]) / dt, 1))
            self._samples[addr] = (now, reads, writes)
        return self._rates[addr]
