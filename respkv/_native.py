"""The native backend behind the :class:`~respkv.Connector` contract.

:class:`NativeConnector` is a thin Python shell over ``respkv_native._core.Engine``
(C++17, see ``respkv_native/src/engine.hpp`` and ``docs/native.md``). The split of work:

* Here, in Python: every submit-time check, with the very helpers the pure backend uses
  (:func:`respkv._validate.check_keys` / :func:`~respkv._validate.check_buffers` /
  :func:`~respkv._validate.check_timeout`), so exception types and messages are
  identical by construction; the closed and fork checks; every option, limit and
  handshake command the engine runs with (:func:`engine_config`: the numbers come from
  :mod:`respkv._limits`, the handshake and its "required" rule from :mod:`respkv._admin`,
  the TLS policy from :mod:`respkv._tls`, so each exists once); and
  turning the engine's failure tuples into :class:`~respkv.Failure` records and
  :class:`~respkv.Completion` objects (:func:`respkv._contract.make_completion`), so
  every message is written by :mod:`respkv._failure`, for both backends.
* In C++: tiling, the worker threads, all I/O, deadlines, cancel, reconnects and the
  completion queue with its eventfd.

Buffer lifetime, made explicit. The engine takes raw pointers into the caller's buffers.
Each batch's memoryviews are registered in ``_views`` under a lock held across
``Engine.submit`` and released only once the engine has let go of them: when the batch's
completion is drained (a worker never touches a batch after queuing its completion), or
after the engine is closed (its workers joined). ``close()`` closes the engine first
and leaves the views of batches not drained yet in place, their completions can still be
drained, until the connector goes. A connector dropped without ``close()`` is finished
by :func:`_release` (``weakref.finalize``), which holds the engine and the views itself
and closes the engine *before* it clears the views, so the order never depends on how
Python tears the object's ``__dict__`` down; it warns (``ResourceWarning``) as an
unclosed socket does, like the pure connector.

Fork. The connector records the pid that opened it; in another process every method
but ``close()`` raises :class:`~respkv.errors.ForkedError`, and ``close()`` (like the
engine's destructor there) only closes descriptors: the C++ side knows its own creator
pid and never joins threads that a child does not have.
"""

from __future__ import annotations

import os
import threading
import warnings
import weakref
from collections.abc import Sequence
from typing import Any, Final

from respkv import resp2
from respkv._admin import handshake_commands, handshake_required
from respkv._compat import BufferLike
from respkv._contract import Completion, KeyLike, KeyStatus, Op, make_completion
from respkv._failure import ErrorKind, Failure
from respkv._limits import (
    HEADER_RECV,
    INLINE_VALUE_BYTES,
    LARGE_VALUE_BYTES,
    MAX_BULK_BYTES,
    MAX_DEPTH,
    MAX_IOV,
    MAX_LINE_BYTES,
    MAX_MULTIBULK_LEN,
)
from respkv._options import ConnectionOptions, TLSOptions
from respkv._tls import NO_TLS_MESSAGE, tls_policy
from respkv._validate import Submission, check_submission
from respkv.errors import ConfigError, ConnectionClosedError, ForkedError
from respkv_native import _core

__all__ = ["NativeConnector", "engine_config"]

#: Submitting on a closed connector.
CLOSED_MESSAGE: Final = "connector is closed"
#: The engine's answer byte for a failed key (its status comes from its Failure record).
ANSWER_FAILED: Final = 255
#: ``detail`` of a failed key whose record the engine could not allocate.
RECORD_LOST: Final = "failure record lost (the engine was out of memory)"

_OPS: Final = tuple(Op)
# Answer byte -> status: 0 OK, 1 MISS; a failed key's placeholder is replaced by its
# Failure record's status in make_completion.
_ANSWERS: Final = (KeyStatus.OK, KeyStatus.MISS) + (KeyStatus.IO_ERROR,) * 254
_KINDS: Final = {int(k): k for k in ErrorKind}


