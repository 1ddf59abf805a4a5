"""Real `catena agent` processes on 127.0.0.1 for the membership integration tests and bench.

Agents are started with `python -m catena.membership.cli agent` (no dependency on the top-level
CLI). Every process is stopped by its PID in `AgentGroup.close()`.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from conftest import HOST, Proc, free_port, wait_until

from catena.membership.cli import resp_call


def agent_argv(port: int, join: list[int] = (), secret: str | None = None, *extra: str) -> list[str]:
    argv = [sys.executable, "-m", "catena.membership.cli", "agent", "--listen", f"{HOST}:{port}"]
    if join:
        argv += ["--join", ",".join(f"{HOST}:{p}" for p in join)]
    if secret:
        argv += ["--secret", secret]
    return argv + list(extra)


def members(port: int, all_: bool = False, timeout: float = 1.0) -> list[list]:
    """MEMBERS rows: [id, addr, incarnation, state, heard_ms] with str/int values."""
    rows = resp_call(f"{HOST}:{port}", *(["MEMBERS", "ALL"] if all_ else ["MEMBERS"]), timeout=timeout)
    return [[r[0].decode(), r[1].decode(), r[2], r[3].decode(), r[4]] for r in rows]


def live_addrs(port: int) -> set[str]:
    return {r[1] for r in members(port)}


def stats(port: int) -> dict:
    reply = resp_call(f"{HOST}:{port}", "MEMBERS.STATS")
    pairs = reply.items() if isinstance(reply, dict) else zip(reply[::2], reply[1::2])
    return {k.decode(): (v.decode() if isinstance(v, bytes) else v) for k, v in pairs}


class AgentGroup:
    def __init__(self, root: Path, secret: str | None = None):
        self.root = root
        self.secret = secret
        self.procs: dict[int, Proc] = {}

    def spawn(self, port: int | None = None, join: list[int] = (), *extra: str) -> int:
        port = port or free_port()
        n = sum(1 for p in self.procs.values() if p) + 1
        self.procs[port] = Proc(f"agent-{port}", agent_argv(port, join, self.secret, *extra),
                                self.root / f"agent-{port}-{n}.log")
        return port

    def start(self, n: int, timeout: float = 30.0, *extra: str) -> list[int]:
        """n agents: the first founds the group, the others join through it (in parallel)."""
        first = self.spawn(None, [], *extra)
        wait_until(lambda: members(first), timeout, f"agent {first} to serve MEMBERS")
        ports = [first] + [self.spawn(None, [first], *extra) for _ in range(n - 1)]
        self.wait_converged(ports, timeout)
        return ports

    def wait_converged(self, ports: list[int], timeout: float = 30.0) -> None:
        want = {f"{HOST}:{p}" for p in ports}

        def ok():
            return all(live_addrs(p) == want and all(r[3] == "alive" for r in members(p)) for p in ports)

        wait_until(ok, timeout, f"{len(ports)} agents to list each other", interval=0.05)

    def close(self) -> None:
        for p in self.procs.values():
            try:
                if p.alive:
                    p.kill9() if p.stopped else p.stop(timeout=3.0)
            except Exception:
                p.kill9()

    def logs(self, lines: int = 15) -> str:
        return "\n".join(f"--- {p.name}\n{p.log_tail(lines)}" for p in self.procs.values())


def watch_removal(observers: list[int], victims: set[str], t0: float, timeout: float = 10.0):
    """Poll observers' MEMBERS until each has dropped every victim.

    Returns (first, all): the worst over victims of the time (s after t0) at which some observer
    first dropped that victim, and the time at which every observer had dropped all of them.
    None where that did not happen within `timeout`.
    """
    first: dict[str, float] = {}
    done: dict[int, float] = {}
    deadline = t0 + timeout
    while len(done) < len(observers) and time.monotonic() < deadline:
        for p in observers:
            if p in done:
                continue
            try:
                listed = live_addrs(p)
            except (OSError, RuntimeError):
                continue
            now = time.monotonic() - t0
            for v in victims - listed:
                first.setdefault(v, now)
            if not victims & listed:
                done[p] = now
        time.sleep(0.01)
    worst_first = max(first.values()) if len(first) == len(victims) else None
    return worst_first, (max(done.values()) if len(done) == len(observers) else None)
