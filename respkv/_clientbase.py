"""What the sync and asyncio clients share around the connector.

* **The key prefix** (a namespace), applied in one place: :func:`add_prefix` puts it in
  front of keys that :func:`~respkv._validate.check_keys` has already checked, checks
  the longer keys against ``MAX_KEY_BYTES`` and hands the connector a
  :class:`~respkv._validate.CheckedKeys` list, so the keys are not checked twice.
  Results carry the caller's keys.
* **Counters and logs.** :func:`finished` turns a completion into the caller's
  :class:`~respkv.BatchResult`, adds it to the client's :class:`Counters` and writes one
  log record per failed batch (logger ``respkv.client``, level WARNING): the operation,
  the number of keys, the address and the summary of the first failure. Records carry
  no key and no secret (addresses are ``host:port``; options never print passwords).
  The connection counters (connections made, reconnects, failed connects, drops) are
  the engine's: :func:`engine_counters` reads a connector's optional ``engine_stats()``
  (both engines and the cluster router have it; it is not part of the contract, so a
  connector without it shows zeros). :mod:`respkv.metrics` exports the snapshot.
* **The admin connection** (:class:`AdminLink`): one plain blocking connection, opened
  on first use, for ``PING``, administrative commands and the copying reads of values
  of unknown size (pipelined ``GET`` / ``STRLEN``). A connection that broke or timed out
  mid-reply is dropped so that the next call starts in sync on a new one.
* **Release** (:class:`Owned`, :func:`release_unclosed`): what a client must close, held
  apart from the client so that a ``weakref.finalize`` can release it when the client is
  collected unclosed, and so that ``close()`` in a forked child takes no lock.
"""

from __future__ import annotations

import logging
import os
import threading
import warnings
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol, TypeVar

from respkv._admin import AdminConnection
from respkv._compat import BufferLike
from respkv._contract import BatchResult, Completion, Connector, ErrorKind, KeyStatus, Op
from respkv._options import ConnectionOptions
from respkv._validate import MAX_KEY_BYTES, CheckedKeys, check_ttl
from respkv.errors import ConnectionClosedError, ForkedError, ReplyError, ResultError

__all__ = [
    "ENGINE_THREAD_PREFIX",
    "PIPELINE_KEYS",
    "AdminCalls",
    "AdminLink",
    "ClientStats",
    "Counters",
    "Owned",
    "add_prefix",
    "check_prefix",
    "deadline_kw",
    "engine_counters",
    "finished",
    "open_admin",
    "raise_for",
    "release_unclosed",
    "set_kw",
    "unreachable",
]

log = logging.getLogger("respkv.client")

#: Keys per round trip of the admin connection's pipelined reads (``batch_get_bytes``,
#: ``batch_strlen``): enough to hide the round trip for small values, few enough that
#: the replies of one round trip stay a bounded amount of memory on both sides.
PIPELINE_KEYS: Final = 256
#: Threads whose names start with this belong to an engine (the pure workers are
#: ``respkv-worker-N``): a client collected on one of them is released on a new thread,
#: since a connector cannot join the thread that closes it.
ENGINE_THREAD_PREFIX: Final = "respkv-"

T = TypeVar("T")


# -- the prefix ---------------------------------------------------------------------------


def check_prefix(prefix: str | bytes) -> bytes:
    """A ``prefix=`` argument as bytes (``str`` is UTF-8); ``b""`` means none."""
    if isinstance(prefix, str):
        data = prefix.encode()
    elif isinstance(prefix, (bytes, bytearray)):
        data = bytes(prefix)
    else:
        raise TypeError(f"prefix must be str or bytes, not {type(prefix).__name__}")
    if len(data) >= MAX_KEY_BYTES:
        raise ValueError(f"prefix of {len(data)} bytes leaves no room under MAX_KEY_BYTES")
    return data


def add_prefix(prefix: bytes, raw: list[bytes]) -> list[bytes]:
    """``prefix + key`` for keys already checked; the result is checked for length."""
    if not prefix:
        return raw
    full = CheckedKeys([prefix + k for k in raw])
    longest = max(map(len, full))
    if longest > MAX_KEY_BYTES:
        i = next(i for i, k in enumerate(full) if len(k) == longest)
        raise ValueError(
            f"key {i}: {longest} bytes with the prefix exceeds MAX_KEY_BYTES ({MAX_KEY_BYTES})"
        )
    return full


# -- counters and logs --------------------------------------------------------------------


