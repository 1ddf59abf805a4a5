"""Failover: how long writes stop when a chain member is killed (kill -9), and what is lost.

A coordinator and three members (fsync everysec) run on 127.0.0.1 under a steady write load
from several client threads. Each write is `CATENA.REQ <client-id> <n> SET <unique key> <n>`;
a client retries a failed or timed-out request with the same id at the next member, as an
application would. Each trial kills the head, a middle member or the tail with SIGKILL,
measures the time from the kill to the first acknowledged write that was first sent after the
killed process was gone (no such write can commit before the chain is repaired), then restarts
the member from its data dir and waits until it is the tail of a three-member chain again.
At the end every acknowledged write is read back from the tail: lost writes must be 0.

The peer figures are the documented defaults of Redis's own failover, not measured here:
Sentinel declares a primary down after `down-after-milliseconds` (30 000 ms by default) before
it even starts a failover; Redis Cluster (cluster-node-timeout 15 000 ms) takes about 16 s.

    python bench/failover/run.py [--trials 20] [--quick] [--out DIR] [--threads 4] [--rate 2000]

Writes failover_timeline.png to DIR: throughput and p99 latency per 100 ms with the kills,
removals and rejoins marked, for the whole run and zoomed on one trial of each case.
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from catena.loopback import HOST, free_ports, stop_processes, wait_until

CASES = ("head", "middle", "tail")
SENTINEL_DOWN_AFTER_S = 30.0  # Redis Sentinel's default down-after-milliseconds
REDIS_CLUSTER_FAILOVER_S = 16.0  # cluster-node-timeout 15 s + election, as commonly measured
TARGET_P99_S = 1.0
REQUEST_TIMEOUT_S = 1.0  # one attempt; then the same request id goes to the next member
RECOVERY_DEADLINE_S = 30.0  # a trial whose writes did not flow again by then counts as failed
SETTLE_DEADLINE_S = 60.0
BIN_S = 0.1
REJOIN_WINDOW_S = 0.5  # after the rejoin view, still counted as rejoining (for the write-gap figure)


# -- processes ------------------------------------------------------------------------------------

class Processes:
    """Every process this benchmark starts, each stopped by its PID."""

    def __init__(self, root: Path):
        self.root = root
        self.procs: dict[str, subprocess.Popen] = {}
        self.argv: dict[str, list[str]] = {}
        self._all: list[subprocess.Popen] = []

    def start(self, name: str, *args: str) -> None:
        argv = [sys.executable, "-m", "catena", *args]
        log = open(self.root / f"{name}.log", "ab")
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        log.close()
        self.procs[name], self.argv[name] = proc, argv
        self._all.append(proc)

    def restart(self, name: str) -> None:
        self.start(name, *self.argv[name][3:])

    def kill9(self, name: str) -> None:
        proc = self.procs[name]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()

    def stop_all(self) -> None:
        stop_processes(reversed(self._all))


def wait_for(predicate, timeout: float, what: str, interval: float = 0.02):
    return wait_until(predicate, timeout, what, interval=interval, retry_on=(redis.RedisError, OSError))


def command(addr: str, *args, timeout: float = 2.0):
    host, port = addr.rsplit(":", 1)
    with redis.Redis(host=host, port=int(port), socket_timeout=timeout, socket_connect_timeout=timeout,
                     decode_responses=True) as c:
        return c.execute_command(*args)


def as_dict(reply) -> dict:
    return reply if isinstance(reply, dict) else dict(zip(reply[0::2], reply[1::2]))


# -- the load ---------------------------------------------------------------------------------------

@dataclass
class Ack:
    sent: float  # when the request was first sent (monotonic s)
    acked: float
    key: str
    value: str


class Load:
    """Client threads at a steady total rate; each starts at its own member and moves to the
    next one on an error or a timeout, retrying the request with the same id."""

    def __init__(self, members: list[str], threads: int, rate: float):
        self.members = members
        self.threads = threads
        self.interval = threads / rate
        self.acks: list[Ack] = []  # list.append is atomic: no lock needed
        self.errors = 0
        self.unknown = 0  # requests that never got an answer before the run ended
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]

    def _client(self, addr: str) -> redis.Redis:
        host, port = addr.rsplit(":", 1)
        # No retries inside redis-py (it retries 10 times with backoff by default): this
        # client's own rule applies, the same request id at the next member.
        return redis.Redis(host=host, port=int(port), socket_timeout=REQUEST_TIMEOUT_S,
                           socket_connect_timeout=REQUEST_TIMEOUT_S, protocol=2, retry=Retry(NoBackoff(), 0))

    def _run(self, i: int) -> None:
        cid = f"bench-{i}-{time.time_ns()}"
        order = self.members[i % len(self.members):] + self.members[:i % len(self.members)]
        targets = itertools.cycle(order)
        client = self._client(next(targets))
        due = time.monotonic()
        for n in itertools.count(1):
            due += self.interval
            delay = due - time.monotonic()
            if delay > 0:
                if self._stop.wait(delay):
                    break
            elif delay < -0.1:
                due = time.monotonic()  # fell behind (an outage): do not burst to catch up
            if self._stop.is_set():
                break
            key, value = f"fo:{i}:{n}", str(n)
            sent = time.monotonic()
            while True:
                try:
                    client.execute_command("CATENA.REQ", cid, n, "SET", key, value)
                    self.acks.append(Ack(sent, time.monotonic(), key, value))
                    break
                except (redis.RedisError, OSError):
                    self.errors += 1
                    client.close()
                    if self._stop.is_set():
                        self.unknown += 1
                        break
                    client = self._client(next(targets))
                    self._stop.wait(0.005)  # do not spin on a refused connection
        client.close()

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=REQUEST_TIMEOUT_S * 3 + 5)

    def first_ack_after(self, t: float, start_index: int) -> float | None:
        acks = self.acks
        return min((a.acked for a in acks[start_index:] if a.sent >= t), default=None)


class ViewWatch:
    """Polls the coordinator's MASTER.STATUS and records every view change (the repairs)."""

    def __init__(self, coordinator: str):
        self.coordinator = coordinator
        self.changes: list[tuple[float, int, list[str], str | None]] = []  # (t, epoch, members, learner)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        host, port = self.coordinator.rsplit(":", 1)
        c = redis.Redis(host=host, port=int(port), socket_timeout=1.0, decode_responses=True, protocol=2)
        last = None
        while not self._stop.wait(0.01):
            try:
                st = as_dict(c.execute_command("MASTER.STATUS"))
            except (redis.RedisError, OSError):
                continue
            epoch = int(st["epoch"])
            if epoch != last:
                last = epoch
                self.changes.append((time.monotonic(), epoch, list(st["members"]), st["learner"] or None))
        c.close()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def removed_at(self, addr: str, after: float) -> float | None:
        return next((t for t, _, members, _ in list(self.changes) if t >= after and addr not in members), None)

    def rejoined_at(self, addr: str, after: float) -> float | None:
        return next((t for t, _, members, _ in list(self.changes)
                     if t >= after and members and members[-1] == addr), None)


