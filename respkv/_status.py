"""Per-key statuses: the small enum every layer shares (see :mod:`respkv._contract`).

Kept in its own module so that :mod:`respkv._failure` (which maps failure kinds to
statuses) and :mod:`respkv._contract` (which builds completions from both) import it
without importing each other.
"""

from __future__ import annotations

import enum

__all__ = ["FAILURE_STATUSES", "KeyStatus"]


class KeyStatus(enum.IntEnum):
    """Outcome of one key in one batch. Values are part of the contract (native too)."""

    OK = 0
    MISS = 1
    SIZE_MISMATCH = 2
    SERVER_ERROR = 3
    IO_ERROR = 4
    TIMEOUT = 5
    CANCELLED = 6
    PROTOCOL_ERROR = 7


#: Statuses that make a batch not ``ok``.
FAILURE_STATUSES = frozenset(
    {
        KeyStatus.SIZE_MISMATCH,
        KeyStatus.SERVER_ERROR,
        KeyStatus.IO_ERROR,
        KeyStatus.TIMEOUT,
        KeyStatus.CANCELLED,
        KeyStatus.PROTOCOL_ERROR,
    }
)
