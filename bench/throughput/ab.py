"""catena against itself at another revision, interleaved on the same machine in the same hour.

Each round starts a chain (a coordinator and three members, `--fsync` as given) of each code in
turn, this working tree's and REV's (its `src/`, exported with `git archive` to a temporary
directory and put first on the members' PYTHONPATH), and measures at the head: redis-benchmark
SET at -P 1 and -P 16 (`-c 50 -r 100000`), and the p50 latency of SET -P 1 with 10 clients
(where the chain is latency-bound). The two codes take turns going first. One run on shared
cores swings by 2x, so it prints each line's medians over the rounds, their ratio and how many
rounds this code won. Every process it starts is stopped by PID.

    python bench/throughput/ab.py aa6e095                      # 5 rounds, fsync everysec
    python bench/throughput/ab.py HEAD~1 --rounds 8 --fsync always
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from run import HOST, KEYSPACE, Procs, benchmark, free_port, start_chain

REPO = Path(__file__).resolve().parents[2]
LINES = (("SET -P 1", "ops/s", True), ("SET -P 16", "ops/s", True), ("SET p50 -c 10", "ms", False))


def export(rev: str, into: Path) -> Path:
    """REV's `src/` under `into`; its path."""
    tar = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", rev, "src"],
                         capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        archive.extractall(into, filter="data")
    return into / "src"


def p50_ms(port: int, clients: int, n: int) -> float:
    out = subprocess.run(["redis-benchmark", "-h", HOST, "-p", str(port), "-t", "set", "-n", str(n),
                          "-c", str(clients), "-r", str(KEYSPACE), "--csv"],
                         capture_output=True, text=True, timeout=600, check=True).stdout
    return float(next(csv.DictReader(io.StringIO(out)))["p50_latency_ms"])


def measure(root: Path, pythonpath: str | None, fsync: str) -> tuple[float, float, float]:
    """One chain of the code on `pythonpath` (None: this tree's): the three lines' figures."""
    saved = os.environ.get("PYTHONPATH")
    if pythonpath is not None:
        os.environ["PYTHONPATH"] = pythonpath
    procs, taken = Procs(root), set()
    try:
        head = start_chain(procs, [free_port(taken) for _ in range(4)], fsync)[0]
        return (benchmark(head, 40_000, 1, "set")["SET"], benchmark(head, 200_000, 16, "set")["SET"],
                p50_ms(head, 10, 30_000))
    finally:
        procs.stop_all()
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("rev", help="the revision to compare with (anything git names)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--fsync", default="everysec", choices=("always", "everysec", "no"))
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="catena-ab-") as tmp:
        other = str(export(args.rev, Path(tmp) / "rev"))
        codes = (("this", None), (args.rev, other))
        results: dict[str, list[tuple[float, float, float]]] = {name: [] for name, _ in codes}
        for r in range(args.rounds):
            for name, path in codes if r % 2 == 0 else codes[::-1]:
                root = Path(tmp) / f"{name.replace('/', '_')}-{r}"
                root.mkdir()
                results[name].append(measure(root, path, args.fsync))
            print(f"# round {r + 1}: " + "  |  ".join(
                f"{name} " + " ".join(f"{v:,.0f}" if unit == "ops/s" else f"{v:.3f} ms"
                                      for v, (_, unit, _) in zip(results[name][-1], LINES))
                for name, _ in codes), flush=True)
    print(f"# fsync {args.fsync}, {args.rounds} rounds; medians, this / {args.rev}, rounds this code won")
    for i, (line, unit, higher) in enumerate(LINES):
        ours, theirs = ([x[i] for x in results[name]] for name, _ in codes)
        won = sum((a > b) if higher else (a < b) for a, b in zip(ours, theirs))
        a, b = statistics.median(ours), statistics.median(theirs)
        shown = (lambda v: f"{v:,.0f}") if unit == "ops/s" else (lambda v: f"{v:.3f} ms")
        print(f"{line:<14} this={shown(a):>10}  {args.rev}={shown(b):>10}  ratio={a / b:.2f}  "
              f"won {won}/{args.rounds}{'' if higher else '  (lower is better)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
