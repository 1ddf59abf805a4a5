"""What a chaos run sees of the coordinator's decisions, for the per-fault figures: the chain as
the leader has it (`ChainWatch`: asked every `INTERVAL_S` in a thread, each change recorded with
its monotonic time), and the flap quiet periods it imposed (`flap_quiets`: its log's damping
notes), so that a fault's "whole again" figure says how much of it the coordinator made a
member wait on purpose (a member taken out recently waits longer: coordinator/damping.py).
"""

from __future__ import annotations

import re
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Callable

import redis

INTERVAL_S = 0.05
# coordinator/machine.py's note when a member taken out recently registers again
QUIET_NOTE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \S+ \S+ member (\S+) was taken out recently "
                        r"\(flap penalty [\d.]+\): admitting it again once it has answered every probe for ([\d.]+) s")


class ChainWatch:
    """`changes`: (monotonic time, the chain's members) each time the chain read differently."""

    def __init__(self, chain: Callable[[], list[str]]):
        self.chain = chain
        self.changes: list[tuple[float, tuple[str, ...]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos-chain-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(INTERVAL_S):
            try:
                chain = tuple(self.chain())
            except (redis.RedisError, OSError):
                continue  # the leader cut off or changing: the last reading stands
            if not self.changes or self.changes[-1][1] != chain:
                self.changes.append((time.monotonic(), chain))

    def taken_out(self, start: float, end: float) -> float | None:
        """How long after `start` the chain first lacked a member it had then (None: not by `end`)."""
        before = [c for t, c in self.changes if t <= start]
        if not before:
            return None
        for t, chain in self.changes:
            if start < t <= end and set(before[-1]) - set(chain):
                return t - start
        return None


def flap_quiets(log: Path, monotonic_offset: float) -> list[tuple[float, str, float]]:
    """(monotonic time, member, quiet seconds) of each damping note in a coordinator's log;
    `monotonic_offset` is time.time() - time.monotonic() of this process."""
    out = []
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return out
    for line in lines:
        if m := QUIET_NOTE.match(line):
            wall = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
            out.append((wall - monotonic_offset, m.group(2), float(m.group(3))))
    return out
