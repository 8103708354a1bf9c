"""The eviction policy and the LRU usage tracker, without a server.

The store-level behaviour (fill workloads against a real server) is in test_kvstore.py.
"""

from __future__ import annotations

import threading

import pytest

from respkv import KeyStatus
from respkv.eviction import UNSETTLED_GRACE, EvictionConfig, LRUTracker, bytes_to_free

MIB = 1024 * 1024


def test_defaults_are_the_reference_ones() -> None:
    cfg = EvictionConfig()
    assert (cfg.eviction_policy, cfg.trigger_watermark, cfg.eviction_ratio) == ("LRU", 0.8, 0.2)
    assert cfg.enabled
    assert not EvictionConfig("NOOP").enabled
    assert EvictionConfig("lru").eviction_policy == "LRU"


def test_bytes_to_free_at_and_above_the_watermark() -> None:
    cfg = EvictionConfig()
    cap = 100 * MIB
    assert bytes_to_free(79 * MIB, cap, cfg) == 0
    # At the trigger: eviction_ratio x capacity.
    assert bytes_to_free(80 * MIB, cap, cfg) == 20 * MIB
    # Above it: down to (trigger - ratio) x capacity.
    assert bytes_to_free(130 * MIB, cap, cfg) == 70 * MIB
    assert bytes_to_free(90 * MIB, 0, cfg) == 0
    assert bytes_to_free(90 * MIB, cap, None) == 0
    assert bytes_to_free(90 * MIB, cap, EvictionConfig("noop")) == 0
    # A ratio above the watermark empties the store.
    assert bytes_to_free(50 * MIB, cap, EvictionConfig("LRU", 0.5, 0.9)) == 50 * MIB


@pytest.mark.parametrize("bad", [0, -0.1, 1.01, "0.5", True])
def test_watermark_is_validated(bad: object) -> None:
    with pytest.raises(ValueError, match="trigger_watermark must be"):
        EvictionConfig(trigger_watermark=bad)  # type: ignore[arg-type]


def test_stored_counts_bytes_and_overwrite_replaces() -> None:
    t = LRUTracker()
    t.stored(b"a", 100)
    t.stored(b"b", 50)
    assert t.used_bytes == 150
    t.stored(b"a", 10)
    assert t.used_bytes == 60
    assert t.lru_order() == [b"b", b"a"]
    assert len(t) == 2
    assert t.size_of(b"a") == 10
    assert t.size_of(b"zz") is None


def test_lru_order_follows_access() -> None:
    t = LRUTracker()
    for k in (b"a", b"b", b"c"):
        t.stored(k, 10)
    t.accessed(b"a")
    assert t.lru_order() == [b"b", b"c", b"a"]
    victims = t.select_victims(15)
    assert [v.key for v in victims] == [b"b", b"c"]


def test_accessed_with_size_corrects_or_adds() -> None:
    t = LRUTracker()
    t.stored(b"a", 10)
    t.accessed(b"a", 12)
    t.accessed(b"new", 5)
    t.accessed(b"unknown")
    assert t.used_bytes == 17
    assert t.lru_order() == [b"a", b"new"]


def test_gone_keys_leave_the_tracking() -> None:
    t = LRUTracker()
    t.stored(b"a", 10)
    assert t.gone(b"a")
    assert not t.gone(b"a")
    assert t.used_bytes == 0
    assert t.usage().vanished_keys == 1


def test_pinned_keys_are_never_victims_and_pins_nest() -> None:
    t = LRUTracker()
    for k in (b"a", b"b", b"c"):
        t.stored(k, 10)
    t.pin([b"a"])
    t.pin([b"a"])
    assert [v.key for v in t.select_victims(100)] == [b"b", b"c"]
    t.unpin([b"a"])
    assert t.is_pinned(b"a")
    assert t.usage().pinned_keys == 1
    t.unpin([b"a"])
    assert not t.is_pinned(b"a")
    assert [v.key for v in t.select_victims(100)] == [b"a"]


def test_victims_in_flight_are_not_chosen_twice() -> None:
    t = LRUTracker()
    for k in (b"a", b"b"):
        t.stored(k, 10)
    first = t.select_victims(10)
    second = t.select_victims(10)
    assert [v.key for v in first] == [b"a"]
    assert [v.key for v in second] == [b"b"]


def test_finish_eviction_outcomes() -> None:
    t = LRUTracker()
    for k in (b"ok", b"miss", b"err", b"again"):
        t.stored(k, 10)
    victims = t.select_victims(40)
    # "again" is stored once more while its UNLINK is in flight: it stays tracked.
    t.stored(b"again", 20)
    freed = t.finish_eviction(
        victims, [KeyStatus.OK, KeyStatus.MISS, KeyStatus.IO_ERROR, KeyStatus.OK]
    )
    assert freed == 20
    assert t.lru_order() == [b"err", b"again"]
    assert t.used_bytes == 30
    usage = t.usage()
    assert (usage.evicted_keys, usage.evicted_bytes, usage.vanished_keys) == (1, 10, 1)
    # The failed one is eligible again.
    assert [v.key for v in t.select_victims(10)] == [b"err"]


