"""The KV-cache layer: chunks under a key prefix, capacity tracked in bytes, LRU eviction.

:class:`KVStore` wraps a :class:`~respkv.client.Client` the way a serving stack uses
Redis as a KV-cache tier (LMCache's L2 adapter):

* Keys live under a ``key_prefix`` (a namespace per deployment or model); callers pass
  their own keys, often built by :func:`chunk_key` from the model, the tensor-parallel
  rank and the token-chunk hash (``model@rank@hash[@salt]``, the reference's layout).
* Every acknowledged SET is counted in bytes by an :class:`~respkv.eviction.LRUTracker`.
  A SET whose outcome is unknown (``Failure.outcome_unknown``: its request was written,
  then the connection broke or a deadline passed) is counted too, as *unsettled*: the
  server may hold it, and a key it holds that nobody tracks is never evicted. Unsettled
  keys are the first victims; a later SET, a hit, or an EXISTS (:meth:`KVStore.reconcile`,
  run by the background evictor) settles them. A SET the server refused (``-OOM``) or
  that was never sent is not counted.
* ``put(..., ttl=)`` stores chunks that expire on the server by themselves; the tracker
  keeps each one's expiry and stops counting it once that has passed (``expired_keys``),
  so an expired chunk is neither counted against the capacity nor chosen as a victim.
* GET hits and EXISTS hits refresh a key's recency; misses prove a key gone and drop it
  from the tracking, unless the entry is newer than the lookup (it was stored while the
  lookup was on its way: the MISS may predate the SET). The lookup reads the tracker's
  sequence number when it is submitted, and each entry carries the number of its last
  store.
* With a capacity and an ``LRU`` eviction config, the store deletes (``UNLINK``) the
  least-recently-used chunks once usage reaches the watermark. Keys being loaded by
  :meth:`KVStore.get` (or pinned with :meth:`KVStore.pin`) are never chosen.
* Eviction runs in a background thread (``evict_in="background"``, woken by any store
  that crosses the watermark and every ``eviction_interval`` seconds, 1 s like the
  reference), in the storing thread right after the store (``"inline"``: usage then
  never exceeds the capacity by more than one batch), or only when
  :meth:`KVStore.evict` is called (``"manual"``).

Lifetime. :meth:`KVStore.close` stops the background thread and closes the client if
the store owns it. The thread holds the store only weakly (a strong reference for the
length of one wake-up), so a store dropped without ``close()`` is garbage collected; a
``weakref.finalize`` then stops the thread, closes an owned client and warns
(``ResourceWarning``), as an unclosed socket does. A store that holds nothing of its own
(no thread, a borrowed client) goes silently.

The store applies its ``key_prefix`` in front of the client's own ``prefix`` (if the
client has one): keys on the server are ``client.prefix + key_prefix + key``.

Usage is what *this process* stored. Other writers under the same prefix are invisible
until a miss or a recovery scan (:meth:`KVStore.recover_usage`): one SCAN over the
whole database (``COUNT`` :data:`SCAN_COUNT` keys per round trip, O(all keys), not
just the prefix's) plus one ``EVAL`` of ``STRLEN`` per page; on a cluster the router
scans every master (``ClusterConnector.scan_key_sizes``). It is off by default.

This module is the store itself; its records, the recovery scan and the background
thread live in :mod:`respkv._kvstore` and are exported from here.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import weakref
from collections.abc import Iterator, Sequence
from types import TracebackType
from typing import Any, Final, Literal

from respkv._compat import Buffer
from respkv._contract import BatchResult, KeyLike, KeyStatus
from respkv._kvstore.background import CLOSE_JOIN_TIMEOUT, background, release_unclosed
from respkv._kvstore.records import EvictionReport, StoreUsage, chunk_key
from respkv._kvstore.recovery import SCAN_COUNT, glob_escape, scan_sizes
from respkv._validate import check_keys, check_ttl
from respkv.client import Client
from respkv.errors import ConnectionClosedError
from respkv.eviction import EvictionConfig, LRUTracker, bytes_to_free

__all__ = [
    "SCAN_COUNT",
    "EvictionReport",
    "KVStore",
    "StoreUsage",
    "chunk_key",
]

log = logging.getLogger("respkv.kvstore")

EvictMode = Literal["background", "inline", "manual"]
EVICT_MODES: Final = ("background", "inline", "manual")

#: Most keys deleted by one UNLINK batch of an eviction cycle.
MAX_VICTIMS_PER_ROUND: Final = 4096
#: Most UNLINK batches per eviction cycle; the next cycle continues if this was not enough.
MAX_ROUNDS_PER_CYCLE: Final = 64
#: Seconds between background checks when nothing wakes the thread (the reference's 1 s).
DEFAULT_EVICTION_INTERVAL: Final = 1.0
#: Most unsettled keys checked by one EXISTS batch of :meth:`KVStore.reconcile`.
MAX_RECONCILE_KEYS: Final = 4096


class KVStore:
    """Chunks under a prefix with byte-accurate capacity tracking and LRU eviction.

    Thread-safe. Use as a context manager or call :meth:`close`.
    """

    def __init__(
        self,
        client: Client,
        *,
        key_prefix: str | bytes = "",
        capacity_bytes: int = 0,
        eviction: EvictionConfig | None = None,
        evict_in: EvictMode = "background",
        eviction_interval: float = DEFAULT_EVICTION_INTERVAL,
        recover_usage: bool = False,
        owns_client: bool = False,
    ) -> None:
        if evict_in not in EVICT_MODES:
            raise ValueError(f"evict_in must be one of {', '.join(EVICT_MODES)}, got {evict_in!r}")
        if capacity_bytes < 0:
            raise ValueError(f"capacity_bytes must be >= 0 (0: unlimited), got {capacity_bytes}")
        if not eviction_interval > 0:
            raise ValueError(f"eviction_interval must be > 0, got {eviction_interval}")
        self.client = client
        self.prefix = key_prefix.encode() if isinstance(key_prefix, str) else bytes(key_prefix)
        self.capacity_bytes = capacity_bytes
        self.eviction = eviction
        self.evict_in: EvictMode = evict_in
        self._interval = eviction_interval
        self._owns_client = owns_client
        self._tracker = LRUTracker()
        self._cycle_lock = threading.Lock()
        self._room = threading.Condition()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None
        self._warn_about_config()
        if recover_usage:
            self.recover_usage()
        if self._evicts and evict_in == "background":
            self._thread = threading.Thread(
                target=background,
                args=(weakref.ref(self), self._stop, self._wake, eviction_interval),
                name="respkv-evictor",
                daemon=True,
            )
        owned = client if owns_client else None
        self._finalizer = weakref.finalize(
            self, release_unclosed, self._stop, self._wake, self._thread, owned,
            f"KVStore({client.options.address})",
        )  # fmt: skip
        if self._thread is not None:
            self._thread.start()

    @classmethod
    def open(cls, source: Any = None, *, backend: str | None = None, **kwargs: Any) -> KVStore:
        """A store (owning its client) from any config source :func:`respkv.config.load`
        takes. Keyword arguments that are store options (``evict_in``,
        ``eviction_interval``) go to the store; the rest are config overrides."""
        from respkv.config import load

        store_kwargs = {k: kwargs.pop(k) for k in ("evict_in", "eviction_interval") if k in kwargs}
        config = load(source, **kwargs)
        client = Client(config.connection, backend=backend)
        try:
            return cls(
                client,
                key_prefix=config.key_prefix,
                capacity_bytes=config.max_capacity_bytes,
                eviction=config.eviction,
                recover_usage=config.recover_usage,
                owns_client=True,
                **store_kwargs,
            )
        except BaseException:
            client.close()
            raise

    def __repr__(self) -> str:
        u = self._tracker.usage()
        return (
            f"KVStore({self.client.options.address}, prefix={self.prefix!r}, "
            f"used={u.used_bytes}, capacity={self.capacity_bytes}, keys={u.keys})"
        )

    # -- operations ----------------------------------------------------------------

    def put(
        self, keys: Sequence[KeyLike], buffers: Sequence[Buffer], *, ttl: float | None = None
    ) -> BatchResult:
        """Store chunks. Keys the server acknowledged (``OK``) are counted; keys whose
        outcome is unknown are counted as unsettled (see the module notes).

        ``ttl``: the chunks expire on the server after that many seconds (``SET ... PX``)
        and leave the tracking then."""
        check_ttl(ttl)
        full = self._full_keys(keys)
        # Keys being written are pinned, so a concurrent cycle does not UNLINK an old
        # version while the new one is on its way.
        self._tracker.pin(full)
        try:
            result = self.client.batch_set(full, buffers, ttl=ttl)
        except (TypeError, ValueError):
            raise  # bad input: refused before anything was sent
        except BaseException:
            # Interrupted after the submit: every key may have been applied.
            expires = self._tracker.expiry(ttl)
            for key, buf in zip(full, buffers, strict=True):
                self._tracker.maybe_stored(key, memoryview(buf).nbytes, expires)
            raise
        finally:
            self._tracker.unpin(full)
        # Taken after the acknowledgements: the server set each expiry before answering,
        # so it has dropped the key by this time plus the ttl.
        expires = self._tracker.expiry(ttl)
        statuses, failures = result.statuses, result.failures
        for key, buf, status, failure in zip(full, buffers, statuses, failures, strict=True):
            if status is KeyStatus.OK:
                self._tracker.stored(key, memoryview(buf).nbytes, expires)
            elif failure is not None and failure.outcome_unknown:
                self._tracker.maybe_stored(key, memoryview(buf).nbytes, expires)
        self._after_store()
        return self._relabel(keys, result)

    def get(self, keys: Sequence[KeyLike], buffers: Sequence[Buffer]) -> BatchResult:
        """Load chunks into writable buffers; the keys are pinned while they load."""
        full = self._full_keys(keys)
        self._tracker.pin(full)
        since = self._tracker.sequence()
        try:
            result = self.client.batch_get(full, buffers)
        finally:
            self._tracker.unpin(full)
        for key, buf, status in zip(full, buffers, result.statuses, strict=True):
            if status is KeyStatus.OK:
                self._tracker.accessed(key, memoryview(buf).nbytes)
            elif status is KeyStatus.MISS:
                self._tracker.gone(key, since)
        return self._relabel(keys, result)

    def contains(self, keys: Sequence[KeyLike]) -> BatchResult:
        """Per key ``OK`` (present; counts as a use) or ``MISS`` (drops the tracking of
        an entry not stored since the lookup was submitted)."""
        full = self._full_keys(keys)
        since = self._tracker.sequence()
        result = self.client.batch_exists(full)
        for key, status in zip(full, result.statuses, strict=True):
            if status is KeyStatus.OK:
                self._tracker.accessed(key)
            elif status is KeyStatus.MISS:
                self._tracker.gone(key, since)
        return self._relabel(keys, result)

    def reconcile(self) -> int:
        """Settle keys whose SET outcome was unknown with one EXISTS batch (at most
        :data:`MAX_RECONCILE_KEYS`): present keys are settled in place, missing ones
        leave the tracking once :data:`~respkv.eviction.UNSETTLED_GRACE` has passed since
        their unknown outcome. Returns how many were settled either way."""
        keys = self._tracker.unsettled_keys(MAX_RECONCILE_KEYS)
        if not keys:
            return 0
        since = self._tracker.sequence()
        result = self.client.batch_exists(keys)
        settled = 0
        for key, status in zip(keys, result.statuses, strict=True):
            if status is KeyStatus.OK:
                self._tracker.settled(key)
            elif not (status is KeyStatus.MISS and self._tracker.gone(key, since)):
                continue  # a failure, or a miss too soon to trust (UNSETTLED_GRACE)
            settled += 1
        self._notify_room()
        return settled

    def delete(self, keys: Sequence[KeyLike]) -> BatchResult:
        """Remove chunks (UNLINK); removed and already-missing keys leave the tracking."""
        full = self._full_keys(keys)
        result = self.client.batch_delete(full)
        for key, status in zip(full, result.statuses, strict=True):
            if status in (KeyStatus.OK, KeyStatus.MISS):
                self._tracker.deleted(key)
        self._notify_room()
        return self._relabel(keys, result)

    # -- pins ------------------------------------------------------------------------

    def pin(self, keys: Sequence[KeyLike]) -> None:
        """Protect keys from eviction (pins nest) until :meth:`unpin`."""
        self._tracker.pin(self._full_keys(keys))

    def unpin(self, keys: Sequence[KeyLike]) -> None:
        self._tracker.unpin(self._full_keys(keys))

    @contextlib.contextmanager
    def pinned(self, keys: Sequence[KeyLike]) -> Iterator[None]:
        """``with store.pinned(keys): ...``: pinned for the block."""
        full = self._full_keys(keys)
        self._tracker.pin(full)
        try:
            yield
        finally:
            self._tracker.unpin(full)

    # -- capacity --------------------------------------------------------------------

    def usage(self) -> StoreUsage:
        u = self._tracker.usage()
        return StoreUsage(
            u.used_bytes,
            self.capacity_bytes,
            u.keys,
            u.pinned_keys,
            u.evicted_keys,
            u.evicted_bytes,
            u.vanished_keys,
            u.unsettled_keys,
            u.unsettled_bytes,
            u.expired_keys,
        )

    def tracked_size(self, key: KeyLike) -> int | None:
        """The byte size tracked for ``key`` (``None``: not tracked)."""
        return self._tracker.size_of(self._full_keys([key])[0])

    def evict(self) -> EvictionReport:
        """Run one eviction cycle now (whatever ``evict_in`` says) and report it."""
        return self._cycle()

    def wait_for_room(self, timeout: float | None = None) -> bool:
        """Block until usage is below the watermark (or eviction is off); ``False`` on
        timeout. A backpressure point for writers when eviction runs in the background."""
        with self._room:
            return self._room.wait_for(self._has_room, timeout)

    def recover_usage(self) -> int:
        """Count keys already under the prefix (SCAN; see the module notes on cost).

        Recovered keys are least recently used. Returns how many were added.
        """
        # SCAN and EVAL take keys as the server has them, with the client's prefix.
        outer = self.client.prefix
        pattern = glob_escape(outer + self.prefix) + b"*"
        added = 0
        for key, size in scan_sizes(self.client, pattern):
            if size >= 0 and self._tracker.recovered(key[len(outer) :], size):
                added += 1
        self._after_store()
        return added

    # -- lifecycle -------------------------------------------------------------------

    def close(self) -> None:
        """Stop the background thread; close the client if this store opened it."""
        if self._closed:
            return
        self._closed = True
        self._finalizer.detach()
        self._stop.set()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(CLOSE_JOIN_TIMEOUT)
        self._notify_room()
        if self._owns_client:
            self.client.close()

    def __enter__(self) -> KVStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- internals -------------------------------------------------------------------

    @property
    def _evicts(self) -> bool:
        return self.capacity_bytes > 0 and self.eviction is not None and self.eviction.enabled

    def _warn_about_config(self) -> None:
        if self.capacity_bytes > 0 and not self._evicts:
            log.warning(
                "respkv KVStore: a capacity of %d bytes is set but eviction is disabled "
                "(no 'eviction' config or policy 'noop'); usage is tracked, nothing is evicted",
                self.capacity_bytes,
            )
        elif self.eviction is not None and self.eviction.enabled and self.capacity_bytes == 0:
            log.warning(
                "respkv KVStore: eviction is configured but no capacity "
                "(max_capacity_gb = 0); nothing will be evicted"
            )

    def _full_keys(self, keys: Sequence[KeyLike]) -> list[bytes]:
        raw = check_keys(keys)
        return [self.prefix + k for k in raw] if self.prefix else raw

    @staticmethod
    def _relabel(keys: Sequence[KeyLike], result: BatchResult) -> BatchResult:
        own = tuple(k.encode() if isinstance(k, str) else bytes(k) for k in keys)
        return BatchResult(own, result.statuses, result.failures, result.ok)

    def _need(self) -> int:
        return bytes_to_free(self._tracker.used_bytes, self.capacity_bytes, self.eviction)

    def _has_room(self) -> bool:
        return self._closed or self._need() == 0

    def _notify_room(self) -> None:
        with self._room:
            self._room.notify_all()

    def _after_store(self) -> None:
        if not self._evicts or self._need() == 0:
            return
        if self.evict_in == "inline":
            self._cycle()
        elif self.evict_in == "background":
            self._wake.set()

    def _cycle(self) -> EvictionReport:
        with self._cycle_lock:
            wanted = self._need()
            freed = evicted = vanished = failed = 0
            for _ in range(MAX_ROUNDS_PER_CYCLE):
                if freed >= wanted:
                    break
                victims = self._tracker.select_victims(wanted - freed)[:MAX_VICTIMS_PER_ROUND]
                if not victims:
                    break  # everything left is pinned
                try:
                    result = self.client.batch_delete([v.key for v in victims])
                except BaseException:
                    self._tracker.finish_eviction(victims, [KeyStatus.CANCELLED] * len(victims))
                    raise
                freed += self._tracker.finish_eviction(victims, result.statuses)
                round_failed = sum(
                    1 for s in result.statuses if s not in (KeyStatus.OK, KeyStatus.MISS)
                )
                evicted += sum(1 for s in result.statuses if s is KeyStatus.OK)
                vanished += sum(1 for s in result.statuses if s is KeyStatus.MISS)
                failed += round_failed
                if round_failed == len(victims):
                    log.warning("respkv KVStore: eviction UNLINK failed: %s", result.error)
                    break
            report = EvictionReport(wanted, freed, evicted, vanished, failed)
        if wanted:
            log.debug("respkv KVStore eviction: %s", report)
        self._notify_room()
        return report

    def _background_round(self) -> bool:
        """One wake-up of the background thread; ``False`` when it should stop."""
        try:
            if self._tracker.unsettled:
                self.reconcile()
            while self._need() and not self._stop.is_set():
                if self._cycle().freed_bytes == 0:
                    break
        except ConnectionClosedError:
            return False
        except Exception:
            log.exception("respkv KVStore: eviction cycle failed; retrying later")
        return True