def engine_config(options: ConnectionOptions) -> dict[str, Any]:
    """Everything ``_core.Engine`` runs with, from ``options`` and the Python modules
    that define each shared number (the C++ side has no copy of any of them)."""
    tls = options.tls
    policy = tls_policy(tls if tls is not None else TLSOptions())
    handshake = [
        ([resp2.encode_arg(a) for a in cmd], handshake_required(cmd))
        for cmd in handshake_commands(options)
    ]
    return {
        "host": options.host,
        "port": options.port,
        "unix_path": options.unix_path,
        "connect_timeout": float(options.connect_timeout),
        "handshake": handshake,
        "tls": tls is not None,
        "tls_ca_file": tls.ca_file if tls else None,
        "tls_cert_file": tls.cert_file if tls else None,
        "tls_key_file": tls.key_file if tls else None,
        "tls_server_hostname": tls.server_hostname if tls else None,
        "tls_min_version": policy.min_version,
        "tls_verify_peer": policy.verify_peer,
        "tls_check_hostname": policy.check_hostname,
        "num_workers": options.num_workers,
        "op_timeout": float(options.op_timeout),
        "window_values": options.window_values,
        "window_bytes": options.window_bytes,
        "window_small": options.window_small,
        "large_value_bytes": LARGE_VALUE_BYTES,
        "header_recv": HEADER_RECV,
        "inline_value_bytes": INLINE_VALUE_BYTES,
        "max_iov": MAX_IOV,
        "max_bulk_bytes": MAX_BULK_BYTES,
        "max_multibulk_len": MAX_MULTIBULK_LEN,
        "max_depth": MAX_DEPTH,
        "max_line_bytes": MAX_LINE_BYTES,
        "reconnect_backoff_min": float(options.reconnect_backoff_min),
        "reconnect_backoff_max": float(options.reconnect_backoff_max),
    }


def _release(pid: int, engine: Any, views: dict[int, list[memoryview]]) -> None:
    """The finalizer of a connector dropped without ``close()``: stop the engine (workers
    joined, GIL released), only then let go of the buffers it may have pointed into, and
    warn. In a fork child the engine only closes its descriptors, silently."""
    engine.close()
    views.clear()
    if os.getpid() == pid:
        warnings.warn("unclosed NativeConnector", ResourceWarning, stacklevel=2)


