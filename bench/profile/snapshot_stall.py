"""How long a member's own snapshot holds its event loop: packing the state in the loop (what a
member does where fork() is missing) against forking a child to pack it (catena.chain.snapshotter),
for a state of N string keys. CPU time of the calling thread (repeatable on a busy machine) and
wall time, the best of three each.

    python bench/profile/snapshot_stall.py                 # 100,000, 400,000 and 1,000,000 keys
    python bench/profile/snapshot_stall.py --keys 200000
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from catena.chain import snapshotter
from catena.chain.log import DurableLog
from catena.chain.state import SET, KVState


def held(fn) -> tuple[float, float]:
    """(thread CPU ms, wall ms) of fn()."""
    cpu, wall = time.thread_time(), time.perf_counter()
    fn()
    return (time.thread_time() - cpu) * 1000, (time.perf_counter() - wall) * 1000


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keys", type=int, action="append", help="state sizes (repeatable)")
    args = ap.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="catena-snapshot-stall-"))
    try:
        state, loaded = KVState(), 0
        for n in sorted(args.keys or [100_000, 400_000, 1_000_000]):
            for i in range(loaded, n):
                state.apply((SET, b"key:%012d" % i, b"v" * 16, None, 0), 0)
            loaded = n
            log = DurableLog(root / str(n))
            log.recover()
            in_loop, forked = [], []
            for _ in range(3):
                in_loop.append(held(state.dump))
                child = None

                def fork():
                    nonlocal child
                    child = snapshotter.start(log, 1, n, state)

                forked.append(held(fork))
                if child is None:
                    print("fork() is not available here", file=sys.stderr)
                    return 2
                while snapshotter.poll(child, log) is None:  # the child's work, off the loop
                    time.sleep(0.01)
            log.close()
            print(f"keys={n:<9} in_loop_dump cpu={min(c for c, _ in in_loop):6.1f} ms wall={min(w for _, w in in_loop):6.1f} ms"
                  f"   fork cpu={min(c for c, _ in forked):5.1f} ms wall={min(w for _, w in forked):5.1f} ms"
                  f"   ratio={min(c for c, _ in in_loop) / min(c for c, _ in forked):.0f}x")
        return 0
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
