"""LRU eviction by bytes: the policy settings and the client-side usage tracker.

Redis does not know which of its keys are KV-cache chunks worth keeping, and its own
``maxmemory`` eviction answers a full server with ``-OOM`` or drops keys we still count.
So, like the reference system (LMCache's L2 eviction controller), respkv tracks on the
client what it stored, in bytes, and deletes the least-recently-used chunks itself
before the server fills up.

The rules this module keeps:

* A key is counted only once the server acknowledged its SET; an overwrite replaces the
  old size. Usage is a sum of bytes, never a key count (chunks differ in size).
* A key found gone (UNLINK answered 0, GET or EXISTS missed) leaves the tracking at
  once, so a key deleted behind our back can never be chosen again and again: eviction
  cannot livelock on ghosts.
* Pinned keys (being loaded) are never chosen. Pins nest (a count per key).
* Eviction triggers at ``usage >= trigger_watermark x capacity`` and brings usage down to
  ``(trigger_watermark - eviction_ratio) x capacity``. At the trigger point that frees
  exactly ``eviction_ratio x capacity`` bytes, like the reference; after a batch that
  overshot the watermark it frees more, so usage stays within one batch of the
  capacity. (The reference frees a ratio of the *used* bytes; a ratio of the capacity
  is what its configuration documents and what makes the bound above hold.)
* Every change to an entry takes the next number of one counter (its *generation*).
  A victim is removed from the tracking only if it was not stored again while its
  UNLINK was in flight. A lookup (GET, EXISTS) reads the counter when it is submitted
  (:meth:`LRUTracker.sequence`), and its MISS removes an entry only if the entry is not
  newer than that: a MISS answered before a concurrent SET landed must not untrack the
  key that SET stored. Erring that way over-counts (the next miss or UNLINK answer
  removes a key that is really gone), which keeps the capacity bound safe.
* A SET whose outcome is unknown (its request was written, then the connection broke
  or the deadline passed: the server may have applied it) is tracked as *unsettled*:
  counted in bytes like a stored key, but placed at the least-recently-used end, so it
  is the first victim (an UNLINK of a key that is not there just answers 0). A later
  SET, a hit, or an EXISTS answer settles it. Without this, keys the server did store
  would be invisible to eviction and the server would grow past the capacity.
* A key stored with an expiry (``ttl=``, ``SET ... PX``) leaves the server by itself, so
  its entry carries the monotonic time by which the server has dropped it (the
  acknowledgement's time plus the ttl: the server set the expiry before it answered)
  and is treated as gone from then on (counted in ``expired_keys``). A heap of expiry
  times is purged before anything reads the usage or chooses victims; a store without
  expiry clears the entry's.

The defaults (``LRU``, 0.8, 0.2) are the reference system's.
"""

from __future__ import annotations

import heapq
import math
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

from respkv._contract import KeyStatus

__all__ = [
    "DEFAULT_EVICTION_RATIO",
    "DEFAULT_TRIGGER_WATERMARK",
    "VALID_POLICIES",
    "EvictionConfig",
    "LRUTracker",
    "Usage",
    "Victim",
    "bytes_to_free",
]

#: Policy names accepted in ``eviction_policy`` (case-insensitive). ``noop`` tracks
#: usage but never evicts, like the reference's NoOp policy.
VALID_POLICIES: Final = ("LRU", "noop")
#: Usage fraction of the capacity at which eviction starts (the reference's default).
DEFAULT_TRIGGER_WATERMARK: Final = 0.8
#: Fraction of the capacity freed by one eviction cycle (the reference's default).
DEFAULT_EVICTION_RATIO: Final = 0.2


