"""Redis's own test suite, unchanged, against a catena chain and against redis-server, side by side.

    python bench/redis_suite.py /path/to/redis-7.0.15                 # the default units
    python bench/redis_suite.py TREE --units unit/multi unit/pubsub   # some units
    python bench/redis_suite.py TREE --members 1                      # against a single member

TREE is a Redis 7.0.x source tree (not built; fetched by whoever runs this, never copied into
this repository). Its `tests/` and `runtest` are copied to a temporary directory whose `src/`
holds links to Debian's redis-server and redis-cli (external mode needs no build), and each
unit runs there in external mode,

    ./runtest --host 127.0.0.1 --port P --singledb --ignore-encoding --ignore-digest \\
              --tags "-needs:debug -needs:repl …" --single UNIT

once against the middle member of a `catena up` chain (3 members unless `--members`) and once
against a fresh redis-server (no persistence). `--ignore-encoding`/`--ignore-digest` are
runtest's options for servers without OBJECT ENCODING and DEBUG DIGEST; the `needs:*` tags are
the ones an external server cannot serve (DEBUG, replication, CONFIG of memory and saves…).
Prints passed/failed per unit for both, and catena's share of the tests redis-server passed.
Every process it starts is stopped by PID; the temporary directory is removed.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

UNITS = ["unit/type/string", "unit/type/incr", "unit/type/hash", "unit/type/list", "unit/type/set",
         "unit/type/zset", "unit/expire", "unit/keyspace", "unit/multi", "unit/scan", "unit/protocol", "unit/quit",
         "unit/info-command", "unit/pubsub"]
SKIPPED_TAGS = ["needs:debug", "needs:repl", "needs:config-maxmemory", "needs:config-resetstat", "needs:latency",
                "needs:local-process", "needs:pfdebug", "needs:reset", "needs:save"]
_RESULT = re.compile(rb"^\[(ok|err|exception|skip|ignore)\]:", re.M)
_COLOUR = re.compile(rb"\x1b\[[0-9;]*m")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(port: int, command: list[str], timeout: float = 60.0) -> None:
    """Until `redis-cli -p port command…` answers without an error."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run(["redis-cli", "-p", str(port), *command], capture_output=True, timeout=10)
        if out.returncode == 0 and out.stdout and not out.stdout.startswith((b"ERR", b"TRYAGAIN", b"Could not")):
            return
        time.sleep(0.2)
    raise TimeoutError(f"127.0.0.1:{port} did not answer {' '.join(command)} within {timeout:g} s")


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM its process group, then SIGKILL after 10 s."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def suite_copy(tree: Path, into: Path) -> Path:
    """tests/ and runtest of `tree` in `into`, with Debian's binaries where runtest looks."""
    shutil.copytree(tree / "tests", into / "tests", symlinks=True)
    shutil.copy2(tree / "runtest", into / "runtest")
    (into / "src").mkdir()
    for binary in ("redis-server", "redis-cli", "redis-benchmark"):
        found = shutil.which(binary)
        if found:
            (into / "src" / binary).symlink_to(found)
    return into


