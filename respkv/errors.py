"""The one exception hierarchy of respkv, shared by both backends.

Reply errors from the server (``-OOM``, ``-WRONGTYPE`` ...) are *values*: they are
reported per key in a :class:`~respkv.Completion` and never raised by the engine.
Exceptions are for things the caller must handle: bad input (``ValueError`` /
``TypeError`` raised at submit time, before any I/O), a closed connector, a broken
byte stream, or a result the high-level client was asked to raise for.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "ConnectionClosedError",
    "ForkedError",
    "ProtocolError",
    "ReplyError",
    "RespkvError",
    "ResultError",
    "ServerNotFoundError",
]


class RespkvError(Exception):
    """Base class of every exception respkv raises on purpose."""


class ProtocolError(RespkvError):
    """The byte stream is not valid RESP2 (or breaks a named limit).

    The connection that produced it is dropped: nothing after a malformed reply can be
    trusted to belong to the request it seems to answer.
    """


class ReplyError(RespkvError):
    """An error reply from the server (``-PREFIX message``), carried as a value.

    The codec returns instances of this class inside replies; it raises them only when
    a high-level helper is asked for a single value and got an error instead.
    """

    @property
    def prefix(self) -> str:
        """The first word of the error, such as ``OOM`` or ``WRONGTYPE``."""
        text = str(self)
        return text.split(" ", 1)[0] if text else ""


class ConnectionClosedError(RespkvError):
    """The connector or client was closed; no new work is accepted."""


class ForkedError(ConnectionClosedError):
    """A connector or client was used in a process forked from the one that opened it.

    Its worker threads exist only in the parent, so in the child it can never complete
    anything. A child process must open its own connection (``respkv.connect`` again,
    after the fork); ``close()`` on the inherited object is safe and only releases what
    the child holds.
    """


class ConfigError(RespkvError, ValueError):
    """A configuration value is missing, unknown or invalid. Never contains secrets."""


class ResultError(RespkvError):
    """A batch did not succeed for every key and the caller asked for an exception."""


class ServerNotFoundError(RespkvError):
    """No ``redis-server`` or ``valkey-server`` binary was found to start a local server."""
