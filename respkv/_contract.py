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
``TIMEOUT``        ``op_timeout`` passed with this key in flight, or the batch's own
                   deadline (``timeout=``) passed before the key finished.
``CANCELLED``      ``cancel()`` or ``close()`` ended the batch before the key finished.
``PROTOCOL_ERROR`` the server's reply was not valid RESP2 (connection dropped).
=================  ==========================================================

A batch is ``ok`` when no key has a failure status (``MISS`` is an answer, not a
failure). Every failed key carries a :class:`~respkv._failure.Failure` record (kind,
numbers, the server's reply): ``Completion.failures``. Its status follows from its kind,
and its message is formatted in Python for both backends; ``errors`` (one message per
key) and ``error`` (a summary, ``None`` when ``ok``) are those messages.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from respkv._compat import BufferLike
from respkv._failure import STATUS_OF_KIND, ErrorKind, Failure, format_failure, summarize
from respkv._status import FAILURE_STATUSES, KeyStatus

__all__ = [
    "CONTRACT_VERSION",
    "FAILURE_STATUSES",
    "STATUS_OF_KIND",
    "BatchResult",
    "Completion",
    "Connector",
    "ErrorKind",
    "Failure",
    "KeyLike",
    "KeyStatus",
    "Op",
    "format_failure",
    "make_completion",
    "summarize",
]

#: Bumped whenever the contract between the Python layer and a backend changes
#: (statuses, the native module's entry points). A native module built for another
#: version is not used by ``auto`` selection.
CONTRACT_VERSION = 2

KeyLike = str | bytes


class Op(enum.IntEnum):
    """The four batch operations. Values are part of the contract (native too)."""

    SET = 0
    GET = 1
    EXISTS = 2
    DELETE = 3


@dataclass(frozen=True, slots=True)
class Completion:
    """One finished batch, reported exactly once by ``drain_completions``.

    ``failures[i]`` is the :class:`Failure` record of key ``i`` (``None`` where the key
    did not fail); ``errors`` and ``error`` are its readable forms.
    """

    batch_id: int
    op: Op
    ok: bool
    statuses: tuple[KeyStatus, ...]
    failures: tuple[Failure | None, ...]

    @property
    def hits(self) -> int:
        """Number of keys whose status is ``OK``."""
        return sum(1 for s in self.statuses if s is KeyStatus.OK)

    @property
    def errors(self) -> tuple[str | None, ...]:
        """One message per key (``None`` where the key did not fail)."""
        return tuple(None if f is None else format_failure(f) for f in self.failures)

    @property
    def error(self) -> str | None:
        """``None`` when ``ok``, else how many keys failed and the first failure."""
        return None if self.ok else summarize(self.statuses, self.failures)


@dataclass(frozen=True, slots=True)
class BatchResult:
    """What the high-level client returns for a batch: the completion, keyed by input."""

    keys: tuple[bytes, ...]
    statuses: tuple[KeyStatus, ...]
    failures: tuple[Failure | None, ...]
    ok: bool

    @classmethod
    def from_completion(cls, keys: Sequence[bytes], c: Completion) -> BatchResult:
        return cls(tuple(keys), c.statuses, c.failures, c.ok)

    def __len__(self) -> int:
        return len(self.statuses)

    @property
    def errors(self) -> tuple[str | None, ...]:
        """One message per key (``None`` where the key did not fail)."""
        return tuple(None if f is None else format_failure(f) for f in self.failures)

    @property
    def error(self) -> str | None:
        """``None`` when ``ok``, else how many keys failed and the first failure."""
        return None if self.ok else summarize(self.statuses, self.failures)

    @property
    def hits(self) -> list[bool]:
        """Per key: ``True`` where the status is ``OK``."""
        return [s is KeyStatus.OK for s in self.statuses]

    @property
    def failed(self) -> list[int]:
        """Indices of keys whose status is a failure."""
        return [i for i, s in enumerate(self.statuses) if s in FAILURE_STATUSES]


def make_completion(
    batch_id: int,
    op: Op,
    statuses: Sequence[KeyStatus],
    failures: Sequence[Failure | None] | None = None,
) -> Completion:
    """Build a Completion. Where ``failures[i]`` is set, the key's status is the one its
    kind maps to (:data:`STATUS_OF_KIND`), whatever ``statuses[i]`` said; ``ok`` is
    derived from the statuses. ``failures=None`` means no key failed."""
    n = len(statuses)
    if failures is None:
        st = tuple(statuses)
        fs: tuple[Failure | None, ...] = (None,) * n
    else:
        if len(failures) != n:
            raise ValueError(f"{len(failures)} failures for {n} statuses")
        fs = tuple(failures)
        st = tuple(s if f is None else STATUS_OF_KIND[f.kind] for s, f in zip(statuses, fs))
    ok = not st or max(st) <= KeyStatus.MISS
    return Completion(batch_id, op, ok, st, fs)


@runtime_checkable
class Connector(Protocol):
    """The low-level engine both backends implement. Thread-safe: any method may be
    called from any thread. Submissions are non-blocking and validate their input
    before any I/O (``TypeError`` / ``ValueError`` naming the offending index).

    ``timeout`` on a submit is the batch's own deadline, in seconds from the submit
    (``None``: only ``op_timeout`` applies). When it passes, every key of the batch not
    yet finished ends ``TIMEOUT`` (kind ``DEADLINE``) and the batch completes at once: a
    connection with keys of the batch in flight is dropped, so that no worker touches
    the batch's buffers after its completion has been queued. Other keys in flight on
    that connection end ``IO_ERROR`` (kind ``ABORTED``).

    Buffers: a worker reads (SET) or writes (GET) a batch's buffers only until the
    batch's completion is queued, never after. The caller keeps them alive and unchanged
    until then; the clients do this for users.

    A connector belongs to the process that opened it. After ``fork()`` every method
    but ``close()`` raises :class:`~respkv.errors.ForkedError` in the child, and
    ``close()`` there only releases what the child holds (it never joins threads the
    child does not have).
    """

    def event_fd(self) -> int:
        """A file descriptor that is readable while completions are waiting."""
        ...

    def submit_batch_set(
        self,
        keys: Sequence[KeyLike],
        buffers: Sequence[BufferLike],
        *,
        timeout: float | None = None,
        ttl: float | None = None,
    ) -> int:
        """Store ``buffers[i]`` under ``keys[i]``. Buffers stay referenced until done.

        ``ttl``: every key of the batch expires that many seconds after it is stored
        (``SET key value PX <ms>``, validated by ``respkv._validate.check_ttl``);
        ``None`` stores without expiry (and clears an expiry the key had)."""
        ...

    def submit_batch_get(
        self,
        keys: Sequence[KeyLike],
        buffers: Sequence[BufferLike],
        *,
        timeout: float | None = None,
    ) -> int:
        """Fetch each value into ``buffers[i]`` (writable, exactly the value's size)."""
        ...

    def submit_batch_exists(self, keys: Sequence[KeyLike], *, timeout: float | None = None) -> int:
        """Per key: ``OK`` when it exists, ``MISS`` when not."""
        ...

    def submit_batch_delete(self, keys: Sequence[KeyLike], *, timeout: float | None = None) -> int:
        """Per key: ``OK`` when removed, ``MISS`` when it was not there."""
        ...

    def cancel(self, batch_id: int) -> bool:
        """Ask for a batch to end now; non-blocking. Keys not finished end ``CANCELLED``
        (kind ``CANCELLED``) and the batch's completion is still delivered, once, promptly
        (the same dropping rule as a deadline). ``False`` when the batch had already
        completed or is unknown."""
        ...

    def drain_completions(self) -> list[Completion]:
        """Every finished batch exactly once; an empty list when none is ready."""
        ...

    def close(self) -> None:
        """Idempotent. Stops accepting work, completes pending batches with
        ``CANCELLED`` (kind ``CLOSED``, or their in-flight failure), joins the workers
        and releases every descriptor, the event fd included."""
        ...
