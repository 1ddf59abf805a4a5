"""Free loopback ports for local clusters (`catena chaos`, the benchmarks, the tests), and the
stopping of the processes they start (`stop_processes`).

A catena process uses its port number for TCP (RESP) and UDP (membership), so a port is free
only when both bind. Ports come from below the kernel's ephemeral range, so the outgoing
connections of other processes never take them meanwhile.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import time
from pathlib import Path

HOST = "127.0.0.1"


def port_is_free(port: int, host: str = HOST) -> bool:
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind((host, port))
            except OSError:
                return False
    return True


def port_range() -> tuple[int, int]:
    """Ports below the ephemeral range (from /proc when it can be read)."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    return (max(1024, low - 20000), low - 1) if low > 11024 else (40000, 60000)


def free_ports(n: int, taken: set[int] | None = None, rng: random.Random | None = None) -> list[int]:
    """`n` distinct free ports, none in `taken` (which, when given, records them)."""
    rng = rng or random.Random(os.getpid() ^ time.time_ns())
    low, high = port_range()
    taken = set() if taken is None else taken
    ports: list[int] = []
    for _ in range(100_000):
        if len(ports) == n:
            return ports
        port = rng.randrange(low, high)
        if port not in taken and port_is_free(port):
            taken.add(port)
            ports.append(port)
    raise RuntimeError(f"could not find {n} free loopback ports")


def wait_until(predicate, timeout: float, what: str, *, interval: float = 0.05, retry_on: tuple = (OSError,)):
    """Poll `predicate` until it returns something truthy (returned). Exceptions in `retry_on`
    count as "not yet" (a process may still be starting); after `timeout` s raise TimeoutError
    naming `what` and the last such exception."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            result = predicate()
            if result:
                return result
        except retry_on as exc:
            last = exc
        if time.monotonic() >= deadline:
            detail = f" (last error: {last!r})" if last else ""
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}{detail}")
        time.sleep(interval)


def stop_processes(procs, timeout: float = 5.0) -> None:
    """SIGTERM each process of `procs` (in that order) still running, then wait up to `timeout`
    seconds for each and SIGKILL what is left."""
    procs = list(procs)
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