# -- the run -----------------------------------------------------------------------------------------

@dataclass
class Trial:
    case: str
    victim: str
    ready: float  # the chain was whole and taking writes
    kill: float
    dead: float  # the process was reaped
    flowing: float | None = None  # first ack of a write sent after `dead`
    removed: float | None = None  # the coordinator's view without the victim
    restarted: float | None = None
    rejoined: float | None = None
    rejoin_gap: float = 0.0  # longest pause between acknowledgements while the victim rejoined
    removed_again: bool = False  # the rejoined member was taken out again before the next trial

    @property
    def recovery_s(self) -> float:
        return math.inf if self.flowing is None else self.flowing - self.kill


@dataclass
class Cluster:
    procs: Processes
    coordinator: str
    members: list[str] = field(default_factory=list)

    def chain(self) -> list[str]:
        return command(self.coordinator, "MASTER.GET_CHAIN")

    def whole(self, size: int) -> list[str] | None:
        """The chain if it has `size` members that all act on the coordinator's newest view."""
        st = as_dict(command(self.coordinator, "MASTER.STATUS"))
        chain = list(st["members"])
        if len(chain) != size or st["learner"]:
            return None
        for addr in chain:
            ms = as_dict(command(addr, "MEMBER.STATUS"))
            if int(ms["epoch"]) != int(st["epoch"]) or ms["members"] != ",".join(chain):
                return None
        return chain


