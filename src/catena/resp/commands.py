"""Command table: connection-level commands every catena process answers, plus registration.

Members, coordinators and membership agents each register their own commands on a
`CommandTable`; the connection commands (PING, ECHO, HELLO, AUTH, SELECT, QUIT, RESET, ACL
WHOAMI; COMMAND, CONFIG, CLIENT and FUNCTION come from `catena.resp.introspection`), MULTI's
queuing (a member registers MULTI/EXEC themselves) and the error shapes (unknown command,
NOAUTH, NOPERM, WRONGPASS, arity) live here once.

Roles. Every command is registered for one of three kinds of caller:
  DATA      data clients (user `default`: no password, or `--requirepass`), and everyone below;
  INTERNAL  catena's own processes: user `catena` with the cluster secret (peer links, views,
            probes, revocations, registration);
  ADMIN     operators: user `admin` with the admin password, or user `catena`.
Without a cluster secret there is no internal user, so INTERNAL commands are open to any
authenticated caller (a loopback-only setup: protected mode refuses anything else); without an
admin password, ADMIN commands need the cluster secret when there is one, else are open too.
"""

from __future__ import annotations

import hmac
import time
from typing import Callable

from catena.resp.codec import OK, PONG, Error, Status
from catena.resp.numbers import INT64_MAX, INT64_MIN, NOT_AN_INTEGER, UINT64_MAX, parse_cursor, parse_int  # noqa: F401 (re-exported)

Handler = Callable  # (client, args: list[bytes]) -> reply | Future | Takeover


REDIS_VERSION = "7.0.15"  # the Redis whose commands and replies catena follows: HELLO and INFO say so
DATA, INTERNAL, ADMIN = "data", "internal", "admin"
QUEUED = Status("QUEUED")
# run at once even inside MULTI (everything else is queued until EXEC)
TRANSACTION_CONTROL = frozenset((b"MULTI", b"EXEC", b"DISCARD", b"WATCH", b"QUIT", b"RESET"))


def exec_request(args) -> bool:
    """`CATENA.REQ id n [low] EXEC`: EXEC under a request id."""
    return (args[0].upper() == b"CATENA.REQ" and args[-1].upper() == b"EXEC"
            and (len(args) == 4 or (len(args) == 5 and args[3].isdigit())))


def _controls(args) -> bool:
    """Runs at once inside MULTI: a transaction command, or EXEC under a request id."""
    return args[0].upper() in TRANSACTION_CONTROL or exec_request(args)


WRONGPASS = Error("WRONGPASS invalid username-password pair or user is disabled.")


def wrong_args(name: bytes) -> Error:
    return Error(f"ERR wrong number of arguments for '{name.decode(errors='replace').lower()}' command")


