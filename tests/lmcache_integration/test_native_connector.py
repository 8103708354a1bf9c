# mypy: disable-error-code="import-not-found,import-untyped"
"""LMCache's ``NativeConnectorL2Adapter`` on respkv with real KV-cache sizes: a few
hundred 4 MiB objects stored, looked up, loaded (bytes verified) and deleted; the GET of
deleted keys and a server restart, where respkv does what LMCache's own client cannot
(that client runs in a child with a deadline, its hang reported, never waited out)."""

from __future__ import annotations

from typing import Any

import pytest
from _lmhelpers import (
    adapter_json,
    load,
    lookup,
    make_adapter,
    memory_objs,
    object_keys,
    run_child,
    store,
    use_backend,
)

MIB = 1 << 20
#: "A few hundred 4 MiB objects": 200 x 4 MiB = 800 MiB per batch.
NUM_OBJECTS = 200
OBJECT_BYTES = 4 * MIB


@pytest.fixture(scope="module")
def payload() -> list[Any]:
    return memory_objs(NUM_OBJECTS, OBJECT_BYTES, seed=7)


#: (adapter kind, respkv backend): LMCache's own ``resp`` has no respkv backend.
BULK_CASES = [
    ("native_plugin", "python"),
    ("native_plugin", "native"),
    ("respkv", "python"),
    ("respkv", "native"),
    ("resp", ""),
]


@pytest.mark.parametrize(("kind", "backend_name"), BULK_CASES)
def test_store_lookup_load_delete(
    kind: str,
    backend_name: str,
    monkeypatch: pytest.MonkeyPatch,
    flushed: Any,
    payload: list[Any],
) -> None:
    if backend_name:
        use_backend(monkeypatch, backend_name)
    _, adapter = make_adapter(adapter_json(kind, flushed))
    try:
        keys = object_keys(f"bulk-{kind}", NUM_OBJECTS)
        assert store(adapter, keys, payload)
        assert all(lookup(adapter, keys))
        assert adapter.get_usage().total_bytes_used == NUM_OBJECTS * OBJECT_BYTES
        out = memory_objs(NUM_OBJECTS, OBJECT_BYTES, seed=-1)
        assert load(adapter, keys, out) == [True] * NUM_OBJECTS
        bad = [i for i, (a, b) in enumerate(zip(payload, out)) if not a.tensor.equal(b.tensor)]
        assert not bad, f"{len(bad)} objects differ, first {bad[0]}"
        adapter.delete(keys[: NUM_OBJECTS // 2])
        found = lookup(adapter, keys)
        assert found == [False] * (NUM_OBJECTS // 2) + [True] * (NUM_OBJECTS // 2)
        assert adapter.get_usage().total_bytes_used == NUM_OBJECTS // 2 * OBJECT_BYTES
    finally:
        adapter.close()


@pytest.mark.parametrize("kind", ["native_plugin", "respkv"])
def test_get_of_deleted_keys_is_a_miss_on_respkv(kind: str, backend: str, flushed: Any) -> None:
    result = run_child("child_lmcache_resp.py", "deleted", kind, str(flushed.port))
    assert result == {
        "found_after_delete": [False] * 4,
        "loaded": [False] * 4,
        "hung": False,
    }


def test_get_of_deleted_keys_hangs_on_lmcache_own_client(flushed: Any) -> None:
    """LMCache 0.5.6's client never completes a GET of a missing 4 MiB value: the load
    is reported as hung (the child is ended by its deadline). Should LMCache fix it,
    this fails and the docs' comparison must be updated."""
    result = run_child("child_lmcache_resp.py", "deleted", "resp", str(flushed.port))
    assert result.get("hung") is True, f"LMCache's own client completed: {result}"


@pytest.mark.parametrize("kind", ["native_plugin", "respkv"])
def test_server_restart_recovers_on_respkv(kind: str, backend: str) -> None:
    result = run_child("child_lmcache_resp.py", "restart", kind, "0")
    assert result["before"] is True
    # The first store after the restart may meet the dead connection; then it recovers.
    assert result["after"][-1] is True, result
    assert result["found"] == [True, True]


def test_server_restart_is_permanent_for_lmcache_own_client() -> None:
    result = run_child("child_lmcache_resp.py", "restart", "resp", "0")
    assert result.get("hung") or not any(result["after"]), f"LMCache recovered: {result}"
