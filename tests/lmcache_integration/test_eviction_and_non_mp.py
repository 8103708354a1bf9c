# mypy: disable-error-code="import-not-found,import-untyped"
"""LMCache's ``L2EvictionController`` over respkv at a small ``max_capacity_gb`` (LRU and
ARC: LMCache's policies run in LMCache, respkv only deletes), and the non-MP path: the
``remote_storage_plugins`` plugin through LMCache's own ``test_remote`` check and its
``RemoteBackend``, and LMCache's ``ConnectorClientBase`` (its ``RESPClient``) over
respkv's client."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _lmhelpers import (
    adapter_json,
    lookup,
    make_adapter,
    memory_objs,
    object_keys,
    redis_command,
    run_command,
    store,
)

MIB = 1 << 20
#: 48 MiB of L2 capacity, filled with 20 x 4 MiB: well above the 0.8 watermark.
CAPACITY_GB = 48 / 1024
EVICTION_OBJECTS = 20
#: LMCache's eviction loop wakes once a second: a few passes are enough.
EVICTION_WAIT_S = 15.0


@pytest.mark.parametrize("policy", ["LRU", "ARC"])
def test_l2_eviction_controller(policy: str, backend: str, flushed: Any) -> None:
    from lmcache.v1.distributed.storage_controllers.eviction_controller import (
        L2AdapterEvictionState,
        L2EvictionController,
    )

    spec = adapter_json("respkv", flushed, max_capacity_gb=CAPACITY_GB)
    spec["eviction"] = {"eviction_policy": policy, "trigger_watermark": 0.8}
    cfg, adapter = make_adapter(spec)
    controller = L2EvictionController([L2AdapterEvictionState(0, adapter, cfg.eviction_config)])
    controller.start()
    try:
        keys = object_keys(f"evict-{policy}", EVICTION_OBJECTS)
        objs = memory_objs(EVICTION_OBJECTS, 4 * MIB, seed=3)
        for i in range(0, EVICTION_OBJECTS, 4):  # several stores: an access order to keep
            assert store(adapter, keys[i : i + 4], objs[i : i + 4])
        deadline = time.monotonic() + EVICTION_WAIT_S
        while adapter.get_usage().usage_fraction >= 0.8 and time.monotonic() < deadline:
            time.sleep(0.2)  # bounded poll of LMCache's own usage counter
        usage = adapter.get_usage()
        assert usage.usage_fraction < 0.8, usage
        found = lookup(adapter, keys)
        # What LMCache believes it holds is what the server holds.
        assert sum(found) * 4 * MIB == usage.total_bytes_used
        assert redis_command(flushed, "DBSIZE") == sum(found)
        if policy == "LRU":
            # The oldest store went first, the newest stayed.
            assert not any(found[:4]) and all(found[-4:]), found
    finally:
        controller.stop()
        adapter.close()


# -- non-MP ---------------------------------------------------------------------------------


def _remote_config(server: Any) -> dict[str, Any]:
    return {
        "chunk_size": 256,
        "local_cpu": True,
        "max_local_cpu_size": 1,
        "save_unfull_chunk": False,
        "remote_storage_plugins": ["respkv"],
        "extra_config": {
            "remote_storage_plugin.respkv.module_path": "respkv.compat.lmcache_remote",
            "remote_storage_plugin.respkv.class_name": "RespkvConnectorAdapter",
            "remote_storage_plugin.respkv.url": f"resp://{server.host}:{server.port}",
            "remote_storage_plugin.respkv.num_workers": 2,
        },
    }


def test_lmcache_test_remote_check(backend: str, flushed: Any, tmp_path: Path) -> None:
    """docs/lmcache.md's non-MP config, run by LMCache's own ``test_remote`` check."""
    import yaml

    # The check builds a RemoteBackend from remote_url (not from the plugin list, which
    # is what loads our adapter): it names the plugin's URL.
    config = {**_remote_config(flushed), "remote_url": "plugin://respkv"}
    path = tmp_path / "lmcache.yaml"
    path.write_text(yaml.safe_dump(config))
    cmd = [sys.executable, "-m", "lmcache.v1.basic_check", "--mode", "test_remote"]
    out = run_command([*cmd, "--num-keys", "6"], {"LMCACHE_CONFIG_FILE": str(path)})
    assert "Test Failed" not in out, out
    assert out.count("Validation: 6/6 passed") == 3, out  # absent, put, present
    assert "Validation (content correct): 6/6 passed" in out, out


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    lp = asyncio.new_event_loop()
    thread = threading.Thread(target=lp.run_forever, daemon=True)
    thread.start()
    yield lp
    lp.call_soon_threadsafe(lp.stop)
    thread.join(timeout=10)
    lp.close()


def _remote_backend(server: Any, loop: asyncio.AbstractEventLoop) -> Any:
    from lmcache.v1.check.utils import _get_default_metadata
    from lmcache.v1.config import LMCacheEngineConfig
    from lmcache.v1.storage_backend.local_cpu_backend import LocalCPUBackend
    from lmcache.v1.storage_backend.remote_backend import RemoteBackend

    config = LMCacheEngineConfig.from_dict(_remote_config(server))
    metadata = _get_default_metadata("respkv-test-model", obj_size=1 << 16)
    cpu = LocalCPUBackend(config=config, metadata=metadata, dst_device="cpu")
    backend = RemoteBackend(config, metadata, loop, cpu, "cpu", plugin_name="respkv")
    assert backend.connection is not None, "the respkv plugin did not load"
    return backend, cpu


def test_remote_backend_misses_and_hits(
    backend: str, flushed: Any, loop: asyncio.AbstractEventLoop
) -> None:
    from lmcache.v1.check.utils import create_test_key

    remote, cpu = _remote_backend(flushed, loop)
    try:
        conn = remote.connection.getWrappedConnector()
        assert type(conn).__name__ == "RespkvRemoteConnector"
        keys = [create_test_key("respkv-test-model", f"k{i}") for i in range(3)]
        objs = [cpu.allocate(conn.meta_shapes, conn.meta_dtypes, conn.meta_fmt) for _ in keys]
        for i, o in enumerate(objs):
            o.tensor.fill_(i + 1)
        run = asyncio.run_coroutine_threadsafe
        run(conn.batched_put(keys[:2], objs[:2]), loop).result(20)
        # A missing key is None (LMCache's RESPConnector would hang or hand back garbage).
        got = run(conn.batched_get(keys), loop).result(20)
        assert got[2] is None and got[0] is not None and got[1] is not None
        assert got[1].tensor.equal(objs[1].tensor)
        assert run(conn.get(keys[2]), loop).result(20) is None
        assert conn.batched_contains(keys) == 2
        assert run(conn.batched_async_contains("id", keys[::-1]), loop).result(20) == 0
        prefix = run(conn.batched_get_non_blocking("id", keys), loop).result(20)
        assert len(prefix) == 2
        assert conn.remove_sync(keys[0]) and not conn.exists_sync(keys[0])
        assert remote.contains(keys[1]) and not remote.contains(keys[0])
    finally:
        remote.close()


def test_connector_client_base_over_respkv(
    backend: str, flushed: Any, loop: asyncio.AbstractEventLoop
) -> None:
    """LMCache's RESPClient is ``ConnectorClientBase`` over its native client: respkv's
    client drops in (sync and async calls, bytes verified)."""
    from lmcache.v1.storage_backend.native_clients.connector_client_base import (
        ConnectorClientBase,
    )

    from respkv.compat.lmcache import LMCacheRedisClient

    client = ConnectorClientBase(LMCacheRedisClient(flushed.host, flushed.port, 2), loop)
    try:
        values = [memoryview(bytes([i]) * MIB) for i in range(4)]
        keys = [f"ccb{i}" for i in range(4)]
        client.batch_set_sync(keys, values)
        assert client.batch_exists_sync([*keys, "nope"]) == [True] * 4 + [False]
        out = [memoryview(bytearray(MIB)) for _ in keys]
        asyncio.run_coroutine_threadsafe(client.batch_get(keys, out), loop).result(20)
        assert [bytes(o) for o in out] == [bytes(v) for v in values]
    finally:
        client.close()
