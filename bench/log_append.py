"""Appends per second to the durable log, batches of 1 and 64 records of 60 bytes, under each
fsync policy. The peer is a bare os.write() of the same framed bytes with the same syncing, so
ratio_vs_raw_write is what framing and checksumming cost.

    python bench/log_append.py [--dir DIR] [--seconds-each 0.4]

DIR should sit on the disk the members will use (fsync on tmpfs costs nothing).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from catena.chain.log import DurableLog

RECORD = b"r" * 60


def run_log(directory: Path, fsync: str, batch: list[bytes], seconds: float) -> tuple[float, bytes]:
    log = DurableLog(directory, fsync=fsync)
    log.recover()
    appends = 0
    start = now = time.monotonic()
    while now - start < seconds:
        log.append(batch)
        appends += 1
        now = time.monotonic()
        log.maybe_sync(now)
    elapsed = time.monotonic() - start
    log.close()
    framed = next(directory.glob("log.*")).read_bytes()
    return appends / elapsed, framed[8 : 8 + len(framed[8:]) // appends]


def run_raw(path: Path, fsync: str, buf: bytes, seconds: float) -> float:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    appends = 0
    last_sync = None
    start = now = time.monotonic()
    while now - start < seconds:
        os.write(fd, buf)
        appends += 1
        if fsync == "always":
            os.fdatasync(fd)
        now = time.monotonic()
        if fsync == "everysec" and (last_sync is None or now - last_sync >= 1.0):
            os.fdatasync(fd)
            last_sync = now
    elapsed = time.monotonic() - start
    os.close(fd)
    return appends / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, help="where to write (default: a temp dir)")
    parser.add_argument("--seconds-each", type=float, default=0.4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = Path(tmp)
        for fsync in ("no", "everysec", "always"):
            for size in (1, 64):
                name = f"{fsync}-{size}"
                rate, one_append = run_log(root / name, fsync, [RECORD] * size, args.seconds_each)
                raw = run_raw(root / f"{name}.raw", fsync, one_append, args.seconds_each)
                print(
                    f"fsync={fsync:<8} batch={size:<3} appends/s={rate:>9.0f} "
                    f"records/s={rate * size:>10.0f} raw_write_appends/s={raw:>9.0f} "
                    f"ratio_vs_raw_write={rate / raw:.2f}"
                )


if __name__ == "__main__":
    main()
