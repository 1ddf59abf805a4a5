"""The kernel's network as a chaos run's nemesis (`catena chaos --netns`): a lab of network
namespaces, one per process, on a bridge, and faults as rules inside the namespace of the
process they concern, as a real host's network fails.

`Lab` makes a namespace `<run>-lab` holding a bridge and, for each process (every coordinator,
member, etcd, and the run itself: the workload's clients), a namespace `<run>-<role>` joined to
that bridge by a veth pair: its end is `eth0`, with an address in 198.18.0.0/24 (RFC 2544's
benchmarking range), the lab's end is enslaved to the bridge. The pairs are made inside the lab
namespace, so nothing appears in, or is routed out of, the host's network. `<run>` is unique
per run (`catena-chaos-<pid>-<random>`), so two runs never collide. Leaving the lab deletes every
namespace (their veths go with them), also on an error; a lab whose run was killed (SIGKILL) is
swept by the next one, the processes it left there stopped.

`Faults` applies faults as iptables rules in the concerned process's namespace (one
`iptables-restore` per namespace) and heals by flushing them:

- a cut of A from B: in A's namespace, DROP what goes to B and what comes from B;
- a one-way cut of A: in A's namespace, DROP whatever leaves by eth0;
- packet loss at A: in A's namespace, DROP at random (`-m statistic`) both ways on eth0;
- delay at A: `tc netem` on A's eth0 where the kernel has netem (`Lab.has_netem`; a run
  without it plans no delays and says so).

`Namespace` is the single-namespace variant the integration tests use: the calling thread runs
in a fresh namespace for a test's duration.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import secrets
import shutil
import signal
import subprocess
from dataclasses import dataclass

CLONE_NEWNET = 0x40000000
PREFIX = "catena-chaos-"
SUBNET = "198.18.0."  # /24; the lab's bridge holds .1, processes .2 and up
MAX_NODES = 12  # a handful: the lab refuses more
IFACE = "eth0"  # each process's end of its veth pair


def unavailable() -> str | None:
    """Why a netns run cannot be done here (None when it can)."""
    if os.geteuid() != 0:
        return "--netns needs root (it creates network namespaces and iptables rules in them)"
    missing = [tool for tool in ("ip", "iptables", "iptables-restore") if shutil.which(tool) is None]
    if missing:
        return f"--netns needs {' and '.join(missing)} (apt-get install iproute2 iptables)"
    return None


def _run(*argv: str, stdin: str | None = None) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, input=stdin)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {proc.stderr.strip() or f'exit {proc.returncode}'}")


def setns(fd: int) -> None:
    """Move the calling thread into the network namespace open at `fd`."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "setns failed")


@contextlib.contextmanager
def joined(name: str):
    """The calling thread in namespace `name` (threads it starts inherit it); back home after."""
    home = os.open("/proc/self/ns/net", os.O_RDONLY)
    try:
        fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
        try:
            setns(fd)
        finally:
            os.close(fd)
        try:
            yield
        finally:
            setns(home)
    finally:
        os.close(home)


def listed() -> list[str]:
    """The network namespaces `ip netns` knows."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _delete(name: str) -> None:
    subprocess.run(["ip", "netns", "del", name], capture_output=True)


class Namespace:
    """`with Namespace(name):` the calling thread runs in a fresh network namespace (loopback
    up), deleted on leaving; the thread is back in its own namespace then."""

    def __init__(self, name: str):
        self.name = name
        self._joined: contextlib.AbstractContextManager | None = None

    def __enter__(self) -> "Namespace":
        _run("ip", "netns", "add", self.name)
        try:
            _run("ip", "-n", self.name, "link", "set", "lo", "up")
            self._joined = joined(self.name)
            self._joined.__enter__()
        except BaseException:
            _delete(self.name)
            raise
        return self

    def __exit__(self, *exc) -> None:
        try:
            self._joined.__exit__(None, None, None)
        finally:
            _delete(self.name)


@dataclass(frozen=True)
class Node:
    """One process's namespace in the lab and its address there."""

    netns: str
    ip: str

    def exec(self, argv: list[str]) -> list[str]:
        """`argv` run inside this namespace (`ip netns exec` execs it: the PID is the process's)."""
        return ["ip", "netns", "exec", self.netns, *argv]


def pids(name: str) -> list[int]:
    """The processes living in namespace `name`."""
    out = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def sweep() -> list[str]:
    """Delete the namespaces of labs whose run is gone (killed before it could clean up), and
    stop the processes that run left in them."""
    gone = []
    for name in listed():
        m = re.fullmatch(rf"{PREFIX}(\d+)-[0-9a-f]{{4}}-[a-z0-9-]+", name)
        if m and not os.path.exists(f"/proc/{m.group(1)}"):
            for pid in pids(name):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            _delete(name)
            gone.append(name)
    return gone


