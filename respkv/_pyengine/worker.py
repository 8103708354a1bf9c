"""One worker thread: one connection, a ``selectors`` loop, bounded pipelining.

The plan
--------
A worker owns a queue of *tiles* (contiguous key ranges of batches) and one socket.
Keys move through three places: ``_pending`` (not sent), ``_inflight`` (request
written or being written, reply not yet read; FIFO, matching RESP's in-order replies)
and done. The loop is full duplex: while a reply streams in, the next request is
already being written, so neither direction idles.

How much is in flight is bounded per connection (see ``ConnectionOptions``):
a request is admitted when nothing is in flight, or when the count stays below
``window_small``, the payload bytes below ``window_bytes``, and, for a large value
(>= :data:`LARGE_VALUE_BYTES`), the large values below ``window_values``. Small
replies (EXISTS, UNLINK) pipeline hundreds deep; multi-MiB values two deep, because
Redis copies each queued reply into its output buffer before writing it, so deeper
GET pipelines only add copies on the server (measured: benchmarks/bench_windows.py).

Zero copy. SET goes out as ``sendmsg([header, caller's buffer, CRLF])``, resuming
after partial writes with sliced memoryviews. A GET reply's payload is received with
``recv_into`` straight into the caller's buffer (see :class:`respkv.resp2.Reader`).

Failure handling. A broken connection fails only the keys in flight (IO_ERROR); keys
still pending are sent on a new connection, made lazily after a backoff that doubles
from ``reconnect_backoff_min`` to ``reconnect_backoff_max`` and resets on success. If
connecting fails, every pending key fails with IO_ERROR: each failure consumes work,
so the loop always ends. The oldest in-flight request must be answered within
``op_timeout`` of when its request was queued for writing, else the keys in flight
get TIMEOUT and the connection is dropped.

Runs. Keys travel in *runs*: consecutive keys of one tile admitted together, sharing
one deadline. EXISTS and UNLINK runs are hundreds of keys long, so their requests are
packed with one ``join`` and their replies parsed with one :meth:`Reader.gets_many`
call, which keeps the pure engine's per-key cost near a microsecond.

Locking. Submitters append tiles under ``_lock`` and wake the worker through its
notifier; everything else in here runs on the worker thread alone.
"""

from __future__ import annotations

import selectors
import socket
import ssl
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Final

from respkv._admin import handshake_commands, open_socket
from respkv._contract import KeyStatus, Op
from respkv._pyengine.notify import Notifier
from respkv.errors import ProtocolError, ReplyError
from respkv.resp2 import (
    FILLED,
    NEED_DATA,
    Reader,
    SizeMismatch,
    pack_command,
    pack_key_command,
    pack_set_header,
)

if TYPE_CHECKING:
    from respkv._options import ConnectionOptions
    from respkv._pyengine.engine import Tile

__all__ = ["LARGE_VALUE_BYTES", "Worker"]

#: Values at least this large count against ``window_values`` (see the module essay).
LARGE_VALUE_BYTES: Final = 256 * 1024
#: Bytes asked for per ``recv`` when not receiving into a caller's buffer.
RECV_CHUNK: Final = 256 * 1024
#: Bytes asked for when the next reply is a large GET value: enough for its
#: ``$<len>\r\n`` header (and the CRLF of the value before), so that at most this
#: many payload bytes are copied instead of a whole :data:`RECV_CHUNK`.
HEADER_RECV: Final = 64
#: Values below this are copied into the request bytes (one iovec beats three).
INLINE_VALUE_BYTES: Final = 16 * 1024
#: Most buffers handed to one ``sendmsg`` (Linux's IOV_MAX is 1024).
MAX_IOV: Final = 512

