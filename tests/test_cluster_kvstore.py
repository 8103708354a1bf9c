"""The KV-cache store on a real cluster: capacity tracking and LRU eviction (UNLINK per
key, so cluster-safe), chunks spread over every master; and the per-master usage scan
that a recovery on a cluster needs."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import redis

from respkv import KeyStatus
from respkv._cluster.admin import ClusterAdminLink
from respkv.client import Client
from respkv.cluster import ClusterConnector, ClusterOptions, key_slot
from respkv.errors import ReplyError, ResultError
from respkv.eviction import EvictionConfig
from respkv.kvstore import KVStore, chunk_key
from respkv.testing.clusters import LocalCluster

CHUNK = 64 * 1024


def _chunks(n: int, seed: int) -> list[bytes]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, CHUNK, dtype=np.uint8).tobytes() for _ in range(n)]


def test_store_with_capacity_and_eviction_on_a_cluster(
    local_cluster: LocalCluster, cluster_options: ClusterOptions, cluster_backend: str
) -> None:
    client = Client(cluster_options, backend=cluster_backend)
    assert isinstance(client.connector, ClusterConnector)
    capacity = 40 * CHUNK
    with KVStore(
        client,
        key_prefix="kv:",
        capacity_bytes=capacity,
        eviction=EvictionConfig(trigger_watermark=0.9, eviction_ratio=0.2),
        evict_in="inline",
        owns_client=True,
    ) as store:
        keys = [chunk_key("m", 0, i) for i in range(120)]
        vals = _chunks(120, seed=1)
        for i in range(0, 120, 20):
            assert store.put(keys[i : i + 20], vals[i : i + 20]).ok
            assert store.usage().used_bytes <= capacity
        usage = store.usage()
        assert usage.evicted_keys >= 120 - 40 and usage.keys <= 40
        rc = redis.RedisCluster(host=local_cluster.nodes[0].server.host,
                                port=local_cluster.nodes[0].server.port)  # fmt: skip
        try:
            on_server = [bool(rc.exists(b"kv:" + k.encode())) for k in keys]
        finally:
            rc.close()
        tracked = [store.tracked_size(k) is not None for k in keys]
        assert on_server == tracked, "what the store tracks is what the cluster holds"
        masters = {local_cluster.owner_of(key_slot(b"kv:" + k.encode())) for k in keys}
        assert len(masters) == 3, "the chunks are spread over every master"
        # The newest chunks survived and read back intact.
        out = [bytearray(CHUNK) for _ in range(10)]
        g = store.get(keys[-10:], out)
        assert g.statuses == (KeyStatus.OK,) * 10
        assert [bytes(b) for b in out] == vals[-10:]
        assert store.contains(keys[:1]).statuses == (KeyStatus.MISS,)


def test_scan_key_sizes_reads_every_master(
    local_cluster: LocalCluster, cluster_connector: ClusterConnector
) -> None:
    conn = cluster_connector
    keys = [f"scan:{i}".encode() for i in range(500)] + [b"other:x"]
    rc = redis.RedisCluster(host=local_cluster.nodes[0].server.host,
                            port=local_cluster.nodes[0].server.port)  # fmt: skip
    try:
        rc.mset_nonatomic({k: b"x" * (i % 17) for i, k in enumerate(keys)})
        rc.hset("scan:hash", "f", "v")
    finally:
        rc.close()
    found = dict(conn.scan_key_sizes(b"scan:*", count=50))
    assert found.pop(b"scan:hash") == -1, "a key that is not a string counts -1"
    assert found == {k: i % 17 for i, k in enumerate(keys[:-1])}


def test_recover_usage_counts_keys_on_every_master(
    cluster_options: ClusterOptions, cluster_backend: str
) -> None:
    keys = [chunk_key("m", 1, i) for i in range(60)]
    with KVStore(Client(cluster_options, backend=cluster_backend), key_prefix="rc:",
                 owns_client=True) as writer:  # fmt: skip
        assert writer.put(keys, _chunks(60, seed=2)).ok
    with KVStore(Client(cluster_options, backend=cluster_backend), key_prefix="rc:",
                 recover_usage=True, owns_client=True) as store:  # fmt: skip
        assert store.usage().keys == 60
        assert store.usage().used_bytes == 60 * CHUNK


def test_cluster_admin_link_follows_keys_to_their_masters(
    local_cluster: LocalCluster, cluster_options: ClusterOptions
) -> None:
    keys = [f"adm:{i}".encode() for i in range(100)]
    rc = redis.RedisCluster(host=local_cluster.nodes[0].server.host,
                            port=local_cluster.nodes[0].server.port)  # fmt: skip
    try:
        rc.mset_nonatomic({k: b"v" * i for i, k in enumerate(keys)})
        rc.hset("adm:hash", "f", "v")
    finally:
        rc.close()
    link = ClusterAdminLink(cluster_options)
    try:
        assert link.get_bytes([*keys, b"adm:none"]) == [b"v" * i for i in range(100)] + [None]
        assert link.strlen(keys) == list(range(100))
        # A keyed command reaches its master whichever node it was sent to.
        assert all(link.command("GET", k) == b"v" * i for i, k in enumerate(keys[:20]))
        with pytest.raises(ResultError, match="key 1: STRLEN: WRONGTYPE"):
            link.strlen([keys[0], b"adm:hash"])
        with pytest.raises(ReplyError, match="WRONGTYPE"):
            link.command("GET", "adm:hash")
    finally:
        link.close()


def test_lmcache_surface_on_a_cluster(local_cluster: LocalCluster, cluster_backend: str) -> None:
    import select

    from respkv.compat.lmcache import LMCacheRedisClient

    local_cluster.flushall()
    client = LMCacheRedisClient(url=local_cluster.url, num_workers=1, backend=cluster_backend)
    try:
        keys = [f"lmc:{i}" for i in range(60)]
        vals = [bytearray(b"%03d" % i * 100) for i in range(60)]
        done: dict[int, Any] = {}

        def wait(bid: int) -> Any:
            while bid not in done:
                select.select([client.event_fd()], [], [], 10)
                for c in client.drain_completions():
                    done[c[0]] = c
            return done.pop(bid)

        ok = wait(client.submit_batch_set(keys, [memoryview(v) for v in vals]))
        assert ok[1] and ok[3] is None
        out = [bytearray(300) for _ in keys]
        got = wait(client.submit_batch_get(keys, [memoryview(b) for b in out]))
        assert got[1] and list(got[3]) == [True] * 60 and out == vals
    finally:
        client.close()
