"""The pure-Python connector: batches in, tiles to workers, completions out.

``submit_batch_*`` validates the whole batch (``respkv._validate``) before anything
else, cuts it into tiles (``respkv._tiling``), and hands tile ``i`` to worker
``(rr + i) % num_workers``, where ``rr`` advances by one per batch so that streams of
small batches spread over all connections. Workers write each key's status into the
batch (:mod:`respkv._pyengine.batch`); the tile that finishes last puts the
:class:`Completion` on this module's queue and sets the event fd. A batch's own
``timeout=`` is met by each worker holding a tile of it (:mod:`respkv._pyengine.worker`);
:meth:`PyConnector.cancel` asks those workers to end their tiles.

Lifetime. :meth:`PyConnector.close` stops the workers (every key not finished ends
CANCELLED, kind CLOSED: a connection with keys in flight is dropped, so a stalled server
cannot hold ``close()``), joins them, and closes every descriptor, the event fd included.
Nothing in a worker refers back to the connector, so one dropped without ``close()`` is
garbage collected, and a ``weakref.finalize`` then does the same work with a
``ResourceWarning``, as the standard library does for an unclosed socket.

Fork. A connector belongs to the process that made it: in a forked child every method
but ``close()`` raises :class:`~respkv.errors.ForkedError` (the worker threads do not
exist there), and ``close()`` there only closes the child's copies of the descriptors,
taking no lock a parent thread may have held at the fork.
"""

from __future__ import annotations

import os
import threading
import time
import warnings
import weakref
from collections import deque
from collections.abc import Sequence
from typing import Final

from respkv._compat import BufferLike
from respkv._contract import Completion, KeyLike, Op, make_completion
from respkv._options import ConnectionOptions
from respkv._pyengine.batch import Batch, Tile
from respkv._pyengine.connection import TlsContext
from respkv._pyengine.notifier import Notifier
from respkv._pyengine.worker import Worker
from respkv._tiling import tile as cut_tiles
from respkv._validate import Submission, check_submission
from respkv.errors import ConnectionClosedError, ForkedError

__all__ = ["FORKED_MESSAGE", "PyConnector"]

#: What a connector used in a forked child says.
FORKED_MESSAGE: Final = (
    "this respkv connector was opened in another process (before a fork); "
    "a child process must connect anew"
)


