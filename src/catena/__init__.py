"""catena: a chain-replicated key-value store that speaks the Redis protocol."""

__version__ = "0.1.0"


def __getattr__(name):
    """`catena.Client` and `catena.AsyncClient` without importing the client for servers."""
    if name in ("Client", "AsyncClient"):
        from catena import client

        return getattr(client, name)
    raise AttributeError(name)
