"""respkv as a remote-storage plugin of LMCache's non-MP engine (vLLM in-process).

LMCache (0.5.6) loads third-party remote backends named in ``remote_storage_plugins``
(``lmcache/v1/storage_backend/connector/__init__.py``): for a plugin ``respkv`` it imports
``extra_config["remote_storage_plugin.respkv.module_path"]``, takes the class named by
``...class_name``, instantiates it (a ``ConnectorAdapter``: no arguments) and creates one
``RemoteBackend`` whose URL is ``plugin://respkv``. So an LMCache config needs::

    remote_storage_plugins: ["respkv"]
    extra_config:
      remote_storage_plugin.respkv.module_path: respkv.compat.lmcache_remote
      remote_storage_plugin.respkv.class_name: RespkvConnectorAdapter
      remote_storage_plugin.respkv.url: resp://127.0.0.1:6379     # optional

Every other ``remote_storage_plugin.<name>.<key>`` is passed to
:class:`~respkv.compat.lmcache.LMCacheRedisClient` (``num_workers``, ``op_timeout``,
``tls``...); host, port and credentials left out come from ``RESPKV_*`` /
``LMCACHE_RESP_*``. Instances (``respkv.a``, ``respkv.b``) read their own keys.

:class:`RespkvRemoteConnector` mirrors LMCache's own ``RESPConnector`` (same key strings,
same raw-bytes values, no chunk metadata, ``save_unfull_chunk`` must be false) with two
differences that matter: a GET of a missing key returns ``None`` (LMCache's client
hangs on it, and its wrapper would hand back an unfilled buffer as a hit), and every
synchronous wait is bounded. Completions are read on the engine's asyncio loop through
``loop.add_reader`` on the client's event fd, like LMCache's ``ConnectorClientBase``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Sequence
from typing import Any, Final

from lmcache.v1.storage_backend.connector import (  # type: ignore[import-not-found, import-untyped, unused-ignore]
    ConnectorAdapter,
    extract_plugin_type,
)
from lmcache.v1.storage_backend.connector.base_connector import (  # type: ignore[import-not-found, import-untyped, unused-ignore]
    RemoteConnector,
)

from respkv.compat.lmcache import LMCacheCompletion, LMCacheRedisClient

__all__ = ["PLUGIN_TYPE", "RespkvConnectorAdapter", "RespkvRemoteConnector"]

#: The plugin name (type part) this adapter answers for: ``plugin://respkv[.instance]``.
PLUGIN_TYPE: Final = "respkv"
_PLUGIN_PREFIX: Final = "plugin://"
#: Extra seconds a synchronous wait allows beyond connect_timeout + op_timeout (or the
#: batch deadline): the engines complete every batch within those, this is slack for a
#: loaded event loop, never the normal path.
SYNC_WAIT_MARGIN: Final = 5.0

_Result = tuple[bool, str, list[bool] | None]
_Future = asyncio.Future[_Result] | concurrent.futures.Future[_Result]


class _Bridge:
    """Completions of one client, delivered to asyncio or thread futures."""

    def __init__(self, client: LMCacheRedisClient, loop: asyncio.AbstractEventLoop) -> None:
        self._client = client
        self._loop = loop
        self._lock = threading.Lock()
        self._pending: dict[int, tuple[_Future, object]] = {}
        self._closed = False
        opts = client.options
        self.sync_limit = opts.connect_timeout + opts.op_timeout + SYNC_WAIT_MARGIN
        self._fd = client.event_fd()
        loop.call_soon_threadsafe(loop.add_reader, self._fd, self._on_ready)

    async def run(self, submit: Callable[[], int], keepalive: object = None) -> _Result:
        fut: asyncio.Future[_Result] = self._loop.create_future()
        self._register(submit, fut, keepalive)
        return await fut

    def run_sync(self, submit: Callable[[], int]) -> _Result:
        fut: concurrent.futures.Future[_Result] = concurrent.futures.Future()
        self._register(submit, fut, None)
        try:
            return fut.result(timeout=self.sync_limit)
        except concurrent.futures.TimeoutError:
            raise TimeoutError(f"no completion from respkv within {self.sync_limit:g} s") from None

    def _register(self, submit: Callable[[], int], fut: _Future, keepalive: object) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("respkv remote connector is closed")
            self._pending[submit()] = (fut, keepalive)

    def _on_ready(self) -> None:
        done: list[LMCacheCompletion] = self._client.drain_completions()
        with self._lock:
            entries = [(self._pending.pop(c[0], None), c) for c in done]
        for entry, (_, ok, error, results) in entries:
            if entry is not None and not entry[0].done():
                entry[0].set_result((ok, error, results))

    def close(self) -> None:
        with self._lock:
            self._closed = True
            pending, self._pending = self._pending, {}
        for fut, _ in pending.values():
            if not fut.done():
                fut.set_exception(RuntimeError("respkv remote connector closed"))
        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._loop.remove_reader, self._fd)


def _view(memory_obj: Any) -> memoryview:
    buf = memory_obj.byte_array
    return buf if isinstance(buf, memoryview) else memoryview(buf)


class RespkvRemoteConnector(RemoteConnector):  # type: ignore[misc, unused-ignore]
    """LMCache's ``RemoteConnector`` on respkv (see the module's notes)."""

    def __init__(
        self,
        client: LMCacheRedisClient,
        loop: asyncio.AbstractEventLoop,
        local_cpu_backend: Any,
        config: Any,
        metadata: Any,
    ) -> None:
        super().__init__(config, metadata)
        self.client = client
        self.loop = loop
        self.local_cpu_backend = local_cpu_backend
        self._bridge = _Bridge(client, loop)

    def __repr__(self) -> str:
        return f"<RespkvRemoteConnector {self.client.options.address}>"

    # -- existence ------------------------------------------------------------------------

    async def exists(self, key: Any) -> bool:
        k = [key.to_string()]
        _, _, results = await self._bridge.run(lambda: self.client.submit_batch_exists(k))
        return bool(results and results[0])

    def exists_sync(self, key: Any) -> bool:
        k = [key.to_string()]
        _, _, results = self._bridge.run_sync(lambda: self.client.submit_batch_exists(k))
        return bool(results and results[0])

    def support_batched_contains(self) -> bool:
        return True

    def batched_contains(self, keys: Sequence[Any]) -> int:
        ks = [k.to_string() for k in keys]
        _, _, results = self._bridge.run_sync(lambda: self.client.submit_batch_exists(ks))
        return _prefix(results, len(ks))

    def support_batched_async_contains(self) -> bool:
        return True

    async def batched_async_contains(
        self, lookup_id: str, keys: Sequence[Any], pin: bool = False
    ) -> int:
        ks = [k.to_string() for k in keys]
        _, _, results = await self._bridge.run(lambda: self.client.submit_batch_exists(ks))
        return _prefix(results, len(ks))

    # -- get --------------------------------------------------------------------------------

    async def get(self, key: Any) -> Any:
        found = await self.batched_get([key])
        return found[0]

    def support_batched_get(self) -> bool:
        return True

    async def batched_get(self, keys: Sequence[Any]) -> list[Any]:
        """One memory object per key, ``None`` where the key is missing."""
        if not keys:
            return []
        objs = [self.local_cpu_backend.allocate(self.meta_shapes, self.meta_dtypes, self.meta_fmt)
                for _ in keys]  # fmt: skip
        if any(o is None for o in objs):
            _release(objs)
            return [None] * len(keys)
        ks = [k.to_string() for k in keys]
        views = [_view(o) for o in objs]
        ok, error, results = await self._bridge.run(
            lambda: self.client.submit_batch_get(ks, views), views
        )
        hits = results or [False] * len(keys)
        if not ok and not any(hits):
            _release(objs)
            raise RuntimeError(error)
        out = [o if hit else None for o, hit in zip(objs, hits)]
        _release([o for o, hit in zip(objs, hits) if not hit])
        return out

    def support_batched_get_non_blocking(self) -> bool:
        return True

    async def batched_get_non_blocking(self, lookup_id: str, keys: Sequence[Any]) -> list[Any]:
        """The memory objects of the longest prefix of ``keys`` that were all found."""
        objs = await self.batched_get(keys)
        n = next((i for i, o in enumerate(objs) if o is None), len(objs))
        _release(objs[n:])
        return objs[:n]

    # -- put / remove ---------------------------------------------------------------------

    async def put(self, key: Any, memory_obj: Any) -> None:
        await self.batched_put([key], [memory_obj])

    def support_batched_put(self) -> bool:
        return True

    async def batched_put(self, keys: Sequence[Any], memory_objs: Sequence[Any]) -> None:
        if not keys:
            return
        ks = [k.to_string() for k in keys]
        views = [_view(o) for o in memory_objs]
        ok, error, _ = await self._bridge.run(
            lambda: self.client.submit_batch_set(ks, views), views
        )
        if not ok:
            raise RuntimeError(error)

    def remove_sync(self, key: Any) -> bool:
        k = [key.to_string()]
        _, _, results = self._bridge.run_sync(lambda: self.client.submit_batch_delete(k))
        return bool(results and results[0])

    async def list(self) -> list[str]:
        raise NotImplementedError("respkv's remote connector does not list keys")

    async def close(self) -> None:
        self._bridge.close()
        self.client.close()


def _prefix(results: list[bool] | None, n: int) -> int:
    """How many keys from the first on were all found."""
    found = results or [False] * n
    return next((i for i, hit in enumerate(found) if not hit), len(found))


def _release(objs: Sequence[Any]) -> None:
    for o in objs:
        if o is not None:
            o.ref_count_down()


class RespkvConnectorAdapter(ConnectorAdapter):  # type: ignore[misc, unused-ignore]
    """LMCache's ``ConnectorAdapter`` for ``plugin://respkv[.instance]``."""

    def __init__(self) -> None:
        super().__init__(_PLUGIN_PREFIX + PLUGIN_TYPE)

    def can_parse(self, url: str) -> bool:
        if not url.startswith(_PLUGIN_PREFIX):
            return False
        return bool(extract_plugin_type(url[len(_PLUGIN_PREFIX) :]) == PLUGIN_TYPE)

    def create_connector(self, context: Any) -> RespkvRemoteConnector:
        config = context.config
        if config is None:
            raise ValueError("the respkv remote plugin needs LMCache's engine config")
        if config.save_unfull_chunk:
            raise ValueError(
                "respkv's remote plugin stores whole chunks only: set save_unfull_chunk: false "
                "(as LMCache's own resp:// connector requires)"
            )
        name = context.plugin_name or PLUGIN_TYPE
        client = LMCacheRedisClient(**plugin_params(config.extra_config or {}, name))
        return RespkvRemoteConnector(
            client, context.loop, context.local_cpu_backend, config, context.metadata
        )


#: ``remote_storage_plugin.<name>.<key>`` keys that are LMCache's, not the client's.
_LOADER_KEYS: Final = frozenset({"module_path", "class_name"})


def plugin_params(extra_config: Any, plugin_name: str) -> dict[str, Any]:
    """The client's keyword arguments from ``remote_storage_plugin.<plugin_name>.*``."""
    prefix = f"remote_storage_plugin.{plugin_name}."
    return {
        key[len(prefix) :]: value
        for key, value in dict(extra_config).items()
        if key.startswith(prefix) and key[len(prefix) :] not in _LOADER_KEYS
    }
