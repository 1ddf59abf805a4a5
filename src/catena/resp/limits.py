"""Client limits of a RESP server, with Redis's names and units.

    maxclients                   10,000 connections; RESERVED more are kept for catena's own
                                 connections (a peer's link, the coordinator's probes)
    client-output-buffer-limit   normal clients: hard 256 MB, soft 64 MB for 60 s (unread replies)
    client-query-buffer-limit    1 GB of partially received command per connection
    max-input-buffer             2 GB of partially received commands across all connections
    proto-max-bulk-len           512 MB (the codec's DEFAULT_MAX_BULK_LEN)

The server shell enforces them (`catena.resp.server`); this module only holds the numbers and
reads them as Redis writes them (`64mb`, `1gb`, `512000`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MB = 1024 * 1024
GB = 1024 * MB
RESERVED = 32  # connections above maxclients kept for catena's own (Redis keeps 32 fds)


@dataclass(frozen=True, slots=True)
class Limits:
    maxclients: int = 10_000
    output_hard: int = 256 * MB  # 0: no hard limit
    output_soft: int = 64 * MB  # 0: no soft limit
    output_soft_s: float = 60.0
    query_buffer: int = GB  # per connection
    input_total: int = 2 * GB  # all connections together

    def __post_init__(self):
        if self.maxclients < 1:
            raise ValueError("maxclients must be at least 1")
        if min(self.output_hard, self.output_soft, self.output_soft_s, self.query_buffer, self.input_total) < 0:
            raise ValueError("limits cannot be negative")


_UNITS = {"": 1, "k": 1000, "kb": 1024, "m": 1000**2, "mb": MB, "g": 1000**3, "gb": GB}


def parse_size(text: str) -> int:
    """A byte count as Redis's config takes it: `512mb`, `1gb`, `64k`, `1048576`."""
    m = re.fullmatch(r"\s*(\d+)\s*([kmg]?b?)\s*", str(text).lower())
    if m is None or m.group(2) == "b":
        raise ValueError(f"expected a size such as 1048576, 64mb or 1gb, got {text!r}")
    return int(m.group(1)) * _UNITS[m.group(2)]


def parse_output_limit(text: str) -> tuple[int, int, float]:
    """`<hard> <soft> <soft seconds>` (Redis's client-output-buffer-limit for normal clients)."""
    words = str(text).split()
    if len(words) != 3 or not words[2].isdigit():
        raise ValueError(f"expected '<hard> <soft> <soft-seconds>' such as '256mb 64mb 60', got {text!r}")
    return parse_size(words[0]), parse_size(words[1]), float(words[2])
