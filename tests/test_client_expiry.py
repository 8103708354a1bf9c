"""Expiry on SET above the connector (issue 11 §3): ``Client.batch_set/set(ttl=)``, the
asyncio client, the key prefix, the cluster-free KV store and its tracker.

The server's ``PTTL`` proves an expiry was set; nothing sleeps for a key to expire. The
tracker's side (an expired chunk stops counting) runs on its own clock: entries are
given expiry times already past, or the monotonic clock the tracker reads is moved on.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

import respkv
import respkv.aio
from respkv import ConnectionOptions
from respkv._admin import AdminConnection
from respkv._validate import MAX_TTL
from respkv.client import Client
from respkv.eviction import EvictionConfig, LRUTracker
from respkv.kvstore import KVStore

TTL = 300.0
KIB = 1024


@pytest.fixture
def admin(redis_options: ConnectionOptions) -> Iterator[AdminConnection]:
    with AdminConnection(redis_options) as conn:
        yield conn


@pytest.fixture
def client(redis_options: ConnectionOptions, backend_name: str) -> Iterator[Client]:
    with respkv.connect(redis_options, backend=backend_name, num_workers=2) as c:
        yield c


def _pttl(admin: AdminConnection, key: str | bytes) -> int:
    return int(admin.command("PTTL", key))


# -- the clients -----------------------------------------------------------------------


def test_client_batch_set_and_set_with_ttl(client: Client, admin: AdminConnection) -> None:
    r = client.batch_set(["cx:a", "cx:b"], [b"1", b"x" * (300 * KIB)], ttl=TTL)
    assert r.ok
    assert all(0 < _pttl(admin, k) <= TTL * 1000 for k in ("cx:a", "cx:b"))
    client.set("cx:one", b"v", ttl=2.5)
    assert 0 < _pttl(admin, "cx:one") <= 2500
    client.set("cx:one", b"v")  # without ttl: the expiry is cleared
    assert _pttl(admin, "cx:one") == -1
    assert client.stats().bytes_out == 1 + 300 * KIB + 2


def test_client_ttl_with_prefix(
    redis_options: ConnectionOptions, backend_name: str, admin: AdminConnection
) -> None:
    with respkv.connect(redis_options, backend=backend_name, prefix="ns:") as c:
        c.set("k", b"v", ttl=TTL)
    assert 0 < _pttl(admin, "ns:k") <= TTL * 1000
    assert _pttl(admin, "k") == -2  # only the prefixed key exists


@pytest.mark.parametrize(
    ("ttl", "exc"), [(0, ValueError), (MAX_TTL + 1, ValueError), (True, TypeError)]
)
def test_client_bad_ttl_raises_before_anything(
    client: Client, admin: AdminConnection, ttl: object, exc: type[Exception]
) -> None:
    with pytest.raises(exc, match="ttl"):
        client.batch_set(["cx:bad"], [b"v"], ttl=ttl)  # type: ignore[arg-type]
    with pytest.raises(exc, match="ttl"):
        client.set("cx:bad", b"v", ttl=ttl)  # type: ignore[arg-type]
    assert _pttl(admin, "cx:bad") == -2
    assert client.stats().batches == 0


def test_async_client_ttl(
    redis_options: ConnectionOptions, backend_name: str, admin: AdminConnection
) -> None:
    async def main() -> None:
        async with await respkv.aio.connect(redis_options, backend=backend_name) as c:
            assert (await c.batch_set(["ax:a", "ax:b"], [b"1", b"2"], ttl=TTL)).ok
            await c.set("ax:one", b"v", ttl=1.5)
            with pytest.raises(ValueError, match="ttl"):
                await c.set("ax:bad", b"v", ttl=-1)

    asyncio.run(main())
    assert all(0 < _pttl(admin, k) <= TTL * 1000 for k in ("ax:a", "ax:b"))
    assert 0 < _pttl(admin, "ax:one") <= 1500
    assert _pttl(admin, "ax:bad") == -2


# -- the KV store ------------------------------------------------------------------------


def test_kvstore_put_with_ttl_sets_the_expiry_and_tracks_it(
    client: Client, admin: AdminConnection, monkeypatch: pytest.MonkeyPatch
) -> None:
    capacity = 100 * KIB
    with KVStore(
        client,
        key_prefix="kx:",
        capacity_bytes=capacity,
        eviction=EvictionConfig(),
        evict_in="manual",
    ) as store:
        keys = [f"c{i}" for i in range(4)]
        assert store.put(keys, [b"x" * (10 * KIB)] * 4, ttl=TTL).ok
        assert store.put(["keep"], [b"y" * (20 * KIB)]).ok
        assert all(0 < _pttl(admin, f"kx:{k}") <= TTL * 1000 for k in keys)
        assert _pttl(admin, "kx:keep") == -1
        assert store.usage().used_bytes == 60 * KIB
        # The ttl passes (on the tracker's clock): the expiring chunks stop counting,
        # the other stays, and none of them is chosen for eviction.
        later = time.monotonic() + TTL + 1
        monkeypatch.setattr(store._tracker, "clock", lambda: later)
        u = store.usage()
        assert (u.used_bytes, u.keys, u.expired_keys) == (20 * KIB, 1, 4)
        assert store.tracked_size("c0") is None and store.tracked_size("keep") == 20 * KIB
        assert store.evict().evicted_keys == 0  # below the watermark now


def test_kvstore_bad_ttl_is_refused_before_tracking(client: Client) -> None:
    with KVStore(client, key_prefix="kb:", evict_in="manual") as store:
        with pytest.raises(ValueError, match="ttl"):
            store.put(["a"], [b"v"], ttl=0)
        assert store.usage().keys == 0


# -- the tracker ------------------------------------------------------------------------------


def test_tracker_drops_entries_whose_expiry_passed() -> None:
    t = LRUTracker()
    past, future = time.monotonic() - 1.0, time.monotonic() + 3600.0
    t.stored(b"old", 10, past)
    t.stored(b"new", 20, future)
    t.stored(b"forever", 40)
    assert t.used_bytes == 60 and len(t) == 2
    assert t.usage().expired_keys == 1
    assert [v.key for v in t.select_victims(1000)] == [b"new", b"forever"]


def test_tracker_restore_without_ttl_clears_the_expiry() -> None:
    t = LRUTracker()
    t.stored(b"k", 10, time.monotonic() + 3600.0)
    t.stored(b"k", 12)  # stored again, no expiry: the old expiry record is stale
    t.stored(b"j", 5, time.monotonic() - 1.0)
    assert t.size_of(b"k") == 12 and t.used_bytes == 12 and t.usage().expired_keys == 1


def test_tracker_restore_with_a_later_ttl_moves_the_expiry() -> None:
    clock = [1000.0]
    t = LRUTracker(clock=lambda: clock[0])
    t.stored(b"k", 10, t.expiry(10.0))
    t.stored(b"k", 10, t.expiry(100.0))
    clock[0] += 50.0
    assert t.size_of(b"k") == 10  # the first expiry no longer applies
    clock[0] += 51.0
    assert t.size_of(b"k") is None and t.usage().expired_keys == 1


def test_tracker_unknown_outcome_keeps_the_longer_lifetime() -> None:
    t = LRUTracker()
    past = time.monotonic() - 1.0
    t.stored(b"p", 10)  # persistent
    t.maybe_stored(b"p", 10, past)  # an expiring SET that may not have been applied
    t.maybe_stored(b"n", 7, past)  # new and unknown, its expiry already passed
    assert t.size_of(b"p") == 10 and t.size_of(b"n") is None
    assert t.unsettled == 0  # the expired unsettled entry left with its count


def test_tracker_expiry_heap_stays_bounded() -> None:
    """Many overwrites of a few keys with long ttls leave stale heap records; the
    heap is rebuilt from the entries, so it never holds more than about twice them."""
    t = LRUTracker()
    future = time.monotonic() + 3600.0
    for i in range(10_000):
        t.stored(b"k%d" % (i % 10), 1, future + i)
    assert len(t._expiries) <= max(2 * len(t), 64) + 1
    assert t.used_bytes == 10
