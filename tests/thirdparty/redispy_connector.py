"""A respkv connector written over redis-py: a third party's connector, as proof that the
shipped conformance suite (``respkv.conformance``) can be run and passed by a connector
that is not respkv's own.

It uses only respkv's public API (:mod:`respkv.contract`: the records, the submit-time
checks, the options) and redis-py for everything on the wire: its connection classes
open the socket (TCP, unix socket, TLS), its packer builds the requests and its RESP2
parser reads the replies. Run it as a third party would::

    respkv-conformance tests/thirdparty/redispy_connector.py:RedisPyConnector

The plan. ``num_workers`` threads each own one redis-py ``Connection`` and take whole
batches from one queue. A batch goes out in windows (``window_values`` large values,
``window_bytes``, ``window_small`` requests), and the replies of a window are read
before the next one is sent, so a broken connection fails only the keys in flight on
it; the rest go out on a new connection after the reconnect backoff.

redis-py blocks, and ``cancel``, ``close`` and batch deadlines must end a batch
promptly, so a worker never blocks for long: it sends with ``send`` on a socket whose
timeout is :data:`IO_SLICE` and reads replies with ``read_response(timeout=IO_SLICE,
disconnect_on_error=False)``, checking between slices whether its batch was ended.
redis-py's parser rewinds to the start of a reply on a timed-out read and keeps the
bytes it has, so a reply read over many slices is read whole, once.

Two changes to redis-py's defaults keep the contract's data intact:

* a parser whose ``parse_error`` keeps the server's error text verbatim (redis-py
  strips the code of the errors it knows, ``NOAUTH ...`` becoming
  ``AuthenticationError("Authentication required.")``, and raises some of them as
  connection errors, which would drop a healthy connection);
* no AUTH / SELECT / CLIENT SETNAME / CLIENT SETINFO by redis-py: the connector sends
  its own handshake, so that a refused AUTH or SELECT is reported as such, with the
  server's reply.

What redis-py cannot report is declared in :data:`RedisPyConnector.conformance_limits`,
and the suite skips exactly those cases, naming the reason.
"""

from __future__ import annotations

import bisect
import contextlib
import errno as errno_codes
import os
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Final

import redis
from redis._parsers import _RESP2Parser
from redis.backoff import NoBackoff
from redis.retry import Retry

from respkv.contract import (
    FORKED_MESSAGE,
    Completion,
    ConnectionClosedError,
    ConnectionOptions,
    ErrorKind,
    Failure,
    ForkedError,
    KeyLike,
    KeyStatus,
    Op,
    check_buffers,
    check_keys,
    check_timeout,
    check_ttl,
    make_completion,
)

__all__ = ["RedisPyConnector", "factory"]

#: A redis-py connection (``Connection``, ``SSLConnection``, ``UnixDomainSocketConnection``):
#: redis-py leaves their methods untyped, so they are ``Any`` here.
RedisConnection = Any

#: Longest a worker blocks in one send or read before it checks whether its batch was
#: cancelled, closed or past its deadline: the promptness of those, 50 ms.
IO_SLICE: Final = 0.05
#: Buffers per ``sendmsg`` (Linux's IOV_MAX is 1024).
MAX_IOV: Final = 512
#: A value at least this large counts against ``window_values`` (respkv's rule: a large
#: value is worth pipelining only a couple deep).
LARGE_VALUE: Final = 256 * 1024
#: RESP2 integers are signed 64-bit (the Redis protocol spec); anything beyond is a
#: corrupt stream, which redis-py's parser (Python ints) would accept.
INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1
#: The command each op sends, one key per command.
COMMAND: Final = {Op.SET: b"SET", Op.GET: b"GET", Op.EXISTS: b"EXISTS", Op.DELETE: b"UNLINK"}


#: "No complete reply yet" from a read that may not wait.
_NOTHING: Final = object()


