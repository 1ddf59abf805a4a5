"""A member's watch on its links (pure): what it tells the coordinator with each probe answer.

Three kinds of request leave a member and wait on a peer: entries in the sent list wait on the
successor's acks, forwarded writes on the head's replies, forwarded reads on the tail's. A link
makes progress when the oldest of them is answered (the successor acks, the oldest forward
is replied to); a link with nothing outstanding is never stalled. The watch is sampled at each
probe (every ~0.1 s), so it costs the data path nothing: it compares what it sees with what it
saw at the last probe. The shell adds when bytes last arrived from each peer that opened a link
to us, and which chain members its membership layer no longer sees alive.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from catena.control import LinkReport


@dataclass
class _Waiting:
    peer: str | None = None
    mark: object = None  # what answered progress looks like (the commit point, the oldest token)
    since: float = 0.0  # when progress was last seen


@dataclass
class LinkWatch:
    _waits: dict[str, _Waiting] = field(default_factory=dict)  # "succ" | "head" | "tail" -> its watch

    def report(self, replica, heard: dict[str, float], lost: tuple[str, ...], now: float) -> LinkReport:
        """The report at `now` (monotonic) on `replica`'s links; `heard`: peer -> when bytes
        last arrived from it (same clock); `lost`: chain members membership sees failed."""
        view = replica.view
        stalled = []
        succ = replica.succ if view is not None and replica.succ in view.members else None
        pending = replica.last_seq - replica.commit_seq if succ else 0
        waits = (("succ", succ, replica.commit_seq, pending),
                 ("head", view.head if view else None, next(iter(replica.forwarded), None), len(replica.forwarded)),
                 ("tail", view.tail if view else None, next(iter(replica.reads), None), len(replica.reads)))
        for kind, peer, mark, count in waits:
            w = self._waits.setdefault(kind, _Waiting())
            if not count or peer != w.peer or mark != w.mark or peer == replica.me:
                w.peer, w.mark, w.since = peer, mark, now
            elif now > w.since:
                stalled.append((peer, int((now - w.since) * 1000), count))
        members = set(view.members) if view else set()
        return LinkReport(replica.epoch, tuple(stalled),
                          tuple((p, int(max(0.0, now - t) * 1000)) for p, t in sorted(heard.items()) if p in members),
                          tuple(sorted(m for m in lost if m in members and m != replica.me)))
