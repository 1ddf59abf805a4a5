"""Introspection every catena process answers: COMMAND, CONFIG, CLIENT, and FUNCTION / EVAL /
SCRIPT, which catena does not support (FUNCTION FLUSH succeeds: there are no functions).

CONFIG GET answers a documented set of parameters (`PARAMETERS`, docs/protocol.md). Those that
tune only Redis's internal encodings or features catena has none of are accepted by CONFIG SET
and reported back, and change nothing; the rest are read-only here (catena takes its settings
from flags, a TOML file or CATENA_* variables).
"""

from __future__ import annotations

import fnmatch
import time

from catena.resp import command_info
from catena.resp.codec import OK, Error, Status
from catena.resp.numbers import parse_int

# settable, and without effect on catena: Redis's encodings, and features catena lacks
TUNABLES = {
    "hash-max-listpack-entries": "128", "hash-max-listpack-value": "64", "hash-max-ziplist-entries": "128",
    "hash-max-ziplist-value": "64", "set-max-intset-entries": "512", "zset-max-listpack-entries": "128",
    "zset-max-listpack-value": "64", "zset-max-ziplist-entries": "128", "zset-max-ziplist-value": "64",
    "list-max-listpack-size": "-2", "list-max-ziplist-size": "-2", "list-compress-depth": "0",
    "stream-node-max-bytes": "4096", "stream-node-max-entries": "100", "activerehashing": "yes",
    "lazyfree-lazy-eviction": "no", "lazyfree-lazy-expire": "no", "lazyfree-lazy-server-del": "no",
    "lazyfree-lazy-user-del": "no", "lazyfree-lazy-user-flush": "no", "latency-tracking": "yes",
    "latency-tracking-info-percentiles": "50 99 99.9", "slowlog-log-slower-than": "10000", "slowlog-max-len": "128",
    "hz": "10", "notify-keyspace-events": "", "lua-time-limit": "5000", "busy-reply-threshold": "5000",
    "tracking-table-max-keys": "1000000", "active-expire-effort": "1", "close-on-replica-write": "yes",
}
# read-only here; the server and the process fill in theirs (`CommandTable.settings`)
FIXED = {
    "databases": "1", "maxmemory": "0", "maxmemory-policy": "noeviction", "save": "", "appendonly": "yes",
    "appendfsync": "everysec", "timeout": "0", "tcp-keepalive": "300", "maxclients": "10000",
    "proto-max-bulk-len": "536870912", "cluster-enabled": "no", "io-threads": "1", "port": "0",
}


def _fixed(table) -> dict[str, str]:
    return {**FIXED, **table.settings}


