"""Per-write CPU cost of each member of a 3-member chain: instructions (callgrind), and where
the CPU goes (py-spy samples).

Starts three members on free loopback ports (no coordinator: the script pushes the view
itself, so no probe can time out while the members run under valgrind), warms them up with
redis-benchmark SETs at the head, then measures W more writes:

- `--tool callgrind` (default): every member runs under `valgrind --tool=callgrind` with
  instrumentation off until the warm-up is done; instruction counts (Ir) are taken over an
  idle interval and over the W writes, and the idle rate (the loop's timers) is subtracted.
  Instruction counts are repeatable on a busy machine, unlike wall-clock time.
- `--tool cpu`: the members run as they are; their CPU time (user + system, from /proc) over
  the W writes, in µs per write, with the rate the chain achieved, and per write the read and
  write syscalls and context switches each member made (how well its loop batches).
- `--tool py-spy`: py-spy samples every member (CPU time only, not idle) during the W writes;
  printed per role: CPU µs per write and the functions the samples were in (own, and with
  their callees). Needs `pip install py-spy`.

    python bench/profile/run.py                  # callgrind, 2,000 writes (about 30 s)
    python bench/profile/run.py --writes 5000 --pipeline 16
    python bench/profile/run.py --tool py-spy --writes 50000
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "throughput"))
from run import Procs, cli, free_port, wait_for  # noqa: E402  (bench/throughput/run.py)

from catena.loopback import HOST  # noqa: E402

ROLES = ("head", "middle", "tail")


def start_members(procs: Procs, ports: list[int], tool: str, fsync: str) -> list:
    members = [f"{HOST}:{p}" for p in ports]
    started = []
    for role, port in zip(ROLES, ports):
        argv = [sys.executable, "-m", "catena", "member", "--listen", f"{HOST}:{port}", "--data-dir",
                str(procs.root / role), "--fsync", fsync]
        if tool == "callgrind":
            argv = ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--dump-instr=no",
                    f"--callgrind-out-file={procs.root / f'callgrind.{role}'}", *argv]
        started.append(procs.start(role, argv))
    for port in ports:
        wait_for(lambda: cli(port, "PING", timeout=30) == "PONG", 600, f"member on {port}")
    for port in ports:
        cli(port, "MEMBER.VIEW", "0", "1", "-", *members, timeout=60)
    wait_for(lambda: cli(ports[0], "SET", "warm", "1", timeout=60) == "OK", 600, "a first write")
    return started


def target(ports: list[int], test: str) -> tuple[int, str]:
    """Where the measured commands go: SETs to the head, GETs to the tail (a member given a
    view by hand as a middle one never served reads: it forwards them to the tail)."""
    return (ports[0], "head") if test == "set" else (ports[-1], "tail")


def writes(port: int, n: int, pipeline: int, test: str = "set") -> float:
    started = time.monotonic()
    out = subprocess.run(["redis-benchmark", "-h", HOST, "-p", str(port), "-t", test, "-n", str(n), "-c", "50",
                          "-r", "100000", "-P", str(pipeline), "-q"], capture_output=True, text=True, timeout=1800)
    if out.returncode != 0:
        raise RuntimeError(f"redis-benchmark: {out.stderr.strip()}")
    return time.monotonic() - started


def totals(path: Path) -> int:
    """The Ir a callgrind dump counted."""
    text = path.read_text(errors="replace")
    m = re.search(r"^(?:summary|totals):\s*(\d+)", text, re.M)
    return int(m.group(1)) if m else 0


def dumps(root: Path, role: str) -> list[Path]:
    return sorted(root.glob(f"callgrind.{role}*"), key=lambda p: p.stat().st_mtime)


def measure_callgrind(procs: Procs, started, ports, n: int, pipeline: int, idle_s: float, test: str) -> None:
    pids = [p.pid for p in started]
    for pid in pids:
        subprocess.run(["callgrind_control", "-i", "on", str(pid)], capture_output=True, timeout=600, check=True)
    time.sleep(idle_s)  # the idle interval: the members' timers alone
    for pid in pids:
        subprocess.run(["callgrind_control", "-d", "idle", str(pid)], capture_output=True, timeout=600, check=True)
    t_idle = idle_s
    port, where = target(ports, test)
    t_writes = writes(port, n, pipeline, test)
    for pid in pids:
        subprocess.run(["callgrind_control", "-d", "writes", str(pid)], capture_output=True, timeout=600, check=True)
    print(f"# {n} {test.upper()}s (-c 50 -P {pipeline}) at the {where} in {t_writes:.1f} s under valgrind; "
          f"idle interval {t_idle:.1f} s")
    total = 0.0
    for role in ROLES:
        idle_file, writes_file = [p for p in dumps(procs.root, role) if p.name != f"callgrind.{role}"][:2]
        idle, busy = totals(idle_file), totals(writes_file)
        net = busy - idle / t_idle * t_writes
        total += net / n
        print(f"{role:<6} instructions_per_{test}={net / n:>9.0f}  (raw {busy / n:.0f}, idle {idle / t_idle:.0f}/s)")
    print(f"chain  instructions_per_{test}={total:>9.0f}")


SAMPLE_HZ = 500
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of process `pid` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return int(fields[11]) / TICK, int(fields[12]) / TICK


def io_counts(pid: int) -> tuple[int, int, int]:
    """(read syscalls, write syscalls, context switches) of process `pid` so far: the loop's
    events and sends per write, which wall-clock noise does not change."""
    io = dict(line.split(": ") for line in Path(f"/proc/{pid}/io").read_text().splitlines())
    status = Path(f"/proc/{pid}/status").read_text()
    switches = sum(int(v) for v in re.findall(r"ctxt_switches:\s*(\d+)", status))
    return int(io["syscr"]), int(io["syscw"]), switches


def measure_cpu(started, ports, n: int, pipeline: int, test: str) -> None:
    port, where = target(ports, test)
    before = [(cpu_seconds(p.pid), io_counts(p.pid)) for p in started]
    secs = writes(port, n, pipeline, test)
    after = [(cpu_seconds(p.pid), io_counts(p.pid)) for p in started]
    print(f"# {n} {test.upper()}s (-c 50 -P {pipeline}) at the {where} in {secs:.1f} s ({n / secs:.0f}/s)")
    total = 0.0
    for role, (b, bio), (a, aio) in zip(ROLES, before, after):
        user, system = (a[0] - b[0]) / n * 1e6, (a[1] - b[1]) / n * 1e6
        reads, sends, switches = ((x - y) / n for x, y in zip(aio, bio))
        total += user + system
        print(f"{role:<6} cpu_us_per_{test}={user + system:6.1f}  (user {user:.1f}, system {system:.1f})  "
              f"reads={reads:.2f} writes={sends:.2f} switches={switches:.2f} per {test}")
    print(f"chain  cpu_us_per_{test}={total:6.1f}")


def measure_pyspy(procs: Procs, started, ports, n: int, pipeline: int, top: int, test: str) -> None:
    spies = [subprocess.Popen(["py-spy", "record", "-p", str(p.pid), "-r", str(SAMPLE_HZ), "--format", "raw",
                               "--nonblocking", "-o", str(procs.root / f"pyspy.{role}")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for role, p in zip(ROLES, started)]
    time.sleep(1)  # py-spy attaches
    port, where = target(ports, test)
    secs = writes(port, n, pipeline, test)
    for spy in spies:
        spy.send_signal(signal.SIGINT)
    for spy in spies:
        spy.wait(timeout=60)
    print(f"# {n} {test.upper()}s (-c 50 -P {pipeline}) at the {where} in {secs:.1f} s ({n / secs:.0f}/s), "
          f"py-spy at {SAMPLE_HZ} Hz (CPU samples only)")
    for role in ROLES:
        own, incl, total = stacks(procs.root / f"pyspy.{role}")
        print(f"## {role}: {total / SAMPLE_HZ / n * 1e6:.1f} µs of CPU per write ({total} samples)")
        for name, count in sorted(own.items(), key=lambda kv: -kv[1])[:top]:
            print(f"  own {100 * count / total:5.1f}%  incl {100 * incl[name] / total:5.1f}%  {name}")


def stacks(path: Path) -> tuple[dict, dict, int]:
    """py-spy's collapsed stacks: samples per function as the leaf (own) and anywhere (incl)."""
    own: dict[str, int] = {}
    incl: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";")]
        frames = [f.replace(str(Path(sys.prefix)), "venv") for f in frames]
        c = int(count)
        total += c
        own[frames[-1]] = own.get(frames[-1], 0) + c
        for f in set(frames):
            incl[f] = incl.get(f, 0) + c
    return own, incl, total


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tool", choices=("callgrind", "cpu", "py-spy"), default="callgrind")
    ap.add_argument("--writes", type=int, default=None, help="writes measured (callgrind 2,000; else 50,000)")
    ap.add_argument("--warmup", type=int, default=2_000)
    ap.add_argument("--pipeline", type=int, default=1)
    ap.add_argument("--test", choices=("set", "get"), default="set", help="SETs at the head or GETs at the tail")
    ap.add_argument("--fsync", default="everysec")
    ap.add_argument("--idle-seconds", type=float, default=5.0)
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args(argv)
    n = args.writes or (2_000 if args.tool == "callgrind" else 50_000)
    need = {"callgrind": "valgrind", "py-spy": "py-spy"}.get(args.tool)
    if need and shutil.which(need) is None:
        print(f"{need} is not installed (valgrind: apt-get install valgrind; py-spy: pip install py-spy)",
              file=sys.stderr)
        return 2
    root = Path(tempfile.mkdtemp(prefix="catena-profile-"))
    procs = Procs(root)
    taken: set[int] = set()
    try:
        ports = [free_port(taken) for _ in ROLES]
        started = start_members(procs, ports, args.tool, args.fsync)
        writes(ports[0], args.warmup, args.pipeline)
        if args.tool == "callgrind":
            measure_callgrind(procs, started, ports, n, args.pipeline, args.idle_seconds, args.test)
        elif args.tool == "cpu":
            measure_cpu(started, ports, n, args.pipeline, args.test)
        else:
            measure_pyspy(procs, started, ports, n, args.pipeline, args.top, args.test)
        return 0
    except (RuntimeError, TimeoutError, subprocess.CalledProcessError) as exc:
        print(f"profile failed: {exc}; logs in {root}", file=sys.stderr)
        return 1
    finally:
        procs.stop_all()
        if not os.environ.get("CATENA_BENCH_KEEP"):
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
