"""`catena chaos --seed N --duration SECONDS [--out DIR] [--members 3] [--chains K] [--store etcd] [--netns]
| [--target ADDRESS]`.

Starts a local cluster in a temporary directory (with --store etcd: two coordinators on an etcd
node), runs the workload while the seeded fault schedule kills, restarts and pauses processes
(etcd too), and partitions them through a fault-injecting proxy, then heals the cluster, reads every key back,
checks the history and prints the verdict, with each fault's longest write and read
unavailability and the time from its heal to a whole chain. Exits 0 only when the verdict is clean (1 when not,
2 when the run itself could not be done). Writes chaos-<seed>.png (the timeline) into --out.

With --netns (root; needs ip and iptables, else the run falls back to the proxy) each process
(coordinators, members, etcd, and the run's clients) lives in a network namespace of its own,
joined to a bridge in a lab namespace (all deleted at the end); faults are iptables rules in the
namespace of the process they concern (cuts, one-way cuts, packet loss; delay by tc netem where
the kernel has it), and the schedule adds the gray failures: link cuts
middle~tail and head~middle, a coordinator cut from every member, a flapping member (2 s cut,
1 s up, 3 times), a one-way cut of the tail, packet loss, and with --store etcd the leader cut
from etcd alone.

With --chains K (K >= 2) the local cluster is K chains of --members members in cluster mode (as
`catena up --chains K`), the workload's clients route by slot, and a seeded plan of slot moves
(`MASTER.MOVE`, most of them of slots the workload writes at that moment; midway, adding a chain
of one member, which the next move goes to; then draining that chain's slots to the others and
removing it, MASTER.REMOVECHAIN) runs alongside the faults; the checks cover every chain, and
the verdict lists each move (done or undone, the writes to its slot meanwhile and the slowest
acknowledged one) and the removal (when, how long the drain took, per-slot unavailability).

With --target (the coordinator address as clients are given it) the faults go to a cluster
already running on this machine instead: its processes are found by their listening ports and
restarted after a kill -9 with their own command line, directory and environment. It is left
running and whole; the PIDs that changed are printed. Only the run's own keys are touched.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from catena.chaos.netns import Lab
    from catena.chaos.report import Verdict

HEAL_TIMEOUT_S = 60.0


class _Progress:
    """One line on stderr: tqdm when installed, else a plain bar."""

    def __init__(self, total: float, enabled: bool):
        self.total, self.enabled, self.bar, self.shown = total, enabled, None, 0
        if enabled:
            try:
                from tqdm import tqdm

                self.bar = tqdm(total=int(total), unit="s", desc="chaos", file=sys.stderr, leave=True,
                                bar_format="{desc} {bar} {n_fmt}/{total_fmt} s {postfix}")
            except ImportError:
                self.bar = None

    def update(self, elapsed: float, text: str) -> None:
        if not self.enabled:
            return
        elapsed = min(int(elapsed), int(self.total))
        if self.bar is not None:
            self.bar.update(elapsed - self.bar.n)
            self.bar.set_postfix_str(text, refresh=True)
        else:
            width = 30
            done = int(width * elapsed / max(1, self.total))
            sys.stderr.write(f"\rchaos [{'#' * done}{'.' * (width - done)}] {elapsed}/{int(self.total)} s {text}   ")
            sys.stderr.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.enabled:
            sys.stderr.write("\n")


def run(seed: int, duration: float, out: Path, members: int = 3, workers: int = 6, keep: bool = False,
        progress: bool = True, say=print, target: str | None = None, store: str = "embedded",
        password: str | None = None, lab: Lab | None = None, chains: int = 1) -> Verdict:
    """One chaos run; returns its verdict (the PNG is written to `out`). With `target` (a
    coordinator address) on that running cluster, whose size is then its chain's; with `lab`
    (entered) every process in a network namespace of its own there."""
    # Imported here: `catena --help` and the servers need none of it.
    from catena.chain.replica import WRITE_TIMEOUT_S
    from catena.chaos import migrations
    from catena.chaos.report import Verdict, fault_windows, judge_counters, judge_late_writes, judge_registers, plot
    from catena.chaos.runner import LocalCluster, Nemesis, admin, schedule, temp_root
    from catena.chaos.watch import ChainWatch, flap_quiets
    from catena.chaos.workload import Workload

    root = temp_root()
    delay = False
    if target is None:
        cluster = LocalCluster(root, members, store, lab=lab, chains=chains, spare=1 if chains > 1 else 0)
        where = f"{store} store, data in {root}"
        if lab is not None:
            delay = lab.has_netem()
            where += ", a network namespace per process (iptables" + (", tc netem)" if delay else
                                                                     "; no delays: the kernel has no netem)")
    else:
        from catena.chaos.target import RunningCluster

        try:
            cluster = RunningCluster(target, root, say=say, password=password)
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
        members = len(cluster.members)
        where = f"target {cluster.coordinator} (pids {', '.join(str(p.pid) for p in cluster.procs.values())})"
    # partitions need the proxy of a cluster started here
    faults = schedule(seed, duration, len(cluster.members), store, partitions=target is None, gray=lab is not None,
                      delay=delay)
    moves = migrations.plan(seed, duration, chains, add_chain=bool(getattr(cluster, "spares", ())))
    verdict = Verdict()
    shape = f"{chains} chains of {members} members, {sum(not (m.add or m.remove) for m in moves)} slot moves " \
        "planned" if chains > 1 else \
        f"{members} members"
    if any(m.add for m in moves):
        shape += " (one of them adding a chain of one member" + (
            ", drained and removed later)" if any(m.remove for m in moves) else ")")
    say(f"chaos: seed {seed}, {duration:g} s, {shape}, {len(faults)} faults planned, {where}")
    workload = nemesis = watch = mover = None
    try:
        cluster.start()
        watch = ChainWatch(cluster.chained)
        watch.start()
        workload = Workload(cluster.coordinator, seed, prefix=f"chaos{seed}", workers=workers, password=password)
        workload.start()
        nemesis = Nemesis(cluster, faults, workload.t0)
        nemesis.start()
        mover = migrations.Migrations(cluster, moves, workload.t0, workload.hot, admin)
        mover.start()
        bar = _Progress(duration, progress)
        try:
            while (elapsed := time.monotonic() - workload.t0) < duration and workload.failure is None:
                acked = sum(s.outcome == "ok" for s in workload.samples)
                bar.update(elapsed, f"ops {acked} faults {len(nemesis.applied)}/{len(faults)}")
                time.sleep(0.5)
            bar.update(duration, f"ops {sum(s.outcome == 'ok' for s in workload.samples)} "
                                 f"faults {len(nemesis.applied)}/{len(faults)}")
        finally:
            bar.close()
        nemesis.stop()
        mover.stop()
        cluster.heal()
        if not cluster.wait_whole(HEAL_TIMEOUT_S):
            verdict.problems.append(f"the chain was not whole again {HEAL_TIMEOUT_S:.0f} s after the faults ended")
        time.sleep(1.0)  # some load on the healed chain
        workload.stop()
        if workload.failure is not None:
            verdict.problems.append(f"the workload failed: {workload.failure!r}")
        counters, unread = workload.final_reads()
        verdict.problems += [f"no final read of {u}" for u in unread]
        verdict.problems += nemesis.errors
        if mover.records or mover.added:
            verdict.problems += mover.judge()
        judge_registers(workload.history.operations(), verdict)
        judge_counters(workload.counters, counters, verdict)
        judge_late_writes(workload.history.operations(), verdict, WRITE_TIMEOUT_S + 1.0)
        out.mkdir(parents=True, exist_ok=True)
        png = out / f"chaos-{seed}.png"
        try:
            plot(png, workload.samples, nemesis.applied, workload.t0,
                 f"catena chaos --seed {seed} --duration {duration:g}: {len(nemesis.applied)} faults, "
                 f"{len(workload.samples)} ops, "
                 + ("clean" if verdict.clean else "NOT CLEAN"))
        except ImportError:
            png = None
            say("timeline not drawn: matplotlib is not installed (pip install matplotlib)")
        kinds: dict[str, int] = {}
        for a in nemesis.applied:
            kinds[a.fault.kind] = kinds.get(a.fault.kind, 0) + 1
        say("faults applied: " + (", ".join(f"{k} {v}" for k, v in sorted(kinds.items())) or "none"))
        if workload.errors:
            say("client errors seen: " + ", ".join(f"{k} ×{v}" for k, v in sorted(workload.errors.items())))
        watch.stop()
        offset = time.time() - time.monotonic()
        quiets = [q for log in sorted((root / "logs").glob("coordinator-*.log")) for q in flap_quiets(log, offset)]
        verdict.windows = fault_windows(workload.samples, nemesis.applied, watch, quiets)
        for line in mover.lines(workload.samples) if mover.records or mover.added else ():
            say(line)
        for line in verdict.lines():
            say(line)
        if png is not None:
            say(f"timeline: {png}")
        verdict.faults = len(nemesis.applied)  # type: ignore[attr-defined]
        return verdict
    finally:
        if nemesis is not None:
            nemesis.stop()
        if mover is not None:
            mover.stop()
        if watch is not None:
            watch.stop()
        if workload is not None:
            workload.stop()
        cluster.stop()
        if keep or not verdict.clean or getattr(cluster, "respawned", None):  # respawned: still writing there
            say(f"logs kept in {root / 'logs'}")
        else:
            shutil.rmtree(root, ignore_errors=True)


def cmd_chaos(args) -> int:
    import importlib.util

    if importlib.util.find_spec("redis") is None:  # the nemesis and its checks speak redis-py
        print("chaos: needs the redis package (redis-py), which is not installed: pip install 'catena[chaos]'",
              file=sys.stderr)
        return 2
    if args.store == "etcd" and importlib.util.find_spec("aetcd") is None:
        print("chaos: --store etcd needs the aetcd package, which is not installed: pip install 'catena[etcd]'",
              file=sys.stderr)
        return 2
    if args.target is not None and (args.members is not None or args.store is not None or args.netns
                                    or args.chains != 1):
        print("chaos: --members, --chains, --store and --netns do not go with --target (the target's cluster is used)",
              file=sys.stderr)
        return 2
    if args.chains < 1:
        print("chaos: --chains must be at least 1", file=sys.stderr)
        return 2
    lab = None
    if args.netns:
        from catena.chaos.netns import Lab, unavailable

        why = unavailable()
        if why is not None and os.geteuid() != 0:
            print(f"chaos: {why}; run it as root, or without --netns (faults through the proxy)", file=sys.stderr)
            return 2
        if why is not None:
            print(f"chaos: {why}; falling back to the proxy (no gray faults)", file=sys.stderr)
            args.netns = False
        else:
            lab = Lab()
            for signum in (signal.SIGTERM, signal.SIGHUP):  # so that the namespaces are deleted
                signal.signal(signum, _interrupt)
            print(f"chaos: network namespaces {lab.run}-* (one per process; deleted at the end)", flush=True)
    try:
        with lab or contextlib.nullcontext():
            verdict = run(args.seed, args.duration, Path(args.out), args.members or 3, args.workers, args.keep,
                          progress=not args.no_progress, target=args.target, store=args.store or "embedded",
                          password=args.password, lab=lab, chains=args.chains)
    except KeyboardInterrupt:
        print("chaos: interrupted; " + ("every process was stopped" if args.target is None else
                                        "the target cluster was healed and left running"), file=sys.stderr)
        return 130
    except (OSError, TimeoutError, RuntimeError) as exc:
        print(f"chaos: the run could not be done: {exc}", file=sys.stderr)
        return 2
    return 0 if verdict.clean else 1


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def add_parsers(subparsers) -> None:
    p = subparsers.add_parser("chaos", help="run a local cluster (or fault a running one) under seeded faults and check the history",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=1, help="draws the fault schedule (same seed, same schedule)")
    p.add_argument("--duration", type=float, default=60.0, help="seconds of faults and load")
    p.add_argument("--out", default=".", help="directory for the timeline PNG (default: current directory)")
    p.add_argument("--members", type=int, default=None, help="members of the local cluster (default 3)")
    p.add_argument("--chains", type=int, default=1,
                   help="chains of the local cluster (2 or more: cluster mode, with slot moves among the faults)")
    p.add_argument("--store", choices=("embedded", "etcd"), default=None,
                   help="the local cluster's coordinator store: embedded (default: one coordinator) or "
                        "etcd (two coordinators on a local etcd node, which is faulted too)")
    p.add_argument("--target", default=None, metavar="ADDRESS",
                   help="fault a cluster already running on this machine instead: its coordinator(s), "
                        "HOST:PORT[,HOST:PORT...] or etcd://HOST:PORT[,...]/PREFIX; it is left running")
    p.add_argument("--netns", action="store_true",
                   help="(root) each process in a network namespace of its own on a bridge, faults as "
                        "iptables rules in them, gray failures included")
    p.add_argument("--workers", type=int, default=6, help="concurrent clients")
    p.add_argument("--password", default=None,
                   help="with --target: the cluster's data password (or CATENA_PASSWORD)")
    p.add_argument("--keep", action="store_true", help="keep the data dirs and logs")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.set_defaults(func=cmd_chaos)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="catena")
    sub = parser.add_subparsers(dest="command", required=True)
    add_parsers(sub)
    args = parser.parse_args(["chaos", *(sys.argv[1:] if argv is None else argv)])
    return args.func(args)