_CRLF: Final = b"\r\n"
_OP_COMMANDS: Final = {Op.GET: b"GET", Op.EXISTS: b"EXISTS", Op.DELETE: b"UNLINK"}
#: ``*2\r\n$<n>\r\n<NAME>\r\n``: what every one-key command of an op starts with.
_OP_HEADS: Final = {op: b"*2\r\n$%d\r\n%b\r\n" % (len(n), n) for op, n in _OP_COMMANDS.items()}
_CANCELLED_TEXT: Final = "connector closed before the key was sent"
_OK: Final = KeyStatus.OK
_MISS: Final = KeyStatus.MISS


class _Dropped(Exception):
    """Internal: the connection must be dropped; ``status`` is what in-flight keys get."""

    def __init__(self, status: KeyStatus, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Worker(threading.Thread):
    """Runs the tiles given to it on its own connection until ``stop`` is called."""

    def __init__(self, index: int, options: ConnectionOptions) -> None:
        super().__init__(name=f"respkv-worker-{index}", daemon=True)
        self._opt = options
        self._lock = threading.Lock()
        self._incoming: deque[Tile] = deque()
        self._wake = Notifier()
        self._stopping = False
        # Worker-thread state.
        self._pending: deque[_Cursor] = deque()
        self._inflight: deque[_Run] = deque()
        self._inflight_keys = 0
        self._out: deque[memoryview | bytes] = deque()
        self._inflight_bytes = 0
        self._inflight_large = 0
        self._sock: socket.socket | None = None
        self._reader = Reader()
        self._sel = selectors.DefaultSelector()
        self._sel.register(self._wake.fileno(), selectors.EVENT_READ, None)
        self._events = 0
        self._woken = True
        self._backoff = 0.0
        self._connect_after = 0.0
        self._tls = options.tls is not None

    # -- called from other threads -------------------------------------------------

    def enqueue(self, tile: Tile) -> None:
        with self._lock:
            if self._stopping:
                raise RuntimeError("worker is stopping")
            self._incoming.append(tile)
        self._wake.set()

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
        self._wake.set()

    # -- the loop ------------------------------------------------------------------

    def run(self) -> None:
        try:
            self._loop()
        finally:
            self._close_socket()
            self._sel.close()
            self._wake.close()

    def _loop(self) -> None:
        stopping = False
        while True:
            if self._woken:
                self._woken = False
                self._wake.clear()
                with self._lock:
                    stopping = self._stopping
                    was_idle = not self._pending and not self._inflight
                    while self._incoming:
                        tile = self._incoming.popleft()
                        self._pending.append(_Cursor(tile))
                if was_idle and self._pending and self._sock is not None:
                    self._check_idle_socket()
            if stopping and self._pending:
                self._cancel_pending()
            if not self._pending and not self._inflight:
                if stopping:
                    return
                self._set_interest(0)
                self._sel.select(None)
                self._woken = True
                continue
            if self._sock is None:
                wait = self._connect_after - time.monotonic()
                if wait > 0:
                    self._set_interest(0)
                    if self._sel.select(wait):
                        self._woken = True
                    continue
                if not self._connect():
                    continue
            try:
                self._admit()
                self._pump()
            except _Dropped as exc:
                self._drop(exc.status, exc.message)

    def _pump(self) -> None:
        """One round of I/O: wait for readiness (bounded by the head's deadline)."""
        sock = self._sock
        assert sock is not None
        want = selectors.EVENT_READ if self._inflight else 0
        if self._out:
            want |= selectors.EVENT_WRITE
        if self._tls and sock.pending():  # type: ignore[attr-defined]
            self._on_readable(sock)
            return
        self._set_interest(want)
        timeout = None
        if self._inflight:
            timeout = max(0.0, self._inflight[0].deadline - time.monotonic())
        events = self._sel.select(timeout)
        for key, mask in events:
            if key.data is None:
                self._woken = True
                continue
            if mask & selectors.EVENT_WRITE:
                self._on_writable(sock)
            if mask & selectors.EVENT_READ:
                self._on_readable(sock)
        if self._inflight and time.monotonic() >= self._inflight[0].deadline:
            raise _Dropped(
                KeyStatus.TIMEOUT, f"no reply within op_timeout ({self._opt.op_timeout} s)"
            )

    def _set_interest(self, events: int) -> None:
        sock = self._sock
        if events == self._events or sock is None:
            if sock is None:
                self._events = 0
            return
        if self._events == 0:
            self._sel.register(sock, events, True)
        elif events == 0:
            self._sel.unregister(sock)
        else:
            self._sel.modify(sock, events, True)
        self._events = events

    # -- admitting requests --------------------------------------------------------

    def _admit(self) -> None:
        """Move pending keys in flight while the windows allow, queueing their bytes."""
        opt = self._opt
        pending = self._pending
        inflight = self._inflight
        out = self._out
        deadline = time.monotonic() + opt.op_timeout
        small: list[bytes] = []
        while pending:
            cur = pending[0]
            tile = cur.tile
            batch = tile.batch
            start = cur.next
            stop = tile.indices.stop
            views = batch.views
            if views is None:
                # EXISTS / UNLINK: no payload, only the count window applies.
                room = opt.window_small - self._inflight_keys
                if room <= 0 and self._inflight_keys:
                    break
                end = min(stop, start + max(room, 1))
                # pack_key_command inlined: this line runs once per EXISTS/UNLINK key.
                head = _OP_HEADS[batch.op]
                run_keys = batch.keys[start:end]
                small.append(b"".join([b"%b$%d\r\n%b\r\n" % (head, len(k), k) for k in run_keys]))
            else:
                end = start
                is_set = batch.op is Op.SET
                keys = batch.keys
                while end < stop:
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
                    if not is_set:
                        small.append(pack_key_command(b"GET", keys[end]))
                    elif nbytes < INLINE_VALUE_BYTES:
                        header = pack_set_header(keys[end], nbytes)
                        small.append(header + views[end].tobytes() + _CRLF)
                    else:
                        if small:
                            out.append(b"".join(small))
                            small = []
                        out.append(pack_set_header(keys[end], nbytes))
                        out.append(views[end])
                        out.append(_CRLF)
                    end += 1
                if end == start:
                    break
            self._inflight_keys += end - start
            inflight.append(_Run(tile, start, end, deadline))
            if end < stop:
                cur.next = end
                break
            pending.popleft()
        if small:
            out.append(b"".join(small))

    # -- writing -------------------------------------------------------------------

    def _on_writable(self, sock: socket.socket) -> None:
        out = self._out
        try:
            if self._tls:
                sent = sock.send(out[0])
            else:
                sent = sock.sendmsg(list(out)[:MAX_IOV] if len(out) > MAX_IOV else out)
        except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
            return
        except OSError as exc:
            raise _Dropped(KeyStatus.IO_ERROR, self._lost(exc)) from None
        while sent:
            head = out[0]
            size = len(head) if isinstance(head, bytes) else head.nbytes
            if sent >= size:
                out.popleft()
                sent -= size
            else:
                out[0] = memoryview(head)[sent:]
                sent = 0

    # -- reading -------------------------------------------------------------------

    def _on_readable(self, sock: socket.socket) -> None:
        reader = self._reader
        try:
            view = reader.get_buffer()
            if view is not None:
                n = sock.recv_into(view)
                if n:
                    reader.buffer_updated(n)
            else:
                data = sock.recv(HEADER_RECV if self._large_get_next() else RECV_CHUNK)
                n = len(data)
                if n:
                    reader.feed(data)
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return
        except OSError as exc:
            raise _Dropped(KeyStatus.IO_ERROR, self._lost(exc)) from None
        if n == 0:
            raise _Dropped(KeyStatus.IO_ERROR, self._lost("server closed the connection"))
        self._take_replies()

    def _large_get_next(self) -> bool:
        """True when the next reply is a large GET value: then only its header is
        received into our buffer, so the payload lands in the caller's buffer whole."""
        if not self._inflight:
            return False
        run = self._inflight[0]
        views = run.tile.batch.views
        return (
            views is not None
            and run.tile.batch.op is Op.GET
            and views[run.pos].nbytes >= LARGE_VALUE_BYTES
        )

    def _take_replies(self) -> None:
        reader = self._reader
        inflight = self._inflight
        while inflight:
            run = inflight[0]
            tile = run.tile
            batch = tile.batch
            statuses = batch.statuses
            views = batch.views
            pos = run.pos
            stop = run.stop
            try:
                if views is None:
                    for reply in reader.gets_many(stop - pos):
                        if reply == 1:
                            statuses[pos] = _OK
                        elif reply == 0:
                            statuses[pos] = _MISS
                        else:
                            statuses[pos], batch.errors[pos] = _status_of(batch.op, reply, 0)
                        pos += 1
                else:
                    is_get = batch.op is Op.GET
                    while pos < stop:
                        if is_get:
                            reader.set_target(views[pos])
                        reply = reader.gets()
                        if reply is NEED_DATA:
                            break
                        nbytes = views[pos].nbytes
                        self._inflight_bytes -= nbytes
                        self._inflight_large -= nbytes >= LARGE_VALUE_BYTES
                        if reply is FILLED or (not is_get and reply == b"OK"):
                            statuses[pos] = _OK
                        else:
                            statuses[pos], batch.errors[pos] = _status_of(batch.op, reply, nbytes)
                        pos += 1
            except ProtocolError as exc:
                self._settle(run, pos)
                raise _Dropped(KeyStatus.PROTOCOL_ERROR, str(exc)) from None
            self._settle(run, pos)
            if pos < stop:
                return
            inflight.popleft()

    def _settle(self, run: _Run, pos: int) -> None:
        """Account keys ``run.pos .. pos`` as done (their statuses are written)."""
        done = pos - run.pos
        if done:
            run.pos = pos
            self._inflight_keys -= done
            run.tile.keys_done(done)

    # -- connection lifecycle ------------------------------------------------------

    def _connect(self) -> bool:
        """Open and hand-shake a connection; on failure fail every pending key."""
        opt = self._opt
        try:
            sock = open_socket(opt, opt.connect_timeout)
        except (OSError, ValueError) as exc:
            self._connect_failed(KeyStatus.IO_ERROR, f"connect to {opt.address} failed: {exc}")
            return False
        try:
            failure = self._handshake(sock)
        except (OSError, ProtocolError) as exc:
            sock.close()
            self._connect_failed(KeyStatus.IO_ERROR, f"connect to {opt.address} failed: {exc}")
            return False
        if failure is not None:
            sock.close()
            self._connect_failed(KeyStatus.SERVER_ERROR, failure)
            return False
        sock.setblocking(False)
        self._sock = sock
        self._reader = Reader()
        self._events = 0
        self._backoff = 0.0
        return True

    def _handshake(self, sock: socket.socket) -> str | None:
        """AUTH / SELECT / CLIENT SETNAME, pipelined; the failure text or None."""
        cmds = handshake_commands(self._opt)
        if not cmds:
            return None
        sock.settimeout(self._opt.connect_timeout)
        payload = b"".join(bytes(memoryview(p)) for c in cmds for p in pack_command(*c))
        sock.sendall(payload)
        reader = Reader()
        replies: list[Any] = []
        while len(replies) < len(cmds):
            reply = reader.gets()
            if reply is NEED_DATA:
                data = sock.recv(4096)
                if not data:
                    raise ConnectionError("server closed the connection during the handshake")
                reader.feed(data)
                continue
            replies.append(reply)
        for cmd, reply in zip(cmds, replies):
            name = str(cmd[0])
            if isinstance(reply, ReplyError) and name in ("AUTH", "SELECT"):
                return f"{name} failed: {reply}"
        return None

    def _connect_failed(self, status: KeyStatus, message: str) -> None:
        self._schedule_reconnect()
        self._fail_pending(status, message)

    def _fail_pending(self, status: KeyStatus, message: str) -> None:
        while self._pending:
            cur = self._pending.popleft()
            _fail(cur.tile, cur.next, cur.tile.indices.stop, status, message)

    def _schedule_reconnect(self) -> None:
        opt = self._opt
        self._backoff = min(
            max(self._backoff * 2, opt.reconnect_backoff_min), opt.reconnect_backoff_max
        )
        self._connect_after = time.monotonic() + self._backoff

    def _drop(self, status: KeyStatus, message: str) -> None:
        """Fail the keys in flight with ``status``, close the socket, plan a reconnect."""
        self._close_socket()
        self._schedule_reconnect()
        while self._inflight:
            run = self._inflight.popleft()
            _fail(run.tile, run.pos, run.stop, status, message)
        self._inflight_keys = 0
        self._inflight_bytes = 0
        self._inflight_large = 0
        self._out.clear()

    def _close_socket(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            if self._events:
                self._sel.unregister(sock)
            self._events = 0
            sock.close()

    def _check_idle_socket(self) -> None:
        """Drop an idle connection the server has closed (restart, idle timeout), so
        new work goes to a fresh one instead of failing on the stale one."""
        sock = self._sock
        assert sock is not None
        if self._tls:
            return  # MSG_PEEK is not available on TLS sockets; a failure is caught later.
        try:
            sock.recv(1, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            return  # nothing to read: the connection is healthy
        except OSError:
            pass
        # EOF, an error, or unsolicited bytes (not ours to interpret): start afresh.
        self._close_socket()

    def _cancel_pending(self) -> None:
        self._fail_pending(KeyStatus.CANCELLED, _CANCELLED_TEXT)

    def _lost(self, reason: object) -> str:
        return f"connection to {self._opt.address} lost: {reason}"


class _Cursor:
    """A tile's keys not yet sent: ``tile.indices`` from ``next`` on."""

    __slots__ = ("next", "tile")

    def __init__(self, tile: Tile) -> None:
        self.tile = tile
        self.next = tile.indices.start


class _Run:
    """Consecutive keys of one tile in flight: ``pos`` is the next reply's key."""

    __slots__ = ("deadline", "pos", "stop", "tile")

    def __init__(self, tile: Tile, start: int, stop: int, deadline: float) -> None:
        self.tile = tile
        self.pos = start
        self.stop = stop
        self.deadline = deadline


def _fail(tile: Tile, start: int, stop: int, status: KeyStatus, message: str) -> None:
    """Give keys ``start .. stop`` of ``tile`` a failure status and complete them."""
    if start >= stop:
        return
    batch = tile.batch
    for i in range(start, stop):
        batch.statuses[i] = status
        batch.errors[i] = message
    tile.keys_done(stop - start)


def _status_of(op: Op, reply: Any, nbytes: int) -> tuple[KeyStatus, str | None]:
    """Map one reply to the key's status and error text."""
    if isinstance(reply, ReplyError):
        return KeyStatus.SERVER_ERROR, str(reply)
    if op is Op.GET:
        if reply is FILLED:
            return KeyStatus.OK, None
        if reply is None:
            return KeyStatus.MISS, None
        if isinstance(reply, SizeMismatch):
            return (
                KeyStatus.SIZE_MISMATCH,
                f"value is {reply.length} bytes, buffer is {nbytes} bytes",
            )
    elif op is Op.SET:
        if reply == b"OK":
            return KeyStatus.OK, None
    elif reply == 1:
        return KeyStatus.OK, None
    elif reply == 0:
        return KeyStatus.MISS, None
    return KeyStatus.SERVER_ERROR, f"unexpected reply: {reply!r:.80}"