class Introspection:
    def __init__(self, table):
        self.table = table
        self.tuned = dict(TUNABLES)
        for name, fn, arity in ((b"COMMAND", self.command, -1), (b"CONFIG", self.config, -2),
                                (b"CLIENT", self.client, -2), (b"FUNCTION", self.function, -2)):
            table.register(name, fn, arity)
        for name in (b"EVAL", b"EVALSHA", b"EVAL_RO", b"EVALSHA_RO", b"FCALL", b"FCALL_RO"):
            table.register(name, self.unsupported, -3)
        table.register(b"SCRIPT", self.unsupported, -2)

    # -- COMMAND ---------------------------------------------------------------------------------

    def _registered(self) -> dict[bytes, command_info.Info]:
        out = {name: command_info.info(name, arity) for name, (_, arity, _) in self.table.handlers.items()}
        out[b"AUTH"] = command_info.info(b"AUTH", -2)  # answered before the handler table
        out[b"HELLO"] = command_info.info(b"HELLO", -1)
        return out

    @staticmethod
    def _reply(i: command_info.Info) -> list:
        return [i.name.encode(), i.arity, [Status(f) for f in i.flags], i.first, i.last, i.step,
                [Status(c) for c in command_info.categories(i)], [], [], []]

    def command(self, client, args):
        registered = self._registered()
        if len(args) == 1:
            return [self._reply(i) for i in registered.values()]
        sub = args[1].upper()
        if sub == b"COUNT" and len(args) == 2:
            return len(registered)
        if sub == b"LIST":
            return [i.name.encode() for i in registered.values()]
        if sub == b"INFO":
            wanted = args[2:] or list(registered)
            return [self._reply(registered[n.upper()]) if n.upper() in registered else None for n in wanted]
        if sub == b"DOCS":
            wanted = [n.upper() for n in args[2:]] or list(registered)
            docs = {}
            for n in wanted:
                if n in registered:
                    i = registered[n]
                    docs[i.name.encode()] = {b"summary": f"{i.name.upper()} ({i.group})".encode(),
                                             b"since": i.since.encode(), b"group": i.group.encode()}
            return docs
        if sub == b"GETKEYS" and len(args) >= 4:
            return self._getkeys(registered, args[2:])
        if sub == b"GETKEYS":
            return Error("ERR wrong number of arguments for 'command|getkeys' command")
        return Error(f"ERR unknown subcommand or wrong number of arguments for 'COMMAND|{sub.decode(errors='replace')}'")

    @staticmethod
    def _getkeys(registered, command):
        name = command[0].upper()
        i = registered.get(name)
        if i is None:
            return Error("ERR Invalid command specified")
        if (i.arity > 0 and len(command) != i.arity) or (i.arity < 0 and len(command) < -i.arity):
            return Error("ERR Invalid number of arguments specified for command")
        found = command_info.keys(name, command)
        if found is None:
            return Error("ERR Invalid arguments specified for command")
        return found or Error("ERR The command has no key arguments")

    # -- CONFIG ----------------------------------------------------------------------------------

    def _parameters(self) -> dict[str, str]:
        return {**self.tuned, **_fixed(self.table)}

    def config(self, client, args):
        sub = args[1].upper()
        if sub == b"GET" and len(args) >= 3:
            params = self._parameters()
            out = {}
            for pattern in args[2:]:
                pattern = pattern.decode(errors="replace").lower()
                for name in sorted(params):
                    if fnmatch.fnmatchcase(name, pattern):
                        out[name.encode()] = params[name].encode()
            return out
        if sub == b"SET" and len(args) >= 4 and len(args) % 2 == 0:
            pairs = [(args[i].decode(errors="replace").lower(), args[i + 1]) for i in range(2, len(args), 2)]
            fixed = _fixed(self.table)
            for name, value in pairs:
                if name not in self.tuned and not (name in fixed and fixed[name].encode() == value):  # as it is: OK
                    if name in fixed:
                        return Error(f"ERR CONFIG SET failed (possibly related to argument '{name}') - catena takes "
                                     "this setting from its flags, a TOML file or CATENA_* variables")
                    return Error(f"ERR Unknown option or number of arguments for CONFIG SET - '{name}'")
            for name, value in pairs:
                if name in self.tuned:
                    self.tuned[name] = value.decode(errors="replace")
            return OK
        if sub == b"RESETSTAT" and len(args) == 2:
            return OK
        if sub == b"REWRITE" and len(args) == 2:
            return Error("ERR The server is running without a config file")
        return Error(f"ERR unknown subcommand or wrong number of arguments for 'CONFIG|{sub.decode(errors='replace')}'")

    # -- CLIENT ----------------------------------------------------------------------------------

    def client(self, client, args):
        sub = args[1].upper()
        n = len(args)
        if sub == b"ID" and n == 2:
            return client.id
        if sub == b"GETNAME" and n == 2:
            return client.name or None
        if sub == b"SETNAME" and n == 3:
            if any(b <= 32 or b >= 127 for b in args[2]):
                return Error("ERR Client names cannot contain spaces, newlines or special characters.")
            client.name = args[2]
            return OK
        if sub == b"SETINFO" and n == 4:
            client.info[args[2].lower()] = args[3]
            return OK
        if sub == b"INFO" and n == 2:
            return describe(client).encode() + b"\n"
        if sub == b"LIST":
            return self._list(args)
        if sub == b"KILL" and n >= 3:
            return self._kill(client, args)
        if sub in (b"NO-EVICT", b"NO-TOUCH") and n == 3:
            if args[2].upper() not in (b"ON", b"OFF"):
                return Error("ERR syntax error")
            return OK
        if sub == b"REPLY" and n == 3 and args[2].upper() in (b"ON", b"OFF", b"SKIP"):
            mode = args[2].upper()
            client.reply_off = mode == b"OFF"
            client.reply_skip = 2 if mode == b"SKIP" else 0  # this reply, then the next command's
            return OK
        return Error(f"ERR unknown subcommand or wrong number of arguments for 'CLIENT|{sub.decode(errors='replace')}'")

    def _clients(self) -> list:
        return self.table.clients() if self.table.clients else []

    def _list(self, args):
        clients = self._clients()
        if len(args) > 2:
            if args[2].upper() != b"ID" or len(args) < 4:
                return Error("ERR syntax error")
            try:
                ids = {parse_int(a) for a in args[3:]}
            except ValueError:
                return Error("ERR Invalid client ID")
            clients = [c for c in clients if c.id in ids]
        return "".join(describe(c) + "\n" for c in clients).encode()

    def _kill(self, me, args):
        clients = self._clients()
        if len(args) == 3:  # the old form: CLIENT KILL addr:port
            victims = [c for c in clients if c.addr == args[2].decode(errors="replace")]
            if not victims:
                return Error("ERR No such client")
            _close(victims)
            return OK
        if len(args) % 2:
            return Error("ERR syntax error")
        skipme, tests = True, []
        for i in range(2, len(args), 2):
            field, value = args[i].upper(), args[i + 1]
            if field == b"ID":
                try:
                    wanted = parse_int(value)
                except ValueError:
                    return Error("ERR client-id should be greater than 0")
                tests.append(lambda c, w=wanted: c.id == w)
            elif field in (b"ADDR", b"LADDR"):
                tests.append(lambda c, w=value.decode(errors="replace"): c.addr == w)
            elif field == b"USER":
                tests.append(lambda c, w=value.decode(errors="replace"): c.user == w)
            elif field == b"SKIPME":
                if value.upper() not in (b"YES", b"NO"):
                    return Error("ERR syntax error")
                skipme = value.upper() == b"YES"
            elif field == b"TYPE":
                kind = value.lower()
                if kind not in (b"normal", b"pubsub", b"master", b"replica", b"slave"):
                    return Error(f"ERR Unknown client type '{kind.decode(errors='replace')}'")
                tests.append(lambda c, k=kind: (b"pubsub" if (c.channels or c.patterns) else b"normal") == k)
            else:
                return Error("ERR syntax error")
        victims = [c for c in clients if all(t(c) for t in tests) and not (skipme and c is me)]
        _close(victims)
        return len(victims)

    # -- FUNCTION, EVAL, SCRIPT ------------------------------------------------------------------

    def function(self, client, args):
        sub = args[1].upper()
        if sub == b"FLUSH" and (len(args) == 2 or (len(args) == 3 and args[2].upper() in (b"SYNC", b"ASYNC"))):
            return OK
        if sub == b"LIST":
            return []
        return Error(f"ERR catena does not support functions (FUNCTION {sub.decode(errors='replace')}): "
                     "there is no scripting engine")

    def unsupported(self, client, args):
        return Error(f"ERR catena does not support Lua scripts or functions "
                     f"({args[0].decode(errors='replace').upper()}): there is no scripting engine")


def _close(clients) -> None:
    for c in clients:
        if c.close is not None:
            c.close()


def describe(c) -> str:
    """One line of CLIENT LIST / CLIENT INFO, in Redis's fields."""
    now = time.monotonic()
    multi = -1 if c.multi is None else len(c.multi)
    flags = ("P" if (c.channels or c.patterns) else "") + ("x" if c.multi is not None else "") or "N"
    return (f"id={c.id} addr={c.addr} laddr={c.laddr} fd=-1 name={c.name.decode(errors='replace')} "
            f"age={int(now - c.created)} idle={int(now - c.last_seen)} flags={flags} db=0 "
            f"sub={len(c.channels)} psub={len(c.patterns)} ssub=0 multi={multi} qbuf=0 qbuf-free=0 argv-mem=0 "
            f"multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem=0 tot-mem=0 events=r cmd={c.cmd.decode(errors='replace').lower()} user={c.user} "
            f"redir=-1 resp={3 if c.resp3 else 2}")
