"""The verdict of a chaos run and its timeline PNG.

Checks, all on the recorded history:
- per-key linearizability of the registers (Wing–Gong search of `catena.check`), the final reads
  included. A key that is linearizable without its final read but not with it lost an
  acknowledged write; any other failure is a linearizability violation.
- counters (INCR only): every acknowledged INCR returned a distinct value; the final value is at
  least the number of acknowledged INCRs (else some were lost) and at most that plus the number of
  INCRs of unknown outcome (else some were applied twice).
- per fault (not a verdict, a measure): the longest time from its start until the chain was
  whole again in which no write, and no read, was acknowledged; when the chain first lost a
  member after it began; the time from its heal to the whole chain, and the longest flap quiet
  period the coordinator imposed meanwhile (a member taken out recently waits on purpose).
- late writes: a write of unknown outcome (its client gave up) must not take effect more than
  the chain's bound after it was called (a forwarded write's deadline + 1 s). Proven from the
  history: a read that returned its value began after another write to the key had completed,
  so it took effect after that write was called.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from catena.check import Operation, check

KEY_MAX_STEPS = 2_000_000
BIN_S = 0.1


@dataclass
class Verdict:
    operations: int = 0  # recorded register operations, final reads excluded
    acknowledged: int = 0
    unknown: int = 0
    keys: int = 0
    counter_incrs: int = 0
    violations: list[str] = field(default_factory=list)  # linearizability, one text per key
    lost: list[str] = field(default_factory=list)  # lost acknowledged writes
    duplicates: list[str] = field(default_factory=list)  # INCRs applied twice
    undecided: list[str] = field(default_factory=list)  # keys the search gave up on
    late: list[str] = field(default_factory=list)  # writes that took effect past the bound
    late_bound_s: float = math.inf
    latest_unknown_s: float = 0.0  # the longest proven delay of a write of unknown outcome
    problems: list[str] = field(default_factory=list)  # the run itself went wrong (no final read, …)
    windows: list["Window"] = field(default_factory=list)  # per fault, in the order applied

    @property
    def clean(self) -> bool:
        return not (self.violations or self.lost or self.duplicates or self.undecided or self.problems
                    or self.late)

    def lines(self) -> list[str]:
        out = [f"operations {self.operations} (acknowledged {self.acknowledged}, unknown outcome {self.unknown}) "
               f"on {self.keys} keys, counter increments {self.counter_incrs}",
               f"linearizability violations {len(self.violations)}, lost acknowledged writes {len(self.lost)}, "
               f"duplicated increments {len(self.duplicates)}, undecided keys {len(self.undecided)}",
               f"writes of unknown outcome that took effect late: {len(self.late)} (bound {self.late_bound_s:g} s; "
               f"longest proven delay {self.latest_unknown_s:.2f} s)"]
        for title, items in (("violation", self.violations), ("lost", self.lost), ("duplicate", self.duplicates),
                             ("undecided", self.undecided), ("late", self.late), ("problem", self.problems)):
            for text in items[:5]:
                out.append(f"{title}: {text}")
            if len(items) > 5:
                out.append(f"… and {len(items) - 5} more of kind {title}")
        out += [w.line() for w in self.windows]
        out.append("verdict: " + ("CLEAN" if self.clean else "NOT CLEAN"))
        return out


@dataclass(frozen=True)
class Window:
    """What the workload saw of one fault: the longest stretches without an acknowledged write
    and read from its start until the chain was whole again (or its end, if never), how long
    after its start the chain lost a member (None: it did not), the time from its heal to the
    whole chain (None: not whole again) and the longest flap quiet imposed until then."""

    kind: str
    target: str
    held_s: float
    write_unavailable_s: float
    read_unavailable_s: float
    heal_to_whole_s: float | None
    taken_out_s: float | None = None
    quiet_s: float | None = None

    def line(self) -> str:
        whole = "not whole again" if self.heal_to_whole_s is None else f"whole {self.heal_to_whole_s:.2f} s after the heal"
        out = "" if self.taken_out_s is None else f"; a member taken out {self.taken_out_s:.2f} s after it began"
        quiet = "" if self.quiet_s is None else f" (flap quiet {self.quiet_s:g} s)"
        return (f"fault {self.kind} ({self.target}, {self.held_s:.1f} s): writes unavailable {self.write_unavailable_s:.2f} s, "
                f"reads {self.read_unavailable_s:.2f} s{out}; {whole}{quiet}")


def longest_gap(times: list[float], start: float, end: float) -> float:
    """The longest stretch of [start, end] holding none of the sorted `times`."""
    inside = times[bisect.bisect_right(times, start):bisect.bisect_left(times, end)]
    edges = [start, *inside, end]
    return max(b - a for a, b in zip(edges, edges[1:]))


def fault_windows(samples, applied, watch=None, quiets=()) -> list[Window]:
    """One `Window` per applied fault (`runner.Applied`), from the workload's samples, the
    chain's changes (`watch.ChainWatch`) and the coordinator's flap quiets ((time, member, s))."""
    acked = {w: sorted(s.end for s in samples if s.outcome == "ok" and s.write == w) for w in (True, False)}
    windows = []
    for a in applied:
        end = a.rejoined or a.end or a.start
        quiet = max((q for t, _, q in quiets if a.start <= t <= end), default=None)
        windows.append(Window(a.fault.kind, a.target, (a.end or a.start) - a.start,
                              longest_gap(acked[True], a.start, end), longest_gap(acked[False], a.start, end),
                              None if a.rejoined is None else a.rejoined - a.end,
                              None if watch is None else watch.taken_out(a.start, end), quiet))
    return windows


def judge_registers(ops: Iterable[Operation], verdict: Verdict, final_client="final",
                    max_steps: int = KEY_MAX_STEPS) -> None:
    """Check each key's operations (final reads are those of client `final_client`)."""
    by_key: dict = defaultdict(list)
    for op in ops:
        by_key[op.key].append(op)
    verdict.keys += len(by_key)
    for key, key_ops in sorted(by_key.items()):
        body = [op for op in key_ops if op.client != final_client]
        verdict.operations += len(body)
        verdict.acknowledged += sum(op.known for op in body)
        verdict.unknown += sum(not op.known for op in body)
        result = check(key_ops, max_steps=max_steps)
        if result.ok:
            continue
        if result.ok is None:
            verdict.undecided.append(result.explanation)
            continue
        if len(body) < len(key_ops) and check(body, max_steps=max_steps).ok:
            finals = [op for op in key_ops if op.client == final_client]
            verdict.lost.append(f"key {key!r}: the final read {finals[-1].result!r} is not a value the history "
                                f"allows:\n{result.explanation}")
        else:
            verdict.violations.append(result.explanation)


