"""The clients' admin calls on a cluster: keyed reads reach each key's master.

``get``, ``batch_get_bytes``, ``batch_strlen`` and ``ping`` go over the client's admin
connection; on a cluster that is the router's ``ClusterAdminLink`` (pipelined per
master, MOVED/ASK followed), so keys spread over every master come back right.
"""

from __future__ import annotations

import asyncio

import respkv.aio
from respkv.client import Client
from respkv.cluster import ClusterOptions, key_slot

#: Keys enough to land on every master of a 3-master cluster.
NKEYS = 60


def test_sync_admin_calls_reach_every_master(
    cluster_options: ClusterOptions, cluster_backend: str
) -> None:
    keys = [f"cadm:{i}" for i in range(NKEYS)]
    values = [bytes([i]) * (i + 1) for i in range(NKEYS)]
    # 60 keys hash to slots all over 0..16383: every master of the cluster owns some.
    assert max(map(key_slot, keys)) - min(map(key_slot, keys)) > 12_000
    with Client(cluster_options, backend=cluster_backend, prefix="p:") as c:
        assert c.ping()
        assert c.batch_set(keys, values).ok
        assert c.batch_get_bytes([*keys, "cadm:none"]) == [*values, None]
        assert c.batch_strlen(keys) == [len(v) for v in values]
        assert all(c.get(k) == v for k, v in zip(keys[:10], values))
        assert c.command("GET", f"p:{keys[7]}") == values[7]  # MOVED followed


def test_async_admin_calls_reach_every_master(
    cluster_options: ClusterOptions, cluster_backend: str
) -> None:
    keys = [f"cadm-a:{i}" for i in range(NKEYS)]
    values = [bytes([i]) * 10 for i in range(NKEYS)]

    async def main() -> None:
        client = respkv.aio.AsyncClient(cluster_options, backend=cluster_backend)
        async with client as c:
            assert await c.ping()
            assert (await c.batch_set(keys, values)).ok
            assert await c.batch_get_bytes(keys) == values
            assert await c.batch_strlen(keys) == [10] * NKEYS

    asyncio.run(main())
