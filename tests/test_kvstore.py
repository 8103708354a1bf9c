"""The KV-cache store against a real server: tracking, LRU eviction, pins, recovery."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import respkv
from respkv import ConnectionOptions, KeyStatus
from respkv.client import Client
from respkv.eviction import EvictionConfig
from respkv.kvstore import KVStore, chunk_key
from respkv.testing.servers import LocalServer

KIB = 1024
CHUNK = 64 * KIB
#: 10 chunks of capacity; the default watermark (0.8) triggers at 8 chunks and
#: eviction brings usage down to 6.
CAPACITY = 10 * CHUNK

StoreFactory = Callable[..., KVStore]


@pytest.fixture
def client(redis_options: ConnectionOptions, backend_name: str) -> Iterator[Client]:
    with respkv.connect(redis_options, backend=backend_name, num_workers=2) as c:
        yield c


@pytest.fixture
def make_store(client: Client) -> Iterator[StoreFactory]:
    stores: list[KVStore] = []

    def make(**kwargs: Any) -> KVStore:
        kwargs.setdefault("key_prefix", "t:")
        store = KVStore(client, **kwargs)
        stores.append(store)
        return store

    yield make
    for s in stores:
        s.close()


def chunks(n: int, size: int = CHUNK, start: int = 0) -> tuple[list[str], list[bytes]]:
    keys = [chunk_key("m", 0, i) for i in range(start, start + n)]
    return keys, [bytes([i % 251]) * size for i in range(start, start + n)]


def server_bytes(client: Client, pattern: bytes = b"t:*") -> dict[bytes, int]:
    """What the server really holds under the pattern: key -> STRLEN."""
    out: dict[bytes, int] = {}
    cursor = b"0"
    while True:
        cursor, page = client.command("SCAN", cursor, "MATCH", pattern, "COUNT", 1000)
        for key in page:
            out[key] = client.command("STRLEN", key)
        if cursor == b"0":
            return out


def lru(**kw: Any) -> EvictionConfig:
    return EvictionConfig("LRU", **kw)


# -- keys ----------------------------------------------------------------------------


def test_chunk_key_layout() -> None:
    assert chunk_key("Llama-3.1-8B", 3, 0xBEEF) == "Llama-3.1-8B@3@beef"
    assert chunk_key("m", 0, b"\x01\xff", salt="tenant7") == "m@0@01ff@tenant7"
    assert chunk_key("meta-llama/Llama-3.1-8B", 1, "abc") == "meta-llama/Llama-3.1-8B@1@abc"
    with pytest.raises(ValueError, match="must not contain '@'"):
        chunk_key("a@b", 0, 1)
    with pytest.raises(ValueError, match="rank must be"):
        chunk_key("m", -1, 1)
    with pytest.raises(TypeError, match="chunk_hash must be"):
        chunk_key("m", 0, 1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="salt must not be empty"):
        chunk_key("m", 0, 1, salt="")


def test_prefix_namespaces_keys_and_results_use_callers_keys(
    make_store: StoreFactory, client: Client
) -> None:
    store = make_store(key_prefix="ns1:")
    keys, values = chunks(2)
    result = store.put(keys, values)
    assert result.ok
    assert result.keys == tuple(k.encode() for k in keys)
    assert client.exists(f"ns1:{keys[0]}")
    assert not client.exists(keys[0])
    out = [bytearray(CHUNK) for _ in keys]
    assert store.get(keys, out).hits == [True, True]
    assert out == values


# -- tracking ------------------------------------------------------------------------


def test_usage_is_bytes_and_overwrite_updates_it(make_store: StoreFactory) -> None:
    store = make_store()
    store.put(["a", "b"], [b"x" * 1000, b"y" * 3000])
    assert store.usage().used_bytes == 4000
    store.put(["a"], [b"z" * 10])
    usage = store.usage()
    assert (usage.used_bytes, usage.keys) == (3010, 2)
    assert store.tracked_size("a") == 10
    assert usage.fraction == -1.0


def test_failed_stores_are_not_counted(
    make_server: Callable[..., LocalServer], backend_name: str
) -> None:
    server = make_server("--maxmemory", "3mb", "--maxmemory-policy", "noeviction")
    with respkv.connect(server.url, backend=backend_name, num_workers=1) as c:
        store = KVStore(c, key_prefix="t:", evict_in="manual")
        keys, values = chunks(12, size=512 * KIB)
        result = store.put(keys, values)
        stored = [k for k, s in zip(keys, result.statuses) if s is KeyStatus.OK]
        refused = [s for s in result.statuses if s is KeyStatus.SERVER_ERROR]
        assert refused, "the server should have answered -OOM for some keys"
        assert all("OOM" in (e or "") for e, s in zip(result.errors, result.statuses)
                   if s is KeyStatus.SERVER_ERROR)  # fmt: skip
        assert store.usage().used_bytes == len(stored) * 512 * KIB
        assert store.usage().used_bytes == sum(server_bytes(c).values())


def test_misses_drop_keys_from_tracking(make_store: StoreFactory, client: Client) -> None:
    store = make_store()
    keys, values = chunks(3)
    store.put(keys, values)
    client.command("UNLINK", f"t:{keys[0]}", f"t:{keys[1]}")
    out = [bytearray(CHUNK)]
    assert store.get([keys[0]], out).statuses == (KeyStatus.MISS,)
    assert store.contains([keys[1]]).statuses == (KeyStatus.MISS,)
    usage = store.usage()
    assert (usage.used_bytes, usage.keys, usage.vanished_keys) == (CHUNK, 1, 2)


def test_get_hit_on_an_untracked_key_learns_its_size(
    make_store: StoreFactory, client: Client
) -> None:
    client.set("t:foreign", b"q" * 777)
    store = make_store()
    assert store.get(["foreign"], [bytearray(777)]).ok
    assert store.tracked_size("foreign") == 777


def test_size_mismatch_keeps_the_tracking(make_store: StoreFactory) -> None:
    store = make_store()
    store.put(["k"], [b"a" * 100])
    result = store.get(["k"], [bytearray(50)])
    assert result.statuses == (KeyStatus.SIZE_MISMATCH,)
    assert store.tracked_size("k") == 100


def test_delete_releases_tracking(make_store: StoreFactory) -> None:
    store = make_store()
    keys, values = chunks(2)
    store.put(keys, values)
    result = store.delete([*keys, "never-there"])
    assert result.statuses == (KeyStatus.OK, KeyStatus.OK, KeyStatus.MISS)
    assert store.usage().used_bytes == 0
    assert store.usage().vanished_keys == 0


# -- eviction ------------------------------------------------------------------------


def test_fill_workload_respects_capacity_within_one_batch(
    make_store: StoreFactory, client: Client
) -> None:
    store = make_store(capacity_bytes=CAPACITY, eviction=lru(), evict_in="inline")
    batch = 3
    for step in range(12):
        keys, values = chunks(batch, start=step * batch)
        assert store.put(keys, values).ok
        real = sum(server_bytes(client).values())
        assert real == store.usage().used_bytes
        assert real <= CAPACITY + batch * CHUNK
        assert real < 0.8 * CAPACITY  # inline eviction ran before put() returned
    assert store.usage().evicted_keys == 12 * batch - store.usage().keys


def test_lru_order_is_honoured(make_store: StoreFactory, client: Client) -> None:
    store = make_store(capacity_bytes=CAPACITY, eviction=lru(), evict_in="manual")
    keys, values = chunks(7)
    store.put(keys, values)
    # Touch the three oldest: they become the most recent.
    assert store.get(keys[:2], [bytearray(CHUNK), bytearray(CHUNK)]).ok
    assert store.contains(keys[2:3]).ok
    more_keys, more_values = chunks(1, start=7)
    store.put(more_keys, more_values)
    report = store.evict()
    # 8 chunks = the watermark; eviction frees 2 chunks: the two least recently used.
    assert (report.wanted_bytes, report.freed_bytes, report.evicted_keys) == (
        2 * CHUNK,
        2 * CHUNK,
        2,
    )
    left = set(server_bytes(client))
    assert {f"t:{k}".encode() for k in keys[3:5]}.isdisjoint(left)
    assert {f"t:{k}".encode() for k in [*keys[:3], *keys[5:], *more_keys]} <= left


def test_pinned_keys_survive(make_store: StoreFactory, client: Client) -> None:
    store = make_store(capacity_bytes=CAPACITY, eviction=lru(), evict_in="inline")
    keys, values = chunks(4)
    store.put(keys, values)
    with store.pinned(keys[:2]):
        store.pin(keys[2:3])
        for step in range(1, 6):
            k, v = chunks(4, start=step * 4)
            store.put(k, v)
        assert store.usage().pinned_keys == 3
    for key in keys[:3]:
        assert client.exists(f"t:{key}"), f"pinned {key} was evicted"
    assert not client.exists(f"t:{keys[3]}")
    store.unpin(keys[2:3])
    assert store.usage().pinned_keys == 0


def test_keys_deleted_behind_our_back_do_not_stall_eviction(
    make_store: StoreFactory, client: Client
) -> None:
    store = make_store(capacity_bytes=CAPACITY, eviction=lru(), evict_in="manual")
    keys, values = chunks(9)
    store.put(keys, values)
    # Someone else deletes the five oldest; we still count them.
    client.command("UNLINK", *[f"t:{k}" for k in keys[:5]])
    report = store.evict()
    # 9 chunks tracked, low water 6: three chunks' worth must leave the tracking.
    # The oldest five are found gone (MISS): they leave it without stalling.
    assert report.vanished_keys >= 3
    assert store.usage().used_bytes <= 6 * CHUNK
    assert store.usage().used_bytes == sum(server_bytes(client).values()) + (
        (5 - report.vanished_keys) * CHUNK
    )
    # A second cycle has nothing to do: no livelock on ghosts.
    assert store.evict().wanted_bytes == 0


def test_background_eviction_makes_room(make_store: StoreFactory, client: Client) -> None:
    store = make_store(capacity_bytes=CAPACITY, eviction=lru(), eviction_interval=60.0)
    keys, values = chunks(9)
    store.put(keys, values)
    # The store woke the evictor thread; wait for it (an event, not a sleep).
    assert store.wait_for_room(timeout=30.0)
    assert sum(server_bytes(client).values()) <= 6 * CHUNK
    assert store.usage().evicted_keys == 3


def test_noop_policy_and_missing_eviction_warn_once(
    make_store: StoreFactory, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="respkv.kvstore"):
        store = make_store(capacity_bytes=CAPACITY, eviction=None, evict_in="inline")
        keys, values = chunks(10)
        store.put(keys, values)
        store.put(keys, values)
        make_store(capacity_bytes=CAPACITY, eviction=EvictionConfig("noop"))
    warnings = [r for r in caplog.records if "eviction is disabled" in r.getMessage()]
    assert len(warnings) == 2  # one per store, none per operation
    assert store.usage().used_bytes == 10 * CHUNK
    assert store.usage().evicted_keys == 0


def test_eviction_without_capacity_warns(
    make_store: StoreFactory, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="respkv.kvstore"):
        make_store(eviction=lru())
    assert any("no capacity" in r.getMessage() for r in caplog.records)


def test_bad_store_arguments(client: Client) -> None:
    with pytest.raises(ValueError, match="evict_in must be one of"):
        KVStore(client, evict_in="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="capacity_bytes must be >= 0"):
        KVStore(client, capacity_bytes=-1)


# -- recovery and config ---------------------------------------------------------------


def test_recover_usage_by_scan(make_store: StoreFactory, client: Client) -> None:
    first = make_store(key_prefix="r*[1]:")
    keys, values = chunks(5, size=1000)
    first.put(keys, values)
    client.set("r*[1]-other", b"not under the prefix")
    client.set("rX[1]:glob-lookalike", b"must not match")
    client.command("SADD", "r*[1]:a-set", "member")
    second = make_store(key_prefix="r*[1]:", recover_usage=True)
    usage = second.usage()
    assert (usage.keys, usage.used_bytes) == (5, 5000)
    # Recovered keys are the least recently used.
    newer_keys, newer_values = chunks(1, size=10, start=100)
    second.put(newer_keys, newer_values)
    assert second.recover_usage() == 0


def test_open_from_config(redis_options: ConnectionOptions, backend_name: str) -> None:
    doc = {
        "type": "resp",
        "host": redis_options.host,
        "port": redis_options.port,
        "num_workers": 2,
        "key_prefix": "cfg:",
        "max_capacity_bytes": CAPACITY,
        "eviction": {"eviction_policy": "LRU", "trigger_watermark": 0.5, "eviction_ratio": 0.5},
    }
    with KVStore.open(doc, backend=backend_name, evict_in="inline") as store:
        assert store.capacity_bytes == CAPACITY
        assert store.eviction == EvictionConfig("LRU", 0.5, 0.5)
        keys, values = chunks(5)
        store.put(keys, values)
        # At 5 of 10 chunks the watermark (0.5) is reached; low water 0 empties the store.
        assert store.usage().used_bytes == 0
        assert "cfg:" in repr(store)
    assert store.client.closed


def test_concurrent_writers_and_readers_keep_tracking_exact(
    make_store: StoreFactory, client: Client
) -> None:
    import threading

    store = make_store(capacity_bytes=CAPACITY, eviction=lru(), evict_in="inline")
    errors: list[BaseException] = []

    def work(tid: int) -> None:
        try:
            for step in range(15):
                keys, values = chunks(2, size=16 * KIB, start=tid * 1000 + step * 2)
                assert store.put(keys, values).ok
                out = [bytearray(16 * KIB) for _ in keys]
                result = store.get(keys, out)
                assert all(s in (KeyStatus.OK, KeyStatus.MISS) for s in result.statuses)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    real = server_bytes(client)
    assert store.usage().used_bytes == sum(real.values())
    assert store.usage().keys == len(real)
    assert sum(real.values()) < 0.8 * CAPACITY
