"""A private network namespace for a test, with iptables in it: kernel-level partitions.

The test process moves its own thread into a new namespace (setns) for the test's duration, so
every process it starts and every socket it opens lives there, on that namespace's loopback;
iptables rules added there drop packets silently (a real partition: TCP retransmits with
backoff) and never touch the host's network. Needs root, `ip` and `iptables`; skips otherwise.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time

import pytest

from catena.chaos.netns import Namespace, unavailable


@pytest.fixture
def netns():
    """Run the test inside a fresh network namespace (loopback up); yields `iptables(*args)`."""
    if (why := unavailable()) is not None:
        pytest.skip(why)

    def iptables(*args: str) -> None:
        subprocess.run(["iptables", "-w", *args], check=True)

    with Namespace(f"catena-test-{os.getpid()}"):
        yield iptables


def cut_rules(a: str, a_src: str, b: str, b_src: str, host: str = "127.0.0.1") -> list[list[str]]:
    """iptables OUTPUT rules that drop every TCP packet between process a (listening at `a`,
    sending from `a_src`) and process b, both ways; others (the coordinator) still reach both."""
    rules = []
    for src, dst in ((a_src, b), (b_src, a)):
        port = dst.rpartition(":")[2]
        rules.append(["-s", src, "-d", host, "-p", "tcp", "--dport", port, "-j", "DROP"])
        rules.append(["-s", host, "-p", "tcp", "--sport", port, "-d", src, "-j", "DROP"])
    return rules


SOURCES = ("127.0.0.2", "127.0.0.3", "127.0.0.4")  # each member's own source address (in the namespace)


def start_chain(cluster, sources=SOURCES, extra: tuple[str, ...] = (), coordinator: tuple[str, ...] = ()) -> list[str]:
    """A coordinator (started with `coordinator` flags) and one member per source address (head
    first), each sending from its own address so that iptables can tell their connections
    apart; returns the chain."""
    cluster.start_coordinator(extra=coordinator)
    members = [cluster.start_member(extra=("--source-addr", src, *extra)) for src in sources]
    for addr in members:
        cluster.add(addr)
    cluster.wait_chain(members)
    return members


class Writes:
    """One client writing through `addr` in a thread (SET after SET), recording when each was
    acknowledged (`acked`, monotonic): `with Writes(addr) as w:` … stops it at the end."""

    def __init__(self, addr: str):
        self.addr, self.acked, self.stop = addr, [], threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import redis  # the integration tests' client (conftest imports it too)

        host, port = self.addr.rsplit(":", 1)
        c = redis.Redis(host=host, port=int(port), socket_timeout=60)
        i = 0
        while not self.stop.is_set():
            c.set(f"k{i % 100}", i)
            self.acked.append(time.monotonic())
            i += 1
        c.close()

    def longest_gap(self, start: float, end: float) -> float:
        """The longest time within [start, end] in which no write was acknowledged."""
        times = [start] + [t for t in self.acked if start < t < end] + [end]
        return max(b - a for a, b in zip(times, times[1:]))

    def __enter__(self) -> "Writes":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(timeout=70)
