"""The native backend behind the :class:`~respkv.Connector` contract.

:class:`NativeConnector` is a thin Python shell over ``respkv_native._core.Engine``
(C++17, see ``respkv_native/src/engine.hpp`` and ``docs/native.md``). The split of work:

* Here, in Python: every submit-time check, with the very helpers the pure backend uses
  (:func:`respkv._validate.check_keys` / :func:`~respkv._validate.check_buffers`), so
  exception types and messages are identical by construction; the closed check
  (:class:`~respkv.errors.ConnectionClosedError`); and building
  :class:`~respkv.Completion` records with :func:`respkv._contract.make_completion`.
* In C++: tiling, the worker threads, all I/O, deadlines, reconnects and the completion
  queue with its eventfd. The engine takes raw pointers into the caller's buffers, so
  this shell keeps each batch's memoryviews referenced until that batch's completion
  has been drained: the memory cannot go away while a worker may still write into it.

The views are registered under a lock that is held across ``Engine.submit``, and
removed under the same lock after ``Engine.drain``, so a completion drained by another
thread an instant after submit still finds its entry.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Final

from respkv._compat import BufferLike
from respkv._contract import Completion, KeyLike, KeyStatus, Op, make_completion
from respkv._options import ConnectionOptions
from respkv._validate import check_buffers, check_keys
from respkv.errors import ConfigError, ConnectionClosedError
from respkv_native import _core

__all__ = ["TLS_UNSUPPORTED", "NativeConnector"]

#: Raised (as ConfigError) for ``resps://`` options: TLS is only in the pure backend.
TLS_UNSUPPORTED: Final = "native backend does not support TLS yet; use RESPKV_BACKEND=python"
#: Submitting on a closed connector.
CLOSED_MESSAGE: Final = "connector is closed"

_STATUSES: Final = tuple(KeyStatus)
_OPS: Final = tuple(Op)


class NativeConnector:
    """A :class:`~respkv.Connector` running on the C++ engine. Thread-safe."""

    def __init__(self, options: ConnectionOptions) -> None:
        tls = options.tls
        if tls is not None and not getattr(_core, "SUPPORTS_TLS", False):
            raise ConfigError(TLS_UNSUPPORTED)
        self.options = options
        # The engine is created first so that it is also torn down (workers joined)
        # before the views below are released, should this object die unclosed.
        self._engine = _core.Engine(
            host=options.host,
            port=options.port,
            unix_path=options.unix_path,
            username=options.username,
            password=options.password,
            db=options.db,
            num_workers=options.num_workers,
            connect_timeout=options.connect_timeout,
            op_timeout=options.op_timeout,
            client_name=options.client_name,
            window_values=options.window_values,
            window_bytes=options.window_bytes,
            window_small=options.window_small,
            reconnect_backoff_min=options.reconnect_backoff_min,
            reconnect_backoff_max=options.reconnect_backoff_max,
            tls=tls is not None,
            tls_ca_file=tls.ca_file if tls else None,
            tls_cert_file=tls.cert_file if tls else None,
            tls_key_file=tls.key_file if tls else None,
            tls_server_hostname=tls.server_hostname if tls else None,
            tls_verify=tls.verify if tls else True,
        )
        self._lock = threading.Lock()
        self._views: dict[int, list[memoryview]] = {}
        self._closed = False

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"NativeConnector({self.options.address}, {state})"

    def event_fd(self) -> int:
        """Readable while completions are waiting (an eventfd)."""
        fd: int = self._engine.event_fd()
        return fd

    def submit_batch_set(self, keys: Sequence[KeyLike], buffers: Sequence[BufferLike]) -> int:
        """Store ``buffers[i]`` under ``keys[i]``. Buffers stay referenced until done."""
        self._check_open()
        byte_keys = check_keys(keys)
        views = check_buffers(buffers, len(byte_keys), writable=False)
        return self._submit(Op.SET, byte_keys, views)

    def submit_batch_get(self, keys: Sequence[KeyLike], buffers: Sequence[BufferLike]) -> int:
        """Fetch each value into ``buffers[i]`` (writable, exactly the value's size)."""
        self._check_open()
        byte_keys = check_keys(keys)
        views = check_buffers(buffers, len(byte_keys), writable=True)
        return self._submit(Op.GET, byte_keys, views)

    def submit_batch_exists(self, keys: Sequence[KeyLike]) -> int:
        """Per key: ``OK`` when it exists, ``MISS`` when not."""
        self._check_open()
        return self._submit(Op.EXISTS, check_keys(keys), None)

    def submit_batch_delete(self, keys: Sequence[KeyLike]) -> int:
        """Per key: ``OK`` when removed, ``MISS`` when it was not there."""
        self._check_open()
        return self._submit(Op.DELETE, check_keys(keys), None)

    def _check_open(self) -> None:
        # Checked before validation too, as the pure backend does: a closed connector
        # says so whatever the input.
        if self._closed:
            raise ConnectionClosedError(CLOSED_MESSAGE)

    def _submit(self, op: Op, keys: list[bytes], views: list[memoryview] | None) -> int:
        with self._lock:
            if self._closed:
                raise ConnectionClosedError(CLOSED_MESSAGE)
            batch_id: int = self._engine.submit(int(op), keys, views)
            if batch_id == 0:  # the engine was closed by another thread meanwhile
                raise ConnectionClosedError(CLOSED_MESSAGE)
            if views:
                self._views[batch_id] = views
        return batch_id

    def drain_completions(self) -> list[Completion]:
        """Every finished batch exactly once; an empty list when none is ready."""
        done = self._engine.drain()
        if not done:
            return []
        out = []
        status_of = _STATUSES.__getitem__
        with self._lock:
            for batch_id, op, statuses, errors in done:
                self._views.pop(batch_id, None)
                out.append(
                    make_completion(batch_id, _OPS[op], list(map(status_of, statuses)), errors)
                )
        return out

    def close(self) -> None:
        """Idempotent: no new work; unsent keys finish CANCELLED; joins the workers."""
        with self._lock:
            self._closed = True
        self._engine.close()
