"""Instructions per command of a member's RESP front end, read path and write path, exactly.

A member runs in this process (a chain of one, so it answers reads as a tail does); one
connection gets an in-memory transport, and N copies of one command's frame go through its
`data_received` inside a single `deque.extend` call, the only code callgrind counts
(`--toggle-collect`). No sockets, no loop turns, no idle timers: the count is repeatable to
tens of instructions, so a change of 1% shows (bench/profile/run.py measures the whole chain,
loop and idle timers included, to within 2-3k instructions per op). What it leaves out: the
event loop, recv/send, and for GET and PING the write path past the front end.

SET goes as at a head under `redis-benchmark -c 50 -P 1`: one write from each of 50
connections, then the member's end-of-turn flush (the batch's log record, the commit a chain of
one makes at once, the replies), all inside the count; what it leaves out of a head's work is
the chain: the Append out, the acks in.

    python bench/profile/front.py                # GET of a key that exists, PING, and SET
    python bench/profile/front.py --n 5000 --command get
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import itertools
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

FRAMES = {
    "get": b"*2\r\n$3\r\nGET\r\n$5\r\nkey:1\r\n",
    "ping": b"*1\r\n$4\r\nPING\r\n",
    "set": b"*3\r\n$3\r\nSET\r\n$5\r\nkey:1\r\n$3\r\nabc\r\n",
}
CLIENTS = 50  # SET: connections that each send one write per turn
REPLIES = {"get": b"$3\r\nabc\r\n", "ping": b"+PONG\r\n", "set": b"+OK\r\n"}


class Transport:
    """What a connection asks of its transport; keeps a count of the bytes written."""

    def __init__(self):
        self.written = bytearray()

    def write(self, data):
        self.written += data

    def is_closing(self):
        return False

    def get_write_buffer_size(self):
        return 0

    def get_extra_info(self, name, default=None):
        return {"peername": ("127.0.0.1", 1), "sockname": ("127.0.0.1", 2)}.get(name, default)

    def set_write_buffer_limits(self, high=None):
        pass

    def pause_reading(self):
        pass

    def resume_reading(self):
        pass

    def close(self):
        pass


def command(*words: bytes) -> bytes:
    return b"*%d\r\n" % len(words) + b"".join(b"$%d\r\n%s\r\n" % (len(w), w) for w in words)


async def until(transport: Transport, reply: bytes, what: str) -> None:
    """Wait (up to 60 s) until the connection has been answered `reply`."""
    try:
        async with asyncio.timeout(60):
            while not transport.written.endswith(reply):
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise SystemExit(f"no {reply!r} to {what} within 60 s: {bytes(transport.written[-200:])!r}") from None
    transport.written.clear()


async def inside(name: str, n: int) -> None:
    """Run under callgrind: set up the member, then the measured loop."""
    from catena.chain.node import MemberNode
    from catena.loopback import HOST, free_ports
    from catena.resp.server import _Connection

    node = MemberNode(f"{HOST}:{free_ports(1)[0]}", Path(tempfile.mkdtemp(prefix="catena-front-")))
    started = asyncio.Event()
    task = asyncio.create_task(node.run(started))
    try:
        async with asyncio.timeout(60):
            await started.wait()
        conn, transport = _Connection(node.server), Transport()
        conn.connection_made(transport)
        conn.data_received(command(b"MEMBER.VIEW", b"0", b"1", b"-", node.me.encode()))
        await until(transport, b"+OK\r\n", "the view")
        conn.data_received(command(b"SET", b"key:1", b"abc"))
        await until(transport, b"+OK\r\n", "a first write")
        step, frames = conn.data_received, itertools.repeat(FRAMES[name], n)
        if name == "set":  # as at a head under -c 50 -P 1: a write from each of CLIENTS connections, then the end-of-turn flush
            conns = [conn] + [_Connection(node.server) for _ in range(CLIENTS - 1)]
            for other in conns[1:]:
                other.connection_made(transport)

            def step(frame, feeds=[c.data_received for c in conns], flush=node._flush):
                for feed in feeds:
                    feed(frame)
                flush()
            frames = itertools.repeat(FRAMES[name], n // CLIENTS)
            n = n // CLIENTS * CLIENTS
        collections.deque(maxlen=0).extend(map(step, frames))
        expected = REPLIES[name] * n
        if bytes(transport.written) != expected:
            raise SystemExit(f"unexpected replies to {name.upper()}: {bytes(transport.written[:80])!r}")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        shutil.rmtree(node.data_dir, ignore_errors=True)


def measure(name: str, n: int) -> int:
    with tempfile.TemporaryDirectory(prefix="catena-front-cg-") as tmp:
        out = Path(tmp) / "callgrind.out"
        run = subprocess.run(["valgrind", "--tool=callgrind", "--toggle-collect=deque_extend*",
                              f"--callgrind-out-file={out}", sys.executable, __file__, "--inside", name,
                              "--n", str(n)], capture_output=True, text=True, timeout=1800)
        if run.returncode != 0:
            raise SystemExit(f"{name}: {run.stderr.strip()[-2000:]}")
        m = re.search(r"^(?:summary|totals):\s*(\d+)", out.read_text(errors="replace"), re.M)
        if not m or not int(m.group(1)):
            raise SystemExit("callgrind counted nothing: is deque_extend a symbol of this Python?")
        return int(m.group(1)) // (n // CLIENTS * CLIENTS if name == "set" else n)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--command", choices=sorted(FRAMES), action="append")
    ap.add_argument("--n", type=int, default=3000, help="commands measured")
    ap.add_argument("--inside", choices=sorted(FRAMES), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.inside:
        asyncio.run(inside(args.inside, args.n))
        return 0
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 2
    what = {"get": "front end and read path", "ping": "front end",
            "set": "front end, write path, log append and reply: a chain of one"}
    for name in args.command or ("get", "ping", "set"):
        print(f"{name.upper():<5} instructions_per_command={measure(name, args.n):>7}  "
              f"({what[name]}, in-process, {args.n} commands)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