def run_unit(suite: Path, port: int, unit: str, timeout_s: float) -> dict:
    # runtest's own test server listens below --baseport: a free block, so runs do not collide
    cmd = ["./runtest", "--host", "127.0.0.1", "--port", str(port), "--singledb", "--ignore-encoding",
           "--ignore-digest", "--tags", " ".join("-" + t for t in SKIPPED_TAGS), "--single", unit,
           "--baseport", str(_test_server_ports())]
    start = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=suite, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout_s)
        timed_out = False
    except subprocess.TimeoutExpired:
        stop(proc)
        out, _ = proc.communicate()
        timed_out = True
    except BaseException:  # stopped from outside: take the unit's processes along
        stop(proc)
        raise
    out = _COLOUR.sub(b"", out)
    counts = {"ok": 0, "err": 0, "exception": 0}
    for kind in _RESULT.findall(out):
        if kind.decode() in counts:
            counts[kind.decode()] += 1
    return {"passed": counts["ok"], "failed": counts["err"], "exception": counts["exception"] > 0,
            "timed_out": timed_out, "seconds": time.monotonic() - start, "output": out,
            "no_start": not any(counts.values()) and b"Testing " not in out}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("tree", type=Path, help="a Redis 7.0.x source tree")
    ap.add_argument("--units", nargs="+", default=UNITS)
    ap.add_argument("--members", type=int, default=3)
    ap.add_argument("--unit-timeout-s", type=float, default=300.0, help="a unit still running after this is stopped")
    ap.add_argument("--keep-output", type=Path, help="write each run's runtest output into this directory")
    args = ap.parse_args()
    if not (args.tree / "tests" / "test_helper.tcl").exists():
        ap.error(f"{args.tree} is not a Redis source tree (no tests/test_helper.tcl)")
    if shutil.which("tclsh8.6") is None and shutil.which("tclsh8.5") is None:
        ap.error("runtest needs tclsh 8.5 or newer (Debian: apt-get install tcl)")
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):  # (a background job ignores SIGINT)
        signal.signal(sig, _interrupted)
    procs: list[subprocess.Popen] = []
    work = Path(tempfile.mkdtemp(prefix="catena-redis-suite-"))
    try:
        suite = suite_copy(args.tree, work / "suite")
        redis_port = free_port()
        procs.append(subprocess.Popen(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                                       "--appendonly", "no", "--dir", str(work)], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL, start_new_session=True))
        base = _free_block(args.members + 1)
        procs.append(subprocess.Popen([sys.executable, "-m", "catena", "up", "--members", str(args.members),
                                       "--port", str(base)], cwd=work, stdout=subprocess.DEVNULL,
                                      stderr=(work / "catena.log").open("wb"), start_new_session=True,
                                      env={**os.environ, "TMPDIR": str(work)}))
        member = base + 1 + args.members // 2  # the middle member: writes are forwarded to the head
        wait_for(redis_port, ["PING"])
        wait_for(member, ["SET", "catena-suite:up", "1"])
        wait_for(member, ["DEL", "catena-suite:up"])
        print(f"redis-server {_version(redis_port)} on {redis_port}; catena chain of {args.members} "
              f"at 127.0.0.1:{member} ({'middle member' if args.members > 2 else 'a member'})", flush=True)
        rows = []
        print(f"{'unit':24} {'catena ok':>9} {'err':>5}   {'redis ok':>8} {'err':>5}   notes", flush=True)
        for unit in args.units:
            mine = run_unit(suite, member, unit, args.unit_timeout_s)
            theirs = run_unit(suite, redis_port, unit, args.unit_timeout_s)
            if args.keep_output:
                args.keep_output.mkdir(parents=True, exist_ok=True)
                name = unit.replace("/", "_")
                (args.keep_output / f"{name}.catena.txt").write_bytes(mine["output"])
                (args.keep_output / f"{name}.redis.txt").write_bytes(theirs["output"])
            notes = "; ".join(n for n in (
                "catena: the unit stopped at an exception" if mine["exception"] else "",
                "catena: timed out" if mine["timed_out"] else "",
                "catena: runtest did not start" if mine["no_start"] else "",
                "redis: runtest did not start" if theirs["no_start"] else "",
                "redis: exception" if theirs["exception"] else "", "redis: timed out" if theirs["timed_out"] else "") if n)
            rows.append((unit, mine, theirs))
            print(f"{unit:24} {mine['passed']:9} {mine['failed']:5}   {theirs['passed']:8} {theirs['failed']:5}   {notes}",
                  flush=True)
        ours, redis_ok = sum(r[1]["passed"] for r in rows), sum(r[2]["passed"] for r in rows)
        print(f"{'total':24} {ours:9} {sum(r[1]['failed'] for r in rows):5}   {redis_ok:8} "
              f"{sum(r[2]['failed'] for r in rows):5}")
        print(f"catena passed {ours} tests where redis-server passed {redis_ok}: "
              f"{100.0 * ours / max(redis_ok, 1):.1f}%")
        return 0
    finally:
        for proc in reversed(procs):
            stop(proc)
        shutil.rmtree(work, ignore_errors=True)


def _interrupted(signum, frame):
    raise SystemExit(f"stopped by signal {signum}")


def _test_server_ports() -> int:
    """A --baseport whose 32 ports below it, and those 10,000 above them, are free (runtest's
    test server takes one of each pair)."""
    for _ in range(200):
        base = random.randrange(20_032, 40_000)
        if all(_port_free(p) and _port_free(p + 10_000) for p in range(base - 32, base)):
            return base
    raise RuntimeError("no free ports for runtest's test server")


def _free_block(n: int) -> int:
    for _ in range(200):
        first = free_port()
        if first + n < 65535 and all(_port_free(p) for p in range(first, first + n)):
            return first
    raise RuntimeError(f"no {n} consecutive free ports")


def _port_free(port: int) -> bool:
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def _version(port: int) -> str:
    out = subprocess.run(["redis-cli", "-p", str(port), "INFO", "server"], capture_output=True, timeout=10).stdout
    found = re.search(rb"redis_version:(\S+)", out)
    return found.group(1).decode() if found else "?"


if __name__ == "__main__":
    sys.exit(main())
