"""The asyncio client: awaitable batches over the connector's event fd.

The connector's event fd is registered with ``loop.add_reader``; when it becomes
readable the loop drains completions and resolves the matching futures. The rules that
keep this correct:

* **No lost completion.** A batch's future is registered *before* the loop can drain
  its completion: both happen on the loop thread, and submit + registration run with no
  ``await`` between them. Completions for an id nobody registered (submitted through
  another path) are kept until claimed, never dropped.
* **Cancellation is real.** When the task awaiting a batch is cancelled, the client
  calls ``connector.cancel(batch_id)`` and then waits, shielded, for the batch's
  completion (the engine delivers it promptly: unfinished keys end ``CANCELLED``)
  before the ``CancelledError`` propagates. So once a cancelled ``await`` has finished,
  the batch is complete and nothing writes into its buffers anymore; GET buffers of keys
  that did not end ``OK`` hold unspecified bytes, and a cancelled SET may or may not
  have been applied. The result of a cancelled batch is counted in :meth:`stats` and
  otherwise dropped. A second cancellation during that wait does not cut it short.
* **Deadlines.** ``timeout=`` is the batch's own deadline, enforced by the engine: keys
  unfinished then end ``TIMEOUT`` (kind ``DEADLINE``) and the await returns that result.
  ``asyncio.wait_for`` (or ``asyncio.timeout`` on 3.11+) around an await works too,
  through the cancellation above.

The client is bound to the loop it was created on. Awaiting its batches from another
thread's loop is safe: the call hops to the client's loop, and a cancellation hops with
it (the hop returns only when the batch on the client's loop has settled). Calls that
use the admin connection (``ping``, ``get``, ``batch_get_bytes``, ``batch_strlen``,
``command``) run it in a worker thread of the calling loop (``asyncio.to_thread``).

An ``AsyncClient`` dropped without ``close()`` is released when collected (its event fd
unregistered, the connector and admin connection closed) with a ``ResourceWarning``;
the loop holds it only weakly. After ``fork()`` its methods raise
:class:`~respkv.errors.ForkedError`; ``close()`` in the child only releases the child's
copies of the descriptors.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import weakref
from collections.abc import Callable, Coroutine, Sequence
from types import TracebackType
from typing import Any, TypeVar

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
from respkv.client import FORKED_MESSAGE
from respkv.errors import ConnectionClosedError, ForkedError, ReplyError, RespkvError, ResultError

__all__ = ["AsyncClient", "connect"]

T = TypeVar("T")
_Pending = tuple["asyncio.Future[Completion]", Any]


class AsyncClient:
    """Awaitable batch and single-key operations with per-key results.

    ``prefix`` is put in front of every key sent (results carry the caller's keys)."""

    def __init__(
        self,
        options: ConnectionOptions,
        *,
        backend: str | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
        prefix: str | bytes = b"",
    ) -> None:
        self.options = options
        self.prefix: bytes = check_prefix(prefix)
        self.backend: BackendInfo = select_backend(backend, tls=options.tls is not None)
        self._loop = loop or asyncio.get_running_loop()
        self._conn: Connector = open_connector(options, self.backend.name)
        self._fd = self._conn.event_fd()
        self._owned = Owned(self._conn, open_admin(options))
        # batch id -> (future, buffers kept alive until the batch completes)
        self._pending: dict[int, _Pending] = {}
        self._unclaimed: dict[int, Completion] = {}
        self._counters = Counters()
        self._closed = False
        self._loop.add_reader(self._fd, _on_ready, weakref.ref(self))
        self._finalizer = weakref.finalize(
            self, _release_unclosed, self._owned, self._loop, self._fd, repr(self)
        )

    def __repr__(self) -> str:
        return f"AsyncClient({self.options.address}, backend={self.backend.name})"

    @property
    def connector(self) -> Connector:
        """The low-level connector (the prefix is not applied there)."""
        return self._conn

    # -- batches -------------------------------------------------------------------

    async def batch_set(
        self,
        keys: Sequence[KeyLike],
        buffers: Sequence[BufferLike],
        *,
        timeout: float | None = None,
        ttl: float | None = None,
    ) -> BatchResult:
        """Store ``buffers[i]`` under ``keys[i]``; ``timeout``: the batch's deadline;
        ``ttl``: the keys' expiry in seconds (as :meth:`respkv.Client.batch_set`)."""
        self._check_usable()
        kw = set_kw(timeout, ttl)
        if asyncio.get_running_loop() is not self._loop:
            return await self._hop(self.batch_set(keys, buffers, timeout=timeout, ttl=ttl))
        raw, full = self._keys(keys)
        batch_id = self._conn.submit_batch_set(full, buffers, **kw)
        return await self._track(Op.SET, raw, batch_id, buffers)

    async def batch_get(
        self,
        keys: Sequence[KeyLike],
        buffers: Sequence[BufferLike],
        *,
        timeout: float | None = None,
    ) -> BatchResult:
        """Fetch into writable ``buffers``; when the await ends, nothing writes into them."""
        self._check_usable()
        if asyncio.get_running_loop() is not self._loop:
            return await self._hop(self.batch_get(keys, buffers, timeout=timeout))
        raw, full = self._keys(keys)
        batch_id = self._conn.submit_batch_get(full, buffers, **deadline_kw(timeout))
        return await self._track(Op.GET, raw, batch_id, buffers)

    async def batch_exists(
        self, keys: Sequence[KeyLike], *, timeout: float | None = None
    ) -> BatchResult:
        self._check_usable()
        if asyncio.get_running_loop() is not self._loop:
            return await self._hop(self.batch_exists(keys, timeout=timeout))
        raw, full = self._keys(keys)
        batch_id = self._conn.submit_batch_exists(full, **deadline_kw(timeout))
        return await self._track(Op.EXISTS, raw, batch_id, None)

    async def batch_delete(
        self, keys: Sequence[KeyLike], *, timeout: float | None = None
    ) -> BatchResult:
        self._check_usable()
        if asyncio.get_running_loop() is not self._loop:
            return await self._hop(self.batch_delete(keys, timeout=timeout))
        raw, full = self._keys(keys)
        batch_id = self._conn.submit_batch_delete(full, **deadline_kw(timeout))
        return await self._track(Op.DELETE, raw, batch_id, None)

    async def batch_get_bytes(self, keys: Sequence[KeyLike]) -> list[bytes | None]:
        """Values of unknown size as ``bytes`` (``None``: missing); see ``Client``."""
        self._check_usable()
        full = add_prefix(self.prefix, check_keys(keys))
        values = await asyncio.to_thread(self._owned.admin.get_bytes, full)
        self._counters.record_values(values)
        return values

    async def batch_strlen(self, keys: Sequence[KeyLike]) -> list[int]:
        """``STRLEN`` per key (0 when missing), for preallocating GET buffers."""
        self._check_usable()
        full = add_prefix(self.prefix, check_keys(keys))
        return await asyncio.to_thread(self._owned.admin.strlen, full)

    # -- single keys ---------------------------------------------------------------

    async def set(
        self,
        key: KeyLike,
        value: BufferLike,
        *,
        timeout: float | None = None,
        ttl: float | None = None,
    ) -> None:
        """Store one value (``ttl``: expiring after that many seconds); raise
        :class:`ResultError` if the server did not take it."""
        raise_for(await self.batch_set([key], [value], timeout=timeout, ttl=ttl))

    async def get_into(
        self, key: KeyLike, buffer: BufferLike, *, timeout: float | None = None
    ) -> bool:
        """One value into ``buffer``: ``True`` on a hit, ``False`` on a miss; raises
        :class:`ResultError` on a size mismatch or any other failure."""
        result = await self.batch_get([key], [buffer], timeout=timeout)
        raise_for(result)
        return result.hits[0]

    async def get(self, key: KeyLike) -> bytes | None:
        """One value of unknown size as ``bytes`` (``None`` on a miss; copies)."""
        try:
            return (await self.batch_get_bytes([key]))[0]
        except ResultError as exc:
            if isinstance(exc.__cause__, ReplyError):
                raise exc.__cause__ from None
            raise

    async def exists(self, key: KeyLike, *, timeout: float | None = None) -> bool:
        result = await self.batch_exists([key], timeout=timeout)
        raise_for(result)
        return result.hits[0]

    async def delete(self, key: KeyLike, *, timeout: float | None = None) -> bool:
        """Remove one key; ``True`` when it was there."""
        result = await self.batch_delete([key], timeout=timeout)
        raise_for(result)
        return result.hits[0]

    async def ping(self) -> bool:
        """``True`` when the server answers ``PING``; else ``ConnectionError`` naming
        the address (the cause chained)."""
        self._check_usable()
        try:
            reply = await asyncio.to_thread(self._owned.admin.command, "PING")
        except (OSError, RespkvError) as exc:
            raise unreachable(self.options, exc) from exc
        if reply != b"PONG":
            raise unreachable(self.options, ValueError(f"PING answered {reply!r}"))
        return True

    async def command(self, *args: object) -> Any:
        """One administrative command (error replies raise; the prefix is not applied)."""
        self._check_usable()
        return await asyncio.to_thread(self._owned.admin.command, *args)

    def stats(self) -> ClientStats:
        """Counters of this client since it was opened (see :class:`ClientStats`)."""
        return self._counters.snapshot(engine_counters(self._conn))

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def in_flight(self) -> int:
        """Batches submitted and not yet completed."""
        return len(self._pending)

    # -- lifecycle -----------------------------------------------------------------

    async def close(self) -> None:
        """Idempotent: pending batches complete (``CANCELLED``) and their awaits return;
        the connector and the admin connection are released."""
        if self._closed:
            return
        if not self._owned.forked and asyncio.get_running_loop() is not self._loop:
            await self._hop(self.close())  # the loop's selector is the loop's alone
            return
        self._closed = True
        self._finalizer.detach()
        if self._owned.forked:
            self._owned.release()
            return
        # Unregister before the connector closes the fd: its number may be reused at once.
        with contextlib.suppress(Exception):
            self._loop.remove_reader(self._fd)
        await asyncio.to_thread(self._owned.release)
        with contextlib.suppress(Exception):
            self._drain()
        for fut, _ in self._pending.values():
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

    def _check_usable(self) -> None:
        if self._owned.forked:
            raise ForkedError(FORKED_MESSAGE)
        if self._closed:
            raise ConnectionClosedError("client is closed")

    def _keys(self, keys: Sequence[KeyLike]) -> tuple[list[bytes], list[bytes]]:
        raw = check_keys(keys)
        return raw, add_prefix(self.prefix, raw)

    async def _hop(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the client's loop; a cancellation here cancels it there and
        waits until it has settled."""
        here = asyncio.get_running_loop()
        done: asyncio.Future[T] = here.create_future()
        started: list[asyncio.Task[T]] = []

        def start() -> None:
            task = self._loop.create_task(coro)
            started.append(task)
            task.add_done_callback(lambda t: here.call_soon_threadsafe(_copy_outcome, t, done))

        try:
            self._loop.call_soon_threadsafe(start)
        except RuntimeError:
            coro.close()
            raise
        try:
            return await asyncio.shield(done)
        except asyncio.CancelledError:
            # Callbacks run in order: this one runs after start().
            self._loop.call_soon_threadsafe(lambda: started and started[0].cancel())
            await _settled(done)
            raise

    async def _track(
        self, op: Op, raw: list[bytes], batch_id: int, buffers: Sequence[BufferLike] | None
    ) -> BatchResult:
        # No await between the submit (in the caller) and this registration.
        fut: asyncio.Future[Completion] = self._loop.create_future()
        early = self._unclaimed.pop(batch_id, None)
        if early is not None:
            fut.set_result(early)
        else:
            self._pending[batch_id] = (fut, buffers)
        try:
            completion = await asyncio.shield(fut)
        except asyncio.CancelledError:
            if not fut.done():
                with contextlib.suppress(Exception):
                    self._conn.cancel(batch_id)
                await _settled(fut)
                if fut.done() and not fut.cancelled() and fut.exception() is None:
                    self._counters.record(op, fut.result(), buffers)
            raise
        return finished(self._counters, self.options, op, raw, completion, buffers=buffers)

    def _drain(self) -> None:
        for c in self._conn.drain_completions():
            entry = self._pending.pop(c.batch_id, None)
            if entry is None:
                self._unclaimed[c.batch_id] = c
                continue
            fut = entry[0]
            if not fut.done():
                fut.set_result(c)


async def connect(
    source: Any = None,
    *,
    backend: str | None = None,
    prefix: str | bytes = b"",
    check: bool = False,
    **overrides: Any,
) -> AsyncClient:
    """An :class:`AsyncClient` on the running loop from a URL, config mapping or options.

    ``check=True`` pings the server first and raises ``ConnectionError`` naming the
    address when it cannot be used (the client is closed again)."""
    from respkv.config import resolve

    client = AsyncClient(resolve(source, **overrides), backend=backend, prefix=prefix)
    if check:
        try:
            await client.ping()
        except BaseException:
            await client.close()
            raise
    return client


# -- helpers -----------------------------------------------------------------------------


def _on_ready(ref: weakref.ref[AsyncClient]) -> None:
    client = ref()
    if client is not None:
        client._drain()


async def _settled(fut: asyncio.Future[Any]) -> None:
    """Wait until ``fut`` is done, through further cancellations and its own errors."""
    while not fut.done():
        try:
            await asyncio.shield(fut)
        except asyncio.CancelledError:
            continue
        except Exception:
            return


def _copy_outcome(task: asyncio.Task[T], done: asyncio.Future[T]) -> None:
    if done.done():
        return
    if task.cancelled():
        done.cancel()
    elif (exc := task.exception()) is not None:
        done.set_exception(exc)
    else:
        done.set_result(task.result())


def _remove_reader(loop: asyncio.AbstractEventLoop, fd: int) -> None:
    if not loop.is_closed():
        with contextlib.suppress(Exception):
            loop.remove_reader(fd)


def _release_unclosed(owned: Owned, loop: asyncio.AbstractEventLoop, fd: int, label: str) -> None:
    """The finalizer: unregister the fd from its loop, then release (see release_unclosed).

    Collected on another thread while its loop runs, the work is handed to the loop, which
    alone may touch its selector; the fd stays open until it is unregistered."""
    before: Callable[[], None] = functools.partial(_remove_reader, loop, fd)
    try:
        on_loop = asyncio.get_running_loop() is loop
    except RuntimeError:
        on_loop = False
    if not owned.forked and not on_loop and loop.is_running():
        with contextlib.suppress(RuntimeError):  # closed meanwhile: release here
            loop.call_soon_threadsafe(release_unclosed, owned, label, before)
            return
    release_unclosed(owned, label, before)
