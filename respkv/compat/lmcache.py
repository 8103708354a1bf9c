"""``LMCacheRedisClient``: LMCache's native RESP client, on respkv's engines.

LMCache (0.5.6) drives its C++ client ``lmcache.lmcache_redis.LMCacheRedisClient``
through a small surface: ``LMCacheRedisClient(host, port, num_workers, username,
password)``, ``submit_batch_{set,get,exists,delete}(keys[, memoryviews]) -> id``, an
``event_fd()`` that is readable while completions wait, and ``drain_completions()``
returning ``(id, ok, error, results)`` tuples. Its MP-mode ``native_plugin`` adapter
(``NativeConnectorL2Adapter``) and its non-MP ``RESPClient`` (``ConnectorClientBase``)
are written against exactly that. This class offers the same surface over whichever
respkv backend is selected, so it drops into both unchanged.

What LMCache's code depends on, and this class reproduces (checked side by side against
the real extension in ``tests/lmcache_integration``):

* SET completions carry ``results=None`` (success or failure); GET, EXISTS and DELETE
  carry one bool per key (hit / exists / removed). ``error`` is ``""`` when ``ok``.
* A GET whose stored value has another size, or that finds a value of another type
  (``-WRONGTYPE``), is a miss (``False``) and does not fail the batch.
* An empty batch raises ``RuntimeError("keys list is empty")``; keys and buffers of
  different lengths raise ``RuntimeError("keys and memviews size mismatch")``.
* An empty key is a miss for GET, EXISTS and DELETE (it is never sent).
* The buffer argument is named ``memoryviews``.

Where respkv is deliberately stricter or better (``docs/lmcache.md`` lists them): a GET
of a missing key completes (the real one hangs for values of 10 bytes or more and
desynchronises its connection for smaller ones); a broken connection reconnects; every
wait has a deadline; values of different sizes may share a batch; a buffer's full
``nbytes`` is stored (the real one stores ``len()`` bytes, truncating a float32 view);
a SET under an empty key fails that key instead of storing it; a read-only or
non-contiguous buffer is refused at submit time; a server error other than
``WRONGTYPE`` on GET (``NOAUTH``, ``LOADING``..) fails the batch instead of passing for
a miss.

Beyond the real constructor: ``url=``, ``tls=``, ``connect_timeout=``, ``op_timeout=``,
``batch_timeout=`` (a deadline for every batch), ``backend=``, any other connection key
of :mod:`respkv.config`, and empty ``host``/``port``/``username``/``password`` filled
from ``RESPKV_*`` then ``LMCACHE_RESP_*`` environment variables (``use_env=False``
turns that off), so no secret needs to sit in LMCache's logged adapter parameters.

The descriptor from ``event_fd()`` is an epoll set holding the connector's event fd
and one eventfd of this class (for batches answered without I/O: all keys empty); it is
readable while either is. That needs Linux, where LMCache runs; elsewhere the
connector's own fd is returned and an all-empty-key batch raises ``ValueError``.
"""

from __future__ import annotations

import itertools
import os
import select
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from respkv._compat import BufferLike
from respkv._contract import Completion, Connector, KeyLike, KeyStatus, Op
from respkv._failure import Failure, summarize
from respkv._options import ConnectionOptions
from respkv.errors import ConfigError

__all__ = [
    "EMPTY_BATCH_MESSAGE",
    "MISMATCH_MESSAGE",
    "LMCacheCompletion",
    "LMCacheRedisClient",
    "options_from_params",
]

#: One finished batch as LMCache's client reports it: ``(id, ok, error, results)``.
LMCacheCompletion = tuple[int, bool, str, list[bool] | None]

#: The real client's messages for bad batches (lmcache 0.5.6, RuntimeError).
EMPTY_BATCH_MESSAGE: Final = "keys list is empty"
MISMATCH_MESSAGE: Final = "keys and memviews size mismatch"
#: Server error codes a GET reports as a miss, as the real client does: a value of
#: another type under the key is no value of ours.
GET_MISS_CODES: Final = frozenset({"WRONGTYPE"})
#: Why a SET key that was empty failed (respkv does not store under an empty key).
EMPTY_KEY_REASON: Final = "empty key: respkv does not store a value under an empty key"
_EVENTFD_ONE: Final = (1).to_bytes(8, "little")