class _VerbatimErrors(_RESP2Parser):
    """redis-py's RESP2 parser, with every error reply kept whole as a value."""

    @classmethod
    def parse_error(cls, response: str) -> redis.ResponseError:
        return redis.ResponseError(response)


class _Ended(Exception):
    """The batch was ended (cancel, close, deadline) while its keys were on the wire."""

    def __init__(self, kind: ErrorKind) -> None:
        super().__init__(kind.name)
        self.kind = kind
        self.wrote = 0  # 1 when part of the request being written had gone out


class _Dropped(Exception):
    """The connection failed: ``failure`` is what the keys in flight on it get."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.kind.name)
        self.failure = failure
        self.wrote = 0  # 1 when part of the request being written had gone out


@dataclass(eq=False)
class _Batch:
    batch_id: int
    op: Op
    keys: list[bytes]
    views: list[memoryview] | None
    timeout: float | None
    deadline: float | None
    ttl_ms: int | None  # SET ... PX
    statuses: list[KeyStatus] = field(default_factory=list)
    failures: list[Failure | None] = field(default_factory=list)
    #: Why the batch must end now (set under the connector's lock), or None.
    end: ErrorKind | None = None
    #: Keys ``0..answered-1`` have their outcome (keys are answered in order).
    answered: int = 0

    def __post_init__(self) -> None:
        self.statuses = [KeyStatus.OK] * len(self.keys)
        self.failures = [None] * len(self.keys)


class _Outgoing:
    """The requests of one window as a list of buffers to write, and how far it got:
    which requests are written whole, and which have had at least a byte written (in
    flight: the server may have acted on them)."""

    def __init__(self, requests: Sequence[Sequence[Any]]) -> None:
        self.pending: list[memoryview] = []
        self._starts: list[int] = []
        self._ends: list[int] = []
        offset = 0
        for chunks in requests:
            self._starts.append(offset)
            for chunk in chunks:
                view = memoryview(chunk).cast("B")
                self.pending.append(view)
                offset += len(view)
            self._ends.append(offset)
        self._written = 0

    def advance(self, n: int) -> bool:
        """``n`` more bytes were written; whether any are left."""
        self._written += n
        while n and n >= len(self.pending[0]):
            n -= len(self.pending.pop(0))
        if n:
            self.pending[0] = self.pending[0][n:]
        return bool(self.pending)

    def complete(self) -> int:
        """How many requests have been written whole."""
        return bisect.bisect_right(self._ends, self._written)

    def touched(self) -> int:
        """How many requests have had at least one byte written."""
        return bisect.bisect_left(self._starts, self._written)


class _Worker:
    """One thread's connection (``None`` until needed) and reconnect backoff."""

    def __init__(self) -> None:
        self.conn: RedisConnection | None = None
        self.retry_at = 0.0  # monotonic time before which no reconnect is tried
        self.backoff = 0.0


