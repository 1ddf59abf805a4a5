"""Mutation fuzzer for catena's decoders: RESP commands, peer frames (and the replica behind
them), membership datagrams; and (`--target chain`, catena.fuzz_chain) well-formed commands with
extreme arguments through a whole chain.

    python -m catena.fuzz --target all --inputs 1000000 [--seed N]
    python -m catena.fuzz --target peer --replay 92010203        # one input (hex), traceback shown
    python -m catena.fuzz --target chain --inputs 1000000 [--real | --redis HOST:PORT]   # catena/fuzz_chain.py

Inputs are made by seeded mutation of valid frames (bit flips, interesting bytes, truncation,
splicing two frames, huge length headers, inserted/deleted/duplicated chunks, random bytes), so
a run is reproducible from `--seed`. `--inputs` counts per target. For every input the oracle is:

resp        `CommandParser(max_bulk_len, max_args).feed()` returns lists of bytes or raises
            `RemoteProtocolError`; feeding the same bytes split in two gives the same commands
            and the same verdict; after an error the parser stays failed (sticky).
peer        `messages.unpacker()` yields frames or raises `RemoteProtocolError` (what a link closes on);
            `messages.decode()` returns a message or raises `RemoteProtocolError`; each message
            goes to two replicas (the head of a 2-member chain receiving from its successor, the
            tail receiving from its predecessor), whose `on_message` returns effects or refuses
            with `RemoteProtocolError`.
membership  `wire.decode()` without and with a secret (mutated datagrams are also re-signed so
            the body parser runs behind a valid MAC) returns (message, seq) or raises
            `DropReason`; a decoded message re-encodes to the same message; `ReplayGuard.accept`
            answers a bool and remembers at most `max_senders` addresses.

Anything else is a crash: counted per signature (stage, exception, innermost catena line) and
its first inputs printed in hex with a `--replay` command. Each target first runs a few fixed
hostile headers (`PROBES`: lengths of 2^29..2^32, deep nesting); an input that takes longer than
`--slow` seconds (default 0.25) is a finding too (an allocation sized by a header). A watchdog
(SIGALRM, once a second) turns an input that runs longer than `--timeout` seconds into a hang.
Peak RSS (ru_maxrss) is printed before and after; growth above `--max-rss-growth-mb` fails the
run. Exit status: 0 only with no crash, no slow input, no hang and memory within the bound.

Speed on one core of the 2-core reference machine: 80,000-120,000 inputs/s per target (resp
parses each input two or three times); the documented run of 3,000,000 inputs takes about 30 s.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import random
import re
import resource
import signal
import sys
import time
import traceback
from collections import Counter

from catena.chain import messages as pm
from catena.chain.replica import Replica
from catena.chain.state import KVState, SET
from catena.errors import RemoteProtocolError
from catena.membership import wire
from catena.membership.messages import (
    Ack as MAck, Digest, Gossip, Heartbeat, Join, JoinRefused, MemberId, Nack, Ping, PingReq, State, Status,
    Update,
)
from catena.resp.codec import CommandParser
from catena.view import View

TARGETS = ("resp", "peer", "membership")
RESP_MAX_BULK = 64 * 1024  # the limits the fuzzed parser is configured with
RESP_MAX_ARGS = 1024
SECRET = b"fuzz-secret"
REPLICA_RESET = 5000  # fresh replicas every this many inputs (their state grows with applied garbage)
MAX_EXAMPLES = 3  # inputs kept per crash signature


class Crash(Exception):
    """An oracle violation that is not a Python exception of the code under test."""


class Hang(BaseException):
    """Raised by the watchdog in the input that overran --timeout."""


# -- seeds ---------------------------------------------------------------------------------------


def _resp(*args: bytes) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


def resp_seeds() -> list[bytes]:
    seeds = [
        _resp(b"PING"), _resp(b"SET", b"key", b"value"), _resp(b"GET", b"key"),
        _resp(b"SET", b"k", b"v" * 300, b"PX", b"1000", b"NX"), _resp(b"MSET", b"a", b"1", b"b", b"2"),
        _resp(b"DEL", b"a", b"b", b"c"), _resp(b"INCRBY", b"n", b"-12"), _resp(b"SET", b"", b""),
        _resp(b"CATENA.REQ", b"client-1", b"7", b"5", b"SET", b"k", b"v"),
        b"PING\r\n", b"SET k v\r\n", b"\r\n", b"GET key\n",
        _resp(b"GET", b"a") + _resp(b"GET", b"b") + _resp(b"GET", b"c"),
        _resp(b"SET", b"a", b"x" * 20) + b"PING\r\n" + _resp(b"GET", b"a"),
    ]
    return seeds


def peer_seeds() -> list[bytes]:
    entry = (1, 1, 1_700_000_000_000, (b"cl", 1, 1), (SET, b"k", b"v", None, 0))
    entry2 = (1, 2, 1_700_000_000_001, None, (1, (b"a", b"1", b"b", b"2")))
    entry3 = (1, 3, 1_700_000_000_002, None, (2, (b"a",)))
    state = KVState()
    state.apply((SET, b"k", b"v", 1_800_000_000_000, 0), 1)
    state.remember((b"cl", 1, 1), 1, pm.Status("OK"))
    msgs = [
        pm.Sync(1, 0, 0), pm.Sync(1, 1, 3), pm.Append(1, 0, ()), pm.Append(1, 1, (entry,)),
        pm.Append(1, 2, (entry, entry2, entry3)), pm.Ack(1, 1), pm.Ack(1, 3),
        pm.Snapshot(1, 1, 1, 1, state.dump()), pm.Snapshot(1, 0, 0, 0, KVState().dump()), pm.SyncRequest(1),
        pm.Forward(1, 5, (b"cl", 2, 1), (b"SET", b"k", b"v")), pm.Forward(1, 6, None, (b"DEL", b"k")),
        pm.WriteReply(1, pm.Status("OK")), pm.WriteReply(5, pm.Error("ERR x")), pm.WriteReply(6, 3),
        pm.Read(1, 7, (b"GET", b"k")), pm.ReadReply(7, b"v"), pm.ReadReply(8, None), pm.Stale(1), pm.Stale(2),
    ]
    seeds = [pm.pack(m) for m in msgs]
    seeds.append(seeds[0] + seeds[3] + seeds[5])  # several frames in one read
    return seeds


def membership_samples() -> list:
    a = MemberId("127.0.0.1", 7001, 1_700_000_000_123)
    b = MemberId("10.1.2.3", 65535, 0)
    u = (Update(a, 3, Status.SUSPECT), Update(b, 0, Status.FAILED))
    return [
        Heartbeat(a), Heartbeat(a, u), Ping(a, 7, b, u), PingReq(a, 8, b), MAck(b, 9, a, u), Join(b),
        State(a, 1, 3, True, u), JoinRefused(a, "address in use"), Gossip(a, u),
        Digest(a, (1 << 64) - 1, 1500, True), Digest(b, 0, 0, False, True), Nack(b, 3, a, u),
    ]


def membership_seeds() -> list[bytes]:
    out = []
    for i, m in enumerate(membership_samples()):
        out.append(wire.encode(m, i + 1))
        out.append(wire.encode(m, i + 1, SECRET))
    return out


# -- mutation ------------------------------------------------------------------------------------

_RESP_BYTES = b"\x00\xff\x7f\x80\r\n*$-+:0123456789 "
_MSGPACK_BYTES = bytes(range(0xc0, 0x100)) + b"\x00\x7f\x80\x8f\x90\x9f\xa0\xbf\x01\x02\x0a"
_RESP_HUGE = (b"4294967296", b"99999999999999999999", b"-2", b"-1", b"1048577", b"65537", b"0",
              b"", b"x", b"+5", b" 3")
_MSGPACK_HUGE = (b"\xdb\xff\xff\xff\xff", b"\xc6\xff\xff\xff\xff", b"\xc6\x20\x00\x00\x01", b"\xdd\xff\xff\xff\xff",
                 b"\xdf\xff\xff\xff\xff", b"\xdc\xff\xff", b"\xde\xff\xff", b"\xc7\xff\x01", b"\xc9\xff\xff\xff\xff\x05",
                 b"\xd9\xff", b"\xcf\xff\xff\xff\xff\xff\xff\xff\xff", b"\xd3\x80\x00\x00\x00\x00\x00\x00\x00",
                 b"\x91" * 40, b"\x81\x80\x01", b"\xd6\xff\x00\x00\x00\x01", b"\xc7\x03\xff\x00\x00\x00", b"\xc1")


class Mutator:
    """Seeded byte-level mutations of valid frames."""

    def __init__(self, seeds: list[bytes], rng: random.Random, interesting: bytes, huge: tuple, resp: bool):
        self.seeds, self.rng, self.interesting, self.huge, self.resp = seeds, rng, interesting, huge, resp

    def __call__(self) -> bytes:
        rng = self.rng
        seeds = self.seeds
        data = bytearray(seeds[int(rng.random() * len(seeds))])
        r = rng.random()
        if r < 0.03:
            return bytes(data)  # a valid frame as it is
        if r < 0.08:
            return rng.randbytes(int(rng.random() * 64))
        for _ in range(1 + int(rng.random() * rng.random() * 6)):
            n = len(data)
            op = int(rng.random() * 9)
            pos = int(rng.random() * (n + 1))
            if op == 0 and n:  # bit flip
                data[pos % n] ^= 1 << int(rng.random() * 8)
            elif op == 1 and n:  # an interesting byte
                data[pos % n] = self.interesting[int(rng.random() * len(self.interesting))]
            elif op == 2:  # truncate
                del data[pos:]
            elif op == 3:  # splice with another frame
                other = seeds[int(rng.random() * len(seeds))]
                data[pos:] = other[int(rng.random() * (len(other) + 1)):]
            elif op == 4:  # a huge (or broken) length header
                h = self.huge[int(rng.random() * len(self.huge))]
                if self.resp:
                    at = _find_number(data, pos)
                    if at is not None:
                        data[at[0]:at[1]] = h
                    else:
                        data[pos:pos] = (b"*$"[int(rng.random() * 2)]).to_bytes(1, "big") + h + b"\r\n"
                else:
                    data[pos:pos + int(rng.random() * 3)] = h
            elif op == 5:  # insert random bytes
                data[pos:pos] = rng.randbytes(1 + int(rng.random() * 8))
            elif op == 6 and n:  # delete a chunk
                del data[pos:pos + 1 + int(rng.random() * 8)]
            elif op == 7 and n:  # duplicate a chunk
                end = pos + 1 + int(rng.random() * 16)
                data[pos:pos] = data[pos:end]
            elif op == 8:  # another whole frame after or before
                other = seeds[int(rng.random() * len(seeds))]
                data = data + other if rng.random() < 0.5 else bytearray(other) + data
        return bytes(data)


def _find_number(data: bytearray, pos: int):
    """The digits after the first '*' or '$' at or after `pos` (wrapping), as (start, end)."""
    n = len(data)
    for start in (pos, 0):
        i = start
        while i < n:
            c = data[i]
            if c == 42 or c == 36:  # * $
                j = i + 1
                while j < n and 48 <= data[j] <= 57 or (j == i + 1 and j < n and data[j] == 45):
                    j += 1
                return i + 1, j
            i += 1
    return None


# -- oracles -------------------------------------------------------------------------------------


def _resp_outcome(chunks: list[bytes]):
    parser = CommandParser(RESP_MAX_BULK, RESP_MAX_ARGS)
    commands: list = []
    try:
        for c in chunks:
            commands += parser.feed(c)
    except RemoteProtocolError as exc:
        commands += exc.commands
        try:
            parser.feed(b"*1\r\n$4\r\nPING\r\n")
        except RemoteProtocolError as again:
            if again.commands:
                raise Crash("a failed parser returned commands") from None
        else:
            raise Crash("the parser accepted input after a protocol error")
        return commands, str(exc)
    return commands, None


def check_resp(data: bytes, rng: random.Random, cuts=None) -> str:
    """`cuts`: where to split the input for the comparison (default: one random place)."""
    commands, err = _resp_outcome([data])
    for cmd in commands:
        if type(cmd) is not list or not cmd or not all(type(a) is bytes for a in cmd):
            raise Crash(f"not a command: {cmd!r}"[:200])
    if cuts is None:
        cuts = (1 + int(rng.random() * (len(data) - 1)),) if len(data) > 1 else ()
    for cut in cuts:
        commands2, err2 = _resp_outcome([data[:cut], data[cut:]])
        if commands2 != commands or (err is None) != (err2 is None):
            raise Crash(f"split at {cut} differs: whole={commands!r}/{err!r} split={commands2!r}/{err2!r}"[:300])
    if err is None:
        return "accepted" if commands else "incomplete"
    return "refused: " + _QUOTED.sub("…", err)[:60]


_QUOTED = re.compile(r"\"[^\"]*\"|'[^']*'")


class PeerTarget:
    def __init__(self):
        self.reset()

    def reset(self):
        now = 1_700_000_000.0
        view = View(0, 1, ("a:1", "b:2"))
        self.head = Replica("a:1", b"a/1")
        self.head.on_view(view, now)
        self.tail = Replica("b:2", b"b/2")
        self.tail.on_view(view, now)

    def __call__(self, data: bytes, rng: random.Random) -> str:
        u = pm.unpacker()
        u.feed(data)
        msgs = []
        try:
            for frame in u:
                try:
                    msgs.append(pm.decode(frame))
                except RemoteProtocolError:
                    outcome = "decode refused"
                    break
                except Exception as exc:
                    exc.stage = "decode"
                    raise
            else:
                outcome = "decoded" if msgs else "incomplete"
        except (ValueError, RemoteProtocolError):
            outcome = "unpack refused"
        except Exception as exc:
            if not hasattr(exc, "stage"):
                exc.stage = "unpack"
            raise
        now = 1_700_000_001.0
        for msg in msgs:
            for replica, sender in ((self.head, "b:2"), (self.tail, "a:1")):
                try:
                    fx = replica.on_message(sender, msg, now)
                    fx += replica.flush()
                except RemoteProtocolError:
                    outcome += ", replica refused"
                except Exception as exc:
                    self.reset()
                    exc.stage = f"replica on_message({type(msg).__name__})"
                    raise
                if type(fx) is not list:
                    raise Crash("on_message did not return a list")
        return outcome


class MembershipTarget:
    def __init__(self, max_senders: int = 256):
        self.guard = wire.ReplayGuard(window=64, max_senders=max_senders)

    def __call__(self, data: bytes, rng: random.Random) -> str:
        outcomes = []
        r = rng.random()
        if r < 0.5 and len(data) > wire.HEADER_LEN + wire.MAC_LEN:  # re-sign: the body parser runs behind a valid MAC
            body = data[:-wire.MAC_LEN] if data[1:2] == b"\x01" and r < 0.25 else data
            body = body[:1] + bytes((body[1] | wire.FLAG_SIGNED,)) + body[2:]
            variants = ((body + hmac.new(SECRET, body, hashlib.sha256).digest(), SECRET),)
        else:
            variants = ((data, None), (data, SECRET))
        for datagram, secret in variants:
            try:
                msg, seq = wire.decode(datagram, secret)
            except wire.DropReason as exc:
                outcomes.append(exc.reason)
                continue
            again = wire.decode(wire.encode(msg, seq, secret), secret)
            if again != (msg, seq):
                raise Crash(f"re-encoding changed {msg!r} into {again[0]!r}"[:300])
            s = msg.sender
            ok = self.guard.accept(s.addr, s.incarnation, seq)
            if type(ok) is not bool or len(self.guard._state) > self.guard.max_senders:
                raise Crash("replay guard broke its contract")
            outcomes.append("accepted")
        return "/".join(outcomes)


# Hostile headers run once at the start of every target, before the mutated inputs: each must be
# refused (or wait for more bytes) quickly, without a large allocation.
PROBES = {
    "resp": [b"*536870913\r\n", b"*4290967296\r\n", b"*1048577\r\n$3\r\nGET\r\n", b"$536870913\r\n",
             b"*1\r\n$536870913\r\n", b"*1\r\n$4294967296\r\nab", b"*2\r\n$1\r\na\r\n$-1\r\n",
             b"x" * 70000, b"*1\r\n%1\r\n%0\r\n:1\r\n"],
    "peer": [b"\xdd\xff\xff\xff\xff", b"\xdf\xff\xff\xff\xff", b"\xc6\xff\xff\xff\xff",
             b"\xdb\xff\xff\xff\xff", b"\x92\x02\xdd\x7f\xff\xff\xff", b"\x91" * 100_000, b"\x81\x80\x01"],
    "membership": [b"\x01\x00\x01\xdd\xff\xff\xff\xff", b"\x01\x00\x01\xdf\xff\xff\xff\xff",
                   b"\x01\x00\x01" + b"\x91" * 1397, b"\x01\x00\x01\x81\x80\x01"],
}


def make_target(name: str):
    if name == "resp":
        return check_resp, Mutator(resp_seeds(), None, _RESP_BYTES, _RESP_HUGE, True)
    if name == "peer":
        return PeerTarget(), Mutator(peer_seeds(), None, _MSGPACK_BYTES, _MSGPACK_HUGE, False)
    if name == "membership":
        return MembershipTarget(), Mutator(membership_seeds(), None, _MSGPACK_BYTES, _MSGPACK_HUGE, False)
    raise ValueError(f"unknown target {name!r}")


# -- the runner ------------------------------------------------------------------------------------


def _signature(exc: BaseException) -> str:
    tb = exc.__traceback__
    where = "?"
    while tb is not None:
        code = tb.tb_frame.f_code
        if "catena" in code.co_filename and not code.co_filename.endswith("fuzz.py"):
            where = f"{code.co_filename.split('catena/')[-1]}:{tb.tb_lineno} in {code.co_name}"
        tb = tb.tb_next
    stage = getattr(exc, "stage", "oracle" if isinstance(exc, Crash) else "decode")
    return f"{stage}: {type(exc).__name__} at {where}"


def maxrss_kb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


class Report:
    def __init__(self, target: str):
        self.target = target
        self.inputs = 0
        self.seconds = 0.0
        self.outcomes: Counter = Counter()
        self.crashes: Counter = Counter()
        self.examples: dict[str, list[tuple[bytes, str]]] = {}
        self.hangs: list[bytes] = []
        self.slow: list[tuple[bytes, float]] = []  # inputs that took longer than the slow bound

    @property
    def crashed(self) -> int:
        return sum(self.crashes.values())

    @property
    def ok(self) -> bool:
        return not (self.crashed or self.hangs or self.slow)


def run_target(name: str, inputs: int, seed: int, timeout: float = 2.0, progress=None, slow: float = 0.25) -> Report:
    check, mutate = make_target(name)
    rng = random.Random(f"{seed}:{name}")
    mutate.rng = rng
    report = Report(name)
    outcomes = report.outcomes
    current = [0, 0]  # [input number, number when the watchdog last looked]
    stuck = [0.0]

    def watchdog(signum, frame):
        if current[0] == current[1]:
            stuck[0] += 1.0
            if stuck[0] >= timeout:
                stuck[0] = 0.0
                raise Hang()
        else:
            current[1] = current[0]
            stuck[0] = 0.0

    use_alarm = hasattr(signal, "setitimer") and signal.getsignal(signal.SIGALRM) in (signal.SIG_DFL, None)
    if use_alarm:
        signal.signal(signal.SIGALRM, watchdog)
        signal.setitimer(signal.ITIMER_REAL, 1.0, 1.0)
    reset = getattr(check, "reset", None)
    probes = PROBES[name]
    n_probes = len(probes)
    clock = time.perf_counter
    start = clock()
    try:
        for i in range(1, inputs + 1):
            current[0] = i
            data = probes[i - 1] if i <= n_probes else mutate()
            t = clock()
            try:
                outcomes[check(data, rng)] += 1
                if clock() - t > slow:
                    report.slow.append((data, clock() - t))
                    outcomes["slow"] += 1
            except Hang:
                report.hangs.append(data)
                outcomes["hang"] += 1
                if reset is not None:  # interrupted anywhere: start from fresh replicas
                    reset()
            except Exception as exc:  # anything but the documented refusals: a crash
                sig = _signature(exc)
                report.crashes[sig] += 1
                ex = report.examples.setdefault(sig, [])
                if len(ex) < MAX_EXAMPLES:
                    ex.append((data, f"{type(exc).__name__}: {exc}"[:300]))
                outcomes["crash"] += 1
            if reset is not None and i % REPLICA_RESET == 0:
                reset()
            if progress is not None and i % 100_000 == 0:
                progress(name, i, time.perf_counter() - start)
    finally:
        if use_alarm:
            signal.setitimer(signal.ITIMER_REAL, 0, 0)
            signal.signal(signal.SIGALRM, signal.SIG_DFL)
    report.inputs = inputs
    report.seconds = time.perf_counter() - start
    return report


def replay(name: str, data: bytes) -> int:
    check, _ = make_target(name)
    t = time.perf_counter()
    try:
        if name == "resp":  # every split point
            outcome = check_resp(data, random.Random(0), range(1, len(data)))
        else:
            outcome = check(data, random.Random(0))
        print(f"outcome: {outcome} ({time.perf_counter() - t:.3f} s)")
        return 0
    except Exception:
        traceback.print_exc()
        return 1


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m catena.fuzz", description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", choices=(*TARGETS, "chain", "all"), default="all",
                    help="all: the decoder targets; chain: commands through a 3-member chain")
    ap.add_argument("--inputs", type=int, default=1_000_000, help="inputs per target (default 1,000,000)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=2.0, help="seconds one input may run before it is a hang")
    ap.add_argument("--slow", type=float, default=0.25,
                    help="an input that takes longer than this many seconds is a finding (default 0.25)")
    ap.add_argument("--max-rss-growth-mb", type=float, default=256.0,
                    help="fail if peak RSS grows more than this over the run (default 256)")
    ap.add_argument("--replay", metavar="HEX", help="run one input (hex) through --target and show the traceback")
    ap.add_argument("--quiet", action="store_true", help="no progress lines")
    chain = ap.add_argument_group("--target chain")
    chain.add_argument("--real", action="store_true", help="through real processes (a coordinator, 3 members)")
    chain.add_argument("--batch", type=int, default=100, help="commands between checks (default 100)")
    chain.add_argument("--max-value", type=int, default=None,
                       help="largest value in bytes (default 65536; 4096 with --real)")
    chain.add_argument("--replay-batch", type=int, metavar="B", help="run failing batch B of --seed (traceback)")
    chain.add_argument("--redis", metavar="HOST:PORT",
                       help="compare every reply with a redis-server's (it is FLUSHALLed first)")
    args = ap.parse_args(argv)
    if args.target == "chain":
        from catena.fuzz_chain import main as chain_main

        return chain_main(args)
    if args.replay is not None:
        if args.target == "all":
            ap.error("--replay needs one --target")
        return replay(args.target, bytes.fromhex(args.replay))
    targets = TARGETS if args.target == "all" else (args.target,)
    rss0 = maxrss_kb()
    print(f"fuzz seed={args.seed} inputs_per_target={args.inputs} targets={','.join(targets)} "
          f"maxrss_start_kb={rss0}", flush=True)

    def progress(name, i, secs):
        if not args.quiet:
            print(f"  {name}: {i} inputs, {i / secs:,.0f}/s, maxrss_kb={maxrss_kb()}", flush=True)

    failed = False
    total = 0
    t0 = time.perf_counter()
    for name in targets:
        rep = run_target(name, args.inputs, args.seed, args.timeout, progress, args.slow)
        total += rep.inputs
        print(f"target={name} inputs={rep.inputs} seconds={rep.seconds:.1f} "
              f"inputs_per_s={rep.inputs / rep.seconds:,.0f} crashes={rep.crashed} hangs={len(rep.hangs)} "
              f"slow={len(rep.slow)} "
              f"maxrss_kb={maxrss_kb()}", flush=True)
        for outcome, n in rep.outcomes.most_common():
            print(f"  {n:>9}  {outcome}")
        for sig, n in rep.crashes.most_common():
            print(f"  CRASH x{n}: {sig}")
            for data, text in rep.examples[sig]:
                print(f"    {text}")
                print(f"    python -m catena.fuzz --target {name} --replay {data.hex()}")
        for data in rep.hangs[:MAX_EXAMPLES]:
            print(f"  HANG: python -m catena.fuzz --target {name} --replay {data.hex()}")
        for data, secs in rep.slow[:MAX_EXAMPLES]:
            print(f"  SLOW {secs:.2f} s: python -m catena.fuzz --target {name} --replay {data.hex()}")
        failed |= not rep.ok
    rss1 = maxrss_kb()
    growth_mb = (rss1 - rss0) / 1024
    ok_mem = growth_mb <= args.max_rss_growth_mb
    elapsed = time.perf_counter() - t0
    print(f"total_inputs={total} seconds={elapsed:.1f} inputs_per_s={total / elapsed:,.0f} "
          f"maxrss_start_kb={rss0} maxrss_end_kb={rss1} growth_mb={growth_mb:.1f} "
          f"(limit {args.max_rss_growth_mb:g}) verdict={'FAIL' if failed or not ok_mem else 'ok'}")
    return 1 if failed or not ok_mem else 0


if __name__ == "__main__":
    sys.exit(main())
