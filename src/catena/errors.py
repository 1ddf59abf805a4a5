"""Error types shared by every part of catena (split as h11 does)."""


class CatenaError(Exception):
    """Base of every error catena raises on purpose."""


class LocalProtocolError(CatenaError):
    """We misused a protocol: a bug on our side, never caused by a peer."""


class RemoteProtocolError(CatenaError):
    """A peer sent bytes that do not follow the protocol."""


class StaleEpoch(CatenaError):
    """A message or view carried an epoch older than one already seen."""


class CorruptLog(CatenaError):
    """The durable log is damaged where no valid prefix is left to keep (its snapshot)."""


class ConfigError(CatenaError):
    """Bad settings: flags, environment or a TOML file."""
