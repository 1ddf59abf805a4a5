"""catena: a chain-replicated key-value store that speaks the Redis protocol."""

import sys

from catena.compiled import FINDER

__version__ = "0.1.0"

if FINDER not in sys.meta_path:  # the write path's compiled modules, only while their sources are unchanged
    sys.meta_path.insert(0, FINDER)


def __getattr__(name):
    """`catena.Client` and `catena.AsyncClient` without importing the client for servers."""
    if name in ("Client", "AsyncClient"):
        from catena import client

        return getattr(client, name)
    raise AttributeError(name)
