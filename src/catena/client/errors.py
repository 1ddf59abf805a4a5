"""Typed errors of the client library."""

from catena.errors import CatenaError


class ClientError(CatenaError):
    """Base of the client library's errors."""


class Timeout(ClientError):
    """The call's deadline passed; a write may or may not have been applied (retrying it with
    the same client is safe: request ids make it apply once)."""


class Unavailable(ClientError):
    """No coordinator or member could be reached; names what was tried."""


class ResponseError(ClientError):
    """The server refused the command itself (bad syntax, not an integer, …): not retried."""


class SessionLost(ClientError):
    """The client's session expired (its pings stopped reaching the coordinator for its TTL) or
    was closed: the keys bound to it are deleted. Open a new session to bind keys again."""
