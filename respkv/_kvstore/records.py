"""The KV store's records: the key of a token chunk (:func:`chunk_key`), what the store
knows about its usage (:class:`StoreUsage`) and the outcome of one eviction cycle
(:class:`EvictionReport`).

Part of :mod:`respkv.kvstore`, the public module that exports them.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["EvictionReport", "StoreUsage", "chunk_key"]


def chunk_key(model: str, rank: int, chunk_hash: int | str | bytes, salt: str | None = None) -> str:
    """``model@rank@hash[@salt]``: the key of one token chunk of one tensor-parallel rank.

    An ``int`` hash is written in hexadecimal, ``bytes`` as hex digits. The parts must
    not contain ``@`` (the key would be ambiguous).
    """
    if isinstance(chunk_hash, bool) or not isinstance(chunk_hash, (int, str, bytes)):
        raise TypeError(f"chunk_hash must be int, str or bytes, not {type(chunk_hash).__name__}")
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 0:
        raise ValueError(f"rank must be an integer >= 0, got {rank!r}")
    if isinstance(chunk_hash, int):
        text = format(chunk_hash, "x")
    elif isinstance(chunk_hash, bytes):
        text = chunk_hash.hex()
    else:
        text = chunk_hash
    parts = {"model": model, "chunk_hash": text, **({"salt": salt} if salt is not None else {})}
    for name, part in parts.items():
        if not part:
            raise ValueError(f"{name} must not be empty")
        if "@" in part:
            raise ValueError(f"{name} must not contain '@': {part!r}")
    key = f"{model}@{rank}@{text}"
    return key if salt is None else f"{key}@{salt}"


@dataclass(frozen=True)
class StoreUsage:
    """What the store knows about its usage."""

    used_bytes: int
    capacity_bytes: int
    keys: int
    pinned_keys: int
    evicted_keys: int
    evicted_bytes: int
    vanished_keys: int
    #: Keys whose SET outcome is unknown, and their bytes (included in ``used_bytes``).
    unsettled_keys: int = 0
    unsettled_bytes: int = 0
    #: Keys stored with a ``ttl`` that left the tracking when it passed.
    expired_keys: int = 0

    @property
    def fraction(self) -> float:
        """``used / capacity``; -1.0 without a capacity (the reference's convention)."""
        return self.used_bytes / self.capacity_bytes if self.capacity_bytes else -1.0


@dataclass(frozen=True)
class EvictionReport:
    """The outcome of one eviction cycle."""

    wanted_bytes: int
    freed_bytes: int
    evicted_keys: int
    vanished_keys: int
    failed_keys: int