@dataclass(frozen=True)
class EvictionConfig:
    """The ``"eviction"`` object of the configuration, with the reference's field names."""

    eviction_policy: str = "LRU"
    trigger_watermark: float = DEFAULT_TRIGGER_WATERMARK
    eviction_ratio: float = DEFAULT_EVICTION_RATIO

    def __post_init__(self) -> None:
        canonical = {p.lower(): p for p in VALID_POLICIES}.get(str(self.eviction_policy).lower())
        if canonical is None:
            raise ValueError(
                f"eviction_policy {self.eviction_policy!r} is not supported; "
                f"valid: {', '.join(VALID_POLICIES)}"
            )
        object.__setattr__(self, "eviction_policy", canonical)
        for name in ("trigger_watermark", "eviction_ratio"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{name} must be a number, got {type(value).__name__}")
            if not 0 < value <= 1:
                raise ValueError(f"{name} must be in (0, 1], got {value}")

    @property
    def enabled(self) -> bool:
        """Whether this policy ever deletes keys."""
        return self.eviction_policy == "LRU"


def bytes_to_free(used: int, capacity: int, config: EvictionConfig | None) -> int:
    """How many bytes one eviction cycle should free now (0: nothing to do)."""
    if config is None or not config.enabled or capacity <= 0:
        return 0
    if used < config.trigger_watermark * capacity:
        return 0
    low_water = math.floor(max(0.0, config.trigger_watermark - config.eviction_ratio) * capacity)
    return max(0, used - low_water)


@dataclass(frozen=True)
class Usage:
    """A snapshot of the tracked usage."""

    used_bytes: int
    keys: int
    pinned_keys: int
    evicted_keys: int
    evicted_bytes: int
    vanished_keys: int
    #: Keys (and their bytes, included in ``used_bytes``) whose SET outcome is unknown.
    unsettled_keys: int = 0
    unsettled_bytes: int = 0
    #: Keys that left the tracking because their expiry (``ttl``) passed.
    expired_keys: int = 0


@dataclass(frozen=True)
class Victim:
    """A key chosen for eviction, with what the tracker knew when it chose it."""

    key: bytes
    size: int
    generation: int


#: Stale expiry records (of keys stored again or gone) tolerated in the heap before it is
#: rebuilt from the entries: beyond this and twice the entries (amortized O(1) per store).
_EXPIRY_SLACK: Final = 64


#: How long after a SET's unknown outcome a miss may settle it as absent. A server still
#: holds the bytes of a connection the client dropped in its receive buffer, and applies a
#: complete SET found there *after* the drop (the soak saw ABORTED, then a GET miss, then
#: EXISTS finding the key): a miss answered within this window is not proof. Measured:
#: the late SETs the soak saw landed within milliseconds; 5 s covers a busy server. A
#: server stalled for longer (SIGSTOP) can still apply one later; the next reconcile or
#: SCAN recovery then finds it.
UNSETTLED_GRACE: Final = 5.0


class _Entry:
    __slots__ = ("expires", "generation", "size", "unsettled", "unsettled_at")

    def __init__(
        self,
        size: int,
        generation: int,
        *,
        unsettled: bool = False,
        expires: float | None = None,
    ) -> None:
        self.size = size
        self.generation = generation
        #: The SET that made this entry had an unknown outcome; nothing has settled it.
        self.unsettled = unsettled
        #: When that outcome became unknown (the tracker's clock), for UNSETTLED_GRACE.
        self.unsettled_at = 0.0
        #: Monotonic time by which the server has dropped the key (its ttl), or None.
        self.expires = expires


class LRUTracker:
    """Bytes per key in least-recently-used order, with pins. Thread-safe.

    Operations are O(1) per key except :meth:`select_victims`, which walks from the
    least recently used end and skips pinned keys.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        #: The clock expiry times are read on (tests give their own).
        self.clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[bytes, _Entry] = OrderedDict()
        self._pins: Counter[bytes] = Counter()
        self._evicting: set[bytes] = set()
        self._used = 0
        self._generation = 0
        self._evicted_keys = 0
        self._evicted_bytes = 0
        self._vanished = 0
        self._unsettled = 0  # entries with ``unsettled`` set
        self._expiries: list[tuple[float, int, bytes]] = []  # (expires, generation, key)
        self._expired = 0

    # -- what the server told us ---------------------------------------------------

    def sequence(self) -> int:
        """The current generation: read it when a lookup is submitted and pass it to
        :meth:`gone` with the lookup's MISS."""
        with self._lock:
            return self._generation

    def stored(self, key: bytes, size: int, expires: float | None = None) -> None:
        """The server acknowledged a SET of ``size`` bytes: count it, most recent.

        ``expires``: the monotonic time by which the key has expired on the server
        (``None``: stored without expiry)."""
        if size < 0:
            raise ValueError(f"size must be >= 0, got {size}")
        with self._lock:
            self._generation += 1
            entry = self._entries.get(key)
            if entry is None:
                self._entries[key] = _Entry(size, self._generation, expires=expires)
            else:
                self._used -= entry.size
                entry.size = size
                entry.generation = self._generation
                entry.expires = expires
                self._settle(entry)
                self._entries.move_to_end(key)
            self._used += size
            self._expire_at(key, expires)

    def maybe_stored(self, key: bytes, size: int, expires: float | None = None) -> None:
        """A SET of ``size`` bytes whose outcome is unknown: count it as unsettled.

        A new key goes to the least-recently-used end (the first victim). An entry
        already tracked keeps its place and counts the larger of the two sizes, and the
        later of the two expiries (none if either has none): the server holds one of
        them."""
        if size < 0:
            raise ValueError(f"size must be >= 0, got {size}")
        with self._lock:
            self._generation += 1
            entry = self._entries.get(key)
            if entry is None:
                entry = _Entry(size, self._generation, unsettled=True, expires=expires)
                entry.unsettled_at = self.clock()
                self._entries[key] = entry
                self._entries.move_to_end(key, last=False)
                self._used += size
                self._unsettled += 1
            else:
                if size > entry.size:
                    self._used += size - entry.size
                    entry.size = size
                entry.generation = self._generation
                if entry.unsettled:
                    entry.unsettled_at = self.clock()  # a new unknown outcome: wait again
                if expires is None or entry.expires is None:
                    entry.expires = None
                else:
                    entry.expires = max(entry.expires, expires)
            self._expire_at(key, entry.expires)

    def expiry(self, ttl: float | None) -> float | None:
        """When a key stored now with ``ttl`` seconds has expired (``None``: never)."""
        return None if ttl is None else self.clock() + ttl

    def _expire_at(self, key: bytes, expires: float | None) -> None:
        """Record that ``key``'s current entry leaves the tracking at ``expires``."""
        if expires is None:
            return
        heap = self._expiries
        heapq.heappush(heap, (expires, self._generation, key))
        if len(heap) > _EXPIRY_SLACK and len(heap) > 2 * len(self._entries):
            heap[:] = [
                (e.expires, e.generation, k)
                for k, e in self._entries.items()
                if e.expires is not None
            ]
            heapq.heapify(heap)

    def _purge_expired(self) -> None:
        """Drop the entries whose expiry has passed (the server no longer has them)."""
        heap = self._expiries
        if not heap:
            return
        now = self.clock()
        while heap and heap[0][0] <= now:
            _, generation, key = heapq.heappop(heap)
            entry = self._entries.get(key)
            if entry is not None and entry.generation == generation:
                self._drop(key, vanished=False)
                self._expired += 1

    def accessed(self, key: bytes, size: int | None = None) -> None:
        """A hit: mark most recent and settled. ``size`` (a GET hit's exact length)
        corrects or adds it."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                if size is not None:
                    self._generation += 1
                    self._entries[key] = _Entry(size, self._generation)
                    self._used += size
                return
            if size is not None and size != entry.size:
                self._used += size - entry.size
                entry.size = size
            self._settle(entry)
            self._entries.move_to_end(key)

    def settled(self, key: bytes) -> None:
        """An EXISTS found an unsettled key: it is stored (its place in the order stays)."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._settle(entry)

    def _settle(self, entry: _Entry) -> None:
        if entry.unsettled:
            entry.unsettled = False
            self._unsettled -= 1

    @property
    def unsettled(self) -> int:
        """How many tracked keys have an unknown SET outcome."""
        with self._lock:
            self._purge_expired()
            return self._unsettled

    def unsettled_keys(self, limit: int) -> list[bytes]:
        """Up to ``limit`` keys whose SET outcome is still unknown, oldest first."""
        with self._lock:
            self._purge_expired()
            out: list[bytes] = []
            if not self._unsettled:
                return out
            for key, entry in self._entries.items():
                if len(out) >= limit:
                    break
                if entry.unsettled:
                    out.append(key)
            return out

    def gone(self, key: bytes, since: int | None = None) -> bool:
        """The key was found missing (a GET/EXISTS miss): stop counting it.

        ``since``: the :meth:`sequence` read when the lookup was submitted; an entry
        stored (or re-stored) after that is newer than the answer and stays."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or (since is not None and entry.generation > since):
                return False
            if entry.unsettled and self.clock() - entry.unsettled_at < UNSETTLED_GRACE:
                return False  # too soon after the unknown outcome to trust a miss
            return self._drop(key, vanished=True)

    def deleted(self, key: bytes) -> bool:
        """The caller deleted the key: stop counting it."""
        with self._lock:
            return self._drop(key, vanished=False)

    def recovered(self, key: bytes, size: int) -> bool:
        """A key found on the server at start (SCAN): counted as least recently used.

        Does nothing (returns ``False``) for a key already tracked: what this process
        stored is newer knowledge than a scan.
        """
        with self._lock:
            if key in self._entries:
                return False
            self._generation += 1
            self._entries[key] = _Entry(size, self._generation)
            self._entries.move_to_end(key, last=False)
            self._used += size
            return True

    def _drop(self, key: bytes, *, vanished: bool) -> bool:
        entry = self._entries.pop(key, None)
        if entry is None:
            return False
        self._used -= entry.size
        self._settle(entry)
        if vanished:
            self._vanished += 1
        return True

    # -- pins ------------------------------------------------------------------------

    def pin(self, keys: Iterable[bytes]) -> None:
        """Protect ``keys`` from eviction until the same number of :meth:`unpin` calls."""
        with self._lock:
            self._pins.update(keys)

    def unpin(self, keys: Iterable[bytes]) -> None:
        with self._lock:
            for key in keys:
                count = self._pins[key] - 1
                if count > 0:
                    self._pins[key] = count
                else:
                    del self._pins[key]

    def is_pinned(self, key: bytes) -> bool:
        with self._lock:
            return self._pins[key] > 0

    # -- eviction --------------------------------------------------------------------

    def select_victims(self, nbytes: int) -> list[Victim]:
        """Least-recently-used, unpinned keys totalling at least ``nbytes`` (or all there are).

        The chosen keys are marked as being evicted (another cycle will not choose them)
        until :meth:`finish_eviction`.
        """
        victims: list[Victim] = []
        total = 0
        with self._lock:
            self._purge_expired()
            for key, entry in self._entries.items():
                if total >= nbytes:
                    break
                if self._pins[key] > 0 or key in self._evicting:
                    continue
                victims.append(Victim(key, entry.size, entry.generation))
                total += entry.size
            self._evicting.update(v.key for v in victims)
        return victims

    def finish_eviction(self, victims: Iterable[Victim], statuses: Iterable[KeyStatus]) -> int:
        """Record the UNLINK outcome per victim and return the tracked bytes released.

        ``OK`` (deleted) and ``MISS`` (already gone) release the key; any failure keeps
        it for a later cycle. A victim stored again since it was chosen stays tracked.
        """
        freed = 0
        with self._lock:
            for victim, status in zip(victims, statuses, strict=True):
                self._evicting.discard(victim.key)
                entry = self._entries.get(victim.key)
                if entry is None or entry.generation != victim.generation:
                    continue
                if status is KeyStatus.OK:
                    self._evicted_keys += 1
                    self._evicted_bytes += entry.size
                elif status is not KeyStatus.MISS:
                    continue
                freed += entry.size
                self._drop(victim.key, vanished=status is KeyStatus.MISS)
        return freed

    # -- reading -------------------------------------------------------------------

    @property
    def used_bytes(self) -> int:
        with self._lock:
            self._purge_expired()
            return self._used

    def size_of(self, key: bytes) -> int | None:
        """The tracked size of ``key``, or ``None`` when it is not tracked."""
        with self._lock:
            self._purge_expired()
            entry = self._entries.get(key)
            return None if entry is None else entry.size

    def lru_order(self) -> list[bytes]:
        """Tracked keys, least recently used first."""
        with self._lock:
            self._purge_expired()
            return list(self._entries)

    def usage(self) -> Usage:
        with self._lock:
            self._purge_expired()
            pinned = sum(1 for k, n in self._pins.items() if n > 0 and k in self._entries)
            unsettled = [e.size for e in self._entries.values() if e.unsettled]
            return Usage(
                self._used,
                len(self._entries),
                pinned,
                self._evicted_keys,
                self._evicted_bytes,
                self._vanished,
                len(unsettled),
                sum(unsettled),
                self._expired,
            )

    def __len__(self) -> int:
        with self._lock:
            self._purge_expired()
            return len(self._entries)