class _Completions:
    """The completion queue, its event fd, and the batches still running (for cancel)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.done: deque[Completion] = deque()
        self.active: dict[int, Batch] = {}
        self.notifier = Notifier()

    def batch_done(self, batch: Batch) -> None:
        failures = batch.failures if batch.failed else None
        completion = make_completion(batch.batch_id, batch.op, batch.statuses, failures)
        # No worker touches the batch any more: let go of the caller's buffers now, even
        # if a stale reference to the batch lingers (a worker's deadline heap).
        batch.views = None
        batch.keys = []
        with self.lock:
            self.active.pop(batch.batch_id, None)
            self.done.append(completion)
        self.notifier.set()


class PyConnector:
    """The Connector contract on worker threads with ``selectors`` I/O."""

    def __init__(self, options: ConnectionOptions) -> None:
        self.options = options
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._next_id = 1
        self._rr = 0
        self._closed = False
        self._queue = _Completions()
        tls = TlsContext(options.tls) if options.tls is not None else None
        self._workers = [Worker(i, options, tls) for i in range(options.num_workers)]
        self._finalizer = weakref.finalize(
            self, _release_unclosed, self._pid, self._workers, self._queue, repr(self)
        )
        for w in self._workers:
            w.start()

    def __repr__(self) -> str:
        return f"PyConnector({self.options.address}, workers={self.options.num_workers})"

    # -- the contract --------------------------------------------------------------

    def event_fd(self) -> int:
        self._check_process()
        return self._queue.notifier.fileno()

    def submit_batch_set(
        self,
        keys: Sequence[KeyLike],
        buffers: Sequence[BufferLike],
        *,
        timeout: float | None = None,
        ttl: float | None = None,
    ) -> int:
        self._check_open()
        return self._submit_checked(
            check_submission(Op.SET, keys, buffers, timeout=timeout, ttl=ttl)
        )

    def submit_batch_get(
        self,
        keys: Sequence[KeyLike],
        buffers: Sequence[BufferLike],
        *,
        timeout: float | None = None,
    ) -> int:
        self._check_open()
        return self._submit_checked(check_submission(Op.GET, keys, buffers, timeout=timeout))

    def submit_batch_exists(self, keys: Sequence[KeyLike], *, timeout: float | None = None) -> int:
        self._check_open()
        return self._submit_checked(check_submission(Op.EXISTS, keys, timeout=timeout))

    def submit_batch_delete(self, keys: Sequence[KeyLike], *, timeout: float | None = None) -> int:
        self._check_open()
        return self._submit_checked(check_submission(Op.DELETE, keys, timeout=timeout))

    def _submit_checked(self, s: Submission) -> int:
        return self._submit(s.op, s.keys, s.views, s.timeout, s.ttl_ms)

    def cancel(self, batch_id: int) -> bool:
        self._check_process()
        with self._queue.lock:
            batch = self._queue.active.get(batch_id)
            if batch is None:
                return False
            if batch.cancel_requested:
                return True
            batch.cancel_requested = True
        for t in batch.tiles:
            self._workers[t.worker].end(t)
        return True

    def drain_completions(self) -> list[Completion]:
        self._check_process()
        queue = self._queue
        queue.notifier.clear()
        out: list[Completion] = []
        done = queue.done
        while done:
            out.append(done.popleft())
        return out

    def engine_stats(self) -> dict[str, int]:
        """Connection counters of the workers, summed (optional, outside the contract;
        the clients read it for ``stats()``): ``connections_opened``, ``reconnects``
        (connections a worker made after its first), ``connect_failures``,
        ``connections_dropped`` (lost, timed out, or dropped to end a batch)."""
        self._check_process()
        workers = self._workers
        return {
            "connections_opened": sum(w.opened for w in workers),
            "reconnects": sum(max(w.opened - 1, 0) for w in workers),
            "connect_failures": sum(w.connect_failures for w in workers),
            "connections_dropped": sum(w.dropped for w in workers),
        }

    def close(self) -> None:
        if os.getpid() != self._pid:
            self._finalizer.detach()
            _release_in_child(self._workers, self._queue)
            return
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._finalizer.detach()
        _shut_down(self._workers, self._queue)

    # -- internals -----------------------------------------------------------------

    def _check_process(self) -> None:
        if os.getpid() != self._pid:
            raise ForkedError(FORKED_MESSAGE)

    def _check_open(self) -> None:
        if os.getpid() != self._pid:
            raise ForkedError(FORKED_MESSAGE)
        if self._closed:
            raise ConnectionClosedError("connector is closed")

    def _submit(
        self,
        op: Op,
        keys: list[bytes],
        views: list[memoryview] | None,
        timeout: float | None,
        ttl_ms: int | None = None,
    ) -> int:
        weights = [v.nbytes for v in views] if views is not None else None
        nworkers = len(self._workers)
        ranges = cut_tiles(len(keys), nworkers, weights)
        deadline = None if timeout is None else time.monotonic() + timeout
        queue = self._queue
        with self._lock:
            if self._closed:
                raise ConnectionClosedError("connector is closed")
            batch_id = self._next_id
            self._next_id += 1
            rr = self._rr
            self._rr = (rr + 1) % nworkers
            batch = Batch(
                queue,
                batch_id,
                op,
                keys,
                views=views,
                timeout=timeout,
                deadline=deadline,
                ttl_ms=ttl_ms,
            )
            tiles = [Tile(batch, r, (rr + i) % nworkers) for i, r in enumerate(ranges)]
            batch.tiles = tiles
            batch.tiles_left = len(tiles)
            with queue.lock:
                queue.active[batch_id] = batch
            # Enqueued under the lock so close() cannot slip between the check and here.
            for t in tiles:
                self._workers[t.worker].enqueue(t)
        return batch_id


def _shut_down(workers: list[Worker], queue: _Completions) -> None:
    """Stop and join the workers, wake any waiter, close the event fd."""
    for w in workers:
        w.stop()
    current = threading.current_thread()
    for w in workers:
        if w is not current and w.ident is not None:
            w.join()
    queue.notifier.set()
    queue.notifier.close()


def _release_in_child(workers: list[Worker], queue: _Completions) -> None:
    """``close()`` in a forked child: close its copies of the descriptors, no locks."""
    for w in workers:
        try:
            w.release_in_child()
        except (OSError, ValueError):
            pass
    queue.notifier.close_in_child()


def _release_unclosed(pid: int, workers: list[Worker], queue: _Completions, name: str) -> None:
    """The finalizer of a connector dropped without ``close()``."""
    if os.getpid() != pid:
        _release_in_child(workers, queue)
        return
    if any(w is threading.current_thread() for w in workers):
        # Collected on one of its own workers (which cannot join itself, and may hold
        # its own locks right now): a short-lived thread does the shutdown.
        reaper = threading.Thread(
            target=_shut_down, args=(workers, queue), name="respkv-reaper", daemon=True
        )
        reaper.start()
    else:
        _shut_down(workers, queue)
    warnings.warn(f"unclosed {name}", ResourceWarning, stacklevel=2)