@dataclass(frozen=True, slots=True)
class _Pending:
    """A submitted batch: our id, its op, its size, and where its empty keys were."""

    lm_id: int
    op: Op
    size: int
    #: Indices (in the caller's batch) of the keys that were sent, or None for all.
    sent: tuple[int, ...] | None
    empty: tuple[int, ...]


class LMCacheRedisClient:
    """LMCache's native client surface (``lmcache.lmcache_redis.LMCacheRedisClient``)."""

    def __init__(
        self,
        host: str = "",
        port: int = 0,
        num_workers: int | None = None,
        username: str = "",
        password: str = "",
        *,
        url: str | None = None,
        tls: bool | Mapping[str, Any] | None = None,
        connect_timeout: float | None = None,
        op_timeout: float | None = None,
        batch_timeout: float | None = None,
        use_env: bool = True,
        backend: str | None = None,
        **options: Any,
    ) -> None:
        params = {
            "host": host,
            "port": port,
            "num_workers": num_workers,
            "username": username,
            "password": password,
            "url": url,
            "tls": tls,
            "connect_timeout": connect_timeout,
            "op_timeout": op_timeout,
            "use_env": use_env,
            **options,
        }
        self._options = options_from_params(params)
        from respkv._backend import open_connector
        from respkv._validate import check_timeout

        self._batch_timeout = check_timeout(batch_timeout)
        self._conn: Connector = open_connector(self._options, backend)
        self._lock = threading.Lock()
        self._pending: dict[int, _Pending] = {}
        self._answered: list[LMCacheCompletion] = []
        self._ids = itertools.count(1)
        self._wake, self._epoll = _open_wakeup(self._conn.event_fd())
        self._fd = self._conn.event_fd() if self._epoll is None else self._epoll.fileno()

    @property
    def options(self) -> ConnectionOptions:
        """The resolved connection settings (its ``repr`` hides the password)."""
        return self._options

    def __repr__(self) -> str:
        return f"LMCacheRedisClient({self._options.address!r}, workers={self._options.num_workers})"

    # -- the real surface ----------------------------------------------------------------

    def event_fd(self) -> int:
        return self._fd

    def submit_batch_set(self, keys: Sequence[KeyLike], memoryviews: Sequence[BufferLike]) -> int:
        return self._submit(Op.SET, keys, memoryviews)

    def submit_batch_get(self, keys: Sequence[KeyLike], memoryviews: Sequence[BufferLike]) -> int:
        return self._submit(Op.GET, keys, memoryviews)

    def submit_batch_exists(self, keys: Sequence[KeyLike]) -> int:
        return self._submit(Op.EXISTS, keys, None)

    def submit_batch_delete(self, keys: Sequence[KeyLike]) -> int:
        return self._submit(Op.DELETE, keys, None)

    def drain_completions(self) -> list[LMCacheCompletion]:
        if self._wake is not None:
            try:
                os.read(self._wake, 8)
            except BlockingIOError:
                pass
        done = self._conn.drain_completions()
        with self._lock:
            out, self._answered = self._answered, []
            for c in done:
                pending = self._pending.pop(c.batch_id, None)
                if pending is not None:
                    out.append(_translate(pending, c))
        return out

    def close(self) -> None:
        self._conn.close()
        self._fd = -1
        if self._epoll is not None:
            self._epoll.close()
        if self._wake is not None:
            os.close(self._wake)
            self._wake = None

    # -- helpers -------------------------------------------------------------------------

    def _submit(self, op: Op, keys: Sequence[KeyLike], buffers: Sequence[BufferLike] | None) -> int:
        if len(keys) == 0:
            raise RuntimeError(EMPTY_BATCH_MESSAGE)
        if buffers is not None and len(buffers) != len(keys):
            raise RuntimeError(MISMATCH_MESSAGE)
        sent: tuple[int, ...] | None = None
        empty: tuple[int, ...] = ()
        if not all(keys):
            empty = tuple(i for i, k in enumerate(keys) if not k)
            sent = tuple(i for i, k in enumerate(keys) if k)
            keys = [keys[i] for i in sent]
            buffers = None if buffers is None else [buffers[i] for i in sent]
        with self._lock:
            lm_id = next(self._ids)
            pending = _Pending(lm_id, op, len(empty) + len(keys), sent, empty)
            if not keys:
                return self._answer_now(pending)
            batch_id = self._submit_to_connector(op, keys, buffers)
            self._pending[batch_id] = pending
        return lm_id

    def _submit_to_connector(
        self, op: Op, keys: Sequence[KeyLike], buffers: Sequence[BufferLike] | None
    ) -> int:
        t = self._batch_timeout
        if op is Op.SET:
            assert buffers is not None
            return self._conn.submit_batch_set(keys, buffers, timeout=t)
        if op is Op.GET:
            assert buffers is not None
            return self._conn.submit_batch_get(keys, buffers, timeout=t)
        if op is Op.EXISTS:
            return self._conn.submit_batch_exists(keys, timeout=t)
        return self._conn.submit_batch_delete(keys, timeout=t)

    def _answer_now(self, pending: _Pending) -> int:
        """A batch whose keys are all empty: answered without I/O (called locked)."""
        if self._wake is None:
            raise ValueError("every key of the batch is empty")
        self._answered.append(_translate(pending, None))
        os.write(self._wake, _EVENTFD_ONE)
        return pending.lm_id


