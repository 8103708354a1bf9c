"""The synchronous client users call: typed batch results over any Connector.

:class:`Client` submits a batch to the connector and blocks until that batch's
completion arrives. Many threads may call it at once: whichever waiting thread finds no
other thread draining becomes the drainer for a moment (it waits on the event fd,
drains, files every completion under its batch id, wakes the others), so no completion
is ever lost or delivered to the wrong caller, and no extra thread is needed.

The caller's buffers stay referenced by the call until the batch completes, which is
what the connector contract asks for. The engines bound every operation with
deadlines, so a wait here ends; ``timeout`` is only an extra guard for callers.
"""

from __future__ import annotations

import select
import threading
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Any

from respkv._admin import AdminConnection
from respkv._backend import BackendInfo, select_backend
from respkv._compat import BufferLike
from respkv._contract import FAILURE_STATUSES, BatchResult, Completion, Connector, KeyLike
from respkv._options import ConnectionOptions
from respkv._validate import check_keys
from respkv.errors import ConnectionClosedError, ResultError

__all__ = ["Client"]


class Client:
    """Batch and single-key operations with per-key results. Thread-safe."""

    def __init__(
        self,
        options: ConnectionOptions,
        *,
        backend: str | None = None,
        connector: Connector | None = None,
    ) -> None:
        self.options = options
        if connector is None:
            from respkv._backend import open_connector

            self.backend: BackendInfo = select_backend(backend, tls=options.tls is not None)
            connector = open_connector(options, self.backend.name)
        else:
            self.backend = BackendInfo(
                type(connector).__name__, "explicit", "connector passed to Client"
            )
        self._conn = connector
        self._fd = connector.event_fd()
        self._cond = threading.Condition()
        self._done: dict[int, Completion] = {}
        self._abandoned: set[int] = set()
        self._draining = False
        self._closed = False
        self._admin: AdminConnection | None = None
        self._admin_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Client({self.options.address}, backend={self.backend.name})"

    # -- batches -------------------------------------------------------------------

    def batch_set(
        self,
        keys: Sequence[KeyLike],
        buffers: Sequence[BufferLike],
        *,
        timeout: float | None = None,
    ) -> BatchResult:
        """Store ``buffers[i]`` under ``keys[i]``; per key ``OK`` or a failure status."""
        self._check_open()
        raw = check_keys(keys)
        return self._result(raw, self._wait(self._conn.submit_batch_set(raw, buffers), timeout))

    def batch_get(
        self,
        keys: Sequence[KeyLike],
        buffers: Sequence[BufferLike],
        *,
        timeout: float | None = None,
    ) -> BatchResult:
        """Fetch into writable ``buffers``; ``OK`` only when the value filled it exactly."""
        self._check_open()
        raw = check_keys(keys)
        return self._result(raw, self._wait(self._conn.submit_batch_get(raw, buffers), timeout))

    def batch_exists(self, keys: Sequence[KeyLike], *, timeout: float | None = None) -> BatchResult:
        """Per key ``OK`` (exists) or ``MISS``."""
        self._check_open()
        raw = check_keys(keys)
        return self._result(raw, self._wait(self._conn.submit_batch_exists(raw), timeout))

    def batch_delete(self, keys: Sequence[KeyLike], *, timeout: float | None = None) -> BatchResult:
        """Per key ``OK`` (removed, with UNLINK) or ``MISS`` (was not there)."""
        self._check_open()
        raw = check_keys(keys)
        return self._result(raw, self._wait(self._conn.submit_batch_delete(raw), timeout))

    # -- single keys ---------------------------------------------------------------

    def set(self, key: KeyLike, value: BufferLike) -> None:
        """Store one value; raise :class:`ResultError` if the server did not take it."""
        self._raise_for(self.batch_set([key], [value]))

    def get_into(self, key: KeyLike, buffer: BufferLike) -> bool:
        """Fetch one value into ``buffer``: ``True`` on a hit, ``False`` on a miss.

        Raises :class:`ResultError` on a size mismatch or any other failure.
        """
        result = self.batch_get([key], [buffer])
        self._raise_for(result)
        return result.hits[0]

    def get(self, key: KeyLike) -> bytes | None:
        """Fetch one value of unknown size as ``bytes`` (``None`` on a miss).

        A convenience for small or unknown values: it goes through one plain
        connection and copies. For bulk transfer use :meth:`get_into` or
        :meth:`batch_get` with preallocated buffers.
        """
        self._check_open()
        with self._admin_lock:
            if self._admin is None:
                self._admin = AdminConnection(self.options)
            value = self._admin.command("GET", check_keys([key])[0])
        assert value is None or isinstance(value, bytes)
        return value

    def exists(self, key: KeyLike) -> bool:
        result = self.batch_exists([key])
        self._raise_for(result)
        return result.hits[0]

    def delete(self, key: KeyLike) -> bool:
        """Remove one key; ``True`` when it was there."""
        result = self.batch_delete([key])
        self._raise_for(result)
        return result.hits[0]

    def command(self, *args: object) -> Any:
        """Run one administrative command on a plain connection (error replies raise)."""
        self._check_open()
        with self._admin_lock:
            if self._admin is None:
                self._admin = AdminConnection(self.options)
            return self._admin.command(*args)

    # -- lifecycle -----------------------------------------------------------------

    def close(self) -> None:
        """Idempotent. Pending batches complete with a clear error first."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
        self._conn.close()
        with self._admin_lock:
            if self._admin is not None:
                self._admin.close()
                self._admin = None

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def connector(self) -> Connector:
        """The low-level connector (for completion-based use)."""
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

    def _check_open(self) -> None:
        if self._closed:
            raise ConnectionClosedError("client is closed")

    @staticmethod
    def _result(raw: list[bytes], c: Completion) -> BatchResult:
        return BatchResult.from_completion(raw, c)

    @staticmethod
    def _raise_for(result: BatchResult) -> None:
        if any(s in FAILURE_STATUSES for s in result.statuses):
            raise ResultError(result.error or "operation failed")

    def _wait(self, batch_id: int, timeout: float | None) -> Completion:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while batch_id not in self._done:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    # Its completion will still come; drop it then instead of keeping it.
                    self._abandoned.add(batch_id)
                    raise TimeoutError(f"batch {batch_id} did not complete within {timeout} s")
                if self._draining:
                    self._cond.wait(remaining)
                    continue
                self._draining = True
                self._cond.release()
                try:
                    select.select([self._fd], [], [], remaining)
                    completions = self._conn.drain_completions()
                finally:
                    self._cond.acquire()
                    self._draining = False
                for c in completions:
                    if c.batch_id in self._abandoned:
                        self._abandoned.discard(c.batch_id)
                    else:
                        self._done[c.batch_id] = c
                self._cond.notify_all()
            return self._done.pop(batch_id)