class NativeConnector:
    """A :class:`~respkv.Connector` running on the C++ engine. Thread-safe."""

    def __init__(self, options: ConnectionOptions) -> None:
        if options.tls is not None and not getattr(_core, "SUPPORTS_TLS", False):
            raise ConfigError(NO_TLS_MESSAGE)
        self.options = options
        self._address = options.address
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._closed = False
        self._views: dict[int, list[memoryview]] = {}
        self._engine = _core.Engine(engine_config(options))
        self._finalizer = weakref.finalize(self, _release, self._pid, self._engine, self._views)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"NativeConnector({self._address}, {state})"

    def _check_process(self) -> None:
        if os.getpid() != self._pid:
            raise ForkedError(
                f"this connector was opened in process {self._pid} and cannot be used in "
                f"process {os.getpid()} (a fork child): connect anew after the fork"
            )

    def _check_open(self) -> None:
        # Checked before validation too, as the pure backend does: a closed connector
        # says so whatever the input.
        self._check_process()
        if self._closed:
            raise ConnectionClosedError(CLOSED_MESSAGE)

    def event_fd(self) -> int:
        """Readable while completions are waiting (an eventfd)."""
        self._check_process()
        fd: int = self._engine.event_fd()
        return fd

    def submit_batch_set(
        self,
        keys: Sequence[KeyLike],
        buffers: Sequence[BufferLike],
        *,
        timeout: float | None = None,
        ttl: float | None = None,
    ) -> int:
        """Store ``buffers[i]`` under ``keys[i]`` (``ttl``: expiry in seconds, ``SET ... PX``).
        Buffers stay referenced until done."""
        self._check_open()
        return self._submit_checked(
            check_submission(Op.SET, keys, buffers, timeout=timeout, ttl=ttl)
        )

    def submit_batch_get(
        self,
        keys: Sequence[KeyLike],
        buffers: Sequence[BufferLike],
        *,
        timeout: float | None = None,
    ) -> int:
        """Fetch each value into ``buffers[i]`` (writable, exactly the value's size)."""
        self._check_open()
        return self._submit_checked(check_submission(Op.GET, keys, buffers, timeout=timeout))

    def submit_batch_exists(self, keys: Sequence[KeyLike], *, timeout: float | None = None) -> int:
        """Per key: ``OK`` when it exists, ``MISS`` when not."""
        self._check_open()
        return self._submit_checked(check_submission(Op.EXISTS, keys, timeout=timeout))

    def submit_batch_delete(self, keys: Sequence[KeyLike], *, timeout: float | None = None) -> int:
        """Per key: ``OK`` when removed, ``MISS`` when it was not there."""
        self._check_open()
        return self._submit_checked(check_submission(Op.DELETE, keys, timeout=timeout))

    def _submit_checked(self, s: Submission) -> int:
        return self._submit(s.op, s.keys, s.views, s.timeout, s.ttl_ms or 0)

    def _submit(
        self,
        op: Op,
        keys: list[bytes],
        views: list[memoryview] | None,
        timeout: float | None,
        ttl_ms: int = 0,
    ) -> int:
        with self._lock:
            if self._closed:
                raise ConnectionClosedError(CLOSED_MESSAGE)
            # ttl_ms only when set: a build older than the ttl keyword still serves
            # every other batch.
            engine = self._engine
            batch_id: int = (
                engine.submit(int(op), keys, views, timeout, ttl_ms=ttl_ms)
                if ttl_ms
                else engine.submit(int(op), keys, views, timeout)
            )
            if batch_id == 0:  # the engine was closed by another thread meanwhile
                raise ConnectionClosedError(CLOSED_MESSAGE)
            if views:
                self._views[batch_id] = views
        return batch_id

    def cancel(self, batch_id: int) -> bool:
        """End a running batch now (its unfinished keys: CANCELLED); non-blocking.
        ``False`` when it had already completed or is unknown."""
        self._check_process()
        cancelled: bool = self._engine.cancel(batch_id)
        return cancelled

    def drain_completions(self) -> list[Completion]:
        """Every finished batch exactly once; an empty list when none is ready."""
        self._check_process()
        done = self._engine.drain()
        if not done:
            return []
        with self._lock:
            # These batches are complete: no worker will touch their buffers again.
            for entry in done:
                self._views.pop(entry[0], None)
        return [self._completion(*entry) for entry in done]

    def _completion(
        self, batch_id: int, op: int, answers: bytes, records: list[tuple[Any, ...]] | None
    ) -> Completion:
        statuses = list(map(_ANSWERS.__getitem__, answers))
        if records is None and ANSWER_FAILED not in answers:
            return make_completion(batch_id, _OPS[op], statuses)
        failures: list[Failure | None] = [None] * len(answers)
        address = self._address
        for index, kind, err, expected, actual, timeout, reply, detail, in_flight in records or ():
            failures[index] = Failure(
                _KINDS[kind], address, err, expected, actual, timeout, reply, detail, in_flight
            )
        for index, answer in enumerate(answers):
            if answer == ANSWER_FAILED and failures[index] is None:
                failures[index] = Failure(ErrorKind.INTERNAL, address, detail=RECORD_LOST)
        return make_completion(batch_id, _OPS[op], statuses, failures)

    def engine_stats(self) -> dict[str, int]:
        """Connection counters of the engine's workers (optional, outside the contract;
        the same keys as ``PyConnector.engine_stats``)."""
        self._check_process()
        counters: dict[str, int] = self._engine.counters()
        return counters

    def close(self) -> None:
        """Idempotent: no new work; every key not finished ends CANCELLED (kind CLOSED,
        connections with keys in flight dropped); joins the workers. In a fork child it
        only closes the descriptors the child inherited."""
        if os.getpid() != self._pid:
            # No lock here: a parent thread may have held it at the fork, forever.
            self._closed = True
            self._engine.close()
            self._finalizer.detach()
            return
        with self._lock:
            self._closed = True
        self._engine.close()
        # Closed: the views may go with the connector, in any order; no warning.
        self._finalizer.detach()
