"""`catena chaos --netns` without running it: who may run it, the fallback without iptables, and
the gray faults its schedule adds (targets by chain position)."""

from __future__ import annotations

import shutil

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
    assert seen["netns"] is False
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
