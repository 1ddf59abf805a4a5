"""DEBUG at a member, as in Redis 7: refused unless the member was started with
`--enable-debug-command yes`. `DEBUG SLEEP seconds` holds the event loop that long in one turn
(a busy, or with a long enough sleep a wedged, member on purpose: tests and drills).
"""

from __future__ import annotations

import math
import time

from catena.resp.codec import OK, Error

MAX_SLEEP_S = 3600
NOT_ALLOWED = Error("ERR DEBUG command not allowed. Start the member with --enable-debug-command yes to use it")


def debug_command(enabled: bool):
    """The DEBUG handler of a member whose --enable-debug-command is `enabled`."""

    def debug(client, args):
        if not enabled:
            return NOT_ALLOWED
        sub = args[1].upper()
        if sub == b"SLEEP" and len(args) == 3:
            try:
                seconds = float(args[2])
            except ValueError:
                seconds = math.nan
            if not math.isfinite(seconds):
                return Error("ERR value is not a valid float")
            if not 0 <= seconds <= MAX_SLEEP_S:
                return Error(f"ERR DEBUG SLEEP takes 0 to {MAX_SLEEP_S} seconds")
            time.sleep(seconds)
            return OK
        return Error(f"ERR unknown subcommand or wrong number of arguments for '{args[1].decode(errors='replace')}'. "
                     "Try DEBUG SLEEP <seconds>.")

    return debug