def _int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def judge_late_writes(ops: Iterable[Operation], verdict: Verdict, bound_s: float) -> None:
    """Flag writes of unknown outcome proven to have taken effect more than `bound_s` after they
    were called. A read R returning the value of set W (values are unique per write) that began
    after another write W2 to the key completed saw W take effect after W2 did, so at or after
    W2's call. Values an INCR could also have produced are skipped (their writer is not known)."""
    verdict.late_bound_s = bound_s
    by_key: dict = defaultdict(list)
    for op in ops:
        by_key[op.key].append(op)
    for key, key_ops in sorted(by_key.items()):
        writers = {}
        for op in key_ops:
            if op.kind == "set" or (op.kind == "cas" and not (op.known and op.result is False)):
                writers[_int(op.arg if op.kind == "set" else op.arg[1])] = op
        incrs = sum(op.kind == "incr" for op in key_ops)
        bases = [0, *(v for v in writers if v is not None)]
        # writes known to have taken effect, by completion: (ret, call)
        done = sorted((op.ret, op.call) for op in key_ops if op.known and (
            op.kind in ("set", "del", "incr") or (op.kind == "cas" and op.result is True)))
        rets = [r for r, _ in done]
        latest_call = list(itertools.accumulate((c for _, c in done), max))
        for read in key_ops:
            if read.kind != "get" or not read.known or (value := _int(read.result)) is None:
                continue
            write = writers.get(value)
            if write is None or write.known or any(0 < value - b <= incrs for b in bases):
                continue
            i = bisect.bisect_left(rets, read.call)
            if i == 0:
                continue
            delay = latest_call[i - 1] - write.call
            verdict.latest_unknown_s = max(verdict.latest_unknown_s, delay)
            if delay > bound_s:
                verdict.late.append(f"key {key!r}: {write} took effect at least {delay:.2f} s after it was "
                                    f"called (read {read.result!r} at {read.call:g}, after a write called "
                                    f"{delay:.2f} s after it had completed)")


