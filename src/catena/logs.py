"""How catena's processes log: text (the default) or `--log-format json`, one object per line
with time (UTC, ISO 8601), level, process, chain, epoch, event, message (and cause and
exception when there are). `event` names what happened for the lines an operator acts on:
view_change, repair, leader_change; chain and epoch come from the line when it is about a view,
else from the process's own (`set_context`)."""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone
from typing import Callable

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
FORMATS = ("text", "json")

_context: Callable[[], tuple[int | None, int | None]] = lambda: (None, None)


def set_context(context: Callable[[], tuple[int | None, int | None]]) -> None:
    """`context()` -> (chain, epoch) of this process, for lines that do not carry their own."""
    global _context
    _context = context


class JsonFormatter(logging.Formatter):
    def __init__(self, process: str):
        super().__init__()
        self.process = process

    def format(self, record: logging.LogRecord) -> str:
        chain, epoch = getattr(record, "chain", None), getattr(record, "epoch", None)
        if chain is None or epoch is None:
            try:
                own_chain, own_epoch = _context()
            except Exception:  # noqa: BLE001 - a log line must never fail for its context
                own_chain, own_epoch = None, None
            chain = own_chain if chain is None else chain
            epoch = own_epoch if epoch is None else epoch
        line = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname, "process": self.process, "chain": chain, "epoch": epoch,
            "event": getattr(record, "event", None), "message": record.getMessage(), "logger": record.name,
        }
        if (cause := getattr(record, "cause", None)) is not None:
            line["cause"] = cause
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure(level: str, fmt: str = "text", process: str = "catena") -> None:
    """Log to stderr at `level` in `fmt` ("text" or "json"); `process` names this one in JSON."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(process) if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
