"""The `catena chaos --netns` lab (issue 17): every process in a network namespace of its own on
a bridge, a fault a rule in the namespace of the process it concerns (stopping that process's
traffic and no one else's), and every namespace and veth gone after the run, also after a
failing or interrupted one. Root, ip and iptables; skipped otherwise."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Callable

import pytest
import redis

from catena.chaos.netns import PREFIX, Lab, listed, pids, sweep, unavailable
from catena.chaos.runner import CLIENT, LocalCluster
from catena.loopback import wait_until

pytestmark = pytest.mark.skipif(unavailable() is not None, reason=f"{unavailable()}")


def netns_of(pid: int | str) -> int:
    return os.stat(f"/proc/{pid}/ns/net").st_ino


def veths(*ns: str) -> list[str]:
    out = subprocess.run(["ip", *(["-n", *ns] if ns else []), "-o", "link", "show", "type", "veth"],
                         capture_output=True, text=True, check=True).stdout
    return [line.split(":")[1].strip() for line in out.splitlines()]


def rules(netns: str) -> list[str]:
    out = subprocess.run(["ip", "netns", "exec", netns, "iptables", "-w", "-S"], capture_output=True, text=True,
                         check=True).stdout
    return [line for line in out.splitlines() if "DROP" in line]


def answers(addr: str) -> bool:
    host, port = addr.rsplit(":", 1)
    try:
        with redis.Redis(host=host, port=int(port), socket_timeout=0.5, socket_connect_timeout=0.5) as c:
            return c.ping()
    except (redis.RedisError, OSError):
        return False


def test_each_process_has_a_namespace_of_its_own_and_a_cut_there_stops_only_its_traffic(tmp_path):
    home, host_veths = netns_of("thread-self"), veths()
    lab = Lab()
    with lab:
        cluster = LocalCluster(tmp_path, 3, lab=lab)
        try:
            cluster.start()
            pids = {addr: proc.popen.pid for addr, proc in cluster.procs.items()}
            spaces = {addr: netns_of(pid) for addr, pid in pids.items()}
            assert len({*spaces.values(), netns_of("thread-self"), home}) == len(pids) + 2  # all apart
            for addr, ino in spaces.items():  # each in the namespace named after it
                assert os.stat(f"/run/netns/{lab.nodes[cluster.name(addr)].netns}").st_ino == ino
            assert len(veths(lab.bridge)) == len(pids) + 1  # the lab's ends; this thread's (the clients'):
            assert [v.split("@")[0] for v in veths()] == ["eth0"]

            member = cluster.members[1]
            others = [a for a in cluster.everyone if a != member]
            cluster.partition([(member, x) for x in [*others, CLIENT]])
            node = lab.nodes[cluster.name(member)].netns
            assert len(rules(node)) == 2 * (len(others) + 1)
            assert all(not rules(n.netns) for n in lab.nodes.values() if n.netns != node)
            assert not answers(member)
            assert all(answers(a) for a in others)
            wait_until(lambda: member not in cluster.chain(), 30, f"the coordinator to take {member} out")
            assert sorted(cluster.chain()) == sorted(cluster.members[::2])  # only the cut one

            cluster.heal_network()
            assert answers(member) and not rules(node)
            assert cluster.wait_whole(30)
        finally:
            cluster.stop()
    assert not set(lab.names) & set(listed())
    assert netns_of("thread-self") == home and veths() == host_veths


def test_a_failing_run_leaves_no_namespace_behind(tmp_path):
    """Too many processes for the lab: the run fails after its lab namespace was made."""
    proc = subprocess.run([sys.executable, "-m", "catena.chaos", "--netns", "--members", "12", "--duration", "5",
                           "--out", str(tmp_path), "--no-progress"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "at most 12 processes" in proc.stderr, proc.stdout + proc.stderr
    run = proc.stdout.split("network namespaces ")[1].split("-*")[0]
    assert not [n for n in listed() if n.startswith(run)]


def started_run(tmp_path) -> tuple[subprocess.Popen, Callable[[], list[str]], set[int]]:
    """A `catena chaos --netns` run with every member started: (its process, its namespaces
    now, its members' PIDs)."""
    proc = subprocess.Popen([sys.executable, "-m", "catena.chaos", "--netns", "--duration", "60", "--seed", "1",
                             "--out", str(tmp_path), "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        run = proc.stdout.readline().split("network namespaces ")[1].split("-*")[0]
        assert run.startswith(PREFIX)
        ours = lambda: [n for n in listed() if n.startswith(run)]  # noqa: E731
        wait_until(lambda: len(ours()) == 6, 60, "the lab, a coordinator, 3 members and the clients")
        members = lambda: {p for n in ours() if "-member-" in n for p in pids(n)}  # noqa: E731
        return proc, ours, wait_until(lambda: len(members()) == 3 and members(), 60, "every member started")
    except BaseException:
        proc.kill()
        proc.wait()
        raise


def test_an_interrupted_run_stops_its_processes_and_deletes_its_namespaces(tmp_path):
    proc, ours, members = started_run(tmp_path)
    try:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 130, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not ours()
    assert not [p for p in members if os.path.exists(f"/proc/{p}")]


def test_a_killed_runs_namespaces_and_processes_are_swept_by_the_next(tmp_path):
    proc, ours, members = started_run(tmp_path)
    proc.kill()  # SIGKILL: no clean-up of its own
    proc.wait()
    left = ours()
    try:
        assert len(left) == 6  # what a killed run leaves
        assert set(left) <= set(sweep())
        assert not ours()
        wait_until(lambda: not [p for p in members if os.path.exists(f"/proc/{p}")], 30, "the orphans gone")
    finally:
        for name in ours():  # the sweep failed: clean up here
            for pid in pids(name):
                os.kill(pid, signal.SIGKILL)
            subprocess.run(["ip", "netns", "del", name])
