"""One worker thread of the pure engine: scheduling keys over one connection.

The plan
--------
A worker owns a queue of *tiles* (contiguous key ranges of batches, see
:mod:`respkv._pyengine.batch`) and at most one :class:`~respkv._pyengine.connection.
Connection`. Keys move through three places: ``_pending`` (tiles with keys not sent),
``_inflight`` (runs of keys whose requests are queued or written, replies not yet read;
FIFO, matching RESP's in-order replies) and done. One ``selectors`` loop waits on the
connection, the worker's wake-up fd, and the nearest deadline, and is full duplex: while
a reply streams in, the next request is already being written. Nothing in the loop
blocks: even a connection being opened is a phase of the loop, so a batch deadline or a
cancel is met within one wake-up whatever the worker was doing.

Windows. How much is in flight is bounded per connection (see ``ConnectionOptions``): a
request is admitted when nothing is in flight, or when the count stays below
``window_small``, the payload bytes below ``window_bytes``, and, for a large value (>=
:data:`~respkv._limits.LARGE_VALUE_BYTES`), the large values below ``window_values``.
Small replies (EXISTS, UNLINK) pipeline hundreds deep; multi-MiB values one deep by
default (two with a single worker), because Redis copies a second queued large SET
out of its query buffer and each queued reply into its output buffer, so deeper
pipelines only add copies on a busy server (measured: benchmarks/scaling.py,
benchmarks/bench_windows.py).

Runs. Keys travel in *runs* (:class:`~respkv._pyengine.batch.Run`): consecutive keys of
one tile admitted together, sharing one ``op_timeout`` deadline and one offset in the
connection's byte stream (so a failure says whether the request had been written:
``Failure.in_flight``). Their bytes come from :mod:`respkv._pyengine.requests`, their
answers from :mod:`respkv._pyengine.replies`: EXISTS and UNLINK runs are hundreds of keys
long, packed with one ``join`` and answered with one ``map``: about a microsecond per
key, and no object per key unless the key fails.

Deadlines. The oldest run must be answered within ``op_timeout`` of its admission, else
the keys in flight get TIMEOUT (kind TIMED_OUT) and the connection is dropped. A batch's
own deadline (``timeout=``) is kept in a heap of the worker's tiles
(:class:`~respkv._pyengine.batch.Deadlines`); when it passes, or a cancel arrives, the
tile *ends*: a connection with keys of it in flight is dropped (other keys in flight on
it end ABORTED), and its keys not sent end without any I/O. Only then is the tile
finished, so the batch's completion is never queued while this worker could still write
into its buffers.

Failures. A broken connection fails only the keys in flight; keys still pending go out on
a new connection, made after a backoff that doubles from ``reconnect_backoff_min`` to
``reconnect_backoff_max`` and resets on success. If connecting fails, every pending key
fails: each failure consumes work, so the loop always ends. Any byte that arrives while no
request is in flight, or before the request it would answer was written, is a
desynchronised stream: the connection is dropped, and nothing answered before is touched.
An unexpected exception fails what the worker holds (kind INTERNAL) and restarts the loop.

Locking. Submitters append tiles (and ``cancel`` appends tiles to end) under ``_lock`` and
wake the worker through its notifier; everything else here runs on the worker thread.
"""

from __future__ import annotations

import logging
import selectors
import threading
import time
from collections import deque
from dataclasses import replace
from typing import Final

from respkv._contract import Op
from respkv._failure import ErrorKind, Failure
from respkv._limits import LARGE_VALUE_BYTES
from respkv._options import ConnectionOptions
from respkv._pyengine.batch import Batch, Deadlines, Run, Tile
from respkv._pyengine.connection import Connection, Dropped, Poller, TlsContext
from respkv._pyengine.notifier import Notifier
from respkv._pyengine.replies import Broken, key_replies, value_replies
from respkv._pyengine.requests import key_requests, value_requests

