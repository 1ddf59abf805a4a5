"""RESP codec: commands in (parsed by hiredis), replies out (RESP2 or RESP3).

Parsing is hiredis; this module adds what a server needs on top: limits checked on the
headers of a partial frame before its payload is buffered, inline commands, and clear
`RemoteProtocolError`s. Encoding maps Python values to replies:

    bytes/str -> bulk string      int -> integer        None -> null
    list/tuple -> array           dict -> map (RESP3) or flat array (RESP2)
    Status("OK") -> +OK           Error("ERR x") -> -ERR x
    NULL_ARRAY -> *-1 (RESP3: _)   Push([...]) -> a push frame (RESP3 >, RESP2 an array)
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import hiredis

from catena.errors import RemoteProtocolError

DEFAULT_MAX_BULK_LEN = 512 * 1024 * 1024  # like Redis's proto-max-bulk-len
DEFAULT_MAX_ARGS = 1024 * 1024
_HEADER_WINDOW = 64 * 1024  # bytes of a partial frame kept to check its headers
_INLINE_MAX = 64 * 1024  # like Redis's PROTO_INLINE_MAX_SIZE


@dataclass(frozen=True, slots=True)
class Status:
    """A simple-string reply such as +OK or +PONG."""

    text: str


@dataclass(frozen=True, slots=True)
class Error:
    """An error reply; `message` starts with its code (ERR, NOAUTH, MOVED, ...)."""

    message: str


@dataclass(frozen=True, slots=True)
class Encoded:
    """A reply already in RESP (a large one a shell built in slices, across event-loop turns)."""

    wire: bytes


@dataclass(frozen=True, slots=True)
class Push:
    """Out-of-band data for a client (pub/sub messages): `>` in RESP3, an array in RESP2."""

    items: tuple


class _NullArray:
    __slots__ = ()


OK = Status("OK")
PONG = Status("PONG")
NULL_ARRAY = _NullArray()  # a nil array: EXEC when a watched key changed
_OK_WIRE = b"+OK\r\n"
_BULKS = {bytes}  # the argument types of a command: bulk strings only


class CommandParser:
    """Turns a byte stream from a client into commands (lists of bytes)."""

    __slots__ = ("_reader", "_partial", "_pending", "_inline_line", "max_bulk_len", "max_args", "failed", "buffered")

    def __init__(self, max_bulk_len: int = DEFAULT_MAX_BULK_LEN, max_args: int = DEFAULT_MAX_ARGS):
        self._reader = hiredis.Reader()
        self._partial = b""  # the first bytes of the incomplete frame (to check its headers)
        self._pending = 0  # length of the incomplete frame so far
        self._inline_line = False  # `_partial` holds the start of an inline command
        self.failed: str | None = None  # set when the stream broke the protocol: no more commands
        self.buffered = 0  # bytes of the incomplete command held, as `feed` left it (what client-query-buffer-limit bounds)
        self.max_bulk_len = max_bulk_len
        self.max_args = max_args

    def feed(self, data: bytes) -> list[list[bytes]]:
        """Parse `data`; return the complete commands. On bad input raise RemoteProtocolError
        whose `commands` are the complete commands that came before the bad frame (a server
        answers them, then the error). The error is final: the stream cannot be resynchronised."""
        if self.failed:
            raise _error(self.failed, [])
        commands: list[list[bytes]] = []
        try:
            self._feed(data, commands)
        except RemoteProtocolError as exc:
            self.failed = str(exc)
            raise _error(self.failed, commands) from None
        finally:
            self.buffered = len(self._partial) if self._inline_line else self._pending
        return commands

    def _feed(self, data: bytes, commands: list) -> None:
        reader = self._reader
        if self._inline_line or (not self._pending and data[:1] != b"*"):
            return self._inline(data, commands)
        reader.feed(data)
        size = len(data)
        pending = self._pending + size
        try:
            while True:
                # hiredis does not say where a frame starts: complete commands are canonical
                # RESP, so walking each one (which also checks what hiredis leaves unchecked)
                # tells where the next begins.
                start = size - pending
                if start == size:  # all of it was whole commands
                    break
                if start >= 0 and data[start] != 42:  # not '*'
                    # A blank line or an inline command between frames (redis-cli --pipe sends
                    # one): Redis takes it; so do we, with a fresh reader for what follows.
                    self._reader, self._pending, self._partial = hiredis.Reader(), 0, b""
                    return self._inline(data[start:], commands)
                if start < 0 or not 0 <= data.find(b"\r\n", start, start + 8) - start < 7:
                    self._guard(data, start)  # (up to 5 digits of count: below any limit, nothing to check)
                if (cmd := reader.gets()) is False:
                    break
                if type(cmd) is not list or not cmd:
                    raise RemoteProtocolError("Protocol error: expected an array of bulk strings")
                if start >= 0:  # (the walk also sees that each element is a bulk string)
                    pending = size - _walk(data, start, cmd)
                elif len(self._partial) + start >= 0 and len(self._partial) < _HEADER_WINDOW:
                    pending = size - (_walk(self._partial[:-start] + data, 0, cmd) + start)
                else:  # began long ago: too long to have kept; its size still tells
                    if {*map(type, cmd)} != _BULKS:
                        raise RemoteProtocolError("Protocol error: expected an array of bulk strings")
                    pending -= _wire_size(cmd)
                if pending < 0:
                    raise RemoteProtocolError("Protocol error: expected '$', got something else")
                commands.append(cmd)
        except (hiredis.ProtocolError, TypeError, ValueError) as exc:  # (a RESP3 map as a map key: TypeError)
            raise RemoteProtocolError(f"Protocol error: {exc}") from None
        if pending:
            self._check_partial(data, pending)
        elif self._pending:
            self._partial = b""
        self._pending = pending

    def _guard(self, data: bytes, start: int) -> None:
        """hiredis allocates an array as soon as it reads its header: check the argument count
        of the frame it parses next (it starts at `start` in `data`, or in `_partial` before).
        `_feed` skips it for a count of up to 5 digits: below any sane limit."""
        if start >= 0:
            head = data[start:start + 16]
        else:
            head = (self._partial + data)[:16]
        if head[:1] == b"*":
            end = head.find(b"\r\n")
            digits = head[1:end] if end >= 0 else head[1:]
            if len(digits) > len(str(self.max_args)) or (end > 1 and digits.isdigit() and int(digits) > self.max_args):
                raise RemoteProtocolError("Protocol error: invalid multibulk length")

    def _check_partial(self, data: bytes, pending: int) -> None:
        """Validate the headers of the incomplete frame before more of it is buffered."""
        if pending <= len(data):
            self._partial = data[len(data) - pending :][:_HEADER_WINDOW]
        elif len(self._partial) < _HEADER_WINDOW:
            self._partial = (self._partial + data)[:_HEADER_WINDOW]
        self._check_headers(self._partial)
        if pending > self.max_bulk_len + _HEADER_WINDOW:
            raise RemoteProtocolError("Protocol error: too big request")

    def _check_headers(self, buf: bytes) -> None:
        """The lengths announced in the kept start of the incomplete frame."""
        if buf[:1] != b"*":
            raise RemoteProtocolError("Protocol error: expected '*', got something else")
        end = buf.find(b"\r\n")
        if end < 0:
            return
        nargs = _length(buf, 1, end, "multibulk")
        if nargs > self.max_args:
            raise RemoteProtocolError("Protocol error: invalid multibulk length")
        pos = end + 2
        for _ in range(nargs):
            end = buf.find(b"\r\n", pos)
            if end < 0:
                return
            if buf[pos : pos + 1] != b"$":
                raise RemoteProtocolError("Protocol error: expected '$'")
            size = _length(buf, pos + 1, end, "bulk")
            if size > self.max_bulk_len:
                raise RemoteProtocolError("Protocol error: invalid bulk length")
            pos = end + 2 + size + 2

    def _inline(self, data: bytes, commands: list) -> None:
        """Inline commands (`PING\\r\\n` typed into a terminal), as Redis accepts them."""
        buf = self._partial + data
        while buf and buf[:1] != b"*":
            end = buf.find(b"\n")
            if end < 0:
                if len(buf) > _INLINE_MAX:
                    raise RemoteProtocolError("Protocol error: too big inline request")
                self._partial, self._inline_line = buf, True
                return
            words = buf[:end].split()
            buf = buf[end + 1 :]
            if words:
                commands.append(words)
        self._partial, self._inline_line = b"", False
        if buf:
            self._feed(buf, commands)


def _error(message: str, commands: list) -> RemoteProtocolError:
    exc = RemoteProtocolError(message)
    exc.commands = commands
    return exc


def _walk(buf: bytes, pos: int, cmd: list[bytes]) -> int:
    """Where the canonical frame of `cmd` that starts at `pos` in `buf` ends, checking what
    hiredis does not: each element is a '$' bulk followed by CRLF (hiredis skips those two
    bytes unchecked, so a bulk longer than announced would be cut and the rest taken as the
    next command). So every element is a bulk string: bytes, not a null bulk (`$-1`)."""
    n = len(cmd)
    pos += 4 if n < 10 else 3 + len(str(n))
    try:
        for arg in cmd:
            if buf[pos] != 36:  # '$'
                raise RemoteProtocolError("Protocol error: expected '$', got something else")
            k = len(arg)
            pos += (6 if k < 10 else 7 if k < 100 else 5 + len(str(k))) + k
            if buf[pos - 2] != 13 or buf[pos - 1] != 10:
                raise RemoteProtocolError("Protocol error: bulk string longer than its announced length")
    except IndexError:
        raise RemoteProtocolError("Protocol error: expected '$', got something else") from None
    except TypeError:  # len(None): a null bulk
        raise RemoteProtocolError("Protocol error: expected an array of bulk strings") from None
    return pos


def _wire_size(command: list[bytes]) -> int:
    """Bytes of `command` as canonical RESP (per distinct argument length: a million keys of a
    few lengths cost one C-level count, not a Python loop)."""
    counts = Counter(map(len, command))
    return 3 + len(str(len(command))) + sum(n * (k + 5 + len(str(k))) for k, n in counts.items())


def _length(buf: bytes, start: int, end: int, what: str) -> int:
    try:
        return int(buf[start:end])
    except ValueError:
        raise RemoteProtocolError(f"Protocol error: invalid {what} length") from None


def encode(value, resp3: bool = False) -> bytes:
    """Encode one reply."""
    t = type(value)  # the replies nearly every command gets, without building a list
    if t is bytes:
        return b"$%d\r\n%s\r\n" % (len(value), value)
    if value is OK:
        return _OK_WIRE
    if t is int:
        return b":%d\r\n" % value
    if value is None:
        return b"_\r\n" if resp3 else b"$-1\r\n"
    out: list[bytes] = []
    _encode(value, resp3, out)
    return b"".join(out)


def _encode(value, resp3: bool, out: list[bytes]) -> None:
    t = type(value)
    if t is bytes:
        out.append(b"$%d\r\n%s\r\n" % (len(value), value))
    elif t is Status:
        out.append(b"+%s\r\n" % value.text.encode())
    elif t is int:
        out.append(b":%d\r\n" % value)
    elif value is None:
        out.append(b"_\r\n" if resp3 else b"$-1\r\n")
    elif t is str:
        _encode(value.encode(), resp3, out)
    elif t is list or t is tuple:
        out.append(b"*%d\r\n" % len(value))
        for item in value:
            _encode(item, resp3, out)
    elif t is dict:
        out.append((b"%%%d\r\n" if resp3 else b"*%d\r\n") % (len(value) if resp3 else 2 * len(value)))
        for k, v in value.items():
            _encode(k, resp3, out)
            _encode(v, resp3, out)
    elif t is Error:
        out.append(b"-%s\r\n" % value.message.replace("\r", " ").replace("\n", " ").encode())
    elif t is bool:
        out.append((b"#t\r\n" if value else b"#f\r\n") if resp3 else (b":1\r\n" if value else b":0\r\n"))
    elif t is float:  # as Redis 7.0 prints doubles: "%.17g" ("inf", "-inf")
        out.append(b",%.17g\r\n" % value if resp3 else _bulk(b"%.17g" % value))
    elif t is Encoded:
        out.append(value.wire)
    elif t is Push:
        out.append(b">%d\r\n" % len(value.items) if resp3 else b"*%d\r\n" % len(value.items))
        for item in value.items:
            _encode(item, resp3, out)
    elif t is _NullArray:
        out.append(b"_\r\n" if resp3 else b"*-1\r\n")
    else:
        raise TypeError(f"cannot encode {t.__name__} as RESP")


def _bulk(b: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(b), b)
