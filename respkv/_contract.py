"""The connector contract: the one spec both backends meet.

A *connector* is the low-level, completion-based engine. It takes batches of keys (and
buffers), returns a batch id at once, does the I/O on its own worker threads, and
reports each finished batch exactly once through :meth:`Connector.drain_completions`.
The file descriptor from :meth:`Connector.event_fd` becomes readable whenever
completions are waiting, so an event loop can watch it (``loop.add_reader``).

The shape follows LMCache's native RESP connector so respkv can stand in for it, with
per-key results for every operation (SET included) and variable value sizes.

Per-key statuses (:class:`KeyStatus`):

=================  ==========================================================
``OK``             SET stored; GET hit with exactly ``len(buffer)`` bytes written;
                   EXISTS found; DELETE removed the key.
``MISS``           GET/EXISTS: no such key; DELETE: there was nothing to remove.
``SIZE_MISMATCH``  GET: the stored value has another length. The buffer holds
                   nothing meaningful; the payload was drained and the connection
                   stays in sync.
``SERVER_ERROR``   the server answered with an error reply (``-OOM``, ``-NOAUTH``..).
``IO_ERROR``       the connection broke (or could not be made) with this key in flight.
``TIMEOUT``        the per-operation deadline passed with this key in flight.
``CANCELLED``      the connector was closed before this key was sent.
``PROTOCOL_ERROR`` the server's reply was not valid RESP2 (connection dropped).
=================  ==========================================================

A batch is ``ok`` when no key has a failure status (``MISS`` is an answer, not a
failure). ``error`` is ``None`` when ``ok``, else a readable summary naming how many
keys failed and the first failure; ``errors`` holds one message per key (``None`` where
the key did not fail).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from respkv._compat import BufferLike

__all__ = [
    "CONTRACT_VERSION",
    "FAILURE_STATUSES",
    "BatchResult",
    "Completion",
    "Connector",
    "KeyLike",
    "KeyStatus",
    "Op",
]

#: Bumped whenever the contract between the Python layer and a backend changes
#: (statuses, the native module's entry points). A native module built for another
#: version is not used by ``auto`` selection.
CONTRACT_VERSION = 1

KeyLike = str | bytes


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


class Op(enum.IntEnum):
    """The four batch operations. Values are part of the contract (native too)."""

    SET = 0
    GET = 1
    EXISTS = 2
    DELETE = 3


@dataclass(frozen=True, slots=True)
class Completion:
    """One finished batch, reported exactly once by ``drain_completions``."""

    batch_id: int
    op: Op
    ok: bool
    error: str | None
    statuses: tuple[KeyStatus, ...]
    errors: tuple[str | None, ...]

    @property
    def hits(self) -> int:
        """Number of keys whose status is ``OK``."""
        return sum(1 for s in self.statuses if s is KeyStatus.OK)


@dataclass(frozen=True, slots=True)
class BatchResult:
    """What the high-level client returns for a batch: the completion, keyed by input."""

    keys: tuple[bytes, ...]
    statuses: tuple[KeyStatus, ...]
    errors: tuple[str | None, ...]
    ok: bool
    error: str | None

    @classmethod
    def from_completion(cls, keys: Sequence[bytes], c: Completion) -> BatchResult:
        return cls(tuple(keys), c.statuses, c.errors, c.ok, c.error)

    def __len__(self) -> int:
        return len(self.statuses)

    @property
    def hits(self) -> list[bool]:
        """Per key: ``True`` where the status is ``OK``."""
        return [s is KeyStatus.OK for s in self.statuses]

    @property
    def failed(self) -> list[int]:
        """Indices of keys whose status is a failure."""
        return [i for i, s in enumerate(self.statuses) if s in FAILURE_STATUSES]


def summarize(statuses: Sequence[KeyStatus], errors: Sequence[str | None]) -> str | None:
    """The ``Completion.error`` text: ``None`` when no key failed."""
    # OK (0) and MISS (1) are the only non-failures: one max() decides the common case.
    if not statuses or max(statuses) <= KeyStatus.MISS:
        return None
    failed = [i for i, s in enumerate(statuses) if s in FAILURE_STATUSES]
    first = failed[0]
    detail = errors[first] or statuses[first].name
    name = statuses[first].name
    return f"{len(failed)} of {len(statuses)} keys failed; key {first}: {name}: {detail}"


def make_completion(
    batch_id: int, op: Op, statuses: Sequence[KeyStatus], errors: Sequence[str | None]
) -> Completion:
    """Build a Completion, deriving ``ok`` and ``error`` from the per-key results."""
    err = summarize(statuses, errors)
    return Completion(batch_id, op, err is None, err, tuple(statuses), tuple(errors))


@runtime_checkable
class Connector(Protocol):
    """The low-level engine both backends implement. Thread-safe: any method may be
    called from any thread. Submissions are non-blocking and validate their input
    before any I/O (``TypeError`` / ``ValueError`` naming the offending index)."""

    def event_fd(self) -> int:
        """A file descriptor that is readable while completions are waiting."""
        ...

    def submit_batch_set(self, keys: Sequence[KeyLike], buffers: Sequence[BufferLike]) -> int:
        """Store ``buffers[i]`` under ``keys[i]``. Buffers stay referenced until done."""
        ...

    def submit_batch_get(self, keys: Sequence[KeyLike], buffers: Sequence[BufferLike]) -> int:
        """Fetch each value into ``buffers[i]`` (writable, exactly the value's size)."""
        ...

    def submit_batch_exists(self, keys: Sequence[KeyLike]) -> int:
        """Per key: ``OK`` when it exists, ``MISS`` when not."""
        ...

    def submit_batch_delete(self, keys: Sequence[KeyLike]) -> int:
        """Per key: ``OK`` when removed, ``MISS`` when it was not there."""
        ...

    def drain_completions(self) -> list[Completion]:
        """Every finished batch exactly once; an empty list when none is ready."""
        ...

    def close(self) -> None:
        """Idempotent. Stops accepting work, completes pending batches with
        ``CANCELLED`` (or their in-flight failure), joins the workers."""
        ...
