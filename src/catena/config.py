"""Settings: flags first, then `CATENA_*` environment variables, then a TOML file, then defaults.

A TOML file (`--config FILE` or `CATENA_CONFIG`) holds one table per command:

    [member]
    listen = "127.0.0.1:6370"
    fsync = "always"

Environment variables name the flag in capitals: `--heartbeat-interval-ms` is
`CATENA_HEARTBEAT_INTERVAL_MS`. Durations carry their unit in the name.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import tomllib

from catena.errors import ConfigError


def apply_defaults(parser: argparse.ArgumentParser, command: str, config_path: str | None) -> None:
    """Set `parser`'s defaults from the environment and the TOML file (flags still win)."""
    table: dict = {}
    path = config_path or os.environ.get("CATENA_CONFIG")
    if path:
        try:
            with open(path, "rb") as f:
                table = tomllib.load(f).get(command, {})
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read config file {path}: {exc}") from None
    for action in parser._actions:
        if action.dest in ("help", "func", "config"):
            continue
        env = os.environ.get("CATENA_" + action.dest.upper())
        raw = env if env is not None else table.get(action.dest, table.get(action.dest.replace("_", "-")))
        if raw is None:
            continue
        if action.type is not None and isinstance(raw, str):
            try:
                raw = action.type(raw)
            except (TypeError, ValueError):
                raise ConfigError(f"bad value {raw!r} for {action.dest}") from None
        if action.choices is not None and raw not in action.choices:
            raise ConfigError(f"bad value {raw!r} for {action.dest}: choose from {', '.join(map(str, action.choices))}")
        parser.set_defaults(**{action.dest: raw})


def read_secret(value: str | None, file: str | None) -> str | None:
    """A secret from a flag/env value or a file (first line); never logged."""
    if file:
        try:
            with open(file) as f:
                return f.readline().strip() or None
        except OSError as exc:
            raise ConfigError(f"cannot read secret file {file}: {exc}") from None
    return value


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything, so count it as reachable


def protected_mode(who: str, listen: str, password: str | None, secret: str | bytes | None) -> None:
    """Refuse to listen beyond loopback with neither a client password nor a cluster secret
    (Redis's protected mode): anyone who reaches the port could use it, internal plane included."""
    host = listen.rpartition(":")[0]
    if password or secret or _loopback(host):
        return
    raise ConfigError(
        f"{who}: refusing to listen on {listen} with neither --requirepass nor a cluster secret: anyone who "
        f"can reach that address could read and change the data and the chain. Give every catena process the "
        f"same secret (--secret-file FILE or CATENA_SECRET) and clients a password (--requirepass), or listen "
        f"on 127.0.0.1")


def secret_in_argv(argv: list[str]) -> bool:
    """Was a secret given as a flag? Then `ps` shows it: say to use a file or the environment."""
    return any(a == "--secret" or a.startswith("--secret=") for a in argv)
