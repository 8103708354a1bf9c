"""The synchronous client users call: typed batch results over any Connector.

**Waiting.** :class:`Client` submits a batch and blocks until *that batch's* completion
has arrived. Many threads may call it at once: whichever waiting thread finds no other
thread draining becomes the drainer for a moment (it drains, waits on the event fd when
nothing was ready, files every completion under its batch id and wakes the others), so
no completion is lost or handed to the wrong caller, and no extra thread is needed. The
wait is ``poll``, never ``select``: a process serving a model holds thousands of
descriptors, and ``select`` refuses any numbered above 1023.

**Deadlines and buffers.** ``timeout=`` is handed to the connector as the batch's own
deadline: the engine ends every unfinished key (``TIMEOUT``, kind ``DEADLINE``) and
completes the batch, and the call returns that completion. So a call returns only once
its batch has completed, and the contract says no worker touches a batch's buffers after
its completion: when ``batch_get`` has returned (or raised, even ``KeyboardInterrupt``:
the batch is then cancelled and waited for first), nothing writes into its buffers
anymore. A buffer whose key did not end ``OK`` holds unspecified bytes.

**Lifetime.** :meth:`Client.close` releases the connector (threads, sockets, event fd)
and the admin connection. A client dropped without ``close()`` is released when it is
garbage collected (``weakref.finalize``), with a ``ResourceWarning`` as for an unclosed
socket. A client belongs to the process that opened it: after ``fork()`` every method
but ``close()`` raises :class:`~respkv.errors.ForkedError` at once, before touching any
lock a parent thread may have held at the fork, and ``close()`` in the child releases
only the child's copies of the descriptors.

**Around the batches** (:mod:`respkv._clientbase`, shared with the asyncio client): a
key ``prefix`` applied in one place, per-client counters (:meth:`Client.stats`), one log
record per failed batch (logger ``respkv.client``), and an admin connection for
``ping``, ``command`` and the copying reads of values of unknown size.
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
import weakref
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Final

from respkv._backend import BackendInfo, open_connector, select_backend
from respkv._clientbase import (
    ClientStats,
    Counters,
    Owned,
    add_prefix,
    check_prefix,
    deadline_kw,
    engine_counters,
    finished,
    open_admin,
    raise_for,
    release_unclosed,
    set_kw,
    unreachable,
)
from respkv._compat import BufferLike
from respkv._contract import BatchResult, Completion, Connector, KeyLike, Op
from respkv._options import ConnectionOptions
from respkv._validate import check_keys
from respkv.errors import ConnectionClosedError, ForkedError, ReplyError, RespkvError, ResultError

__all__ = ["FORKED_MESSAGE", "POLL_SLICE", "Client", "ClientStats", "wait_readable"]

#: Longest single wait of a drainer on the event fd before it drains again. Completions
#: wake it at once; the slice only bounds the cost of a wake-up that never comes (an
#: event fd closed under a waiter by ``close()`` on another thread).
POLL_SLICE: Final = 1.0
#: Interruptions (``KeyboardInterrupt``) tolerated while a cancelled batch is waited
#: for before the call gives up waiting and re-raises.
MAX_INTERRUPTS_WHILE_SETTLING: Final = 3
#: What a client or connector used in a forked child says.
FORKED_MESSAGE: Final = (
    "this respkv client was opened in another process (before a fork); "
    "a child process must connect anew"
)


def wait_readable(fd: int, timeout: float | None) -> bool:
    """Block until ``fd`` is readable or ``timeout`` seconds pass (``None``: no limit).

    ``poll`` rather than ``select``, so descriptors above 1023 work."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(None if timeout is None else max(0.0, timeout) * 1000.0))