def start_cluster(root: Path, fsync: str) -> Cluster:
    ports = free_ports(4)
    procs = Processes(root)
    coordinator = f"{HOST}:{ports[0]}"
    procs.start("coordinator", "coordinator", "--listen", coordinator, "--data-dir", str(root / "coordinator"))
    cluster = Cluster(procs, coordinator)
    wait_for(lambda: command(coordinator, "PING"), 30, "the coordinator to listen")
    for port in ports[1:]:
        addr = f"{HOST}:{port}"
        procs.start(addr, "member", "--listen", addr, "--data-dir", str(root / f"member-{port}"),
                    "--coordinator", coordinator, "--fsync", fsync)
        cluster.members.append(addr)
        wait_for(lambda: cluster.chain() == cluster.members, 60, f"{addr} to join the chain")
    wait_for(lambda: cluster.whole(3), 60, "the chain to settle")
    return cluster


def run_trials(cluster: Cluster, load: Load, watch: ViewWatch, trials: int, steady: float) -> list[Trial]:
    results: list[Trial] = []
    schedule = [case for case in CASES for _ in range(trials)]
    for i, case in enumerate(schedule):
        chain = wait_for(lambda: cluster.whole(3), SETTLE_DEADLINE_S, "a whole chain of three")
        ready = time.monotonic()
        mark = len(load.acks)
        wait_for(lambda: load.first_ack_after(ready, mark), SETTLE_DEADLINE_S, "writes to flow before the kill")
        time.sleep(max(0.0, ready + steady - time.monotonic()))  # pacing: steady state between trials
        victim = chain[CASES.index(case)]
        trial = Trial(case, victim, ready, kill=time.monotonic(), dead=0.0)
        cluster.procs.kill9(victim)
        trial.dead = time.monotonic()
        mark = len(load.acks)
        try:
            trial.flowing = wait_for(lambda: load.first_ack_after(trial.dead, mark), RECOVERY_DEADLINE_S,
                                     "writes to flow again", interval=0.005)
        except TimeoutError:
            pass
        trial.removed = watch.removed_at(victim, trial.kill)
        trial.restarted = time.monotonic()
        cluster.procs.restart(victim)
        wait_for(lambda: (c := cluster.whole(3)) and c[-1] == victim, SETTLE_DEADLINE_S, f"{victim} to rejoin")
        trial.rejoined = watch.rejoined_at(victim, trial.kill)
        results.append(trial)
        print(f"  trial {i + 1:3d}/{len(schedule)} {case:6s} writes again after {trial.recovery_s * 1000:7.1f} ms"
              f" (removed after {_ms(trial.removed, trial.kill)} ms,"
              f" rejoined after {_ms(trial.rejoined, trial.kill)} ms)",
              flush=True)
    return results


def _ms(t: float | None, since: float) -> str:
    return "    -" if t is None else f"{(t - since) * 1000:5.0f}"


def rejoin_gaps(load: Load, trials: list[Trial]) -> None:
    """Each trial's longest pause between acknowledged writes from the restart of the victim
    until shortly after it became the tail again: a rejoin should not stop the writes."""
    acked = sorted(a.acked for a in load.acks)
    for t in trials:
        end = (t.rejoined or t.restarted) + REJOIN_WINDOW_S
        inside = [x for x in acked if t.restarted <= x <= end]
        edges = [t.restarted, *inside, end]
        t.rejoin_gap = max(b - a for a, b in zip(edges, edges[1:]))


