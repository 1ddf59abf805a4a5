"""Coordinator addresses (DESIGN.md section 5), and the errors by which a coordinator that does
not lead redirects its caller:

- `host:port[,host:port…]`: the coordinators themselves. Ask any; a coordinator that does not
  lead answers a leader-only command with `-NOTLEADER host:port` (the leader's address) or, while
  no leader is known, `-TRYAGAIN …`. A single address of a coordinator with the embedded store
  is the common case: it always leads.
- `etcd://host:port[,host:port…]/prefix`: the etcd cluster the coordinators share. The leader's
  address is the value of `<prefix>/leader`.

`parse()` rejects anything else at once, naming the input and what it expected.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from catena.errors import CatenaError

NOTLEADER = "NOTLEADER"
TRYAGAIN = "TRYAGAIN"
EXPECTED = "expected host:port[,host:port...] or etcd://host:port[,host:port...]/prefix"


class AddressError(CatenaError, ValueError):
    """A coordinator address that cannot be used."""


@dataclass(frozen=True)
class StaticAddress:
    addrs: tuple[str, ...]

    def __str__(self) -> str:
        return ",".join(self.addrs)


@dataclass(frozen=True)
class EtcdAddress:
    endpoints: tuple[str, ...]
    prefix: str  # "/a/b": no trailing slash

    @property
    def leader_key(self) -> bytes:
        return f"{self.prefix}/leader".encode()

    def part_key(self, name: str) -> bytes:
        """The key of a part of the coordinator's state (layout.py)."""
        return f"{self.prefix}/{name}".encode()

    def part_name(self, key: bytes) -> str | None:
        """The part a key under the prefix holds (None: not one of catena's part names)."""
        name = key.decode(errors="replace")[len(self.prefix) + 1:]
        kind, _, rest = name.partition("/")
        if name in ("state", "cluster", "slots") or kind in ("sessions", "moves", "chains") and rest:
            return name
        return None

    @property
    def range_prefix(self) -> bytes:
        return f"{self.prefix}/".encode()

    def __str__(self) -> str:
        return f"etcd://{','.join(self.endpoints)}{self.prefix}"


def _host_port(text: str, whole: str) -> str:
    host, sep, port = text.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536 or any(c in host for c in "/ "):
        raise AddressError(f"bad coordinator address {whole!r}: {text.strip()!r} is not host:port ({EXPECTED})")
    return f"{host}:{int(port)}"


def parse(text: str) -> StaticAddress | EtcdAddress:
    """`host:port,…` or `etcd://host:port,…/prefix`; AddressError for anything else."""
    if not isinstance(text, str) or not text.strip():
        raise AddressError(f"empty coordinator address ({EXPECTED})")
    text = text.strip()
    scheme, sep, rest = text.partition("://")
    if not sep:
        return StaticAddress(tuple(_host_port(part, text) for part in text.split(",")))
    if scheme.lower() != "etcd":
        raise AddressError(f"bad coordinator address {text!r}: unknown scheme {scheme + '://'!r} ({EXPECTED})")
    hosts, slash, prefix = rest.partition("/")
    prefix = "/" + prefix.strip("/")
    if not slash or prefix == "/":
        raise AddressError(f"bad coordinator address {text!r}: an etcd address needs a key prefix, "
                           "e.g. etcd://127.0.0.1:2379/catena/prod")
    if not hosts:
        raise AddressError(f"bad coordinator address {text!r}: no etcd endpoint ({EXPECTED})")
    if importlib.util.find_spec("aetcd") is None:
        raise AddressError(f"{text}: etcd addresses need the aetcd package, which is not installed "
                           "(pip install 'catena[etcd]')")
    return EtcdAddress(tuple(_host_port(part, text) for part in hosts.split(",")), prefix)


def notleader_error(leader: str | None) -> str:
    """The error a coordinator that does not lead answers with (without the leading '-')."""
    if leader:
        return f"{NOTLEADER} {leader}"
    return f"{TRYAGAIN} no coordinator leads right now (election in progress); retry"


def redirect_of(message: str) -> tuple[bool, str | None]:
    """(is a redirect, leader address or None) for an error reply's text."""
    words = message.split()
    if words and words[0] == NOTLEADER:
        return True, words[1] if len(words) > 1 else None
    if words and words[0] == TRYAGAIN:
        return True, None
    return False, None
