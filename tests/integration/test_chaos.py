"""`catena chaos`: a short real-process run must come out clean, and the verdict code must catch
a lost write, a stale read and a duplicated increment in synthetic histories."""

from __future__ import annotations

import math
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from catena.chaos.netns import PREFIX, listed, unavailable
from catena.chaos.report import Verdict, judge_counters, judge_registers
from catena.chaos.runner import ETCD_FAULT_KINDS, FAULT_KINDS, PARTITIONS, Fault, Nemesis, schedule
from catena.chaos.workload import Counter
from catena.check import Operation
from catena.etcd_local import ETCD

CHAOS_S = 30
SEED = 66  # its first 30 s plan every kind of fault, partitions included
ETCD_CHAOS_S = 25
ETCD_SEED = 60  # its first 25 s kill and pause etcd, kill a coordinator and partition
NETNS_CHAOS_S = 28
NETNS_SEED = 34  # cut head~middle at 3.5 s, a flapping member at 8.3 s, a one-way cut of the tail at 19.5 s


def op(client, kind, key, arg, result, call, ret):
    return Operation(client, kind, key, arg, result, call, ret)


def _chaos(tmp_path, seed: int, duration: int, *flags: str) -> tuple[set[str], str]:
    """A real `catena chaos` run; asserts a clean verdict and the timeline; the kinds applied
    and what it printed."""
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "catena.chaos", "--seed", str(seed), "--duration", str(duration), "--out", str(out),
         "--no-progress", *flags],
        capture_output=True, text=True, timeout=duration + 150)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "verdict: CLEAN" in proc.stdout
    applied = proc.stdout.split("faults applied: ")[1].split("\n")[0]
    png = out / f"chaos-{seed}.png"
    assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return {part.rsplit(" ", 1)[0] for part in applied.split(", ")}, proc.stdout


def test_short_chaos_run_is_clean(tmp_path):
    kinds, _ = _chaos(tmp_path, SEED, CHAOS_S)
    assert kinds & PARTITIONS and kinds - PARTITIONS, kinds  # (a loaded machine may not reach them all)


@pytest.mark.skipif(not Path(ETCD).exists(), reason="etcd-server is not installed")
def test_short_chaos_run_on_etcd_is_clean(tmp_path):
    """Two coordinators on an etcd node that is itself killed and paused."""
    assert {f.kind for f in schedule(ETCD_SEED, ETCD_CHAOS_S, 3, "etcd")} >= set(ETCD_FAULT_KINDS)
    kinds, _ = _chaos(tmp_path, ETCD_SEED, ETCD_CHAOS_S, "--store", "etcd")
    assert kinds & set(ETCD_FAULT_KINDS), kinds


@pytest.mark.skipif(unavailable() is not None, reason=f"{unavailable()}")
def test_short_netns_chaos_run_is_clean_and_measures_each_fault(tmp_path):
    """Kernel faults in the lab (a network namespace per process): a link cut, a flapping member
    and a one-way cut of the tail; every fault gets its windows, and the namespaces are gone after."""
    planned = [f.kind for f in schedule(NETNS_SEED, NETNS_CHAOS_S, 3, gray=True)]
    assert {"cut-head-middle", "flap-member", "one-way-tail"} <= set(planned), planned
    kinds, out = _chaos(tmp_path, NETNS_SEED, NETNS_CHAOS_S, "--netns")
    assert {"cut-head-middle", "flap-member"} <= kinds, kinds  # the first two, even on a loaded machine
    windows = [line for line in out.splitlines() if line.startswith("fault ")]
    assert len(windows) == sum(int(p.rsplit(" ", 1)[1]) for p in out.split("faults applied: ")[1].split("\n")[0].split(", "))
    assert all(" writes unavailable " in w and ", reads " in w for w in windows), windows
    cut = next(w for w in windows if w.startswith("fault cut-head-middle "))
    assert "whole " in cut and "after the heal" in cut, cut
    run = out.split("network namespaces ")[1].split("-*")[0]
    assert run.startswith(PREFIX) and not [n for n in listed() if n.startswith(run)]


CHAINS_SEED = 15  # a hot slot's move begins just before the coordinator is killed (3.8 s)
CHAINS_CHAOS_S = 15


