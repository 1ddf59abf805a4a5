"""The kernel's network as a chaos run's nemesis (`catena chaos --netns`): one private network
namespace for the whole run, and faults as iptables rules and tc netem inside it.

`Namespace` creates the namespace (`ip netns add`), moves the calling thread into it (setns:
every process, thread and socket started after lives there, on the namespace's loopback) and
deletes it on leaving, also on an error or Ctrl-C; nothing touches the host's network.

`Iptables` applies the faults. Every process listens on and sends from an address of its own
on that loopback (127.0.2.N), and the workload's clients send from 127.0.0.1, so a rule matching
source and destination addresses cuts exactly one pair, TCP and UDP alike. The rules live in a
chain of their own (`catena-chaos`, jumped to from OUTPUT), so a heal is one flush:

- a cut: DROP both ways; a one-way cut: DROP whatever the process sends;
- packet loss: DROP at random (`-m statistic --mode random --probability p`), both ways;
- delay: `tc netem` on the loopback for the packets the process sends, when the kernel has
  netem (`has_netem`; a run without it plans no delays and says so).

The coordinator asks members' liveness responders from an unbound UDP socket (127.0.0.1), so a
cut between a coordinator and a member also drops datagrams to that member's liveness port.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess

CLONE_NEWNET = 0x40000000
CHAIN = "catena-chaos"
CLIENT_HOST = "127.0.0.1"  # where the workload's clients (and the liveness asker) send from
DELAY_BAND = "1:3"  # the prio band netem hangs under; unfiltered packets go to 1:2


def unavailable() -> str | None:
    """Why a netns run cannot be done here (None when it can)."""
    if os.geteuid() != 0:
        return "--netns needs root (it creates a network namespace and iptables rules in it)"
    missing = [tool for tool in ("ip", "iptables") if shutil.which(tool) is None]
    if missing:
        return f"--netns needs {' and '.join(missing)} (apt-get install iproute2 iptables)"
    return None


def _run(*argv: str) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {proc.stderr.strip() or f'exit {proc.returncode}'}")


def setns(fd: int) -> None:
    """Move the calling thread into the network namespace open at `fd`."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "setns failed")


class Namespace:
    """`with Namespace(name):` the calling thread runs in a fresh network namespace (loopback
    up), deleted on leaving; the thread is back in its own namespace then."""

    def __init__(self, name: str):
        self.name = name

    def __enter__(self) -> "Namespace":
        _run("ip", "netns", "add", self.name)
        self._home = os.open("/proc/self/ns/net", os.O_RDONLY)
        try:
            fd = os.open(f"/run/netns/{self.name}", os.O_RDONLY)
            try:
                setns(fd)
            finally:
                os.close(fd)
            _run("ip", "link", "set", "lo", "up")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        try:
            setns(self._home)
        finally:
            os.close(self._home)
            subprocess.run(["ip", "netns", "del", self.name], capture_output=True)


def has_netem() -> bool:
    """Whether tc can hang netem under a prio qdisc on the loopback here (tried, then removed)."""
    if shutil.which("tc") is None:
        return False
    ok = all(subprocess.run(argv, capture_output=True).returncode == 0 for argv in (
        ["tc", "qdisc", "add", "dev", "lo", "root", "handle", "1:", "prio"],
        ["tc", "qdisc", "add", "dev", "lo", "parent", DELAY_BAND, "handle", "30:", "netem", "delay", "1ms"]))
    subprocess.run(["tc", "qdisc", "del", "dev", "lo", "root"], capture_output=True)
    return ok


class Iptables:
    """Faults between processes known by `host` (address -> its own IP; CLIENT for the
    workload), with `liveness` (member address -> its liveness UDP port) and `coordinators`."""

    def __init__(self, host: dict[str, str], liveness: dict[str, int], coordinators: list[str]):
        self.host, self.liveness, self.coordinators = host, liveness, set(coordinators)
        self._delayed = False
        _run("iptables", "-w", "-N", CHAIN)
        _run("iptables", "-w", "-I", "OUTPUT", "-j", CHAIN)

    def _drop(self, *match: str) -> None:
        _run("iptables", "-w", "-A", CHAIN, *match, "-j", "DROP")

    def cut(self, pairs: list[tuple[str, str]]) -> None:
        """Drop everything between each pair, both ways (added to the cuts in force)."""
        for a, b in pairs:
            for src, dst in ((a, b), (b, a)):
                self._drop("-s", self.host[src], "-d", self.host[dst])
            for c, m in ((a, b), (b, a)):
                if c in self.coordinators and m in self.liveness:
                    self._drop("-d", self.host[m], "-p", "udp", "--dport", str(self.liveness[m]))

    def one_way(self, addr: str) -> None:
        """Drop whatever `addr` sends."""
        self._drop("-s", self.host[addr])

    def loss(self, addr: str, probability: float) -> None:
        """Drop at random a share `probability` of what `addr` sends and receives."""
        for flag in ("-s", "-d"):
            self._drop(flag, self.host[addr], "-m", "statistic", "--mode", "random",
                       "--probability", f"{probability:g}")

    def delay(self, addr: str, ms: int) -> None:
        """Hold what `addr` sends for `ms` (netem on the loopback; see `has_netem`)."""
        _run("tc", "qdisc", "add", "dev", "lo", "root", "handle", "1:", "prio")
        self._delayed = True
        _run("tc", "qdisc", "add", "dev", "lo", "parent", DELAY_BAND, "handle", "30:", "netem", "delay", f"{ms}ms")
        _run("tc", "filter", "add", "dev", "lo", "parent", "1:0", "protocol", "ip", "prio", "1", "u32",
             "match", "ip", "src", f"{self.host[addr]}/32", "flowid", DELAY_BAND)

    def heal(self) -> None:
        _run("iptables", "-w", "-F", CHAIN)
        if self._delayed:
            _run("tc", "qdisc", "del", "dev", "lo", "root")
            self._delayed = False