def options_from_params(params: Mapping[str, Any]) -> ConnectionOptions:
    """The connection settings ``LMCacheRedisClient(**params)`` uses, validated.

    Empty ``host``/``port``/``username``/``password`` (and ``None`` anywhere) mean "not
    given": the environment (unless ``use_env`` is false) or the default fills them.
    """
    from respkv import config
    from respkv._validate import check_timeout

    rest = dict(params)
    url = rest.pop("url", None)
    use_env = rest.pop("use_env", True)
    rest.pop("backend", None)
    check_timeout(rest.pop("batch_timeout", None))
    if url is not None and not isinstance(url, str):
        raise ConfigError(f"config key 'url': expected str, got {type(url).__name__}")
    overrides = {k: v for k, v in rest.items() if v is not None and not (k in _ENV_KEYS and not v)}
    cfg = config.load(url, environ=None if use_env else {}, **overrides)
    if cfg.key_prefix or cfg.max_capacity_bytes or cfg.eviction is not None:
        raise ConfigError(
            "key_prefix, max_capacity_gb/bytes and eviction configure respkv's KV store, "
            "not LMCacheRedisClient; in LMCache's adapter JSON put max_capacity_gb and "
            "eviction next to adapter_params, not inside it"
        )
    return cfg.connection


#: Keys whose empty value means "not given" (the real client's defaults are empty).
_ENV_KEYS: Final = frozenset({"host", "port", "username", "password"})


def _open_wakeup(connector_fd: int) -> tuple[int | None, Any]:
    """An eventfd for answered batches and an epoll set over it and the connector's fd."""
    if not hasattr(select, "epoll") or not hasattr(os, "eventfd"):  # pragma: no cover
        return None, None
    wake = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
    ep = select.epoll()
    ep.register(connector_fd, select.EPOLLIN)
    ep.register(wake, select.EPOLLIN)
    return wake, ep


def _translate(p: _Pending, c: Completion | None) -> LMCacheCompletion:
    """respkv's completion as LMCache's tuple, the empty keys put back in place."""
    statuses: list[KeyStatus] = [KeyStatus.MISS] * p.size
    failures: list[Failure | None] = [None] * p.size
    if c is not None:
        where = range(p.size) if p.sent is None else p.sent
        for i, s, f in zip(where, c.statuses, c.failures):
            if p.op is Op.GET and _is_get_miss(s, f):
                continue  # stays a miss, as in LMCache's client
            statuses[i], failures[i] = s, f
    results = [s is KeyStatus.OK for s in statuses]
    error = summarize(statuses, failures) or ""
    if p.op is Op.SET and p.empty:
        error = _with_empty_keys(statuses, p.empty, error)
    return (p.lm_id, not error, error, None if p.op is Op.SET else results)


def _is_get_miss(status: KeyStatus, failure: Failure | None) -> bool:
    if status is KeyStatus.SIZE_MISMATCH:
        return True
    return failure is not None and failure.code in GET_MISS_CODES


def _with_empty_keys(statuses: Sequence[KeyStatus], empty: Sequence[int], error: str) -> str:
    """The batch error of a SET with empty keys (each one a failed key)."""
    failed = sorted({*empty, *(i for i, s in enumerate(statuses) if s > KeyStatus.MISS)})
    first = failed[0]
    if first not in empty and error:
        # The connector's failure comes first: its message, with the count corrected.
        return f"{len(failed)} of {len(statuses)} keys failed;" + error.split(";", 1)[1]
    return f"{len(failed)} of {len(statuses)} keys failed; key {first}: {EMPTY_KEY_REASON}"
