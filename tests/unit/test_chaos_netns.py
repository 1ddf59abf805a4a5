"""`catena chaos --netns` without running it: who may run it, the fallback without iptables, and
the gray faults its schedule adds (targets by chain position)."""

from __future__ import annotations

import shutil

import pytest

from catena.chaos import cli, netns
from catena.chaos.runner import FAULT_KINDS, GRAY_KINDS, Fault, cut_pairs, schedule


def test_netns_needs_root(monkeypatch, capsys):
    monkeypatch.setattr(netns.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(cli, "run", lambda *a, **k: (_ for _ in ()).throw(AssertionError("ran")))
    assert cli.main(["--netns", "--duration", "1"]) == 2
    assert "--netns needs root" in capsys.readouterr().err


def test_without_iptables_the_run_falls_back_to_the_proxy(monkeypatch, capsys):
    monkeypatch.setattr(netns.os, "geteuid", lambda: 0)
    monkeypatch.setattr(shutil, "which", lambda tool: None if tool == "iptables" else f"/usr/sbin/{tool}")
    seen = {}

    class Clean:
        clean = True

    def run(*args, **kwargs):
        seen.update(kwargs)
        return Clean()

    monkeypatch.setattr(cli, "run", run)
    assert cli.main(["--netns", "--duration", "1"]) == 0
    assert seen["lab"] is None
    err = capsys.readouterr().err
    assert "--netns needs iptables" in err and "falling back to the proxy" in err


def test_gray_kinds_only_in_a_netns_run_and_delays_only_with_netem():
    kinds = lambda **kw: {f.kind for s in range(30) for f in schedule(s, 60, 3, **kw)}  # noqa: E731
    assert kinds() == set(FAULT_KINDS)
    assert kinds(gray=True) == set(FAULT_KINDS) | set(GRAY_KINDS) - {"slow-member"}
    assert "slow-member" in kinds(gray=True, delay=True)
    assert schedule(6, 28, 3, gray=True) == schedule(6, 28, 3, gray=True)
    flaps = [f for s in range(30) for f in schedule(s, 60, 3, gray=True) if f.kind == "flap-member"]
    assert flaps and all(f.hold == 9.0 for f in flaps)  # 3 × (2 s cut, 1 s up)


def test_link_cuts_go_by_chain_position():
    coordinators, members = ["c:1"], ["m:1", "m:2", "m:3"]
    chain = ["m:3", "m:1", "m:2"]  # as the coordinator has it when the cut begins
    cut = lambda kind: cut_pairs(Fault(0, kind, 0, 1), coordinators, members, chain)  # noqa: E731
    assert cut("cut-middle-tail") == [("m:1", "m:2")]
    assert cut("cut-head-middle") == [("m:3", "m:1")]
    assert cut("isolate-coordinator-members") == [("c:1", m) for m in members]
    assert ("m:1", "client") in cut("flap-member") and ("m:1", "c:1") in cut("flap-member")


def test_fault_windows_measure_the_longest_stretches_without_acknowledged_ops():
    from catena.chaos.report import Verdict, fault_windows
    from catena.chaos.runner import Applied
    from catena.chaos.workload import Sample

    ok = lambda end, write: Sample(end - 0.01, end, "ok", write)  # noqa: E731
    samples = ([ok(t / 10, True) for t in range(0, 100) if not 12 <= t < 42]  # last write acked at 1.1, next 4.2
               + [ok(t / 10, False) for t in range(0, 100) if not 20 <= t < 30]  # reads: 1.9, then 3.0
               + [Sample(1.3, 4.0, "unknown"), Sample(2.1, 2.9, "fail", write=False)])  # not acknowledged
    applied = [Applied(Fault(1.0, "cut-middle-tail", 0, 2.0), "m:1 ~ m:2", start=1.0, end=3.0, rejoined=4.5),
               Applied(Fault(6.0, "flap-member", 0, 9.0), "m:1 from all", start=6.0, end=7.0)]  # never whole
    first, second = fault_windows(samples, applied)
    assert round(first.write_unavailable_s, 2) == 3.1 and round(first.read_unavailable_s, 2) == 1.1
    assert round(first.heal_to_whole_s, 2) == 1.5
    assert second.heal_to_whole_s is None and round(second.write_unavailable_s, 2) == 0.1
    v = Verdict(windows=[first, second])
    lines = "\n".join(v.lines())
    assert "fault cut-middle-tail (m:1 ~ m:2, 2.0 s): writes unavailable 3.10 s, reads 1.10 s; whole 1.50 s after" in lines
    assert "fault flap-member (m:1 from all, 1.0 s)" in lines and "not whole again" in lines
    assert v.clean  # a measure, not a verdict

    from catena.chaos.watch import ChainWatch

    watch = ChainWatch(lambda: [])
    watch.changes = [(0.0, ("a", "b", "c")), (2.2, ("a", "b")), (4.4, ("a", "b", "c"))]
    quiets = [(3.5, "c", 1.2), (3.6, "c", 2.4), (8.0, "c", 4.8)]  # the last one after the fault was whole
    first, second = fault_windows(samples, applied, watch, quiets)
    assert round(first.taken_out_s, 2) == 1.2 and first.quiet_s == 2.4
    assert second.taken_out_s is None and second.quiet_s is None
    assert "reads 1.10 s; a member taken out 1.20 s after it began; whole 1.50 s after the heal (flap quiet 2.4 s)" \
        in first.line()


def test_a_coordinator_cut_from_the_members_is_the_leader():
    import time

    from catena.chaos.runner import Nemesis

    class Cluster:
        coordinators, members, etcd = ["c:1", "c:2"], ["m:1", "m:2", "m:3"], "e:1"
        chain_of = dict.fromkeys(members, 0)
        cuts: list = []

        def name(self, addr):
            return addr

        def chain(self, chain_id=0):
            return self.members

        def whole(self):
            return True

        def leader(self):
            return "c:2"

        def partition(self, pairs):
            self.cuts.append(pairs)

        def heal_network(self):
            pass

    cluster = Cluster()
    nemesis = Nemesis(cluster, [Fault(0.0, "isolate-coordinator-members", 0, 0.0)], time.monotonic(), settle_s=0)
    nemesis._run()
    assert not nemesis.errors and cluster.cuts == [[("c:2", m) for m in cluster.members]]
    assert nemesis.applied[0].target == "c:2 from members"


def test_a_cut_is_a_rule_in_the_namespace_of_the_process_it_concerns(tmp_path):
    from catena.chaos.netns import Faults, Lab, Node
    from catena.chaos.runner import CLIENT, GRAY_ETCD_KINDS, LocalCluster

    assert not {f.kind for s in range(30) for f in schedule(s, 60, 3, gray=True)} & set(GRAY_ETCD_KINDS)
    assert set(GRAY_ETCD_KINDS) <= {f.kind for s in range(30) for f in schedule(s, 60, 3, "etcd", gray=True)}
    cluster = LocalCluster(tmp_path, 3, "etcd", lab=Lab("catena-chaos-1-abcd"))
    first, second = cluster.coordinators
    processes = [*cluster.everyone, cluster.etcd]
    hosts = [a.rsplit(":", 1)[0] for a in processes] + [cluster.client_host]
    assert len(set(hosts)) == len(hosts) and all(h.startswith("198.18.0.") for h in hosts)  # one each
    assert cluster.store_url in cluster._argv(second) and "CATENA_SECRET" in cluster.env  # beyond loopback
    faults = Faults({a: Node(f"ns-{a}", a.rsplit(":", 1)[0]) for a in processes}
                    | {CLIENT: Node("ns-client", cluster.client_host)})
    etcd_ip = cluster.etcd.rsplit(":", 1)[0]
    pairs = cut_pairs(Fault(0, "cut-etcd-coordinator", 1, 1), cluster.coordinators, cluster.members,
                      etcd=cluster.etcd)
    assert faults.cut_rules(pairs) == {second: [f"-A OUTPUT -d {etcd_ip} -j DROP", f"-A INPUT -s {etcd_ip} -j DROP"]}
    member = cluster.members[1]
    isolated = faults.cut_rules(cut_pairs(Fault(0, "isolate-member", 1, 1), cluster.coordinators, cluster.members))
    assert list(isolated) == [member] and len(isolated[member]) == 2 * (len(processes) - 2 + 1)  # all but etcd, +client


def test_lab_names_are_unique_per_run_and_bounded():
    from catena.chaos.netns import MAX_NODES, Lab

    assert Lab().run != Lab().run
    assert Lab.address(0) == "198.18.0.2"
    with pytest.raises(RuntimeError, match="at most"):
        Lab.address(MAX_NODES)


def test_a_killed_runs_namespaces_are_swept(monkeypatch):
    from catena.chaos import netns as n

    monkeypatch.setattr(n, "listed", lambda: ["catena-chaos-999999999-abcd-member-7001", "catena-chaos-1-abcd-lab",
                                              "catena-test-5", "catena-chaos-999999999"])
    deleted = []
    monkeypatch.setattr(n, "_delete", deleted.append)
    monkeypatch.setattr(n.os.path, "exists", lambda path: path == "/proc/1")
    monkeypatch.setattr(n, "pids", lambda name: [])
    assert n.sweep() == deleted == ["catena-chaos-999999999-abcd-member-7001"]  # its run is gone; others not ours


class _Clock:
    """Virtual time for code that polls: sleep() moves it on."""

    def __init__(self):
        self.now = 100.0

    def monotonic(self):
        return self.now

    def sleep(self, s):
        self.now += s


def test_whole_after_a_fault_is_when_the_chain_last_became_whole_and_stayed(monkeypatch):
    """A chain read whole at the heal, with the removal landing just after, is not whole yet."""
    from catena import loopback
    from catena.chaos import runner

    clock = _Clock()
    monkeypatch.setattr(runner, "time", clock)
    monkeypatch.setattr(loopback, "time", clock)
    members = ["m:1", "m:2", "m:3"]

    class Cluster:
        def __init__(self):
            self.members = members

        def whole(self):  # (every chain holds its members: LocalCluster.whole)
            t = clock.now - 100.0
            return not 0.3 <= t < 1.5  # a member removed at 0.3 s, back at 1.5 s

    assert runner.settled_whole(Cluster(), 30, settle_s=1.0) == pytest.approx(101.5, abs=0.06)
    assert runner.settled_whole(Cluster(), 0.5, settle_s=1.0) is None  # never whole for 1 s by then


def test_the_chain_watch_says_when_a_member_was_first_taken_out():
    from catena.chaos.watch import ChainWatch

    watch = ChainWatch(lambda: [])
    watch.changes = [(1.0, ("a", "b", "c")), (5.0, ("a", "b")), (7.0, ("b", "a")), (9.0, ("a", "b", "c"))]
    assert watch.taken_out(2.0, 10.0) == 3.0
    assert watch.taken_out(6.0, 10.0) is None  # nothing lost after a start with two
    assert watch.taken_out(2.0, 4.0) is None
    assert watch.taken_out(0.5, 10.0) is None  # no reading before it began


def test_flap_quiets_come_from_the_coordinators_damping_notes(tmp_path):
    from datetime import datetime

    from catena.chaos.watch import flap_quiets

    log = tmp_path / "coordinator-1.log"
    log.write_text(
        "2026-11-30 08:39:43,922 WARNING catena.coordinator.service member 198.18.0.4:29781 was taken out "
        "recently (flap penalty 1.7): admitting it again once it has answered every probe for 2.4 s\n"
        "2026-11-30 08:39:45,778 INFO catena.coordinator.service member 198.18.0.4:29781 answered every probe "
        "for 2.4 s: admitting it again\n")
    wall = datetime(2026, 11, 30, 8, 39, 43, 922000).timestamp()
    [(t, member, quiet)] = flap_quiets(log, monotonic_offset=wall - 50.0)
    assert (round(t, 3), member, quiet) == (50.0, "198.18.0.4:29781", 2.4)
    assert flap_quiets(tmp_path / "missing.log", 0.0) == []
