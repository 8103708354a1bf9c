"""The asyncio client: awaitable batches over the connector's event fd.

The connector's event fd is registered with ``loop.add_reader``; when it becomes
readable the loop drains completions and resolves the matching futures. Two rules keep
this correct:

* **No lost completion.** A batch's future is registered *before* the loop can drain
  its completion: both happen on the loop thread, and ``submit`` + registration run
  with no ``await`` between them. Completions that arrive for an id nobody registered
  (submitted through another path) are kept until claimed, never dropped.
* **Cancellation keeps buffers alive.** Cancelling the awaiting task cancels only the
  wait: the batch is still in flight and its buffers still referenced by the pending
  entry until its completion really arrives; then the entry is dropped.

The client is bound to the loop it was created on. Awaiting its methods from another
thread's loop is safe: the call hops to the client's loop with
``asyncio.run_coroutine_threadsafe`` and the result hops back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Sequence
from types import TracebackType
from typing import Any

from respkv._backend import BackendInfo, select_backend
from respkv._compat import BufferLike
from respkv._contract import BatchResult, Completion, Connector, KeyLike
from respkv._options import ConnectionOptions
from respkv._validate import check_keys
from respkv.errors import ConnectionClosedError

__all__ = ["AsyncClient", "connect"]


class AsyncClient:
    """Awaitable batch operations with per-key results."""

    def __init__(
        self,
        options: ConnectionOptions,
        *,
        backend: str | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        from respkv._backend import open_connector

        self.options = options
        self.backend: BackendInfo = select_backend(backend, tls=options.tls is not None)
        self._loop = loop or asyncio.get_running_loop()
        self._conn: Connector = open_connector(options, self.backend.name)
        self._fd = self._conn.event_fd()
        # batch id -> (future, keys, buffers kept alive until the batch completes)
        self._pending: dict[int, tuple[asyncio.Future[Completion], Sequence[KeyLike], Any]] = {}
        self._unclaimed: dict[int, Completion] = {}
        self._closed = False
        self._loop.add_reader(self._fd, self._on_ready)

    def __repr__(self) -> str:
        return f"AsyncClient({self.options.address}, backend={self.backend.name})"

    @property
    def connector(self) -> Connector:
        return self._conn

    async def batch_set(
        self, keys: Sequence[KeyLike], buffers: Sequence[BufferLike]
    ) -> BatchResult:
        if asyncio.get_running_loop() is not self._loop:
            return await self._hop(self.batch_set(keys, buffers))
        self._check_open()
        raw = check_keys(keys)
        return await self._track(self._conn.submit_batch_set(raw, buffers), raw, buffers)

    async def batch_get(
        self, keys: Sequence[KeyLike], buffers: Sequence[BufferLike]
    ) -> BatchResult:
        if asyncio.get_running_loop() is not self._loop:
            return await self._hop(self.batch_get(keys, buffers))
        self._check_open()
        raw = check_keys(keys)
        return await self._track(self._conn.submit_batch_get(raw, buffers), raw, buffers)

    async def batch_exists(self, keys: Sequence[KeyLike]) -> BatchResult:
        if asyncio.get_running_loop() is not self._loop:
            return await self._hop(self.batch_exists(keys))
        self._check_open()
        raw = check_keys(keys)
        return await self._track(self._conn.submit_batch_exists(raw), raw, None)

    async def batch_delete(self, keys: Sequence[KeyLike]) -> BatchResult:
        if asyncio.get_running_loop() is not self._loop:
            return await self._hop(self.batch_delete(keys))
        self._check_open()
        raw = check_keys(keys)
        return await self._track(self._conn.submit_batch_delete(raw), raw, None)

    @property
    def in_flight(self) -> int:
        """Batches submitted and not yet completed (cancelled waits included)."""
        return len(self._pending)

    async def close(self) -> None:
        """Idempotent: closes the connector (off the loop thread), resolves what is left."""
        if self._closed:
            return
        self._closed = True
        await asyncio.to_thread(self._conn.close)
        self._on_ready()
        self._loop.remove_reader(self._fd)
        for fut, _, _ in self._pending.values():
            if not fut.done():
                fut.set_exception(ConnectionClosedError("client closed"))
        self._pending.clear()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- internals -----------------------------------------------------------------

    async def _hop(self, coro: Coroutine[Any, Any, BatchResult]) -> BatchResult:
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._loop))

    def _check_open(self) -> None:
        if self._closed:
            raise ConnectionClosedError("client is closed")

    async def _track(self, batch_id: int, keys: list[bytes], buffers: Any) -> BatchResult:
        # No await between the submit (in the caller) and this registration.
        fut: asyncio.Future[Completion] = self._loop.create_future()
        early = self._unclaimed.pop(batch_id, None)
        if early is not None:
            fut.set_result(early)
        else:
            self._pending[batch_id] = (fut, keys, buffers)
        completion = await asyncio.shield(fut)
        return BatchResult.from_completion(keys, completion)

    def _on_ready(self) -> None:
        for c in self._conn.drain_completions():
            entry = self._pending.pop(c.batch_id, None)
            if entry is None:
                self._unclaimed[c.batch_id] = c
                continue
            fut = entry[0]
            if not fut.done():
                fut.set_result(c)


async def connect(
    source: Any = None, *, backend: str | None = None, **overrides: Any
) -> AsyncClient:
    """An :class:`AsyncClient` on the running loop from a URL, config mapping or options."""
    from respkv.config import resolve

    return AsyncClient(resolve(source, **overrides), backend=backend)