class Client:
    """Batch and single-key operations with per-key results. Thread-safe.

    ``prefix`` is put in front of every key this client sends (a namespace); results
    carry the caller's keys. ``check=True`` pings the server at once and raises
    ``ConnectionError`` naming the address when it cannot be used.
    """

    def __init__(
        self,
        options: ConnectionOptions,
        *,
        backend: str | None = None,
        connector: Connector | None = None,
        prefix: str | bytes = b"",
        check: bool = False,
    ) -> None:
        self.options = options
        self.prefix: bytes = check_prefix(prefix)
        if connector is None:
            self.backend: BackendInfo = select_backend(backend, tls=options.tls is not None)
            connector = open_connector(options, self.backend.name)
        else:
            self.backend = BackendInfo(
                type(connector).__name__, "explicit", "connector passed to Client"
            )
        self._conn = connector
        self._owned = Owned(connector, open_admin(options))
        self._finalizer = weakref.finalize(self, release_unclosed, self._owned, repr(self))
        self._poller = select.poll()
        self._poller.register(connector.event_fd(), select.POLLIN)
        self._cond = threading.Condition()
        self._done: dict[int, Completion] = {}
        self._draining = False
        self._closed = False
        self._counters = Counters()
        if check:
            try:
                self.ping()
            except BaseException:
                self.close()
                raise

    def __repr__(self) -> str:
        return f"Client({self.options.address}, backend={self.backend.name})"

    # -- batches -------------------------------------------------------------------

    def batch_set(
        self,
        keys: Sequence[KeyLike],
        buffers: Sequence[BufferLike],
        *,
        timeout: float | None = None,
        ttl: float | None = None,
    ) -> BatchResult:
        """Store ``buffers[i]`` under ``keys[i]``; per key ``OK`` or a failure status.

        ``timeout``: the batch's deadline in seconds; keys unfinished then end
        ``TIMEOUT`` (a SET that timed out may or may not have been applied).
        ``ttl``: every key expires that many seconds after it is stored (``SET ... PX``,
        millisecond resolution, at most :data:`~respkv._validate.MAX_TTL`); ``None``
        stores without expiry, clearing any the key had."""
        self._check_usable()
        kw = set_kw(timeout, ttl)
        raw = check_keys(keys)
        full = add_prefix(self.prefix, raw)
        return self._run(Op.SET, raw, self._conn.submit_batch_set(full, buffers, **kw), buffers)

    def batch_get(
        self,
        keys: Sequence[KeyLike],
        buffers: Sequence[BufferLike],
        *,
        timeout: float | None = None,
    ) -> BatchResult:
        """Fetch into writable ``buffers``; ``OK`` only when the value filled it exactly.

        When this returns, no write into ``buffers`` follows; a buffer whose key is not
        ``OK`` holds unspecified bytes."""
        self._check_usable()
        raw = check_keys(keys)
        full = add_prefix(self.prefix, raw)
        kw = deadline_kw(timeout)
        return self._run(Op.GET, raw, self._conn.submit_batch_get(full, buffers, **kw), buffers)

    def batch_exists(self, keys: Sequence[KeyLike], *, timeout: float | None = None) -> BatchResult:
        """Per key ``OK`` (exists) or ``MISS``."""
        self._check_usable()
        raw = check_keys(keys)
        full = add_prefix(self.prefix, raw)
        return self._run(
            Op.EXISTS, raw, self._conn.submit_batch_exists(full, **deadline_kw(timeout))
        )

    def batch_delete(self, keys: Sequence[KeyLike], *, timeout: float | None = None) -> BatchResult:
        """Per key ``OK`` (removed, with UNLINK) or ``MISS`` (was not there)."""
        self._check_usable()
        raw = check_keys(keys)
        full = add_prefix(self.prefix, raw)
        return self._run(
            Op.DELETE, raw, self._conn.submit_batch_delete(full, **deadline_kw(timeout))
        )

    def batch_get_bytes(self, keys: Sequence[KeyLike]) -> list[bytes | None]:
        """Values of unknown size as ``bytes`` (``None`` for a missing key), in order.

        Pipelined GETs on the admin connection (copies; one round trip per
        :data:`~respkv._clientbase.PIPELINE_KEYS` keys). For bulk transfer learn the sizes
        with :meth:`batch_strlen` and use :meth:`batch_get` into preallocated buffers.
        An error reply (``WRONGTYPE`` ...) raises :class:`ResultError` naming the key."""
        self._check_usable()
        raw = check_keys(keys)
        values = self._owned.admin.get_bytes(add_prefix(self.prefix, raw))
        self._counters.record_values(values)
        return values

    def batch_strlen(self, keys: Sequence[KeyLike]) -> list[int]:
        """``STRLEN`` of each key, for preallocating GET buffers: 0 for a missing key (and
        for an empty value; a GET into a 0-byte buffer then tells them apart)."""
        self._check_usable()
        raw = check_keys(keys)
        return self._owned.admin.strlen(add_prefix(self.prefix, raw))

    # -- single keys ---------------------------------------------------------------

    def set(
        self,
        key: KeyLike,
        value: BufferLike,
        *,
        timeout: float | None = None,
        ttl: float | None = None,
    ) -> None:
        """Store one value (``ttl``: expiring after that many seconds); raise
        :class:`ResultError` if the server did not take it."""
        raise_for(self.batch_set([key], [value], timeout=timeout, ttl=ttl))

    def get_into(self, key: KeyLike, buffer: BufferLike, *, timeout: float | None = None) -> bool:
        """Fetch one value into ``buffer``: ``True`` on a hit, ``False`` on a miss.

        Raises :class:`ResultError` on a size mismatch or any other failure.
        """
        result = self.batch_get([key], [buffer], timeout=timeout)
        raise_for(result)
        return result.hits[0]

    def get(self, key: KeyLike) -> bytes | None:
        """Fetch one value of unknown size as ``bytes`` (``None`` on a miss).

        A convenience for small or unknown values over the admin connection (copies).
        An error reply (``WRONGTYPE``) raises :class:`~respkv.errors.ReplyError`."""
        try:
            return self.batch_get_bytes([key])[0]
        except ResultError as exc:
            if isinstance(exc.__cause__, ReplyError):
                raise exc.__cause__ from None
            raise

    def exists(self, key: KeyLike, *, timeout: float | None = None) -> bool:
        result = self.batch_exists([key], timeout=timeout)
        raise_for(result)
        return result.hits[0]

    def delete(self, key: KeyLike, *, timeout: float | None = None) -> bool:
        """Remove one key; ``True`` when it was there."""
        result = self.batch_delete([key], timeout=timeout)
        raise_for(result)
        return result.hits[0]

    def ping(self) -> bool:
        """``True`` when the server answers ``PING`` over a fresh or live connection with
        these options (address, TLS, AUTH, SELECT); else ``ConnectionError`` naming the
        address, with the cause chained."""
        self._check_usable()
        try:
            reply = self._owned.admin.command("PING")
        except (OSError, RespkvError) as exc:
            raise unreachable(self.options, exc) from exc
        if reply != b"PONG":
            raise unreachable(self.options, ValueError(f"PING answered {reply!r}"))
        return True

    def command(self, *args: object) -> Any:
        """Run one administrative command on a plain connection (error replies raise).

        Arguments go as given: the client's ``prefix`` is not applied."""
        self._check_usable()
        return self._owned.admin.command(*args)

    def stats(self) -> ClientStats:
        """Counters of this client since it was opened (see :class:`ClientStats`);
        :func:`respkv.metrics.prometheus_text` exports them."""
        return self._counters.snapshot(engine_counters(self._conn))

    # -- lifecycle -----------------------------------------------------------------

    def close(self) -> None:
        """Idempotent. Pending batches complete with a clear error first; releases the
        connector and the admin connection. Safe in a forked child (see module notes)."""
        if os.getpid() != self._owned.pid:
            # A parent thread may have held any of our locks at the fork: take none.
            self._closed = True
        else:
            with self._cond:
                if self._closed:
                    return
                self._closed = True
        self._finalizer.detach()
        self._owned.release()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def connector(self) -> Connector:
        """The low-level connector (for completion-based use; the prefix is not applied)."""
        return self._conn

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- internals -----------------------------------------------------------------

    def _check_usable(self) -> None:
        if os.getpid() != self._owned.pid:
            raise ForkedError(FORKED_MESSAGE)
        if self._closed:
            raise ConnectionClosedError("client is closed")

    def _run(
        self, op: Op, raw: list[bytes], batch_id: int, buffers: Sequence[BufferLike] | None = None
    ) -> BatchResult:
        try:
            completion = self._wait(batch_id)
        except BaseException:
            settled = self._settle(batch_id)
            if settled is not None:  # counted; its result is not the caller's anymore
                self._counters.record(op, settled, buffers)
            raise
        return finished(self._counters, self.options, op, raw, completion, buffers=buffers)

    def _settle(self, batch_id: int) -> Completion | None:
        """The wait was interrupted: cancel the batch and wait for its completion, so
        that no write into the caller's buffers follows the call."""
        with contextlib.suppress(Exception):
            self._conn.cancel(batch_id)
        for _ in range(MAX_INTERRUPTS_WHILE_SETTLING):
            try:
                return self._wait(batch_id)
            except KeyboardInterrupt:
                continue
            except Exception:
                return None
        return None

    def _wait(self, batch_id: int) -> Completion:
        cond = self._cond
        with cond:
            while batch_id not in self._done:
                if self._draining:
                    cond.wait()
                    continue
                self._draining = True
                cond.release()
                got: list[Completion] = []
                try:
                    got = self._conn.drain_completions()
                    if not got:
                        self._poller.poll(POLL_SLICE * 1000.0)
                        got = self._conn.drain_completions()
                finally:
                    cond.acquire()
                    self._draining = False
                    for c in got:
                        self._done[c.batch_id] = c
                    cond.notify_all()
            return self._done.pop(batch_id)
