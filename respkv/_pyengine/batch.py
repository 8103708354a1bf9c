"""The records a batch lives in while the pure engine works on it: :class:`Batch` and
its :class:`Tile` slices, and how a finished tile turns into a queued completion.

A batch is cut into tiles, at most one per worker, each a contiguous range of keys. A
worker writes each key's final status (and, for a failed key, its
:class:`~respkv._failure.Failure` record) into the batch's lists at the key's own
index, so tiles never share an index and need no lock for that. Within a tile, keys are
admitted, answered and finished in order on one connection, so a tile's state is three
counters: keys ``[start, start + done)`` are finished, ``[start + done, sent)`` are in
flight, ``[sent, stop)`` are not sent yet.

The tile that finishes last, decided by ``tiles_left`` under the completion queue's
lock, hands the batch to the :class:`CompletionSink` (the engine's completion queue),
which builds the :class:`~respkv.Completion` and sets the event fd. A tile finishes only
on its worker's thread, after that worker has let go of the tile's buffers (a connection
with keys of it in flight is dropped first), so once a completion is queued no worker
touches that batch's buffers again.

No per-key object is made while nothing fails: statuses are written as the two shared
``KeyStatus`` members, and a failure shared by many keys (a dropped connection, a
deadline) is one :class:`Failure` stored at each index.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from typing import Protocol

from respkv._contract import KeyStatus, Op
from respkv._failure import STATUS_OF_KIND, Failure

__all__ = ["Batch", "CompletionSink", "Deadlines", "Run", "Tile"]


class CompletionSink(Protocol):
    """Where finished batches go (the engine's completion queue)."""

    #: Guards ``Batch.tiles_left`` of every batch of this sink.
    lock: threading.Lock

    def batch_done(self, batch: Batch) -> None:
        """Queue the completion of ``batch``, whose every key has its final status."""
        ...


class Batch:
    """One submitted batch: inputs, per-key results, and how many tiles are left."""

    __slots__ = (
        "batch_id",
        "cancel_requested",
        "deadline",
        "failed",
        "failures",
        "keys",
        "op",
        "sink",
        "statuses",
        "tiles",
        "tiles_left",
        "timeout",
        "ttl_ms",
        "views",
    )

    def __init__(
        self,
        sink: CompletionSink,
        batch_id: int,
        op: Op,
        keys: list[bytes],
        *,
        views: list[memoryview] | None,
        timeout: float | None,
        deadline: float | None,
        ttl_ms: int | None = None,
    ) -> None:
        self.sink = sink
        self.batch_id = batch_id
        self.op = op
        self.keys = keys
        self.views = views
        #: The batch's own ``timeout=`` (seconds) and its monotonic deadline, or None.
        self.timeout = timeout
        self.deadline = deadline
        #: SET: the expiry every key is stored with (``PX`` milliseconds), or None.
        self.ttl_ms = ttl_ms
        n = len(keys)
        # Every key gets its final status written by a worker; CANCELLED is only what
        # an index would show if a bug skipped it.
        self.statuses: list[KeyStatus] = [KeyStatus.CANCELLED] * n
        self.failures: list[Failure | None] = [None] * n
        #: Set once any key failed: a batch without failures skips the per-key merge.
        self.failed = False
        self.tiles: list[Tile] = []
        self.tiles_left = 0
        self.cancel_requested = False

    def tile_done(self) -> None:
        """Called once per tile as it finishes; the last one queues the completion."""
        sink = self.sink
        with sink.lock:
            self.tiles_left -= 1
            if self.tiles_left:
                return
        sink.batch_done(self)


class Tile:
    """A contiguous slice of a batch given to one worker (see the module essay)."""

    __slots__ = ("batch", "done", "sent", "start", "stop", "worker")

    def __init__(self, batch: Batch, indices: range, worker: int) -> None:
        self.batch = batch
        self.start = indices.start
        self.stop = indices.stop
        #: Index of the worker that owns this tile (the engine routes cancels by it).
        self.worker = worker
        #: Keys admitted (their request queued for writing): ``[start, sent)``.
        self.sent = indices.start
        #: Keys finished (status written), from ``start`` on.
        self.done = 0

    @property
    def finished(self) -> bool:
        return self.done == self.stop - self.start

    @property
    def has_inflight(self) -> bool:
        """Some key of this tile was admitted and is not finished."""
        return self.sent - self.start > self.done

    def keys_done(self, count: int) -> None:
        """``count`` more keys have their final status (written by the caller)."""
        self.done += count
        if self.done == self.stop - self.start:
            self.batch.tile_done()

    def fail(self, start: int, stop: int, failure: Failure) -> None:
        """Give keys ``start .. stop`` of this tile ``failure`` and finish them."""
        count = stop - start
        if count <= 0:
            return
        batch = self.batch
        batch.statuses[start:stop] = [STATUS_OF_KIND[failure.kind]] * count
        batch.failures[start:stop] = [failure] * count
        batch.failed = True
        self.keys_done(count)


class Run:
    """Consecutive keys of one tile in flight on a connection, admitted together:
    ``pos`` is the key the next reply answers."""

    __slots__ = ("deadline", "offset", "pos", "stop", "tile")

    def __init__(self, tile: Tile, start: int, stop: int, deadline: float, offset: int) -> None:
        self.tile = tile
        self.pos = start
        self.stop = stop
        #: Monotonic time by which the first reply must arrive (``op_timeout``).
        self.deadline = deadline
        #: Bytes queued on the connection before this run's first request: the run's
        #: requests had been (partly) written once more than this many were sent.
        self.offset = offset


class Deadlines:
    """A worker's tiles whose batch has a deadline, soonest first.

    A heap with lazy deletion: a tile that finishes stays in it until its deadline comes
    (then it is skipped), or until finished tiles are most of the heap and it is rebuilt
    without them (amortized: a rebuild happens only once most entries are finished)."""

    __slots__ = ("_heap", "_seq")

    #: Finished tiles tolerated before a rebuild is considered.
    SLACK = 64

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Tile]] = []
        self._seq = itertools.count()  # ties: the order tiles came in

    def add(self, tiles: list[Tile], live: int) -> None:
        """Track ``tiles`` that have a deadline; ``live``: tiles the worker still holds."""
        heap = self._heap
        for tile in tiles:
            deadline = tile.batch.deadline
            if deadline is not None:
                heapq.heappush(heap, (deadline, next(self._seq), tile))
        if len(heap) > self.SLACK and len(heap) > 2 * live:
            heap[:] = [entry for entry in heap if not entry[2].finished]
            heapq.heapify(heap)

    def first(self) -> float | None:
        """The soonest deadline (possibly of a finished tile), or ``None``."""
        return self._heap[0][0] if self._heap else None

    def due(self, now: float) -> list[Tile]:
        """Remove and return the unfinished tiles whose deadline is ``now`` or earlier."""
        heap = self._heap
        out: list[Tile] = []
        while heap and heap[0][0] <= now:
            tile = heapq.heappop(heap)[2]
            if not tile.finished:
                out.append(tile)
        return out
