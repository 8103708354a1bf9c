"""The pure-Python connector: batches in, tiles to workers, completions out.

``submit_batch_*`` validates the whole batch (``respkv._validate``) before anything
else, cuts it into tiles (``respkv._tiling``), and hands tile ``i`` to worker
``(rr + i) % num_workers``, where ``rr`` advances by one per batch so that streams of
small batches spread over all connections. Workers write each key's status into the
batch's lists (distinct indices, so no locking); the tile that finishes last, decided
by a counter under the connector's lock, queues the :class:`Completion` and sets the
event fd.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence

from respkv._compat import BufferLike
from respkv._contract import Completion, KeyLike, KeyStatus, Op, make_completion
from respkv._options import ConnectionOptions
from respkv._pyengine.notify import Notifier
from respkv._pyengine.worker import Worker
from respkv._tiling import tile as cut_tiles
from respkv._validate import check_buffers, check_keys
from respkv.errors import ConnectionClosedError

__all__ = ["Batch", "PyConnector", "Tile"]


class Batch:
    """One submitted batch: inputs, per-key results, and how many tiles are left."""

    __slots__ = ("batch_id", "errors", "keys", "op", "statuses", "tiles_left", "views")

    def __init__(
        self, batch_id: int, op: Op, keys: list[bytes], views: list[memoryview] | None
    ) -> None:
        self.batch_id = batch_id
        self.op = op
        self.keys = keys
        self.views = views
        n = len(keys)
        self.statuses: list[KeyStatus] = [KeyStatus.CANCELLED] * n
        self.errors: list[str | None] = [None] * n
        self.tiles_left = 0


class Tile:
    """A contiguous slice of a batch given to one worker."""

    __slots__ = ("batch", "indices", "keys_left", "owner")

    def __init__(self, owner: PyConnector, batch: Batch, indices: range) -> None:
        self.owner = owner
        self.batch = batch
        self.indices = indices
        self.keys_left = len(indices)

    def keys_done(self, count: int) -> None:
        """Called by the owning worker as keys finish (their statuses written)."""
        self.keys_left -= count
        if self.keys_left == 0:
            self.owner._tile_done(self.batch)


class PyConnector:
    """The Connector contract on worker threads with ``selectors`` I/O."""

    def __init__(self, options: ConnectionOptions) -> None:
        self.options = options
        self._lock = threading.Lock()
        self._next_id = 1
        self._rr = 0
        self._closed = False
        self._done: deque[Completion] = deque()
        self._notifier = Notifier()
        self._workers = [Worker(i, options) for i in range(options.num_workers)]
        for w in self._workers:
            w.start()

    def __repr__(self) -> str:
        return f"PyConnector({self.options.address}, workers={len(self._workers)})"

    # -- the contract --------------------------------------------------------------

    def event_fd(self) -> int:
        return self._notifier.fileno()

    def submit_batch_set(self, keys: Sequence[KeyLike], buffers: Sequence[BufferLike]) -> int:
        self._check_open()
        k = check_keys(keys)
        return self._submit(Op.SET, k, check_buffers(buffers, len(k), writable=False))

    def submit_batch_get(self, keys: Sequence[KeyLike], buffers: Sequence[BufferLike]) -> int:
        self._check_open()
        k = check_keys(keys)
        return self._submit(Op.GET, k, check_buffers(buffers, len(k), writable=True))

    def submit_batch_exists(self, keys: Sequence[KeyLike]) -> int:
        self._check_open()
        return self._submit(Op.EXISTS, check_keys(keys), None)

    def submit_batch_delete(self, keys: Sequence[KeyLike]) -> int:
        self._check_open()
        return self._submit(Op.DELETE, check_keys(keys), None)

    def drain_completions(self) -> list[Completion]:
        self._notifier.clear()
        out: list[Completion] = []
        done = self._done
        while done:
            out.append(done.popleft())
        return out

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        for w in self._workers:
            w.stop()
        for w in self._workers:
            w.join()
        self._notifier.set()

    # -- internals -----------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise ConnectionClosedError("connector is closed")

    def _submit(self, op: Op, keys: list[bytes], views: list[memoryview] | None) -> int:
        weights = [v.nbytes for v in views] if views is not None else None
        ranges = cut_tiles(len(keys), len(self._workers), weights)
        with self._lock:
            if self._closed:
                raise ConnectionClosedError("connector is closed")
            batch = Batch(self._next_id, op, keys, views)
            self._next_id += 1
            batch.tiles_left = len(ranges)
            rr = self._rr
            self._rr = (rr + 1) % len(self._workers)
            # Enqueue under the lock so close() cannot slip between the check and here.
            nworkers = len(self._workers)
            for i, r in enumerate(ranges):
                self._workers[(rr + i) % nworkers].enqueue(Tile(self, batch, r))
        return batch.batch_id

    def _tile_done(self, batch: Batch) -> None:
        with self._lock:
            batch.tiles_left -= 1
            if batch.tiles_left:
                return
        self._done.append(make_completion(batch.batch_id, batch.op, batch.statuses, batch.errors))
        self._notifier.set()