@dataclass(frozen=True)
class ClientStats:
    """A snapshot of one client's counters since it was opened.

    Keys are counted by their final status; bytes are value bytes that really moved
    (SET keys the server acknowledged, GET hits), not protocol overhead.
    """

    #: Batches completed (single-key helpers count as one-key batches).
    batches: int = 0
    #: Keys in those batches.
    keys: int = 0
    #: Keys that ended ``OK``.
    ok_keys: int = 0
    #: Keys that ended ``MISS``.
    missed_keys: int = 0
    #: Keys that ended with a failure status.
    failed_keys: int = 0
    #: Value bytes stored (SET keys reported ``OK``).
    bytes_out: int = 0
    #: Value bytes fetched (GET hits, and values read by ``batch_get_bytes``).
    bytes_in: int = 0
    #: Keys that ended ``TIMEOUT`` (``op_timeout`` or the batch's deadline).
    timeouts: int = 0
    #: Batches with at least one failed key.
    failed_batches: int = 0
    #: Failed keys per failure kind.
    errors: Mapping[ErrorKind, int] = field(default_factory=dict)
    #: Completed batches per operation.
    batches_by_op: Mapping[Op, int] = field(default_factory=dict)
    #: Connections the engine made (handshake done), over all its workers.
    connections_opened: int = 0
    #: Of those, the ones a worker made after its first (after a drop or a server close).
    reconnects: int = 0
    #: Connection attempts that failed (connect, TLS or handshake).
    connect_failures: int = 0
    #: Connections lost, timed out, or dropped to end a batch (not by ``close()``).
    connections_dropped: int = 0


class Counters:
    """The mutable side of :class:`ClientStats`; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._n: Counter[str] = Counter()
        self._errors: Counter[ErrorKind] = Counter()
        self._ops: Counter[Op] = Counter()

    def record(self, op: Op, c: Completion, buffers: Sequence[BufferLike] | None) -> None:
        statuses = c.statuses
        n = len(statuses)
        ok = statuses.count(KeyStatus.OK)
        missed = statuses.count(KeyStatus.MISS)
        moved = 0
        if buffers is not None and ok:
            pairs = zip(buffers, statuses, strict=True)
            moved = sum(memoryview(b).nbytes for b, s in pairs if s is KeyStatus.OK)
        kinds = Counter(f.kind for f in c.failures if f is not None) if ok + missed < n else None
        with self._lock:
            self._ops[op] += 1
            counts = self._n
            counts["batches"] += 1
            counts["keys"] += n
            counts["ok_keys"] += ok
            counts["missed_keys"] += missed
            counts["bytes_out" if op is Op.SET else "bytes_in"] += moved
            if kinds is not None:
                counts["failed_keys"] += n - ok - missed
                counts["failed_batches"] += 1
                counts["timeouts"] += statuses.count(KeyStatus.TIMEOUT)
                self._errors.update(kinds)

    def record_values(self, values: Sequence[bytes | None]) -> None:
        """A batch read over the admin connection (``batch_get_bytes``)."""
        hits = [v for v in values if v is not None]
        with self._lock:
            self._ops[Op.GET] += 1
            counts = self._n
            counts["batches"] += 1
            counts["keys"] += len(values)
            counts["ok_keys"] += len(hits)
            counts["missed_keys"] += len(values) - len(hits)
            counts["bytes_in"] += sum(map(len, hits))

    def snapshot(self, engine: Mapping[str, int] | None = None) -> ClientStats:
        """The counters now, with the engine's connection counters (``engine``)."""
        e = engine or {}
        with self._lock:
            n = self._n
            return ClientStats(
                connections_opened=e.get("connections_opened", 0),
                reconnects=e.get("reconnects", 0),
                connect_failures=e.get("connect_failures", 0),
                connections_dropped=e.get("connections_dropped", 0),
                batches=n["batches"],
                keys=n["keys"],
                ok_keys=n["ok_keys"],
                missed_keys=n["missed_keys"],
                failed_keys=n["failed_keys"],
                bytes_out=n["bytes_out"],
                bytes_in=n["bytes_in"],
                timeouts=n["timeouts"],
                failed_batches=n["failed_batches"],
                errors=dict(self._errors),
                batches_by_op=dict(self._ops),
            )


def engine_counters(conn: Connector) -> Mapping[str, int]:
    """A connector's optional ``engine_stats()`` (connection counters); empty when it
    has none, or cannot answer (closed, or used in a forked child)."""
    read = getattr(conn, "engine_stats", None)
    if read is None:
        return {}
    try:
        stats: Mapping[str, int] = read()
    except (ForkedError, ConnectionClosedError):
        return {}
    return stats


def finished(
    counters: Counters,
    options: ConnectionOptions,
    op: Op,
    raw: list[bytes],
    c: Completion,
    *,
    buffers: Sequence[BufferLike] | None = None,
) -> BatchResult:
    """The caller's result for a completion, counted, and logged when a key failed."""
    counters.record(op, c, buffers)
    result = BatchResult.from_completion(raw, c)
    if not c.ok:
        log.warning(
            "respkv: %s batch of %d keys to %s: %s",
            op.name,
            len(raw),
            options.address,
            result.error,
            extra={"respkv_op": op.name, "respkv_address": options.address},
        )
    return result


def deadline_kw(timeout: float | None) -> dict[str, float]:
    """The ``timeout=`` keyword for a submit, only when a deadline is set (so connectors
    written for contract v1 still serve callers that use none)."""
    return {} if timeout is None else {"timeout": timeout}


def set_kw(timeout: float | None, ttl: float | None) -> dict[str, float]:
    """The keywords of a ``submit_batch_set``: ``timeout`` and ``ttl`` only when set
    (as :func:`deadline_kw`). ``ttl`` is checked here (``check_ttl``), so that a bad one
    raises before any key is looked at, whatever the connector."""
    kw = deadline_kw(timeout)
    if ttl is not None:
        check_ttl(ttl)
        kw["ttl"] = ttl
    return kw