def judge_counters(counters: dict, finals: dict, verdict: Verdict) -> None:
    """`counters`: key -> object with `acked` (results of acknowledged INCRs) and `unknown`;
    `finals`: key -> final value (None when it could not be read)."""
    for key, c in sorted(counters.items()):
        verdict.counter_incrs += len(c.acked) + c.unknown
        if key in finals and finals[key] is None:
            verdict.problems.append(f"counter {key!r}: no final read")
            continue
        final = finals.get(key) or 0
        seen = sorted(c.acked)
        repeated = sorted({v for a, v in zip(seen, seen[1:]) if a == v})
        if repeated:
            verdict.violations.append(f"counter {key!r}: acknowledged INCRs returned the same value: {repeated[:5]}")
        if final < len(c.acked) or (seen and final < seen[-1]):
            verdict.lost.append(f"counter {key!r}: final value {final} but {len(c.acked)} acknowledged INCRs "
                                f"(highest reply {seen[-1] if seen else None})")
        if final > len(c.acked) + c.unknown:
            verdict.duplicates.append(f"counter {key!r}: final value {final} but only {len(c.acked)} acknowledged "
                                      f"+ {c.unknown} unknown INCRs")


# -- the timeline -------------------------------------------------------------------------------

FAULT_COLORS = {"kill-member": "tab:red", "pause-member": "tab:orange", "kill-coordinator": "tab:purple",
                "isolate-member": "tab:cyan", "isolate-coordinator": "tab:pink",
                "cut-coordinator-member": "tab:olive", "cut-members": "tab:blue",
                "kill-etcd": "tab:brown", "pause-etcd": "tab:gray",
                "cut-middle-tail": "navy", "cut-head-middle": "royalblue", "isolate-coordinator-members": "magenta",
                "flap-member": "gold", "one-way-tail": "teal", "lossy-member": "salmon", "slow-member": "khaki",
                "cut-etcd-coordinator": "darkred"}


def plot(path: Path, samples, applied, t0: float, title: str) -> None:
    """Throughput (by outcome) and latency per 100 ms, with every fault marked as a span from
    its start to its end and a dotted line when the chain was whole again."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    end = max((s.end for s in samples), default=t0 + 1) - t0
    nbins = max(1, int(math.ceil(end / BIN_S)))
    xs = [i * BIN_S for i in range(nbins)]
    counts = {o: [0] * nbins for o in ("ok", "unknown", "fail")}
    lat: list[list[float]] = [[] for _ in range(nbins)]
    for s in samples:
        b = min(nbins - 1, max(0, int((s.end - t0) / BIN_S)))
        counts[s.outcome][b] += 1
        if s.outcome == "ok":
            lat[b].append((s.end - s.start) * 1000)

    def pct(values, q):
        if not values:
            return float("nan")
        values = sorted(values)
        return values[min(len(values) - 1, int(q * len(values)))]

    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(14, 7), sharex=True)
    for outcome, color in (("ok", "tab:green"), ("unknown", "tab:gray"), ("fail", "tab:blue")):
        ax1.plot(xs, [c / BIN_S for c in counts[outcome]], color=color, lw=0.8, label=outcome)
    ax1.set_ylabel("operations/s (per 100 ms)")
    ax2.plot(xs, [pct(v, 0.5) for v in lat], color="tab:green", lw=0.8, label="p50")
    ax2.plot(xs, [pct(v, 0.99) for v in lat], color="tab:red", lw=0.8, label="p99")
    ax2.plot(xs, [max(v) if v else float("nan") for v in lat], color="black", lw=0.5, alpha=0.5, label="max")
    ax2.set_yscale("log")
    ax2.set_ylabel("latency of acknowledged ops, ms")
    ax2.set_xlabel("seconds since the workload started")
    seen = set()
    for a in applied:
        color = FAULT_COLORS.get(a.fault.kind, "tab:brown")
        label = a.fault.kind if a.fault.kind not in seen else None
        seen.add(a.fault.kind)
        for ax in (ax1, ax2):
            ax.axvspan(a.start - t0, (a.end or a.start) - t0, color=color, alpha=0.2, label=label if ax is ax1 else None)
            if a.rejoined:
                ax.axvline(a.rejoined - t0, color=color, ls=":", lw=0.7)
        ax1.text(a.start - t0, 1.0, a.target.rsplit(":", 1)[-1], transform=ax1.get_xaxis_transform(), fontsize=6,
                 rotation=90, va="top", color=color)
    ax1.legend(loc="upper right", fontsize=7, ncols=3)
    ax2.legend(loc="upper right", fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
