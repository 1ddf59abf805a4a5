"""`catena agent` and `catena members`.

    catena agent --listen HOST:PORT [--join HOST:PORT[,HOST:PORT…]] [--secret S | --secret-file F]
                 [--heartbeat-interval-ms 100] [--k 3] [--suspect-after-ms 500]
                 [--confirm-timeout-ms 300] [--gossip-fanout 3] [--gossip-interval-ms 50]
                 [--join-timeout-ms 5000] [--incarnation N] [--log-level info]
    catena members --agent HOST:PORT [--all] [--stats]

The secret may also come from CATENA_SECRET. Runnable without the top-level CLI:
`python -m catena.membership.cli agent …`.
Exit codes: 0 clean leave, 1 cannot listen / bad flags, 2 join failed, 3 agent unreachable.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys

import hiredis

from catena.config import protected_mode
from catena.errors import ConfigError
from catena.membership.messages import parse_addr
from catena.membership.settings import Settings


def _addr(text: str) -> str:
    try:
        host, port = parse_addr(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return f"{host}:{port}"


def _addr_list(text: str) -> list[str]:
    return [_addr(a) for a in text.split(",") if a.strip()]


def add_parsers(subparsers) -> None:
    a = subparsers.add_parser("agent", help="run a membership agent in the foreground",
                              description="Join (or found) a catena membership group and serve MEMBERS on the same port.")
    a.add_argument("--listen", required=True, type=_addr, help="HOST:PORT for UDP heartbeats and the RESP API")
    a.add_argument("--join", type=_addr_list, default=[], help="introducers HOST:PORT[,HOST:PORT…]; omit to start a group")
    a.add_argument("--secret", default=None, help="shared secret: HMAC-SHA256 on every datagram (or CATENA_SECRET)")
    a.add_argument("--secret-file", default=None, help="read the shared secret from this file")
    d = Settings()
    a.add_argument("--heartbeat-interval-ms", type=int, default=d.heartbeat_interval_ms)
    a.add_argument("--k", type=int, default=d.k, help="monitors per member (ring successors)")
    a.add_argument("--suspect-after-ms", type=int, default=d.suspect_after_ms)
    a.add_argument("--confirm-timeout-ms", type=int, default=d.confirm_timeout_ms)
    a.add_argument("--gossip-fanout", type=int, default=d.gossip_fanout)
    a.add_argument("--gossip-interval-ms", type=int, default=d.gossip_interval_ms)
    a.add_argument("--join-timeout-ms", type=int, default=d.join_timeout_ms,
                   help="give up (exit 2) if no introducer admits us within this time")
    a.add_argument("--incarnation", type=int, default=None,
                   help="override the incarnation (default: start time in ms since the epoch); it must exceed every "
                        "earlier incarnation at this address, including rejoins (which add the ms elapsed since start)")
    a.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    from catena.ops_flags import add_ops_flags

    add_ops_flags(a)
    a.set_defaults(func=cmd_agent)

    m = subparsers.add_parser("members", help="print an agent's membership list")
    m.add_argument("--agent", default="127.0.0.1:7946", type=_addr, help="HOST:PORT of any agent or member")
    m.add_argument("--all", action="store_true", help="include failed and left members")
    m.add_argument("--stats", action="store_true", help="print the agent's counters instead")
    m.add_argument("--timeout-ms", type=int, default=2000)
    m.set_defaults(func=cmd_members)


def read_secret(args) -> bytes | None:
    if getattr(args, "secret_file", None):
        with open(args.secret_file, "rb") as f:
            return f.read().strip() or None
    s = args.secret or os.environ.get("CATENA_SECRET")
    return s.encode() if s else None


def cmd_agent(args) -> int:
    from catena.membership.agent import run

    from catena.logs import configure

    configure(args.log_level, args.log_format, f"agent {args.listen}")
    try:
        settings = Settings(heartbeat_interval_ms=args.heartbeat_interval_ms, k=args.k,
                            suspect_after_ms=args.suspect_after_ms, confirm_timeout_ms=args.confirm_timeout_ms,
                            gossip_fanout=args.gossip_fanout, gossip_interval_ms=args.gossip_interval_ms,
                            join_timeout_ms=args.join_timeout_ms)
        secret = read_secret(args)
        protected_mode("agent", args.listen, None, secret)
        if args.secret:
            logging.getLogger("catena").warning(
                "the secret was given with --secret, so `ps` shows it: use --secret-file or CATENA_SECRET instead")
    except (ConfigError, OSError) as exc:
        print(f"catena agent: {exc}", file=sys.stderr)
        return 1
    from catena.runtime import runner as event_loop

    runner = event_loop()
    return runner(run(args.listen, args.join, settings, secret, args.incarnation, args.metrics_listen))


def resp_call(addr: str, *words: str, timeout: float = 2.0):
    """One RESP command to HOST:PORT; returns the decoded reply (raises OSError/RuntimeError)."""
    host, port = parse_addr(addr)
    out = b"*%d\r\n" % len(words) + b"".join(b"$%d\r\n%s\r\n" % (len(w.encode()), w.encode()) for w in words)
    reader = hiredis.Reader()
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(out)
        while (reply := reader.gets()) is False:
            chunk = s.recv(65536)
            if not chunk:
                raise OSError("connection closed")
            reader.feed(chunk)
    if isinstance(reply, hiredis.ReplyError):
        raise RuntimeError(str(reply))
    return reply


def _text(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def format_members(rows) -> str:
    table = [("ID", "ADDRESS", "INCARNATION", "STATE", "LAST HEARD")]
    for r in rows:
        heard = int(r[4])
        table.append((_text(r[0]), _text(r[1]), str(r[2]), _text(r[3]), "-" if heard < 0 else f"{heard} ms"))
    widths = [max(len(row[i]) for row in table) for i in range(5)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in table)


def cmd_members(args) -> int:
    try:
        if args.stats:
            reply = resp_call(args.agent, "MEMBERS.STATS", timeout=args.timeout_ms / 1000)
            pairs = list(reply.items()) if isinstance(reply, dict) else list(zip(reply[::2], reply[1::2]))
            for k, v in sorted((_text(k), _text(v)) for k, v in pairs):
                print(f"{k:24} {v}")
            return 0
        rows = resp_call(args.agent, *(["MEMBERS", "ALL"] if args.all else ["MEMBERS"]), timeout=args.timeout_ms / 1000)
    except (OSError, RuntimeError) as exc:
        print(f"catena members: cannot query {args.agent}: {exc}", file=sys.stderr)
        return 3
    print(format_members(rows))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="catena")
    sub = parser.add_subparsers(dest="command", required=True)
    add_parsers(sub)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