def raise_for(result: BatchResult) -> None:
    """The single-key helpers' rule: any failure status raises :class:`ResultError`."""
    if not result.ok:
        raise ResultError(result.error or "operation failed")


# -- the admin connection -----------------------------------------------------------------


def unreachable(options: ConnectionOptions, exc: BaseException) -> ConnectionError:
    """The ``ConnectionError`` of a server that cannot be used, naming its address."""
    reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return ConnectionError(f"respkv: cannot use the server at {options.address}: {reason}")


class AdminCalls(Protocol):
    """What a client asks of its admin connection (one server or a cluster)."""

    def command(self, *args: object) -> Any: ...

    def get_bytes(self, keys: list[bytes]) -> list[bytes | None]: ...

    def strlen(self, keys: list[bytes]) -> list[int]: ...

    def close(self, *, forked: bool = False) -> None: ...


def open_admin(options: ConnectionOptions) -> AdminCalls:
    """The admin calls for ``options``: :class:`AdminLink`, or on a cluster the router's
    ``ClusterAdminLink`` (keys go to their masters, MOVED/ASK followed). No I/O yet."""
    from respkv._cluster.options import ClusterOptions

    if isinstance(options, ClusterOptions):
        from respkv._cluster.admin import ClusterAdminLink

        return ClusterAdminLink(options)
    return AdminLink(options)


class AdminLink:
    """A client's plain connection for everything that is not a bulk batch."""

    def __init__(self, options: ConnectionOptions) -> None:
        self._options = options
        self._lock = threading.Lock()
        self._conn: AdminConnection | None = None

    def _call(self, fn: Callable[[AdminConnection], T]) -> T:
        with self._lock:
            conn = self._conn
            if conn is None:
                conn = self._conn = AdminConnection(self._options)
            try:
                return fn(conn)
            except ReplyError:
                raise  # an error reply is read whole: the connection is still in sync
            except BaseException:
                self._conn = None
                conn.close()
                raise

    def command(self, *args: object) -> Any:
        """One command; an error reply raises :class:`ReplyError`."""
        return self._call(lambda c: c.command(*args))

    def _pipeline(self, cmds: list[tuple[str, bytes]]) -> list[Any]:
        return self._call(lambda c: c.pipeline(cmds))

    def _pipelined(self, name: str, keys: list[bytes]) -> list[Any]:
        replies: list[Any] = []
        try:
            for start in range(0, len(keys), PIPELINE_KEYS):
                replies += self._pipeline([(name, k) for k in keys[start : start + PIPELINE_KEYS]])
        except OSError as exc:
            raise unreachable(self._options, exc) from exc
        for i, reply in enumerate(replies):
            if isinstance(reply, ReplyError):
                raise ResultError(f"key {i}: {name}: {reply}") from reply
        return replies

    def get_bytes(self, keys: list[bytes]) -> list[bytes | None]:
        """Pipelined GETs: ``bytes`` or ``None`` per key."""
        return [v if v is None else bytes(v) for v in self._pipelined("GET", keys)]

    def strlen(self, keys: list[bytes]) -> list[int]:
        """Pipelined STRLENs: the value's size per key (0 when missing)."""
        return [int(n) for n in self._pipelined("STRLEN", keys)]

    def close(self, *, forked: bool = False) -> None:
        """Close the connection. ``forked``: in a child after fork, where a parent thread
        may have held the lock, close the child's copy without taking it."""
        if forked:
            conn, self._conn = self._conn, None
        else:
            with self._lock:
                conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


# -- release --------------------------------------------------------------------------------


class Owned:
    """What one client must release, kept apart from it (see the module notes)."""

    __slots__ = ("admin", "conn", "pid")

    def __init__(self, conn: Connector, admin: AdminCalls) -> None:
        self.conn = conn
        self.admin = admin
        self.pid = os.getpid()

    @property
    def forked(self) -> bool:
        return os.getpid() != self.pid

    def release(self) -> None:
        """Close the connector (child-safe by the contract) and the admin connection."""
        forked = self.forked
        try:
            self.conn.close()
        finally:
            self.admin.close(forked=forked)


def release_unclosed(owned: Owned, label: str, before: Callable[[], None] | None = None) -> None:
    """The finalizer of a client collected without ``close()``: release what it held,
    then warn (``ResourceWarning``) as an unclosed socket does. In a forked child the
    inherited copies are released without a warning: the parent owns the client.

    ``before`` runs first (the asyncio client unregisters its event fd there)."""
    forked = owned.forked
    if before is not None and not forked:
        before()
    if threading.current_thread().name.startswith(ENGINE_THREAD_PREFIX):
        threading.Thread(target=owned.release, name="release-unclosed", daemon=True).start()
    else:
        owned.release()
    if not forked:
        warnings.warn(
            f"unclosed {label}: call close() or use it as a context manager",
            ResourceWarning,
            stacklevel=2,
        )