class CommandTable:
    """Maps command names to handlers and enforces authentication."""

    def __init__(self, password: str | None = None, server_name: str = "catena", role: str = "master",
                 cluster_secret: str | None = None, admin_password: str | None = None):
        self.password = password
        self.cluster_secret = cluster_secret  # user `catena`: catena's own processes
        self.admin_password = admin_password  # user `admin`: operators
        self.server_name = server_name
        self.role = role
        self.handlers: dict[bytes, tuple[Handler, int, str]] = {}
        self.ordered: set[bytes] = set()  # run only once the connection's earlier commands are answered
        self.on_close: list[Callable] = []  # hook(client) when a connection ends
        self.on_reset: list[Callable] = []  # hook(client) on RESET
        self.guard: Callable | None = None  # guard(client, name) -> Error refusing a subscribed client's command, or None
        self.clients: Callable | None = None  # () -> every connection's Client (set by the server)
        self.settings: dict[str, str] = {}  # CONFIG GET's read-only values of this process
        self.calls: dict[bytes, list[int]] = {}  # name -> [calls, failed calls] (INFO commandstats)
        for name, fn, arity in (
            (b"PING", self._ping, -1),
            (b"ECHO", self._echo, 2),
            (b"SELECT", self._select, 2),
            (b"QUIT", self._quit, -1),
            (b"RESET", self._reset, 1),
            (b"ACL", self._acl, -2),
        ):
            self.register(name, fn, arity)
        from catena.resp.introspection import Introspection  # it builds on this module
        Introspection(self)

    def register(self, name: bytes, handler: Handler, arity: int, ordered: bool = False, role: str = DATA) -> None:
        """arity > 0: exactly that many words (name included); arity < 0: at least -arity.
        `ordered`: a read that must see the effects of the connection's earlier commands.
        `role`: who may run it (DATA, INTERNAL or ADMIN; see the module's docstring)."""
        self.handlers[name.upper()] = (handler, arity, role)
        if ordered:
            self.ordered.add(name.upper())

    def permitted(self, user: str, role: str) -> bool:
        """May an authenticated `user` run commands of `role`?"""
        if role == DATA or user == "catena":
            return True
        if role == INTERNAL:
            return self.cluster_secret is None
        return user == "admin" or (self.admin_password is None and self.cluster_secret is None)

    def dispatch(self, client, args: list[bytes]):
        name = args[0].upper()
        client.cmd, client.last_seen = name, time.monotonic()
        entry = self.handlers.get(name)
        reply = self._dispatch(client, args, name, entry)
        if entry is not None:
            counts = self.calls.get(name)
            if counts is None:
                counts = self.calls[name] = [0, 0]
            counts[0] += 1
            if type(reply) is Error:
                counts[1] += 1
        if client.multi is not None and type(reply) is Error and not _controls(args):
            client.multi_failed = True  # a command that cannot be queued: EXEC aborts
        return reply

    def _dispatch(self, client, args: list[bytes], name: bytes, entry):
        if name == b"AUTH":
            return self._auth(client, args)
        if name == b"HELLO":
            return self._hello(client, args)
        if not client.authenticated:
            return Error("NOAUTH Authentication required.")
        if entry is None:
            shown = " ".join(repr(a.decode(errors="replace")) for a in args[1:4])
            return Error(f"ERR unknown command '{args[0].decode(errors='replace')}', with args beginning with: {shown}")
        handler, arity, role = entry
        if role != DATA and not self.permitted(client.user, role):
            return Error(f"NOPERM User {client.user} has no permissions to run the "
                         f"'{name.decode(errors='replace').lower()}' command")
        n = len(args)
        if (arity > 0 and n != arity) or (arity < 0 and n < -arity):
            return wrong_args(name)
        if (client.channels or client.patterns) and self.guard is not None and \
                (refused := self.guard(client, name)) is not None:
            return refused
        if client.multi is not None and not _controls(args):
            client.multi.append(args)
            return QUEUED
        try:
            return handler(client, args)
        except ValueError as exc:
            return Error(f"ERR {exc}")

    # -- authentication and protocol negotiation --------------------------------------------

    def _check_password(self, client, user: bytes, password: bytes):
        """Log the connection in as `user`; a failed attempt keeps its identity (as Redis does)."""
        expected = {b"catena": self.cluster_secret, b"admin": self.admin_password,
                    b"default": self.password}.get(user)
        if user == b"default" and expected is None:
            return Error("ERR AUTH <password> called without any password configured for the default user. "
                         "Are you sure your configuration is correct?")
        if expected is None or not hmac.compare_digest(password, expected.encode()):
            return WRONGPASS
        client.authenticated, client.user = True, user.decode()
        return None

    def _auth(self, client, args):
        if len(args) not in (2, 3):
            return wrong_args(b"AUTH")
        user, password = (b"default", args[1]) if len(args) == 2 else (args[1], args[2])
        return self._check_password(client, user, password) or OK

    def _hello(self, client, args):
        version = 2
        rest = args[1:]
        if rest:
            try:
                version = parse_int(rest[0])
            except ValueError:
                return Error("ERR Protocol version is not an integer or out of range")
            if version not in (2, 3):
                return Error("NOPROTO unsupported protocol version")
            rest = rest[1:]
        while rest:
            opt = rest[0].upper()
            if opt == b"AUTH" and len(rest) >= 3:
                err = self._check_password(client, rest[1], rest[2])
                if err:
                    return err
                rest = rest[3:]
            elif opt == b"SETNAME" and len(rest) >= 2:
                client.name = rest[1]
                rest = rest[2:]
            else:
                return Error(f"ERR Syntax error in HELLO option '{opt.decode(errors='replace')}'")
        if not client.authenticated:
            return Error("NOAUTH HELLO must be called with the client already authenticated, "
                         "otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate "
                         "the client and select the RESP protocol version at the same time")
        client.resp3 = version == 3
        return {
            "server": self.server_name, "version": REDIS_VERSION, "proto": version,
            "id": client.id, "mode": "standalone", "role": self.role, "modules": [],
        }

    # -- connection commands -----------------------------------------------------------------

    def _reset(self, client, args):
        """Back to a fresh connection's state: RESP2, no name, no transaction, watches or
        subscriptions, logged in as `default` if that needs no password."""
        for hook in self.on_reset:
            hook(client)
        client.resp3, client.name = False, b""
        client.reply_off, client.reply_skip = False, 0
        client.authenticated, client.user = self.password is None, "default"
        return Status("RESET")

    def _quit(self, client, args):
        """OK, then the connection closes: commands pipelined after it are not run."""
        if client.close is not None:
            client.close()
        return OK

    def _ping(self, client, args):
        if len(args) > 2:
            return wrong_args(b"PING")
        if (client.channels or client.patterns) and not client.resp3:  # subscribed mode
            return [b"pong", args[1] if len(args) == 2 else b""]
        return args[1] if len(args) == 2 else PONG

    def _acl(self, client, args):
        if args[1].upper() == b"WHOAMI" and len(args) == 2:
            return client.user
        return Error(f"ERR unknown subcommand '{args[1].decode(errors='replace')}'. Try ACL WHOAMI.")

    def _echo(self, client, args):
        return args[1]

    def _select(self, client, args):
        db = parse_int(args[1])
        if not -(2**31) <= db < 2**31:
            return Error("ERR value is out of range, value must between -2147483648 and 2147483647")
        return OK if db == 0 else Error("ERR DB index is out of range")