class RedisPyConnector:
    """The respkv ``Connector`` contract over redis-py."""

    #: Contract behaviours this connector cannot show, and why: the conformance suite
    #: skips the cases that need them with these reasons (``respkv.testing``).
    conformance_limits: ClassVar[dict[str, str]] = {
        "reply_types": "redis-py's parser returns a simple string (+OK) and a bulk string "
        "($2 OK) alike, as bytes, so a reply of the wrong type cannot be told apart",
        "strict_framing": "redis-py's parser drops the two bytes after a bulk payload "
        "without checking that they are CRLF, and buffers a line of any length",
    }

    def __init__(self, options: ConnectionOptions) -> None:
        if options.tls is not None and options.tls.server_hostname not in (None, options.host):
            raise ValueError(
                "redis-py checks the certificate against the host it connects to; "
                "TLSOptions.server_hostname must be None or the host"
            )
        self._opt = options
        self._pid = os.getpid()
        self._efd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)
        self._queue: deque[_Batch] = deque()
        self._running: dict[int, _Batch] = {}
        self._done: list[Completion] = []
        self._signalled = False
        self._closed = False
        self._next_id = 1
        self._workers = [_Worker() for _ in range(options.num_workers)]
        self._threads = [
            threading.Thread(target=self._run, args=(w,), name=f"redispy-{i}")
            for i, w in enumerate(self._workers)
        ]
        for t in self._threads:
            t.start()

    # -- the contract ------------------------------------------------------------------

    def event_fd(self) -> int:
        self._check_process()
        return -1 if self._closed else self._efd

    def submit_batch_set(
        self,
        keys: Sequence[KeyLike],
        buffers: Sequence[Any],
        *,
        timeout: float | None = None,
        ttl: float | None = None,
    ) -> int:
        checked = check_keys(keys)
        views = check_buffers(buffers, len(checked), writable=False)
        return self._submit(Op.SET, checked, views, timeout, check_ttl(ttl))

    def submit_batch_get(
        self, keys: Sequence[KeyLike], buffers: Sequence[Any], *, timeout: float | None = None
    ) -> int:
        checked = check_keys(keys)
        return self._submit(
            Op.GET, checked, check_buffers(buffers, len(checked), writable=True), timeout
        )

    def submit_batch_exists(self, keys: Sequence[KeyLike], *, timeout: float | None = None) -> int:
        return self._submit(Op.EXISTS, check_keys(keys), None, timeout)

    def submit_batch_delete(self, keys: Sequence[KeyLike], *, timeout: float | None = None) -> int:
        return self._submit(Op.DELETE, check_keys(keys), None, timeout)

    def cancel(self, batch_id: int) -> bool:
        self._check_process()
        with self._lock:
            for b in self._queue:
                if b.batch_id == batch_id:
                    self._queue.remove(b)
                    self._end_unsent(b, ErrorKind.CANCELLED)
                    self._complete_locked(b)
                    return True
            b_running = self._running.get(batch_id)
            if b_running is None:
                return False
            if b_running.end is None:
                b_running.end = ErrorKind.CANCELLED
            return True

    def drain_completions(self) -> list[Completion]:
        self._check_process()
        with self._lock:
            done, self._done = self._done, []
            if self._signalled and not self._closed:
                self._signalled = False
                with contextlib.suppress(BlockingIOError):
                    os.read(self._efd, 8)
        return done

    def close(self) -> None:
        if os.getpid() != self._pid:
            self._close_in_child()
            return
        with self._lock:
            if self._closed:
                return
            self._closed = True
            while self._queue:
                b = self._queue.popleft()
                self._end_unsent(b, ErrorKind.CLOSED)
                self._complete_locked(b)
            for b in self._running.values():
                if b.end is None:
                    b.end = ErrorKind.CLOSED
            self._work.notify_all()
        for t in self._threads:
            if t is not threading.current_thread():
                t.join()
        with self._lock:
            os.write(self._efd, (1).to_bytes(8, "little"))  # wake any waiter, then release
            os.close(self._efd)

    # -- submitting and completing -------------------------------------------------

    def _check_process(self) -> None:
        if os.getpid() != self._pid:
            raise ForkedError(FORKED_MESSAGE)

    def _submit(
        self,
        op: Op,
        keys: list[bytes],
        views: list[memoryview] | None,
        timeout: float | None,
        ttl_ms: int | None = None,
    ) -> int:
        self._check_process()
        seconds = check_timeout(timeout)
        deadline = None if seconds is None else time.monotonic() + seconds
        with self._lock:
            if self._closed:
                raise ConnectionClosedError("connector is closed")
            batch = _Batch(self._next_id, op, keys, views, seconds, deadline, ttl_ms)
            self._next_id += 1
            self._queue.append(batch)
            self._work.notify()
        return batch.batch_id

    def _complete_locked(self, b: _Batch) -> None:
        """Queue ``b``'s completion (the lock is held). Its buffers are let go first: no
        worker touches them after this."""
        self._running.pop(b.batch_id, None)
        b.views = None
        self._done.append(make_completion(b.batch_id, b.op, b.statuses, b.failures))
        if not self._signalled:
            self._signalled = True
            os.write(self._efd, (1).to_bytes(8, "little"))

    def _failure(self, kind: ErrorKind, **numbers: Any) -> Failure:
        return Failure(kind, self._opt.address, **numbers)

    def _ending(self, b: _Batch, kind: ErrorKind, *, in_flight: bool = False) -> Failure:
        """What a key of ``b`` gets when ``kind`` (cancel, close, deadline) ends it."""
        number = {"timeout": b.timeout} if kind is ErrorKind.DEADLINE else {}
        return self._failure(kind, in_flight=in_flight, **number)

    def _end_unsent(self, b: _Batch, kind: ErrorKind) -> None:
        """The keys of ``b`` without an outcome end with ``kind``, without any I/O."""
        for i in range(b.answered, len(b.keys)):
            b.failures[i] = self._ending(b, kind)
        b.answered = len(b.keys)

    def _close_in_child(self) -> None:
        """``close()`` in a forked child: close the child's copies of the descriptors
        only. No lock is taken (a parent thread may have held it at the fork)."""
        if self._closed:
            return
        self._closed = True
        for w in self._workers:
            sock = getattr(w.conn, "_sock", None)
            if sock is not None:
                sock.close()
        with contextlib.suppress(OSError):
            os.close(self._efd)

    # -- the workers ---------------------------------------------------------------

    def _run(self, w: _Worker) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._closed:
                    self._work.wait()
                if not self._queue:
                    break
                batch = self._queue.popleft()
                self._running[batch.batch_id] = batch
            try:
                self._execute(w, batch)
            except Exception as exc:  # a bug here must fail keys, not lose the batch
                self._drop(w)
                detail = f"{type(exc).__name__}: {exc}"
                for i in range(batch.answered, len(batch.keys)):
                    batch.failures[i] = self._failure(ErrorKind.INTERNAL, detail=detail)
            with self._lock:
                self._complete_locked(batch)
            del batch  # its buffers are not held while this worker waits
        self._drop(w)

    def _ended(self, b: _Batch) -> ErrorKind | None:
        if b.end is None and b.deadline is not None and time.monotonic() >= b.deadline:
            with self._lock:
                if b.end is None:
                    b.end = ErrorKind.DEADLINE
        return b.end

    def _execute(self, w: _Worker, b: _Batch) -> None:
        while b.answered < len(b.keys):
            kind = self._ended(b)
            if kind is not None:
                self._end_unsent(b, kind)
                return
            if w.conn is not None and not self._idle_ok(w.conn):
                self._drop(w)  # closed by the server, reset, or bytes nobody asked for
            failure = self._connect(w, b)
            if failure is not None:
                for k in range(b.answered, len(b.keys)):
                    b.failures[k] = failure
                b.answered = len(b.keys)
                return
            assert w.conn is not None
            self._exchange(w, w.conn, b, self._window_end(b, b.answered))

    def _window_end(self, b: _Batch, start: int) -> int:
        opt = self._opt
        if b.views is None:
            return min(len(b.keys), start + opt.window_small)
        end, large, size = start, 0, 0
        while end < len(b.keys) and end - start < opt.window_small:
            n = b.views[end].nbytes
            if end > start and (size + n > opt.window_bytes or large >= opt.window_values):
                break
            large += n >= LARGE_VALUE
            size += n
            end += 1
        return end

    def _exchange(self, w: _Worker, conn: RedisConnection, b: _Batch, end: int) -> None:
        """Send keys ``b.answered..end-1`` and read their replies. A failed connection
        fails the keys in flight on it; the keys not sent yet are left for the next."""
        start = b.answered
        requests = [self._request(conn, b, i) for i in range(start, end)]
        out = _Outgoing(requests)

        def read_ready() -> None:
            # Full duplex, as far as redis-py allows: while the socket takes no more,
            # replies already here are read (a SET acknowledged is known as such even
            # if the connection breaks before the rest is sent).
            while b.answered < start + out.complete() and self._can_read(conn):
                reply = self._reply(conn, b, time.monotonic() + IO_SLICE, patient=False)
                if reply is _NOTHING:
                    return
                self._settle(b, b.answered, reply)
                b.answered += 1

        try:
            self._send(conn, b, out, self._opt.op_timeout, read_ready)
            while b.answered < end:
                deadline = time.monotonic() + self._opt.op_timeout
                self._settle(b, b.answered, self._reply(conn, b, deadline))
                b.answered += 1
        except _Dropped as exc:
            self._drop(w)
            in_flight = start + out.touched()
            for k in range(b.answered, in_flight):
                b.failures[k] = replace(exc.failure, in_flight=True)
            b.answered = max(b.answered, in_flight)
        except _Ended as exc:
            self._drop(w)
            in_flight = start + out.touched()
            for k in range(b.answered, len(b.keys)):
                b.failures[k] = self._ending(b, exc.kind, in_flight=k < in_flight)
            b.answered = len(b.keys)

    def _request(self, conn: RedisConnection, b: _Batch, i: int) -> list[Any]:
        """Key ``i``'s request, packed by redis-py (a large value stays a reference)."""
        args: list[Any] = [COMMAND[b.op], b.keys[i]]
        if b.op is Op.SET:
            assert b.views is not None
            args.append(b.views[i])
            if b.ttl_ms is not None:
                args += [b"PX", b.ttl_ms]
        packed: list[Any] = conn.pack_command(*args)
        return packed

    def _settle(self, b: _Batch, i: int, reply: object) -> None:
        """Key ``i``'s status (or failure) from its reply."""
        if isinstance(reply, redis.ResponseError):
            b.failures[i] = self._failure(ErrorKind.SERVER_ERROR, reply=str(reply), in_flight=True)
            return
        if b.op is Op.GET:
            assert b.views is not None
            if reply is None:
                b.statuses[i] = KeyStatus.MISS
            elif isinstance(reply, bytes) and len(reply) == b.views[i].nbytes:
                b.views[i][:] = reply
            elif isinstance(reply, bytes):
                actual = len(reply)
                expected = b.views[i].nbytes
                b.failures[i] = self._failure(
                    ErrorKind.SIZE_MISMATCH, expected=expected, actual=actual, in_flight=True
                )
            else:
                b.failures[i] = self._unexpected(reply)
        elif b.op is Op.SET:
            if reply != b"OK":
                b.failures[i] = self._unexpected(reply)
        elif isinstance(reply, int) and not INT64_MIN <= reply <= INT64_MAX:
            raise _Dropped(self._failure(ErrorKind.PROTOCOL_ERROR, detail="integer beyond int64"))
        elif isinstance(reply, int) and reply >= 0:
            b.statuses[i] = KeyStatus.OK if reply else KeyStatus.MISS
        else:
            b.failures[i] = self._unexpected(reply)

    def _unexpected(self, reply: object) -> Failure:
        if isinstance(reply, int):
            text = f":{reply}"
        elif isinstance(reply, list):
            text = f"*{len(reply)}"
        elif reply is None:
            text = "$-1"
        else:  # bytes: a simple or a bulk string, which redis-py does not tell apart
            text = "+" + bytes(reply).decode("utf-8", "replace")  # type: ignore[call-overload]
        return self._failure(ErrorKind.UNEXPECTED_REPLY, reply=text[:80], in_flight=True)

    # -- the connection ----------------------------------------------------------------

    def _connect(self, w: _Worker, b: _Batch) -> Failure | None:
        """Make sure ``w`` has a connection (after the backoff); the failure otherwise."""
        if w.conn is not None:
            return None
        while (wait := w.retry_at - time.monotonic()) > 0:
            kind = self._ended(b)
            if kind is not None:
                return self._ending(b, kind)
            time.sleep(min(wait, IO_SLICE))  # the reconnect backoff itself
        conn = self._new_connection()
        try:
            conn.connect()
            self._handshake(conn, b)
        except _Ended as exc:
            conn.disconnect()
            return self._ending(b, exc.kind)
        except (redis.RedisError, OSError, _Dropped) as exc:
            conn.disconnect()
            opt = self._opt
            w.backoff = min(
                max(w.backoff * 2, opt.reconnect_backoff_min), opt.reconnect_backoff_max
            )
            w.retry_at = time.monotonic() + w.backoff
            return exc.failure if isinstance(exc, _Dropped) else self._connect_failure(exc)
        w.conn, w.backoff = conn, 0.0
        return None

    def _new_connection(self) -> RedisConnection:
        opt = self._opt
        common: dict[str, Any] = {
            "socket_timeout": IO_SLICE,
            "socket_connect_timeout": opt.connect_timeout,
            "parser_class": _VerbatimErrors,
            "retry": Retry(NoBackoff(), 0),
            "driver_info": None,
            "protocol": 2,
        }
        kind: Any  # redis-py's connection classes are untyped
        if opt.unix_path is not None:
            kind = redis.UnixDomainSocketConnection
            return kind(path=opt.unix_path, **common)
        if opt.tls is not None:
            tls = opt.tls
            return redis.SSLConnection(
                host=opt.host, port=opt.port, ssl_ca_certs=tls.ca_file,
                ssl_certfile=tls.cert_file, ssl_keyfile=tls.key_file,
                ssl_cert_reqs="required" if tls.verify else "none",
                ssl_check_hostname=tls.verify, **common,
            )  # fmt: skip
        kind = redis.Connection
        return kind(host=opt.host, port=opt.port, **common)

    def _handshake(self, conn: RedisConnection, b: _Batch) -> None:
        """AUTH, SELECT and CLIENT SETNAME as the options ask. A refused AUTH or SELECT
        is the keys' failure (``_Dropped``); a refused CLIENT SETNAME is not."""
        opt = self._opt
        steps: list[tuple[str, list[Any]]] = []
        if opt.password:
            auth = [opt.username, opt.password] if opt.username else [opt.password]
            steps.append(("AUTH", ["AUTH", *auth]))
        if opt.db:
            steps.append(("SELECT", ["SELECT", opt.db]))
        if opt.client_name:
            steps.append(("CLIENT SETNAME", ["CLIENT", "SETNAME", opt.client_name]))
        if not steps:
            return
        deadline = time.monotonic() + opt.connect_timeout
        packed = [conn.pack_command(*args) for _, args in steps]
        try:
            self._send(conn, b, _Outgoing(packed), opt.connect_timeout)
            replies = [self._reply(conn, b, deadline) for _ in steps]
        except _Dropped as exc:
            if exc.failure.kind is not ErrorKind.TIMED_OUT:
                raise
            raise _Dropped(
                self._failure(ErrorKind.CONNECT_FAILED, errno=errno_codes.ETIMEDOUT)
            ) from None
        for (name, _), reply in zip(steps, replies):
            if isinstance(reply, redis.ResponseError) and name != "CLIENT SETNAME":
                raise _Dropped(
                    self._failure(ErrorKind.HANDSHAKE_FAILED, reply=str(reply), detail=name)
                )

    def _send(
        self,
        conn: RedisConnection,
        b: _Batch,
        out: _Outgoing,
        limit: float,
        blocked: Callable[[], None] = lambda: None,
    ) -> None:
        """Write ``out`` (with ``sendmsg``: a window's requests leave together, as they
        would from any pipelining client), in slices of at most IO_SLICE, checking ``b``
        between them and calling ``blocked`` whenever the socket takes less than
        offered."""
        sock: socket.socket = conn._sock  # redis-py's socket, after connect()
        gather = not isinstance(sock, ssl.SSLSocket)  # TLS sockets have no sendmsg
        deadline = time.monotonic() + limit
        while out.pending:
            kind = self._ended(b)
            if kind is not None:
                raise _Ended(kind)
            if time.monotonic() >= deadline:
                raise _Dropped(self._failure(ErrorKind.TIMED_OUT, timeout=self._opt.op_timeout))
            try:
                n = sock.sendmsg(out.pending[:MAX_IOV]) if gather else sock.send(out.pending[0])
            except TimeoutError:
                blocked()
                continue
            except OSError as exc:
                raise _Dropped(self._lost(exc)) from None
            if out.advance(n):
                blocked()

    def _reply(
        self, conn: RedisConnection, b: _Batch, deadline: float, *, patient: bool = True
    ) -> object:
        """The next reply on ``conn``, read in slices (see the module essay); with
        ``patient=False``, :data:`_NOTHING` when it is not all here within one slice."""
        while True:
            kind = self._ended(b)
            if kind is not None:
                raise _Ended(kind)
            left = deadline - time.monotonic()
            if left <= 0:
                raise _Dropped(self._failure(ErrorKind.TIMED_OUT, timeout=self._opt.op_timeout))
            try:
                return conn.read_response(
                    disable_decoding=True, timeout=min(IO_SLICE, left), disconnect_on_error=False
                )
            except redis.TimeoutError:
                if not patient:
                    return _NOTHING
                continue
            except redis.ResponseError as exc:
                return exc
            except (redis.RedisError, OSError, ValueError) as exc:
                raise _Dropped(self._read_failure(exc)) from None

    def _can_read(self, conn: RedisConnection) -> bool:
        """Whether a reply (or part of one) is waiting; a broken connection raises."""
        try:
            return bool(conn.can_read(0))
        except (redis.RedisError, OSError) as exc:
            raise _Dropped(self._read_failure(exc)) from None

    def _read_failure(self, exc: BaseException) -> Failure:
        """What the keys in flight get when reading failed with ``exc``."""
        if isinstance(exc, (redis.InvalidResponse, ValueError)):
            return self._failure(ErrorKind.PROTOCOL_ERROR, detail=str(exc))
        cause = exc if isinstance(exc, OSError) else exc.__context__
        if isinstance(cause, OSError):
            return self._lost(cause)
        return self._failure(ErrorKind.CONNECTION_LOST, errno=0)  # closed by the server

    def _lost(self, exc: OSError) -> Failure:
        if isinstance(exc, ssl.SSLError):
            return self._failure(ErrorKind.TLS_FAILED, detail=str(exc))
        return self._failure(ErrorKind.CONNECTION_LOST, errno=exc.errno or 0)

    def _connect_failure(self, exc: BaseException) -> Failure:
        cause = exc.__context__ if isinstance(exc, redis.RedisError) else exc
        if isinstance(exc, redis.TimeoutError) or isinstance(cause, TimeoutError):
            return self._failure(ErrorKind.CONNECT_FAILED, errno=errno_codes.ETIMEDOUT)
        if isinstance(cause, ssl.SSLError):
            return self._failure(ErrorKind.TLS_FAILED, detail=str(cause))
        if isinstance(cause, OSError) and cause.errno:
            return self._failure(ErrorKind.CONNECT_FAILED, errno=cause.errno)
        return self._failure(ErrorKind.CONNECT_FAILED, detail=str(exc))

    def _idle_ok(self, conn: RedisConnection) -> bool:
        """Whether an idle connection is still usable: nothing to read (a reply no
        request asked for means the stream is out of sync), not closed, not reset."""
        try:
            return not conn.can_read(0)
        except (redis.ConnectionError, OSError):
            return False

    def _drop(self, w: _Worker) -> None:
        if w.conn is not None:
            conn, w.conn = w.conn, None
            conn.disconnect()


def factory(options: ConnectionOptions) -> RedisPyConnector:
    """The factory the conformance suite calls: ``factory(options) -> Connector``."""
    return RedisPyConnector(options)


factory.conformance_limits = RedisPyConnector.conformance_limits  # type: ignore[attr-defined]
