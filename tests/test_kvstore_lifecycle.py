"""A KV store dropped without ``close()`` is released when collected (issue 11 §3 item 2).

Before: the background eviction thread's target was the store's bound method, so the
thread kept the store alive forever: its thread, and an owned client's worker threads,
descriptors and server connections, stayed until the process ended, and no warning said
so. Now the thread holds the store weakly and a finalizer releases it with a
``ResourceWarning``; threads, descriptors and server connections return to where they
were (the server's count is polled in a bounded loop, nothing sleeps a fixed time).

The background thread wakes only on a store crossing the watermark or after
``eviction_interval``; the tests keep both away, so the store is collected on the test's
own thread, inside ``pytest.warns``.
"""

from __future__ import annotations

import gc
import os
import threading
import time
import weakref
from collections.abc import Iterator

import pytest

import respkv
from respkv import ConnectionOptions
from respkv._admin import AdminConnection
from respkv.eviction import EvictionConfig
from respkv.kvstore import KVStore

#: How long the server may take to notice closed connections (INFO polled meanwhile).
SERVER_NOTICE_TIMEOUT = 10.0
#: An eviction interval no test outlives: the thread never wakes on its own here.
QUIET_INTERVAL = 3600.0
CAPACITY = 1 << 20


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _threads() -> int:
    return len(os.listdir("/proc/self/task"))  # OS threads: the native workers too


def _server_clients(admin: AdminConnection) -> int:
    info = admin.command("INFO", "clients").decode()
    return int(info.split("connected_clients:")[1].split()[0])


def _wait_server_clients(admin: AdminConnection, at_most: int) -> int:
    deadline = time.monotonic() + SERVER_NOTICE_TIMEOUT
    n = _server_clients(admin)
    while n > at_most and time.monotonic() < deadline:
        # The poll is the wait: each INFO is a round trip to the server.
        n = _server_clients(admin)
    return n


@pytest.fixture
def observer(redis_options: ConnectionOptions) -> Iterator[AdminConnection]:
    with AdminConnection(redis_options) as conn:
        conn.command("PING")
        yield conn


def _drop_all(objects: list[object]) -> None:
    """Drop the only references and collect."""
    objects.clear()
    gc.collect()


def _evictors() -> int:
    return sum(1 for t in threading.enumerate() if t.name == "respkv-evictor")


def test_unclosed_store_owning_its_client_is_released(
    redis_options: ConnectionOptions, backend_name: str, observer: AdminConnection
) -> None:
    base_threads, base_fds, base_conns = _threads(), _fds(), _server_clients(observer)
    client = respkv.connect(redis_options, backend=backend_name, num_workers=2)
    store = KVStore(
        client,
        key_prefix="lc:",
        capacity_bytes=CAPACITY,
        eviction=EvictionConfig(),
        eviction_interval=QUIET_INTERVAL,
        owns_client=True,
    )
    assert store.put(["a", "b"], [b"x" * 100, b"y" * 100]).ok
    assert store.client.get("lc:a") == b"x" * 100  # the admin connection is open too
    held: list[object] = [store]
    del client, store
    assert _evictors() == 1 and _server_clients(observer) > base_conns
    with pytest.warns(ResourceWarning, match=r"unclosed KVStore\("):
        _drop_all(held)
    assert _evictors() == 0
    assert _threads() <= base_threads
    assert _fds() <= base_fds
    assert _wait_server_clients(observer, base_conns) <= base_conns


def test_unclosed_store_with_a_borrowed_client_stops_its_thread(
    redis_options: ConnectionOptions, backend_name: str
) -> None:
    with respkv.connect(redis_options, backend=backend_name, num_workers=1) as client:
        stores: list[object] = [
            KVStore(
                client,
                key_prefix=f"lb{i}:",
                capacity_bytes=CAPACITY,
                eviction=EvictionConfig(),
                eviction_interval=QUIET_INTERVAL,
            )
            for i in range(5)
        ]
        for store in stores:
            assert isinstance(store, KVStore) and store.put(["k"], [b"v"]).ok
        del store
        assert _evictors() == 5
        with pytest.warns(ResourceWarning, match="unclosed KVStore") as caught:
            _drop_all(stores)
        assert len([w for w in caught if issubclass(w.category, ResourceWarning)]) == 5
        assert _evictors() == 0
        # The borrowed client is the caller's: still open and working.
        assert not client.closed and client.get("lb0:k") == b"v"


def test_store_holding_nothing_goes_silently(
    redis_options: ConnectionOptions, backend_name: str
) -> None:
    """No thread (``manual``), a borrowed client: nothing to release, so no warning
    (``filterwarnings = error`` would turn one into a failure)."""
    with respkv.connect(redis_options, backend=backend_name, num_workers=1) as client:
        store = KVStore(client, key_prefix="ls:", evict_in="manual")
        assert store.put(["k"], [b"v"]).ok
        ref = weakref.ref(store)
        del store
        gc.collect()
        assert ref() is None


def test_closed_store_is_not_finalized_again(
    redis_options: ConnectionOptions, backend_name: str
) -> None:
    client = respkv.connect(redis_options, backend=backend_name, num_workers=1)
    store = KVStore(
        client,
        capacity_bytes=CAPACITY,
        eviction=EvictionConfig(),
        eviction_interval=QUIET_INTERVAL,
        owns_client=True,
    )
    store.close()
    assert client.closed and _evictors() == 0
    del store, client
    gc.collect()  # no warning: close() detached the finalizer