class Lab:
    """`with Lab() as lab:` the bridge namespace; `lab.node(role, ip)` adds a process's
    namespace joined to it. Leaving deletes them all (the calling thread is sent home first)."""

    def __init__(self, run: str | None = None):
        self.run = run or f"{PREFIX}{os.getpid()}-{secrets.token_hex(2)}"
        self.bridge = f"{self.run}-lab"
        self.nodes: dict[str, Node] = {}
        self._joined: contextlib.AbstractContextManager | None = None

    @staticmethod
    def address(i: int) -> str:
        """The address of the lab's `i`th process (from 0)."""
        if not 0 <= i < MAX_NODES:
            raise RuntimeError(f"the lab holds at most {MAX_NODES} processes")
        return f"{SUBNET}{i + 2}"

    @property
    def names(self) -> list[str]:
        return [self.bridge, *(n.netns for n in self.nodes.values())]

    def __enter__(self) -> "Lab":
        sweep()
        _run("ip", "netns", "add", self.bridge)
        try:
            for argv in (["link", "add", "br0", "type", "bridge"], ["addr", "add", f"{SUBNET}1/24", "dev", "br0"],
                         ["link", "set", "br0", "up"], ["link", "set", "lo", "up"]):
                _run("ip", "-n", self.bridge, *argv)
        except BaseException:
            self.__exit__()
            raise
        return self

    def node(self, role: str, ip: str) -> Node:
        """A namespace `<run>-<role>` on the bridge, its eth0 at `ip`."""
        if len(self.nodes) >= MAX_NODES:
            raise RuntimeError(f"the lab holds at most {MAX_NODES} processes")
        node = Node(f"{self.run}-{role}", ip)
        _run("ip", "netns", "add", node.netns)
        self.nodes[role] = node
        veth = f"v{len(self.nodes)}"
        for ns, argv in ((self.bridge, ["link", "add", veth, "type", "veth", "peer", "name", IFACE,
                                        "netns", node.netns]),
                         (self.bridge, ["link", "set", veth, "master", "br0", "up"]),
                         (node.netns, ["addr", "add", f"{ip}/24", "dev", IFACE]),
                         (node.netns, ["link", "set", IFACE, "up"]),
                         (node.netns, ["link", "set", "lo", "up"])):
            _run("ip", "-n", ns, *argv)
        return node

    def join(self, role: str) -> None:
        """Move the calling thread (and the threads it starts after) into `role`'s namespace."""
        self._joined = joined(self.nodes[role].netns)
        self._joined.__enter__()

    def has_netem(self) -> bool:
        """Whether tc can hang netem on an interface here (tried on the lab's loopback)."""
        if shutil.which("tc") is None:
            return False
        ok = subprocess.run(["ip", "netns", "exec", self.bridge, "tc", "qdisc", "add", "dev", "lo", "root",
                             "netem", "delay", "1ms"], capture_output=True).returncode == 0
        subprocess.run(["ip", "netns", "exec", self.bridge, "tc", "qdisc", "del", "dev", "lo", "root"],
                       capture_output=True)
        return ok

    def __exit__(self, *exc) -> None:
        try:
            if self._joined is not None:
                self._joined.__exit__(None, None, None)
                self._joined = None
        finally:
            for name in reversed(self.names):
                _delete(name)


class Faults:
    """Faults between processes known by key (an address, or the client's key) -> `Node`."""

    def __init__(self, nodes: dict[str, Node]):
        self.nodes = nodes
        self._touched: set[str] = set()  # namespaces holding rules
        self._delayed: set[str] = set()  # namespaces with netem on eth0

    def _apply(self, rules: dict[str, list[str]]) -> None:
        for key, lines in rules.items():
            node = self.nodes[key]
            self._touched.add(key)
            _run(*node.exec(["iptables-restore", "-w", "--noflush"]),
                 stdin="*filter\n" + "".join(f"{line}\n" for line in lines) + "COMMIT\n")

    def cut_rules(self, pairs: list[tuple[str, str]]) -> dict[str, list[str]]:
        """The rules of cuts of each pair's first from its second, by the first's key."""
        rules: dict[str, list[str]] = {}
        for a, b in pairs:
            peer = self.nodes[b].ip
            rules.setdefault(a, []).extend([f"-A OUTPUT -d {peer} -j DROP", f"-A INPUT -s {peer} -j DROP"])
        return rules

    def cut(self, pairs: list[tuple[str, str]]) -> None:
        """Drop everything between each pair, both ways, in the first's namespace (added to
        the cuts in force)."""
        self._apply(self.cut_rules(pairs))

    def one_way(self, key: str) -> None:
        """Drop whatever `key` sends."""
        self._apply({key: [f"-A OUTPUT -o {IFACE} -j DROP"]})

    def loss(self, key: str, probability: float) -> None:
        """Drop at random a share `probability` of what `key` sends and receives."""
        random = f"-m statistic --mode random --probability {probability:g} -j DROP"
        self._apply({key: [f"-A OUTPUT -o {IFACE} {random}", f"-A INPUT -i {IFACE} {random}"]})

    def delay(self, key: str, ms: int) -> None:
        """Hold what `key` sends for `ms` (netem on its eth0; see `Lab.has_netem`)."""
        _run(*self.nodes[key].exec(["tc", "qdisc", "add", "dev", IFACE, "root", "netem", "delay", f"{ms}ms"]))
        self._delayed.add(key)

    def heal(self) -> None:
        """Every rule and delay gone."""
        for key in sorted(self._touched):
            _run(*self.nodes[key].exec(["iptables", "-w", "-F"]))
        for key in sorted(self._delayed):
            _run(*self.nodes[key].exec(["tc", "qdisc", "del", "dev", IFACE, "root"]))
        self._touched.clear()
        self._delayed.clear()
