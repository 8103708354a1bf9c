"""``LMCacheRedisClient``: LMCache's native RESP client surface on respkv.

LMCache's C++ connector is constructed as ``LMCacheRedisClient(host, port,
num_workers, username, password)`` and reports finished batches from
``drain_completions()`` as ``(future_id, ok, error, results)`` tuples, where
``results`` is one bool per key (hit / exists / stored / deleted). This class offers
exactly that surface over whichever respkv backend is selected, so LMCache users can
swap it in unchanged, and gain reconnects, deadlines, error replies that never
desynchronise the stream, and variable value sizes.

Mapping from respkv's per-key statuses: ``results[i]`` is ``status is OK``. As in
LMCache, a GET whose stored value has another size is a miss (``False``) and does not
fail the batch; every other failure status (server error, I/O error, timeout,
cancelled, protocol error) makes ``ok`` false with ``error`` naming it. ``error`` is
``""`` when ``ok``. The full per-key statuses stay available from respkv's own
connector (``respkv.open_connector``).
"""

from __future__ import annotations

from collections.abc import Sequence

from respkv._compat import BufferLike
from respkv._contract import FAILURE_STATUSES, KeyLike, KeyStatus
from respkv._options import ConnectionOptions

__all__ = ["LMCacheRedisClient"]

_LMCACHE_TOLERATED = frozenset({KeyStatus.SIZE_MISMATCH})


class LMCacheRedisClient:
    """LMCache's native client surface (``lmcache.lmcache_redis.LMCacheRedisClient``)."""

    def __init__(
        self,
        host: str,
        port: int,
        num_workers: int,
        username: str = "",
        password: str = "",
    ) -> None:
        from respkv._backend import open_connector

        options = ConnectionOptions(
            host=host, port=port, num_workers=num_workers, username=username, password=password
        )
        self._conn = open_connector(options)

    def event_fd(self) -> int:
        return self._conn.event_fd()

    def submit_batch_set(self, keys: Sequence[KeyLike], buffers: Sequence[BufferLike]) -> int:
        return self._conn.submit_batch_set(keys, buffers)

    def submit_batch_get(self, keys: Sequence[KeyLike], buffers: Sequence[BufferLike]) -> int:
        return self._conn.submit_batch_get(keys, buffers)

    def submit_batch_exists(self, keys: Sequence[KeyLike]) -> int:
        return self._conn.submit_batch_exists(keys)

    def submit_batch_delete(self, keys: Sequence[KeyLike]) -> int:
        return self._conn.submit_batch_delete(keys)

    def drain_completions(self) -> list[tuple[int, bool, str, list[bool]]]:
        out = []
        for c in self._conn.drain_completions():
            failures = [
                i
                for i, s in enumerate(c.statuses)
                if s in FAILURE_STATUSES and s not in _LMCACHE_TOLERATED
            ]
            if failures:
                first = failures[0]
                detail = c.errors[first] or c.statuses[first].name
                error = (
                    f"{len(failures)} of {len(c.statuses)} keys failed; key {first}: "
                    f"{c.statuses[first].name}: {detail}"
                )
            else:
                error = ""
            out.append((c.batch_id, not failures, error, [s is KeyStatus.OK for s in c.statuses]))
        return out

    def close(self) -> None:
        self._conn.close()
