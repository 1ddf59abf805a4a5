"""Membership settings: every duration carries its unit; the defaults meet the bounds.

Worst case for a crash to reach the first list (`first_detection_bound_ms`):

    heartbeat interval      the crashed node's last heartbeat may be lost (one extra interval)
  + suspect_after           no heartbeat for this long -> the monitor suspects
  + confirm_timeout         direct probe + indirect probes through the other monitors
  = 100 + 500 + 300 = 900 ms with the defaults (bound: 2,000 ms; catena's goal: 1,000 ms)

From the first list to every list (`dissemination_bound_ms`): the failure is gossiped at once
to `gossip_fanout` random members, and each member relays it on its next rounds (every
`gossip_interval`); with fan-out 3 each round multiplies the informed set by up to 4, so
ceil(log4 N) + 2 rounds reach everyone with high probability: 8 rounds = 400 ms for 5,000
members. A member that missed every copy is repaired by anti-entropy (`sync_interval`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from catena.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Settings:
    heartbeat_interval_ms: int = 100  # each member heartbeats its k ring successors this often
    k: int = 3  # monitors per member (ring successors); 3 covers 3 simultaneous crashes
    suspect_after_ms: int = 500  # silence that makes a monitor suspect its predecessor
    confirm_timeout_ms: int = 300  # probing window before a suspect is declared failed
    indirect_probes: int = 2  # other monitors asked to probe a suspect
    gossip_interval_ms: int = 50  # gossip round while there is news to spread
    gossip_fanout: int = 3  # random members per gossip round
    retransmit_mult: int = 4  # each update goes out retransmit_mult * ceil(log10(N+1)) times
    sync_interval_ms: int = 1000  # anti-entropy digest to one random member
    sync_quiet_ms: int = 1000  # lists must be this quiet before a differing digest triggers a sync
    join_retry_ms: int = 250  # re-send Join to the introducers this often
    join_timeout_ms: int = 5000  # give up joining (clear error) after this long
    leave_linger_ms: int = 300  # keep gossiping our own leave this long before stopping
    tombstone_ttl_ms: int = 60000  # keep failed/left records (stops stale gossip resurrecting them)
    max_datagram: int = 1400

    def __post_init__(self):
        for f in fields(self):
            v = getattr(self, f.name)
            if type(v) is not int or v < (0 if f.name == "indirect_probes" else 1):
                raise ConfigError(f"membership setting {f.name} must be a positive integer, got {v!r}")
        if self.max_datagram < 576 or self.max_datagram > 65507:
            raise ConfigError("max_datagram must be between 576 and 65507 bytes")
        if self.suspect_after_ms < 2 * self.heartbeat_interval_ms:
            raise ConfigError("suspect_after_ms must be at least two heartbeat intervals")

    @property
    def first_detection_bound_ms(self) -> int:
        return self.heartbeat_interval_ms + self.suspect_after_ms + self.confirm_timeout_ms

    def dissemination_bound_ms(self, n: int) -> int:
        rounds = math.ceil(math.log(max(n, 2), self.gossip_fanout + 1)) + 2
        return rounds * self.gossip_interval_ms

    def transmit_limit(self, n: int) -> int:
        # at least 2 "decades" so small groups under loss still get enough copies
        return self.retransmit_mult * max(2, math.ceil(math.log10(n + 1)))