def removed_again(watch: ViewWatch, trials: list[Trial], t_end: float) -> None:
    """Mark the trials whose rejoined member was removed again (its probes failed) before the
    next kill: a rejoin that does not hold."""
    for t, nxt in zip(trials, [*trials[1:], None]):
        if t.rejoined is not None:
            again = watch.removed_at(t.victim, t.rejoined)
            t.removed_again = again is not None and again < (nxt.kill if nxt else t_end)


def lost_writes(load: Load, addr: str, chunk: int = 1000) -> list[Ack]:
    lost = []
    host, port = addr.rsplit(":", 1)
    with redis.Redis(host=host, port=int(port), socket_timeout=30, decode_responses=True, protocol=2) as c:
        acks = load.acks
        for i in range(0, len(acks), chunk):
            part = acks[i:i + chunk]
            for ack, got in zip(part, c.mget([a.key for a in part])):
                if got != ack.value:
                    lost.append(ack)
    return lost


def percentile(values: list[float], q: float) -> float:
    """Nearest rank: with 20 trials the p99 is the slowest of them."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def report(trials: list[Trial], lost_by_case: dict[str, int], tail_total: int, acked: int, load: Load) -> bool:
    print()
    print(f"{'case':8s}{'trials':>7s}{'p50_ms':>9s}{'p99_ms':>9s}{'max_ms':>9s}{'removed_p50_ms':>16s}"
          f"{'rejoin_gap_max_ms':>19s}{'removed_again':>15s}{'failed':>8s}{'lost':>6s}")
    ok = True
    worst_p99 = 0.0
    for case in CASES:
        ts = [t for t in trials if t.case == case]
        if not ts:
            continue
        rec = [t.recovery_s for t in ts]
        removed = [t.removed - t.kill for t in ts if t.removed is not None]
        failed = sum(1 for r in rec if math.isinf(r))
        p50, p99 = percentile(rec, 50), percentile(rec, 99)
        worst_p99 = max(worst_p99, p99)
        ok &= failed == 0 and lost_by_case[case] == 0 and p99 <= TARGET_P99_S
        print(f"{case:8s}{len(ts):7d}{p50 * 1000:9.0f}{p99 * 1000:9.0f}{max(rec) * 1000:9.0f}"
              f"{(percentile(removed, 50) * 1000 if removed else math.nan):16.0f}"
              f"{max(t.rejoin_gap for t in ts) * 1000:19.0f}{sum(t.removed_again for t in ts):15d}"
              f"{failed:8d}{lost_by_case[case]:6d}")
    print("p50/p99/max: kill -9 until the first acknowledged write sent after it (nearest rank: with 20 trials"
          " the p99 is the slowest); removed: until the coordinator's new view; rejoin_gap: longest pause"
          " between acknowledged writes while the restarted member rejoined as tail; removed_again: trials whose"
          " rejoined member was removed again by the coordinator's probes before the next kill")
    print()
    print(f"acknowledged writes: {acked}, read back from the tail: {acked - tail_total} intact, "
          f"lost: {tail_total} (must be 0); client errors retried: {load.errors}")
    print(f"target p99 <= {TARGET_P99_S * 1000:.0f} ms: {'met' if worst_p99 <= TARGET_P99_S else 'MISSED'} "
          f"(worst case p99 {worst_p99 * 1000:.0f} ms)")
    print(f"ratio_vs_sentinel_down_after={worst_p99 / SENTINEL_DOWN_AFTER_S:.3f} "
          f"(Redis Sentinel's default down-after-milliseconds is {SENTINEL_DOWN_AFTER_S:.0f} s before a failover "
          "even starts; documented default, not measured here)")
    print(f"ratio_vs_redis_cluster={worst_p99 / REDIS_CLUSTER_FAILOVER_S:.3f} "
          f"(Redis Cluster fails over in about {REDIS_CLUSTER_FAILOVER_S:.0f} s with its default "
          "cluster-node-timeout of 15 s; not measured here)")
    return ok


# -- the plot -----------------------------------------------------------------------------------------

COLORS = {"head": "#d62728", "middle": "#ff7f0e", "tail": "#9467bd"}


def bins(load: Load, start: float, end: float, width: float = BIN_S) -> tuple[list[float], list[float], list[float]]:
    """Per `width` s: (bin start relative to `start`, writes/s, p99 latency in ms or nan)."""
    n = max(1, math.ceil((end - start) / width))
    lat: list[list[float]] = [[] for _ in range(n)]
    for a in load.acks:
        i = math.floor((a.acked - start) / width)
        if 0 <= i < n:
            lat[i].append(a.acked - a.sent)
    xs = [i * width for i in range(n)]
    tput = [len(v) / width for v in lat]
    p99 = [percentile(v, 99) * 1000 if v else math.nan for v in lat]
    return xs, tput, p99


def plot(path: Path, load: Load, trials: list[Trial], t0: float, t_end: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    fig = plt.figure(figsize=(15, 9.5), constrained_layout=True)
    grid = fig.add_gridspec(2, len(CASES), height_ratios=[1, 1.15])
    fig.suptitle("catena failover: 3-member chain, kill -9 under a steady write load "
                 f"(per {BIN_S * 1000:.0f} ms; target: writes again within {TARGET_P99_S:.0f} s)", fontsize=13)

    # The whole run, per second when it is long (100 ms bins would be a blur at this width).
    ax = fig.add_subplot(grid[0, :])
    width = BIN_S if t_end - t0 < 60 else 1.0
    xs, tput, p99 = bins(load, t0, t_end, width)
    ax.fill_between(xs, tput, step="post", color="#1f77b4", alpha=0.35, linewidth=0)
    ax.step(xs, tput, where="post", color="#1f77b4", linewidth=0.6)
    ax.set_ylabel("acknowledged writes/s", color="#1f77b4")
    ax.set_xlabel("seconds since the load started")
    ax.set_xlim(0, t_end - t0)
    ax.set_ylim(0, max(tput) * 1.45 if tput else 1)
    for t in trials:
        ax.axvline(t.kill - t0, color=COLORS[t.case], linewidth=0.9, alpha=0.8)
    lat_ax = ax.twinx()
    lat_ax.plot(xs, p99, color="black", linewidth=0.6, alpha=0.7)
    lat_ax.set_yscale("log")
    lat_ax.set_ylabel("p99 write latency, ms (log)")
    handles = [Line2D([], [], color=COLORS[c], label=f"kill -9 {c}") for c in CASES]
    handles += [Line2D([], [], color="#1f77b4", linewidth=6, alpha=0.35, label="throughput"),
                Line2D([], [], color="black", linewidth=0.8, label="p99 latency")]
    ax.legend(handles=handles, loc="upper center", ncol=5, fontsize=9, framealpha=0.95)
    ax.set_title(f"whole run (per {width * 1000:.0f} ms)", fontsize=11, loc="left")

    # One trial per case, zoomed: the median one; the same scales in the three panels.
    zoom_axes = []
    for col, case in enumerate(CASES):
        ts = sorted((t for t in trials if t.case == case), key=lambda t: t.recovery_s)
        if not ts:
            continue
        t = ts[(len(ts) - 1) // 2]
        before, after = 0.8, max(2.0, (t.rejoined or t.kill) - t.kill + 0.6)
        start = t.kill - before
        xs, tput, p99 = bins(load, start, t.kill + after)
        xs = [x - before for x in xs]
        ax = fig.add_subplot(grid[1, col], sharey=zoom_axes[0][0] if zoom_axes else None)
        ax.bar(xs, tput, width=BIN_S, align="edge", color="#1f77b4", alpha=0.45, label="throughput")
        ax.set_xlim(-before, after)
        for other in trials:  # a neighbouring trial's kill inside the window
            if other is not t and -before < other.kill - t.kill < after:
                ax.axvline(other.kill - t.kill, color=COLORS[other.case], linewidth=1, alpha=0.5)
        ax.set_xlabel("seconds from the kill")
        if col == 0:
            ax.set_ylabel("acknowledged writes/s", color="#1f77b4")
        lat_ax = ax.twinx()
        zoom_axes.append((ax, lat_ax, tput, p99))
        lat_ax.plot([x + BIN_S / 2 for x in xs], p99, "o-", color="black", markersize=2.5, linewidth=1,
                    label="p99 latency")
        lat_ax.set_yscale("log")
        if col == len(CASES) - 1:
            lat_ax.set_ylabel("p99 write latency, ms (log)")
        marks = [(0.0, COLORS[case], "-", "kill -9"),
                 (t.removed - t.kill if t.removed else None, "#2ca02c", "--", "removed (new view)"),
                 (t.recovery_s if not math.isinf(t.recovery_s) else None, "#17becf", "-", "writes again"),
                 (t.rejoined - t.kill if t.rejoined else None, "gray", ":", "rejoined as tail")]
        for x, color, style, label in marks:
            if x is not None:
                ax.axvline(x, color=color, linestyle=style, linewidth=1.6, label=label)
        ax.set_title(f"{case} killed (median trial): writes again after {t.recovery_s * 1000:.0f} ms",
                     fontsize=11, loc="left")
        if col == 0:
            h1, l1 = ax.get_legend_handles_labels()
            h2, l2 = lat_ax.get_legend_handles_labels()
            ax.legend(h1 + h2, l1 + l2, loc="upper right", fontsize=8, framealpha=0.9)
    if zoom_axes:
        top = max(max(z[2]) for z in zoom_axes)
        zoom_axes[0][0].set_ylim(0, max(top * 1.15, 1))
        lats = [v for z in zoom_axes for v in z[3] if not math.isnan(v)]
        for _, lat_ax, _, _ in zoom_axes:
            if lats:
                lat_ax.set_ylim(min(lats) * 0.7, max(lats) * 1.5)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- main -----------------------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20, help="kills per case (head, middle, tail)")
    parser.add_argument("--quick", action="store_true", help="3 trials per case")
    parser.add_argument("--out", type=Path, default=Path("."), help="where failover_timeline.png goes")
    parser.add_argument("--threads", type=int, default=4, help="client threads")
    parser.add_argument("--rate", type=float, default=2000.0, help="total writes per second offered")
    parser.add_argument("--fsync", default="everysec", choices=("always", "everysec", "no"))
    parser.add_argument("--steady", type=float, default=1.0, help="seconds of steady load before each kill")
    parser.add_argument("--keep", action="store_true", help="keep the data dirs and logs")
    args = parser.parse_args()
    trials = 3 if args.quick else args.trials
    args.out.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="catena-failover-"))
    print(f"3-member chain, fsync {args.fsync}, {args.threads} client threads offering {args.rate:.0f} writes/s, "
          f"{trials} kill -9 trials per case (data and logs in {root})", flush=True)
    cluster = None
    ok = False
    try:
        cluster = start_cluster(root, args.fsync)
        watch = ViewWatch(cluster.coordinator)
        watch.start()
        load = Load(list(cluster.members), args.threads, args.rate)
        t0 = time.monotonic()
        load.start()
        try:
            results = run_trials(cluster, load, watch, trials, args.steady)
            time.sleep(args.steady)  # steady state after the last rejoin, for the plot
        finally:
            load.stop()
            watch.stop()
        t_end = time.monotonic()
        rejoin_gaps(load, results)
        removed_again(watch, results, t_end)
        tail = cluster.whole(3)[-1]
        lost = lost_writes(load, tail)
        lost_by_case = {case: 0 for case in CASES}
        for ack in lost:  # attribute each lost write to the trial it was acknowledged in
            trial = next((t for t in reversed(results) if t.ready <= ack.acked), results[0])
            lost_by_case[trial.case] += 1
        ok = report(results, lost_by_case, len(lost), len(load.acks), load)
        png = args.out / "failover_timeline.png"
        plot(png, load, results, t0, t_end)
        print(f"timeline: {png}")
    finally:
        if cluster is not None:
            cluster.procs.stop_all()
        if not args.keep and ok:
            shutil.rmtree(root, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