def test_finish_eviction_needs_one_status_per_victim() -> None:
    t = LRUTracker()
    t.stored(b"a", 1)
    with pytest.raises(ValueError, match="zip"):
        t.finish_eviction(t.select_victims(1), [])


def test_negative_size_is_rejected() -> None:
    with pytest.raises(ValueError, match="size must be >= 0"):
        LRUTracker().stored(b"a", -1)


def test_concurrent_updates_keep_the_total_exact() -> None:
    t = LRUTracker()
    n_threads, per_thread = 4, 500

    def work(tid: int) -> None:
        for i in range(per_thread):
            key = f"{tid}-{i % 50}".encode()
            t.stored(key, i)
            if i % 7 == 0:
                t.gone(key)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(n_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert t.used_bytes == sum(t.size_of(k) or 0 for k in t.lru_order())


def test_deleted_is_not_counted_as_vanished_and_recovered_is_oldest() -> None:
    t = LRUTracker()
    t.stored(b"mine", 5)
    assert t.deleted(b"mine")
    t.stored(b"new", 5)
    assert t.recovered(b"old", 7)
    assert not t.recovered(b"new", 99)
    assert t.lru_order() == [b"old", b"new"]
    assert t.used_bytes == 12
    assert t.usage().vanished_keys == 0


# -- lookups older than a store (issue 9, defect 9) ------------------------------------------


def test_a_miss_older_than_the_entry_does_not_drop_it() -> None:
    t = LRUTracker()
    t.stored(b"old", 10)
    since = t.sequence()  # a lookup is submitted now
    t.stored(b"k", 5)  # a concurrent SET lands and is acknowledged
    assert not t.gone(b"k", since), "the MISS predates the store"
    assert t.size_of(b"k") == 5
    assert t.gone(b"old", since), "an entry not stored since the lookup does go"
    assert t.gone(b"k", t.sequence())  # a lookup submitted after the store
    assert t.used_bytes == 0 and t.usage().vanished_keys == 2
    assert not t.gone(b"never")


# -- unknown outcomes (issue 9, defect 10) ---------------------------------------------------


def test_unknown_outcomes_are_counted_first_victims_and_settle() -> None:
    now = [1000.0]
    t = LRUTracker(clock=lambda: now[0])
    t.stored(b"a", 100)
    t.maybe_stored(b"m", 40)  # a new key with an unknown outcome
    assert t.lru_order() == [b"m", b"a"], "unsettled keys are the first victims"
    assert t.used_bytes == 140
    u = t.usage()
    assert (u.keys, u.unsettled_keys, u.unsettled_bytes) == (2, 1, 40)
    assert t.unsettled == 1 and t.unsettled_keys(10) == [b"m"]
    victims = t.select_victims(1)
    assert [v.key for v in victims] == [b"m"]
    assert t.finish_eviction(victims, [KeyStatus.IO_ERROR]) == 0  # a failed UNLINK keeps it
    # An overwrite with an unknown outcome: the server holds one of the two sizes.
    t.maybe_stored(b"a", 150)
    assert t.size_of(b"a") == 150 and t.unsettled == 1
    t.maybe_stored(b"a", 20)
    assert t.size_of(b"a") == 150
    # A hit settles (and corrects the size); an EXISTS settles in place.
    t.accessed(b"a", 20)
    assert t.size_of(b"a") == 20
    t.settled(b"m")
    assert t.unsettled == 0 and t.unsettled_keys(10) == [] and t.lru_order()[0] == b"m"
    # A later SET, or a drop, settles too.
    t.maybe_stored(b"x", 1)
    t.maybe_stored(b"y", 1)
    t.stored(b"x", 2)
    # A miss right after the unknown outcome proves nothing: the server may still apply
    # the SET from the bytes of the dropped connection (UNSETTLED_GRACE).
    assert not t.gone(b"y") and t.unsettled == 1
    now[0] += UNSETTLED_GRACE
    assert t.gone(b"y")
    assert t.unsettled == 0 and t.usage().unsettled_bytes == 0
    assert t.used_bytes == 20 + 40 + 2


def test_an_unknown_outcome_is_newer_than_a_lookup_in_flight() -> None:
    t = LRUTracker()
    since = t.sequence()
    t.maybe_stored(b"k", 8)  # the SET may have landed after the lookup was answered
    assert not t.gone(b"k", since)
    with pytest.raises(ValueError, match="size must be >= 0"):
        t.maybe_stored(b"k", -1)