__all__ = ["Worker"]

log = logging.getLogger("respkv.engine")

_READ: Final = selectors.EVENT_READ
_WRITE: Final = selectors.EVENT_WRITE


class Worker(threading.Thread):
    """Runs the tiles given to it on its own connection until ``stop`` is called."""

    def __init__(self, index: int, options: ConnectionOptions, tls: TlsContext | None) -> None:
        super().__init__(name=f"respkv-worker-{index}", daemon=True)
        self._opt = options
        self._tls = tls
        address = options.address
        self._lock = threading.Lock()
        self._incoming: list[Tile] = []
        self._to_end: list[Tile] = []
        self._wake = Notifier()
        self._stopping = False
        # Worker-thread state.
        self._pending: deque[Tile] = deque()
        self._inflight: deque[Run] = deque()
        self._deadlines = Deadlines()
        self._inflight_keys = 0
        self._inflight_bytes = 0
        self._inflight_large = 0
        self._out: deque[memoryview | bytes] = deque()
        self._queued = 0  # bytes queued on the current connection
        self._conn: Connection | None = None
        self._poller = Poller(self._wake.fileno())
        self._woken = True
        self._backoff = 0.0
        self._connect_after = 0.0
        self._closed_failure = Failure(ErrorKind.CLOSED, address)
        self._cancelled = Failure(ErrorKind.CANCELLED, address)
        self._aborted = Failure(ErrorKind.ABORTED, address)
        self._timed_out = Failure(ErrorKind.TIMED_OUT, address, timeout=options.op_timeout)
        self._address = address
        #: Connection events so far (written here, read by ``PyConnector.engine_stats``):
        #: connections made, attempts that failed, connections lost or dropped (not by
        #: ``stop``). Once per connection event, never per key.
        self.opened = 0
        self.connect_failures = 0
        self.dropped = 0

    # -- called from other threads -------------------------------------------------

    def enqueue(self, tile: Tile) -> None:
        with self._lock:
            if self._stopping:
                raise RuntimeError("worker is stopping")
            self._incoming.append(tile)
        self._wake.set()

    def end(self, tile: Tile) -> None:
        """End ``tile`` now (its batch was cancelled); non-blocking."""
        with self._lock:
            self._to_end.append(tile)
        self._wake.set()

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
        self._wake.set()

    def release_in_child(self) -> None:
        """In a forked child: close this worker's descriptors (its thread is not here)."""
        conn = self._conn
        if conn is not None and conn.sock is not None:
            conn.sock.close()
        self._poller.close()
        self._wake.close_in_child()

    # -- the loop ------------------------------------------------------------------

    def run(self) -> None:
        try:
            while True:
                try:
                    self._loop()
                    return
                except Exception as exc:  # a bug: fail what is held, keep serving
                    self._recover(exc)
        finally:
            self._close_conn()
            self._poller.close()
            self._wake.close()

    def _loop(self) -> None:
        while True:
            if self._woken:
                self._woken = False
                self._take_inbox()
            now = time.monotonic()
            first = self._deadlines.first()
            if first is not None and first <= now:
                self._expire(now)
            if self._stopping:
                self._shut_down()
                return
            if self._pending or self._inflight:
                self._work(now)
            else:
                self._idle()

    def _work(self, now: float) -> None:
        """One step with keys to serve: wait out the backoff, open the connection, or
        admit requests and do one round of I/O."""
        conn = self._conn
        if conn is None:
            if now < self._connect_after:
                self._select(0, self._connect_after)
            else:
                self._open(now)
        elif not conn.ready:
            self._opening(conn, now)
        else:
            try:
                if self._pending:
                    self._admit(now)
                self._pump(conn)
            except Dropped as exc:
                self._drop(exc.failure)

    def _shut_down(self) -> None:
        """close(): everything ends now, kind CLOSED (the keys in flight too: a stalled
        server must not hold close() for op_timeout). The inbox is taken once more:
        tiles enqueued before stop() are still in it, and none can follow (enqueue
        refuses once stopping is set, under _lock)."""
        self._take_inbox()
        if self._inflight:
            self._drop(self._closed_failure, backoff=False)
        self._fail_pending(self._closed_failure)

    def _select(self, events: int, until: float | None) -> int:
        """Wait for ``events`` on the connection, the wake fd, ``until`` or the nearest
        batch deadline; the connection's ready events."""
        conn = self._conn
        self._poller.watch(conn.sock if conn is not None else None, events)
        first = self._deadlines.first()
        if first is not None:
            until = first if until is None or first < until else until
        mask, woken = self._poller.wait(None if until is None else until - time.monotonic())
        if woken:
            self._woken = True
        return mask

    def _take_inbox(self) -> None:
        self._wake.clear()  # before taking the work: a later set() is not lost
        with self._lock:
            incoming, self._incoming = self._incoming, []
            to_end, self._to_end = self._to_end, []
        was_idle = not self._pending and not self._inflight
        self._pending.extend(incoming)
        self._deadlines.add(incoming, len(self._pending) + len(self._inflight))
        if to_end:
            self._end([(tile, self._cancelled) for tile in to_end if not tile.finished])
        conn = self._conn
        if was_idle and self._pending and conn is not None and conn.ready:
            self._check_idle(conn)

    def _idle(self) -> None:
        """Nothing to do: wait, watching an open connection for a close or stray bytes."""
        conn = self._conn
        if conn is not None and not conn.ready:
            self._close_conn()  # being opened for work that has ended meanwhile
            conn = None
        if self._select(_READ if conn is not None else 0, None) and conn is not None:
            self._check_idle(conn)

    def _check_idle(self, conn: Connection) -> None:
        """With nothing in flight, a readable connection was closed by the server (an
        idle timeout, a restart: reconnect when work comes) or sent bytes nobody asked
        for (a desynchronised stream: drop it)."""
        try:
            conn.probe()
        except Dropped as exc:
            self._drop(exc.failure, backoff=exc.failure.kind is ErrorKind.PROTOCOL_ERROR)

    # -- opening a connection ------------------------------------------------------

    def _open(self, now: float) -> None:
        conn = Connection(self._opt, self._tls)
        self._conn = conn
        try:
            conn.begin(now)
        except Dropped as exc:
            self._connect_failed(exc.failure)
            return
        if conn.ready:
            self._connected(conn)

    def _opening(self, conn: Connection, now: float) -> None:
        if now >= conn.connect_deadline:
            self._connect_failed(conn.timed_out())
            return
        if not self._select(conn.events(), conn.connect_deadline):
            return
        try:
            conn.advance()
        except Dropped as exc:
            self._connect_failed(exc.failure)
            return
        if conn.ready:
            self._connected(conn)

    def _connected(self, conn: Connection) -> None:
        self._backoff = 0.0
        self._queued = 0
        if not conn.reader.idle:  # bytes after the handshake replies
            self._connect_failed(conn.desync("after the connection handshake"))
            return
        self.opened += 1

    def _connect_failed(self, failure: Failure) -> None:
        self.connect_failures += 1
        self._close_conn()
        self._schedule_reconnect()
        self._fail_pending(failure)

    def _schedule_reconnect(self) -> None:
        opt = self._opt
        self._backoff = min(
            max(self._backoff * 2, opt.reconnect_backoff_min), opt.reconnect_backoff_max
        )
        self._connect_after = time.monotonic() + self._backoff

    def _close_conn(self) -> None:
        conn, self._conn = self._conn, None
        self._poller.watch(None, 0)
        if conn is not None:
            conn.close()

    # -- admitting requests --------------------------------------------------------

    def _admit(self, now: float) -> None:
        """Move pending keys in flight while the windows allow, queueing their bytes."""
        opt = self._opt
        pending = self._pending
        out = self._out
        deadline = now + opt.op_timeout
        small: list[bytes] = []
        queued = self._queued
        while pending:
            tile = pending[0]
            batch = tile.batch
            start = tile.sent
            offset = queued
            if batch.views is None:
                # EXISTS / UNLINK: no payload, only the count window applies.
                room = opt.window_small - self._inflight_keys
                if room <= 0 and self._inflight_keys:
                    break
                end = min(tile.stop, start + max(room, 1))
                data = key_requests(batch, start, end)
                small.append(data)
                queued += len(data)
            else:
                end, queued, small = self._admit_values(tile, batch, small, queued)
                if end == start:
                    break
            self._inflight_keys += end - start
            self._inflight.append(Run(tile, start, end, deadline, offset))
            tile.sent = end
            if end < tile.stop:
                break
            pending.popleft()
        if small:
            out.append(b"".join(small))
        self._queued = queued

    def _admit_values(
        self, tile: Tile, batch: Batch, small: list[bytes], queued: int
    ) -> tuple[int, int, list[bytes]]:
        """SET / GET keys of ``tile`` from ``tile.sent`` while the windows allow: the
        end of the run, the bytes queued so far, and the small requests not yet queued."""
        opt = self._opt
        views = batch.views
        assert views is not None
        start = end = tile.sent
        while end < tile.stop:
            nbytes = views[end].nbytes
            large = nbytes >= LARGE_VALUE_BYTES
            in_flight = self._inflight_keys + end - start
            if in_flight and (
                in_flight >= opt.window_small
                or self._inflight_bytes + nbytes > opt.window_bytes
                or (large and self._inflight_large >= opt.window_values)
            ):
                break
            self._inflight_bytes += nbytes
            self._inflight_large += large
            end += 1
        if end > start:
            added, small = value_requests(batch, start, end, self._out, small)
            queued += added
        return end, queued, small

    # -- I/O -----------------------------------------------------------------------

    def _pump(self, conn: Connection) -> None:
        """One round of I/O: wait for readiness (bounded by the head's deadline)."""
        if conn.tls and conn.has_pending():  # TLS: decrypted bytes not announced
            self._on_readable(conn)
            return
        out = self._out
        if out and not conn.write_blocked:
            conn.send(out)  # no wait for writability first: most requests fit at once
        head = self._inflight[0].deadline if self._inflight else None
        mask = self._select(_READ | _WRITE if out else _READ, head)
        if mask & _WRITE:
            conn.send(out)
        if mask & _READ:
            self._on_readable(conn)
        if self._inflight and time.monotonic() >= self._inflight[0].deadline:
            raise Dropped(self._timed_out)

    def _on_readable(self, conn: Connection) -> None:
        header_only = self._large_get_next()
        if not conn.receive(header_only):
            return
        self._take_replies(conn)
        # The value's header came with more behind it: take the payload now rather than
        # after another wait (measured: 0.5 MiB GETs 1.1-1.2x; looping on while receives
        # fill, or a receive low-water mark, did not pay: docs/performance.md).
        if header_only and conn.filled and conn.receive(self._large_get_next()):
            self._take_replies(conn)

    def _large_get_next(self) -> bool:
        """True when the next reply is a large GET value: then only its header is
        received into our buffer, so the payload lands in the caller's buffer whole."""
        if not self._inflight:
            return False
        run = self._inflight[0]
        batch = run.tile.batch
        views = batch.views
        return (
            views is not None and batch.op is Op.GET and views[run.pos].nbytes >= LARGE_VALUE_BYTES
        )

    # -- replies -------------------------------------------------------------------

    def _take_replies(self, conn: Connection) -> None:
        reader = conn.reader
        inflight = self._inflight
        while inflight:
            run = inflight[0]
            if run.offset >= conn.sent and not reader.idle:
                raise Dropped(conn.desync("before its request was sent"))
            take = key_replies if run.tile.batch.views is None else value_replies
            try:
                pos = take(run, reader, self._address)
            except Broken as exc:
                self._settle(run, exc.pos)
                failure = Failure(ErrorKind.PROTOCOL_ERROR, self._address, detail=str(exc))
                raise Dropped(failure) from None
            self._settle(run, pos)
            if pos < run.stop:
                return
            inflight.popleft()
        if not reader.idle:
            raise Dropped(conn.desync("with no request in flight"))

    def _settle(self, run: Run, pos: int) -> None:
        """Account keys ``run.pos .. pos`` as done (their statuses are written)."""
        done = pos - run.pos
        if not done:
            return
        views = run.tile.batch.views
        if views is not None:  # SET / GET: their values leave the byte windows
            total = large = 0
            for view in views[run.pos : pos]:
                nbytes = view.nbytes
                total += nbytes
                large += nbytes >= LARGE_VALUE_BYTES
            self._inflight_bytes -= total
            self._inflight_large -= large
        run.pos = pos
        self._inflight_keys -= done
        run.tile.keys_done(done)

    # -- ending keys early ---------------------------------------------------------

    def _drop(
        self, failure: Failure, ending: dict[Tile, Failure] | None = None, backoff: bool = True
    ) -> None:
        """Close the connection and fail every key in flight on it: ``failure``, or the
        tile's own in ``ending``; ``in_flight`` says whether its request was written."""
        conn = self._conn
        sent = conn.sent if conn is not None else 0
        if conn is not None and failure is not self._closed_failure:
            self.dropped += 1
        self._close_conn()
        if backoff:
            self._schedule_reconnect()
        variants: dict[tuple[int, bool], Failure] = {}
        while self._inflight:
            run = self._inflight.popleft()
            base = ending.get(run.tile, failure) if ending else failure
            written = sent > run.offset
            f = variants.get((id(base), written))
            if f is None:
                f = base if base.in_flight == written else replace(base, in_flight=written)
                variants[id(base), written] = f
            run.tile.fail(run.pos, run.stop, f)
        self._inflight_keys = self._inflight_bytes = self._inflight_large = 0
        self._out.clear()
        self._queued = 0

    def _fail_pending(self, failure: Failure) -> None:
        while self._pending:
            tile = self._pending.popleft()
            start, tile.sent = tile.sent, tile.stop
            tile.fail(start, tile.stop, failure)

    def _expire(self, now: float) -> None:
        """End the tiles whose batch deadline has passed."""
        items = [
            (tile, Failure(ErrorKind.DEADLINE, self._address, timeout=tile.batch.timeout or 0.0))
            for tile in self._deadlines.due(now)
        ]
        if items:
            self._end(items)

    def _end(self, items: list[tuple[Tile, Failure]]) -> None:
        """End tiles now: drop the connection if any has keys in flight (keys of other
        tiles on it end ABORTED), then fail their keys not sent, without I/O."""
        ending = dict(items)
        if any(tile.has_inflight for tile in ending):
            self._drop(self._aborted, ending, backoff=False)
        for tile, failure in ending.items():
            if tile.sent < tile.stop:
                try:
                    self._pending.remove(tile)
                except ValueError:  # pragma: no cover - a tile not sent is pending
                    pass
                start, tile.sent = tile.sent, tile.stop
                tile.fail(start, tile.stop, failure)

    def _recover(self, exc: Exception) -> None:
        """After an unexpected exception: fail what this worker holds (kind INTERNAL,
        the exception's text) and drop its connection; the loop then starts again."""
        log.error("respkv worker %s: unexpected error; failing its keys", self.name, exc_info=exc)
        failure = Failure(ErrorKind.INTERNAL, self._address, detail=f"{type(exc).__name__}: {exc}")
        self._drop(failure)
        self._fail_pending(failure)
        self._woken = True
