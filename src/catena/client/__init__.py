"""catena's client library: `Client` (blocking) and `AsyncClient` (asyncio), same API.

    from catena.client import Client
    with Client("127.0.0.1:6369") as c:
        c.set("k", "v")
        c.incr("n")
        c.get("k")  # b"v"

Writes go to the chain's head and carry request ids (a retry applies once); reads go to any
member. Every call has a deadline (`timeout=5.0` s) after which it raises `Timeout`. Against
members in cluster mode a command goes by its keys' hash slot: `-MOVED` is followed (and
remembered per slot), `-ASK` once after ASKING, `-TRYAGAIN` retried with backoff, and a
pipeline is split by the chain each command's slot lives on (docs/sharding.md).

    c.open_session(ttl=10.0, on_lost=print)  # pinged every ttl/3 by the client itself
    c.set("lock", "me", nx=True, session=True)  # deleted when the session ends
"""

from catena.client.aio import AsyncClient, AsyncPipeline
from catena.client.errors import ClientError, ResponseError, SessionLost, Timeout, Unavailable
from catena.client.sync import Client, Pipeline

__all__ = ["Client", "AsyncClient", "Pipeline", "AsyncPipeline", "ClientError", "ResponseError", "SessionLost",
           "Timeout", "Unavailable"]
