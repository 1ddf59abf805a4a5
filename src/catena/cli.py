"""`catena` command line: member, coordinator, up, status (and the membership commands)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

from catena import logs, tls
from catena.config import apply_defaults, protected_mode, read_secret, secret_in_argv
from catena.errors import CatenaError, ConfigError
from catena.ops_flags import add_ops_flags
from catena.ops_flags import listen as _listen
from catena.resp.codec import DEFAULT_MAX_BULK_LEN
from catena.resp.limits import Limits, parse_output_limit, parse_size

log = logging.getLogger("catena")


class _BadValue(argparse.ArgumentTypeError, ValueError):
    """argparse shows its message; the settings file / environment path sees a ValueError."""


def _checked(parse):
    """An argparse type from a parser that raises ValueError with a readable message."""

    def convert(value):
        try:
            return parse(value)
        except ValueError as exc:
            raise _BadValue(str(exc)) from None

    convert.__name__ = parse.__name__
    return convert


def _store(value: str) -> str:
    if value == "embedded":
        return value
    from catena.coordinator.address import AddressError, EtcdAddress, parse

    try:
        address = parse(value)
    except AddressError as exc:
        raise _BadValue(str(exc)) from None
    if not isinstance(address, EtcdAddress):
        raise _BadValue(f"expected 'embedded' or etcd://HOST:PORT[,HOST:PORT]/PREFIX, got {value!r}")
    return value


def _milliseconds(value: str) -> int:
    if not value.isdigit():
        raise argparse.ArgumentTypeError(f"expected a whole number of milliseconds (0 or more), got {value!r}")
    return int(value)


def _coordinator_address(value: str) -> str:
    from catena.coordinator.address import AddressError, parse

    try:
        parse(value)
    except AddressError as exc:
        raise _BadValue(str(exc)) from None
    return value


def _run_async(main) -> int:
    from catena.runtime import runner as event_loop

    runner = event_loop()

    async def guarded() -> int:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        failures: list[BaseException] = []
        try:
            await main
        except* asyncio.CancelledError:
            pass
        except* CatenaError as group:  # a task of the process's TaskGroup stopped it on purpose
            failures.extend(group.exceptions)
        for exc in failures:
            log.error("%s", exc)
        return 2 if failures else 0

    return runner(guarded())


def cmd_member(args) -> int:
    from catena.chain.node import MemberNode
    from catena.resp.client import set_source_address

    secret = read_secret(args.secret, args.secret_file)
    protected_mode("member", args.listen, args.requirepass, secret)
    tls.configure_from(args)
    if args.requirepass and args.coordinator and not secret:
        raise CatenaError("member: --requirepass with --coordinator needs the cluster secret too (--secret-file "
                          "FILE or CATENA_SECRET, the same for every process): the coordinator and the other "
                          "members authenticate with it, not with the client password")
    if args.write_timeout_ms <= 0:
        raise CatenaError(f"member: --write-timeout-ms must be positive, not {args.write_timeout_ms}")
    set_source_address(args.source_addr)
    node = MemberNode(args.listen, Path(args.data_dir), args.coordinator, args.requirepass, args.fsync, secret,
                      args.proto_max_bulk_len, args.advertise,
                      disk_stall_timeout_s=args.disk_stall_timeout_ms / 1000, limits=_limits(args),
                      debug_commands=args.enable_debug_command == "yes", liveness_port=args.liveness_port,
                      cluster_enabled=args.cluster_enabled == "yes", chain_id=args.chain)
    node.replica.write_timeout_s = args.write_timeout_ms / 1000
    logs.set_context(lambda: (node.replica.view.chain_id if node.replica.view else None, node.replica.epoch))
    return _run_async(_with_metrics(node, node.run(), args.metrics_listen, "member"))


def _with_metrics(process, main, listen: str | None, kind: str):
    """`main` with the metrics port of a member or coordinator (`process`) open on `listen`."""
    from catena.metrics.http import serving

    if listen is None:
        return main
    process.metrics.url = f"http://{listen}/metrics"
    if kind == "member":
        from catena.metrics.member import MemberCollector

        return serving(main, listen, lambda: [MemberCollector(process)])
    from catena.metrics.coordinator import CoordinatorCollector
    from catena.metrics.status_page import StatusPage

    return serving(main, listen, lambda: [CoordinatorCollector(process)], StatusPage(process).routes)


def cmd_coordinator(args) -> int:
    from catena.coordinator.service import with_store
    from catena.resp.client import set_source_address

    if args.store == "embedded" and args.data_dir is None:
        raise CatenaError("coordinator: --data-dir is required with the embedded store")
    secret = read_secret(args.secret, args.secret_file)
    protected_mode("coordinator", args.listen, args.requirepass, secret)
    tls.configure_from(args)
    set_source_address(args.source_addr)
    coord = with_store(args.listen, args.store, Path(args.data_dir) if args.data_dir else None, args.requirepass,
                       args.cluster_id, args.lease_ttl_s, args.advertise, secret,
                       read_secret(args.admin_password, args.admin_password_file))
    if args.add_timeout_s <= 0:
        raise CatenaError(f"coordinator: --add-timeout-s must be positive, not {args.add_timeout_s}")
    coord.add_timeout_s = args.add_timeout_s
    if args.chains < 0:
        raise CatenaError(f"coordinator: --chains must be 0 or more, not {args.chains}")
    coord.chains = args.chains
    if not args.wedge_timeout_s >= 0:
        raise CatenaError(f"coordinator: --wedge-timeout-s must be 0 or more, not {args.wedge_timeout_s}")
    coord.machine.wedge_s = args.wedge_timeout_s or None
    if not args.link_stall_ms >= 0:
        raise CatenaError(f"coordinator: --link-stall-ms must be 0 or more, not {args.link_stall_ms}")
    coord.machine.link_stall_s = args.link_stall_ms / 1000 or None
    if not args.flap_quiet_ms >= 0:
        raise CatenaError(f"coordinator: --flap-quiet-ms must be 0 or more, not {args.flap_quiet_ms}")
    coord.machine.damping.base_s = args.flap_quiet_ms / 1000
    coord.server.limits = _limits(args)
    coord.server.reserved = frozenset({b"MASTER.REGISTER", b"MASTER.CAUGHT_UP", b"MASTER.GET_VIEW", b"MASTER.LEADER",
                                       b"MASTER.STATUS"})
    logs.set_context(lambda: (coord.view.chain_id, coord.view.epoch))
    return _run_async(_with_metrics(coord, coord.run(), args.metrics_listen, "coordinator"))


def cmd_status(args) -> int:
    from catena.status import print_status

    tls.configure_from(args)
    return asyncio.run(print_status(args.coordinator, args.password))


def cmd_reshard(args) -> int:
    """catena reshard / rebalance / drain: move slots between chains, printing progress."""
    from catena import reshard
    from catena.resp.client import internal_auth
    from catena.slots import parse_ranges

    tls.configure_from(args)
    admin = read_secret(args.admin_password, args.admin_password_file)
    auth = (b"admin", admin) if admin else internal_auth(read_secret(args.secret, args.secret_file))
    if args.command == "rebalance":
        plan = reshard.rebalance_plan
    elif args.command == "drain":
        def plan(slot_map):
            return reshard.drain_plan(slot_map, args.chain)
        return asyncio.run(reshard.run(args.coordinator, plan, auth, remove=args.chain))
    else:
        if (args.slots is None) == (args.range is None):
            raise CatenaError("reshard: give --slots N or --range FIRST-LAST")
        try:
            span = parse_ranges(args.range.encode())[0] if args.range else None
        except (ValueError, IndexError):
            raise CatenaError(f"reshard: bad --range {args.range!r}: expected FIRST-LAST within 0-16383") from None
        if args.slots is not None and args.slots < 1:
            raise CatenaError(f"reshard: --slots must be at least 1, not {args.slots}")

        def plan(slot_map):
            return reshard.reshard_plan(slot_map, args.source, args.target, args.slots, span)
    return asyncio.run(reshard.run(args.coordinator, plan, auth))


def cmd_up(args) -> int:
    from catena.up import run_cluster

    return run_cluster(args.members, args.port, args.data_dir, args.requirepass, args.log_format,
                       cluster_enabled=args.cluster_enabled == "yes", chains=args.chains)


def cmd_kv(args) -> int:
    """catena get/set/del KEY [VALUE]: one call through the client library."""
    from catena.client import Client, ClientError

    tls.configure_from(args)
    try:
        with Client(args.coordinator, timeout=args.timeout_ms / 1000, password=args.password) as client:
            if args.command == "get":
                value = client.get(args.key)
                print("(nil)" if value is None else value.decode(errors="replace"))
            elif args.command == "set":
                print("OK" if client.set(args.key, args.value) else "(nil)")
            else:
                print(client.delete(*args.key))
        return 0
    except (ClientError, ValueError) as exc:
        print(f"catena {args.command}: {exc}", file=sys.stderr)
        return 1


def _add_address_flags(parser: argparse.ArgumentParser, who: str) -> None:
    parser.add_argument("--advertise", type=_listen, default=None,
                        help=f"the HOST:PORT others reach {who} at, when not --listen (a NAT, a proxy)")
    parser.add_argument("--source-addr", default=None, metavar="HOST",
                        help="outbound connections leave from this local address (default: the kernel's choice)")


def _add_limit_flags(parser: argparse.ArgumentParser) -> None:
    """Redis's client limits, with Redis's names and defaults (see catena.resp.limits)."""
    d = Limits()
    parser.add_argument("--maxclients", type=_checked(_positive), default=d.maxclients,
                        help=f"client connections (default {d.maxclients}); 32 more are kept for catena's own")
    parser.add_argument("--client-output-buffer-limit", type=_checked(parse_output_limit),
                        default=(d.output_hard, d.output_soft, d.output_soft_s), metavar="'HARD SOFT SECONDS'",
                        help="unread replies that disconnect a client: past HARD at once, past SOFT for SECONDS "
                             "(default '256mb 64mb 60'; 0 turns one off)")
    parser.add_argument("--client-query-buffer-limit", type=_checked(parse_size), default=d.query_buffer,
                        metavar="SIZE", help="largest partial command of one client (default 1gb)")
    parser.add_argument("--max-input-buffer", type=_checked(parse_size), default=d.input_total, metavar="SIZE",
                        help="partial commands of all clients together (default 2gb)")


def _port_or_zero(value) -> int:
    if not str(value).isdigit() or int(value) > 65535:
        raise ValueError(f"expected a port number (0 to 65535), got {value!r}")
    return int(value)


def _positive(value) -> int:
    n = int(value)
    if n < 1:
        raise ValueError(f"expected a positive integer, got {value!r}")
    return n


def _limits(args) -> Limits:
    try:
        hard, soft, soft_s = args.client_output_buffer_limit
        return Limits(args.maxclients, hard, soft, soft_s, args.client_query_buffer_limit, args.max_input_buffer)
    except (TypeError, ValueError) as exc:  # a TOML value of the wrong kind skips the flag's parser
        raise ConfigError(f"bad client limits: {exc}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="catena", description=__doc__)
    parser.add_argument("--log-level", default=os.environ.get("CATENA_LOG_LEVEL", "INFO"))
    sub = parser.add_subparsers(dest="command", required=True)

    m = sub.add_parser("member", help="run a chain member (serves RESP)")
    m.add_argument("--listen", type=_listen, required=False, default=None, help="HOST:PORT")
    m.add_argument("--data-dir", default=None, help="where the log and snapshots live")
    m.add_argument("--coordinator", default=None, type=_coordinator_address,
                   help="coordinators: HOST:PORT[,HOST:PORT…] or etcd://HOST:PORT[,HOST:PORT]/PREFIX")
    m.add_argument("--requirepass", default=None, help="password clients must AUTH with")
    m.add_argument("--fsync", choices=("always", "everysec", "no"), default="everysec")
    m.add_argument("--secret", default=None, help="cluster secret: authenticates peer links, the coordinator's "
                   "calls and membership datagrams (needed with --requirepass in a chain of several members)")
    m.add_argument("--secret-file", default=None)
    m.add_argument("--proto-max-bulk-len", "--max-bulk-len", type=_checked(parse_size), default=DEFAULT_MAX_BULK_LEN,
                   metavar="SIZE", help="largest bulk string a client may send (default 512mb)")
    _add_limit_flags(m)
    m.add_argument("--disk-stall-timeout-ms", type=_milliseconds, default=5000,
                   help="a write or fsync of the data dir running longer stops the member, as a failed one "
                   "does (a fail-slow disk); 0: never")
    m.add_argument("--write-timeout-ms", type=int, default=5000,
                   help="deadline of a write this member forwards to the head: not applied after it")
    m.add_argument("--liveness-port", type=_checked(_port_or_zero), default=0, metavar="PORT",
                   help="UDP port of the liveness responder the coordinator asks when a probe times out "
                   "(on the --listen host; 0: any free port, named in probe answers and INFO)")
    m.add_argument("--enable-debug-command", choices=("yes", "no"), default="no",
                   help="allow DEBUG SLEEP (holds the event loop: for tests and drills)")
    m.add_argument("--cluster-enabled", choices=("yes", "no"), default="no",
                   help="Redis Cluster mode: serve only the hash slots this chain owns (-MOVED, -CROSSSLOT), "
                   "answer CLUSTER commands (docs/sharding.md)")
    m.add_argument("--chain", type=int, default=0, metavar="N",
                   help="with --coordinator: register into chain N (default 0; the coordinator keeps several "
                   "chains with --chains K)")
    _add_address_flags(m, "this member")
    add_ops_flags(m)
    tls.add_flags(m)
    m.set_defaults(func=cmd_member, required=("listen", "data_dir"))

    c = sub.add_parser("coordinator", help="run a coordinator (embedded store, or one of several on etcd)")
    c.add_argument("--listen", type=_listen, default=None)
    c.add_argument("--data-dir", default=None, help="where the embedded store keeps its file")
    c.add_argument("--store", default="embedded", type=_store,
                   help="embedded (default: one coordinator) or etcd://HOST:PORT[,HOST:PORT]/PREFIX (several, one leads)")
    c.add_argument("--lease-ttl-s", type=int, default=2,
                   help="etcd: the leader's lease TTL in seconds (etcd raises it to its own minimum)")
    c.add_argument("--add-timeout-s", type=float, default=30.0,
                   help="roll back an add whose learner made no progress for this long")
    c.add_argument("--wedge-timeout-s", type=float, default=10.0,
                   help="a member that misses probes while its liveness responder says its event loop is in a "
                   "turn this long is dead; shorter turns are busy, not dead (0: probes only)")
    c.add_argument("--link-stall-ms", type=int, default=1000,
                   help="a chain link between two members that both answer probes, making no progress this long, "
                   "is repaired: one end is taken out (0: never)")
    c.add_argument("--flap-quiet-ms", type=int, default=1200,
                   help="a member taken out by a failure that registers again is admitted once it has answered "
                   "every probe this long, doubled for each further recent removal (0: at once)")
    c.add_argument("--cluster-id", default=None, help="refuse a store holding another cluster's state")
    c.add_argument("--chains", type=int, default=0, metavar="K",
                   help="cluster mode: a new store starts with K chains and a slot map splitting the 16,384 "
                   "hash slots between them; members register into one with --chain (docs/sharding.md)")
    c.add_argument("--requirepass", default=None, help="password admin clients must AUTH with")
    c.add_argument("--secret", default=None, help="cluster secret: catena's own processes authenticate with it "
                   "(AUTH catena <secret>) and sign membership datagrams; give every process the same one")
    c.add_argument("--secret-file", default=None)
    c.add_argument("--admin-password", default=None,
                   help="password of the user `admin` (AUTH admin PW), who may change views (MASTER.ADD/REMOVE); "
                   "without one, that needs the cluster secret (AUTH catena SECRET) when there is one")
    c.add_argument("--admin-password-file", default=None)
    _add_limit_flags(c)
    _add_address_flags(c, "this coordinator (with etcd: the leader's published address)")
    add_ops_flags(c)
    tls.add_flags(c)
    c.set_defaults(func=cmd_coordinator, required=("listen",))

    u = sub.add_parser("up", help="start a local cluster: a coordinator and N members on 127.0.0.1")
    u.add_argument("--members", type=int, default=3, help="members per chain")
    u.add_argument("--chains", type=int, default=1,
                   help="K > 1: cluster mode, K chains of --members each, the hash slots split between them")
    u.add_argument("--port", type=int, default=6369, help="coordinator port; members take the next ones")
    u.add_argument("--data-dir", default=None, help="default: a new temporary directory")
    u.add_argument("--requirepass", default=None,
                   help="a data password for every process (or CATENA_REQUIREPASS); handed over by environment")
    u.add_argument("--cluster-enabled", choices=("yes", "no"), default="no",
                   help="start the members in Redis Cluster mode (docs/sharding.md)")
    add_ops_flags(u, metrics=False)
    u.set_defaults(func=cmd_up)

    s = sub.add_parser("status", help="print chains, members, roles, epochs")
    s.add_argument("--coordinator", default="127.0.0.1:6369", type=_coordinator_address,
                   help="HOST:PORT[,HOST:PORT…] or etcd://HOST:PORT[,HOST:PORT]/PREFIX")
    s.add_argument("--password", default=None, help="the data password (--requirepass), or CATENA_PASSWORD")
    tls.add_flags(s, server=False)
    s.set_defaults(func=cmd_status)

    for name, helptext in (("reshard", "move N slots, or a range, from one chain to another (cluster mode)"),
                           ("rebalance", "move slots until every chain holds an even share (cluster mode)"),
                           ("drain", "move every slot of a chain to the others, then remove it (cluster mode)")):
        r = sub.add_parser(name, help=helptext)
        r.add_argument("--coordinator", default="127.0.0.1:6369", type=_coordinator_address,
                       help="HOST:PORT[,HOST:PORT…] or etcd://HOST:PORT[,HOST:PORT]/PREFIX")
        r.add_argument("--admin-password", default=None, help="the coordinator's admin password (AUTH admin)")
        r.add_argument("--admin-password-file", default=None)
        r.add_argument("--secret", default=None, help="or the cluster secret (AUTH catena)")
        r.add_argument("--secret-file", default=None)
        if name == "reshard":
            r.add_argument("--from", dest="source", type=int, required=True, metavar="CHAIN")
            r.add_argument("--to", dest="target", type=int, required=True, metavar="CHAIN")
            r.add_argument("--slots", type=int, default=None, metavar="N", help="how many (from the end of its ranges)")
            r.add_argument("--range", default=None, metavar="FIRST-LAST", help="or which")
        if name == "drain":
            r.add_argument("--chain", type=int, required=True, metavar="N", help="the chain to empty and remove")
        tls.add_flags(r, server=False)
        r.set_defaults(func=cmd_reshard, command=name)

    for name, helptext in (("get", "print a key's value"), ("set", "set a key"), ("del", "delete keys")):
        kv = sub.add_parser(name, help=helptext)
        kv.add_argument("key", nargs="+" if name == "del" else None)
        if name == "set":
            kv.add_argument("value")
        kv.add_argument("--coordinator", default="127.0.0.1:6369", type=_coordinator_address,
                        help="host:port[,host:port…] or etcd://HOST:PORT[,HOST:PORT]/PREFIX")
        kv.add_argument("--timeout-ms", type=int, default=5000)
        kv.add_argument("--password", default=None, help="the data password (--requirepass), or CATENA_PASSWORD")
        tls.add_flags(kv, server=False)
        kv.set_defaults(func=cmd_kv)

    from catena.chaos.cli import add_parsers as add_chaos

    add_chaos(sub)
    try:
        from catena.membership.cli import add_parsers
    except ImportError:
        add_parsers = None
    if add_parsers is not None:
        add_parsers(sub)
    for p in (m, c, u, s):
        p.add_argument("--config", default=None, help="TOML settings file")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    try:
        pre, _ = parser.parse_known_args(argv)
        sub = parser._subparsers._group_actions[0].choices[pre.command]
        apply_defaults(sub, pre.command, getattr(pre, "config", None))
        args = parser.parse_args(argv)
        for name in getattr(args, "required", ()):
            if getattr(args, name) is None:
                parser.error(f"{args.command}: --{name.replace('_', '-')} is required")
        listen = getattr(args, "listen", None)
        logs.configure(args.log_level, getattr(args, "log_format", "text"),
                       f"{args.command} {listen}" if listen else args.command)
        if secret_in_argv(argv):
            log.warning("the cluster secret was given with --secret, so `ps` shows it to every local user: "
                        "use --secret-file FILE (mode 0600) or CATENA_SECRET instead")
        return args.func(args) or 0
    except CatenaError as exc:
        print(f"catena: {exc}", file=sys.stderr)
        return 2
