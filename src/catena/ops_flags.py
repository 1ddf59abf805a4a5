"""Command-line flags every catena process shares (`catena member/coordinator/up` and the
standalone membership agent): the log format and the metrics port. Apart from cli.py so that
membership/cli.py can use them without importing the whole command line (no import cycle)."""

from __future__ import annotations

import argparse
import os

from catena import logs


def listen(value: str) -> str:
    """An argparse type: HOST:PORT, the port normalised."""
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return f"{host}:{int(port)}"


def add_ops_flags(parser: argparse.ArgumentParser, metrics: bool = True) -> None:
    """--log-format, and --metrics-listen for a process that serves metrics."""
    parser.add_argument("--log-format", choices=logs.FORMATS, default=os.environ.get("CATENA_LOG_FORMAT", "text"),
                        help="text (default) or json: one object per line (time, level, process, chain, epoch, "
                             "event, message)")
    if metrics:
        parser.add_argument("--metrics-listen", type=listen, default=None, metavar="HOST:PORT",
                            help="serve Prometheus metrics at http://HOST:PORT/metrics (coordinator: and its "
                                 "status page at /)")
