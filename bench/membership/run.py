"""Membership benchmark: simulated sweep over N and loss, and a run of real agents.

    python bench/membership/run.py sim  [--n 10,100,1000,5000] [--loss 0,0.05] [--seed 1]
    python bench/membership/run.py real [--agents 20] [--bursts 3]
    python bench/membership/run.py all

Prints, per configuration: first-detection p50/p99 (a crash reaches the first list), all-lists
p99 (every surviving list), false removals, per-member datagrams/s and bytes/s, and ratios
against the bounds (2 s / 6 s), catena's goal (1 s / 2 s) and hashicorp/memberlist's LAN
defaults (4 s at best to declare a node dead in a 10-node cluster). Writes nothing outside a
temporary directory (agent logs), which is removed at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from catena.loopback import HOST, free_ports
from catena.membership.cli import resp_call

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "sim"))

from membership_sim import run_scenario  # noqa: E402 (the simulator lives with the tests)

BOUND_FIRST, BOUND_ALL = 2.0, 6.0
GOAL_FIRST, GOAL_ALL = 1.0, 2.0
MEMBERLIST_BEST = 4.0  # s: memberlist LAN defaults, 10 nodes (4-24 s)


def pct(xs, p):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    return xs[min(len(xs) - 1, max(0, round(p / 100 * (len(xs) - 1))))]


def line(label, first, all_lists, false_removals, msgs, bps, news=()):
    f50, f99, a99 = pct(first, 50), pct(first, 99), pct(all_lists, 99)
    extra = f"join_leave_all_p99={pct(news, 99):.3f}s " if news else ""
    print(f"{label:<22} crashes={len(first):<3} first_p50={f50:.3f}s first_p99={f99:.3f}s all_p99={a99:.3f}s {extra}"
          f"false_removals={false_removals} msgs/s/member={msgs:.1f} bytes/s/member={bps:.0f} "
          f"ratio_first_p99_vs_goal={f99 / GOAL_FIRST:.2f} ratio_all_p99_vs_goal={a99 / GOAL_ALL:.2f} "
          f"ratio_first_p99_vs_bound={f99 / BOUND_FIRST:.2f} ratio_all_p99_vs_bound={a99 / BOUND_ALL:.2f} "
          f"ratio_first_p50_vs_memberlist={f50 / MEMBERLIST_BEST:.2f}", flush=True)


def sim_sweep(ns, losses, seed):
    print("# simulation (seeded; 2 crash bursts of 3 20 s apart, leaves, a pause past the timeout, "
          "a short pause, a restart; 5,000 members: 1 burst)")
    for n in ns:
        for loss in losses:
            seeds = [seed + i for i in range(5 if n <= 100 else 1)]
            first, all_lists, false, msgs, bps, news = [], [], 0, [], [], []
            t0 = time.process_time()
            for s in seeds:
                r = run_scenario(n, s, loss=loss, measure_bytes=True, bursts=1 if n >= 5000 else 2)
                problems = r.failures()
                if problems:
                    print(f"  seed {s}: {problems}")
                first += r.first
                all_lists += r.all_lists
                news += r.news_all_lists
                false += len(r.false_removals)
                msgs.append(r.msgs_per_node_s)
                bps.append(r.bytes_per_node_s)
            line(f"sim n={n} loss={loss:.0%}", first, all_lists, false, statistics.mean(msgs), statistics.mean(bps), news)
            print(f"  (seeds {seeds[0]}..{seeds[-1]}, {time.process_time() - t0:.1f} s CPU)", flush=True)


# -- real processes --------------------------------------------------------------------------

def free_port() -> int:
    return free_ports(1)[0]


def live(port):
    try:
        return {r[1].decode() for r in resp_call(f"{HOST}:{port}", "MEMBERS", timeout=1.0)}
    except (OSError, RuntimeError):
        return None


def stats(port):
    reply = resp_call(f"{HOST}:{port}", "MEMBERS.STATS", timeout=1.0)
    pairs = reply.items() if isinstance(reply, dict) else zip(reply[::2], reply[1::2])
    return {k.decode(): v for k, v in pairs}


def wait(cond, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.02)
    raise SystemExit(f"timed out waiting for {what}")


def real_run(n_agents, bursts, secret="bench-secret"):
    print(f"# real processes: {n_agents} catena agents on {HOST}, kill -9 of 3 at once, {bursts} bursts "
          f"(victims restarted with new incarnations between bursts)")
    tmp = tempfile.mkdtemp(prefix="catena-membership-bench-")
    procs: dict[int, subprocess.Popen] = {}

    def spawn(port, join):
        argv = [sys.executable, "-m", "catena.membership.cli", "agent", "--listen", f"{HOST}:{port}", "--secret", secret]
        if join:
            argv += ["--join", f"{HOST}:{join}"]
        log = open(os.path.join(tmp, f"agent-{port}.log"), "ab")
        procs[port] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       start_new_session=True)
        log.close()

    try:
        ports = [free_port() for _ in range(n_agents)]
        spawn(ports[0], None)
        wait(lambda: live(ports[0]) is not None, 30, "the first agent")
        for p in ports[1:]:
            spawn(p, ports[0])
        want = {f"{HOST}:{p}" for p in ports}
        wait(lambda: all(live(p) == want for p in ports), 60, "the agents to converge")
        time.sleep(1.0)  # measurement window starts on a settled group
        s0 = {p: stats(p) for p in ports}
        t_steady = time.monotonic()
        time.sleep(3.0)  # steady-state traffic sample
        dt = time.monotonic() - t_steady
        s1 = {p: stats(p) for p in ports}
        msgs = statistics.mean((s1[p]["datagrams_sent"] - s0[p]["datagrams_sent"]) / dt for p in ports)
        bps = statistics.mean((s1[p]["bytes_sent"] - s0[p]["bytes_sent"]) / dt for p in ports)

        first_all, all_all, false = [], [], 0
        import random

        rng = random.Random(7)
        for b in range(bursts):
            victims = rng.sample(ports[1:], 3)
            survivors = [p for p in ports if p not in victims]
            vset = {f"{HOST}:{p}" for p in victims}
            t0 = time.monotonic()
            for v in victims:
                os.kill(procs[v].pid, signal.SIGKILL)
                procs[v].wait()
            first: dict[str, float] = {}
            done: dict[int, float] = {}
            while len(done) < len(survivors) and time.monotonic() - t0 < 15:
                for p in survivors:
                    if p in done:
                        continue
                    got = live(p)
                    if got is None:
                        continue
                    now = time.monotonic() - t0
                    for v in vset - got:
                        first.setdefault(v, now)
                    if not vset & got:
                        done[p] = now
                time.sleep(0.005)
            first_all += list(first.values())
            all_all.append(max(done.values()) if len(done) == len(survivors) else float("inf"))
            for p in survivors:
                got = live(p) or set()
                false += len({f"{HOST}:{s}" for s in survivors} - got)
            for v in victims:
                spawn(v, survivors[0])
            wait(lambda: all(live(p) == want for p in ports), 60, "the restarted agents to rejoin")
        line(f"real n={n_agents} loss=0%", first_all, all_all, false, msgs, bps)
    finally:
        for p in procs.values():
            if p.poll() is None:
                os.kill(p.pid, signal.SIGKILL)
                p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["sim", "real", "all"])
    ap.add_argument("--n", default="10,100,1000,5000")
    ap.add_argument("--loss", default="0,0.05")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--agents", type=int, default=20)
    ap.add_argument("--bursts", type=int, default=3)
    a = ap.parse_args()
    if a.mode in ("sim", "all"):
        sim_sweep([int(x) for x in a.n.split(",")], [float(x) for x in a.loss.split(",")], a.seed)
    if a.mode in ("real", "all"):
        real_run(a.agents, a.bursts)


if __name__ == "__main__":
    main()