def test_short_chaos_run_with_two_chains_moves_hot_slots_and_is_clean(tmp_path):
    """Two chains of two members; slots the workload writes move between them (and back) while
    the faults go on, the coordinator killed mid-move among them, and a third chain is added
    midway and given a hot slot, then drained (its slots to the others) and removed while the
    faults go on: the verdict covers every chain, reports each move done or undone, with the
    writes its slot saw meanwhile, and the removal (a run that did not remove it is not clean)."""
    _, out = _chaos(tmp_path, CHAINS_SEED, CHAINS_CHAOS_S, "--chains", "2", "--members", "2")
    assert "2 chains of 2 members" in out
    moves = [line for line in out.splitlines() if line.startswith("move slot ")]
    summary = next(line for line in out.splitlines() if line.startswith("slot moves "))
    assert len(moves) >= 2 and summary.startswith(f"slot moves {len(moves)} (of "), out
    outcomes = [m.split(": ", 1)[1].split(" in ")[0] for m in moves]
    assert set(outcomes) <= {"done", "undone", "not started"} and "done" in outcomes, moves
    assert summary.endswith(f"done {outcomes.count('done')}, undone {outcomes.count('undone')}, "
                            f"not started {outcomes.count('not started')}"), summary
    hot = [m for m in moves if " (hot) " in m]
    assert hot and any(" meanwhile 0," not in m for m in hot), moves  # the workload wrote while they moved
    assert "chain 2 added " in out, out  # a chain added midway, and the next move went to it
    assert any("->2: done in " in m for m in moves), moves
    drained = [m for m in moves if " (drain) chain 2->" in m]
    assert drained and all(m.split(": ", 1)[1].startswith(("done", "undone")) for m in drained), moves
    removal = next(line for line in out.splitlines() if line.startswith("chain 2: drain began "))
    assert re.search(r"; \d+ slots? drained in [\d.]+ s \(\d+ moves\), removed [\d.]+ s after", removal), removal
    assert re.search(r"per-slot unavailability: (slowest acknowledged write \d+ ms|no writes to them)", removal), removal
    assert f"and {len(drained)} draining a chain;" in summary, summary


def test_same_seed_same_schedule():
    assert schedule(3, 60, 3) == schedule(3, 60, 3)
    assert schedule(3, 60, 3) != schedule(4, 60, 3)
    assert {f.kind for s in range(5) for f in schedule(s, 60, 3)} == set(FAULT_KINDS)
    assert {f.kind for f in schedule(SEED, CHAOS_S, 3)} == set(FAULT_KINDS)


def test_clean_history_is_clean():
    v = Verdict()
    judge_registers([
        op(1, "set", "k", 5, None, 0, 1),
        op(2, "incr", "k", 1, 6, 2, 3),
        op(1, "cas", "k", (None, 9), False, 4, 5),
        op(2, "set", "k", 7, None, 6, math.inf),  # unknown outcome
        op("final", "get", "k", None, b"7", 10, 11),
    ], v)
    assert v.clean, v.lines()


def test_lost_acknowledged_write_fails_the_verdict():
    v = Verdict()
    judge_registers([
        op(1, "set", "k", 1, None, 0, 1),
        op(2, "set", "k", 2, None, 2, 3),  # acknowledged, then gone
        op("final", "get", "k", None, b"1", 10, 11),
    ], v)
    assert not v.clean and len(v.lost) == 1 and not v.violations
    assert "verdict: NOT CLEAN" in v.lines()


def test_stale_read_fails_the_verdict():
    v = Verdict()
    judge_registers([
        op(1, "set", "k", 1, None, 0, 1),
        op(1, "set", "k", 2, None, 2, 3),
        op(2, "get", "k", None, b"1", 4, 5),  # began after set 2 was acknowledged
        op("final", "get", "k", None, b"2", 10, 11),
    ], v)
    assert not v.clean and len(v.violations) == 1 and not v.lost


def test_counters_catch_lost_and_duplicated_increments():
    v = Verdict()
    judge_counters({"ok": Counter([1, 2, 3], unknown=1), "lost": Counter([1, 2, 3]),
                    "dup": Counter([1, 2], unknown=1), "same": Counter([1, 1, 2])},
                   {"ok": 4, "lost": 2, "dup": 5, "same": 3}, v)
    assert [t.split("'")[1] for t in v.lost] == ["lost"]
    assert [t.split("'")[1] for t in v.duplicates] == ["dup"]
    assert [t.split("'")[1] for t in v.violations] == ["same"]


def test_a_fault_that_cannot_be_applied_fails_the_run():
    class Broken:
        coordinators, members, etcd = ["c:1"], ["m:1", "m:2", "m:3"], None

        def name(self, addr):
            return addr

        def kill9(self, addr):
            raise OSError(f"cannot signal {addr}")

    nemesis = Nemesis(Broken(), [Fault(0.0, "kill-member", 1, 0.0)], time.monotonic())
    nemesis._run()
    assert nemesis.errors == ["kill-member: OSError('cannot signal m:2')"]
    assert nemesis.applied[0].note == "OSError('cannot signal m:2')"
