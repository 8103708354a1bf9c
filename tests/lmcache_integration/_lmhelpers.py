# mypy: disable-error-code="import-not-found,import-untyped"
"""Helpers of the LMCache integration tests and their child scripts (no fixtures)."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Final

HERE: Final = Path(__file__).resolve().parent
#: Deadline for one LMCache child process (a check mode takes 3-6 s to start and run).
CHILD_TIMEOUT_S: Final = 90.0
#: How long a wait for one adapter event may take before it counts as a hang.
EVENT_TIMEOUT_S: Final = 20.0
MODEL: Final = "respkv-test-model"
#: Children run outside the checkout: ``python -m`` puts the working directory first on
#: sys.path, where the source tree's ``respkv`` (without its built native module) would
#: shadow the installed one.
_NEUTRAL_CWD: Final = tempfile.gettempdir()


def redis_command(server: Any, *args: str) -> Any:
    from respkv._admin import AdminConnection
    from respkv._options import ConnectionOptions

    with AdminConnection(ConnectionOptions(host=server.host, port=server.port)) as admin:
        return admin.command(*args)


def adapter_json(kind: str, server: Any, **extra: Any) -> dict[str, Any]:
    """An ``--l2-adapter`` JSON for ``kind``: ``resp`` (LMCache's own), ``native_plugin``,
    ``plugin`` or ``respkv`` (respkv's registered type)."""
    where = {"host": server.host, "port": server.port, "num_workers": 4}
    if kind == "resp":
        return {"type": "resp", **where, **extra}
    if kind == "native_plugin":
        return {
            "type": "native_plugin",
            "module_path": "respkv.compat.lmcache",
            "class_name": "LMCacheRedisClient",
            "adapter_params": where,
            **extra,
        }
    if kind == "plugin":
        params = {**where, **extra.pop("params", {})}
        return {
            "type": "plugin",
            "module_path": "respkv.compat.lmcache_plugin",
            "class_name": "RespkvL2Adapter",
            "adapter_params": params,
            **extra,
        }
    assert kind == "respkv", kind
    return {"type": "respkv", "url": f"resp://{server.host}:{server.port}", **extra}


def make_adapter(spec: dict[str, Any]) -> Any:
    """An L2 adapter built by LMCache's own parser and factory from ``spec``."""
    import argparse

    from lmcache.v1.distributed.l2_adapters import create_l2_adapter
    from lmcache.v1.distributed.l2_adapters.config import parse_args_to_l2_adapters_config

    import respkv.compat.lmcache_plugin  # noqa: F401  (registers the "respkv" type)

    ns = argparse.Namespace(l2_adapter=[json.dumps(spec)])
    (cfg,) = parse_args_to_l2_adapters_config(ns).adapters
    return cfg, create_l2_adapter(cfg)


def wait_event(fd: int, timeout: float = EVENT_TIMEOUT_S) -> bool:
    """Wait for an adapter's event fd and consume it; False on timeout."""
    from lmcache.v1.platform import consume_fd

    if not select.select([fd], [], [], timeout)[0]:
        return False
    try:
        consume_fd(fd)
    except BlockingIOError:
        pass
    return True


def run_child(script: str, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``script`` (a file in this folder) in a child Python with a deadline; it
    prints one JSON line last. A child killed by the deadline gives ``{"hung": True}``."""
    full_env = {**os.environ, **(env or {})}
    try:
        proc = subprocess.run(
            [sys.executable, str(HERE / script), *args],
            capture_output=True,
            text=True,
            timeout=CHILD_TIMEOUT_S,
            env=full_env,
            cwd=_NEUTRAL_CWD,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {"hung": True}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    assert lines, f"{script} printed no result (rc {proc.returncode}):\n{proc.stderr[-3000:]}"
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def run_command(cmd: list[str], env: dict[str, str]) -> str:
    """Run an LMCache command line as a user would; its stdout (bounded in time)."""
    proc = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_S,
        env={**os.environ, **env},
        cwd=_NEUTRAL_CWD,
        check=False,
    )
    assert proc.returncode == 0, f"{cmd} failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
    return proc.stdout


def object_keys(prefix: str, n: int) -> list[Any]:
    """``n`` distinct LMCache ``ObjectKey`` s."""
    from lmcache.v1.distributed.api import ObjectKey

    return [
        ObjectKey(
            chunk_hash=ObjectKey.IntHash2Bytes(hash((prefix, i)) & 0xFFFFFFFF),
            model_name=MODEL,
            kv_rank=0,
        )
        for i in range(n)
    ]


def memory_objs(n: int, nbytes: int, seed: int) -> list[Any]:
    """``n`` LMCache ``TensorMemoryObj`` s of ``nbytes`` each, filled from ``seed`` (or
    zeros for ``seed < 0``), each over its own uint8 tensor."""
    import torch
    from lmcache.v1.memory_management import MemoryFormat, MemoryObjMetadata, TensorMemoryObj

    gen = torch.Generator().manual_seed(seed) if seed >= 0 else None
    out = []
    for _ in range(n):
        t = (
            torch.randint(0, 256, (nbytes,), dtype=torch.uint8, generator=gen)
            if gen is not None
            else torch.zeros(nbytes, dtype=torch.uint8)
        )
        meta = MemoryObjMetadata(
            shape=torch.Size([nbytes]),
            dtype=torch.uint8,
            address=t.data_ptr(),
            phy_size=nbytes,
            fmt=MemoryFormat.KV_2LTD,
            ref_count=1,
        )
        out.append(TensorMemoryObj(t, meta, parent_allocator=None))
    return out


def store(adapter: Any, keys: list[Any], objs: list[Any]) -> bool:
    tid = adapter.submit_store_task(keys, objs)
    if not wait_event(adapter.get_store_event_fd()):
        raise TimeoutError("store did not complete")
    from lmcache.v1.distributed.internal_api import L2StoreResult

    result = adapter.pop_completed_store_tasks().get(tid, L2StoreResult(False, 0))
    return bool(result.is_successful())


def lookup(adapter: Any, keys: list[Any]) -> list[bool]:
    tid = adapter.submit_lookup_and_lock_task(keys, {})
    if not wait_event(adapter.get_lookup_and_lock_event_fd()):
        raise TimeoutError("lookup did not complete")
    bitmap = adapter.query_lookup_and_lock_result(tid)
    adapter.submit_unlock(keys)
    return [bool(bitmap.test(i)) for i in range(len(keys))]


def load(adapter: Any, keys: list[Any], objs: list[Any], timeout: float = EVENT_TIMEOUT_S) -> Any:
    """Per-key load results, or None when the load did not complete within ``timeout``."""
    tid = adapter.submit_load_task(keys, objs)
    if not wait_event(adapter.get_load_event_fd(), timeout):
        return None
    bitmap = adapter.query_load_result(tid)
    return [bool(bitmap.test(i)) for i in range(len(keys))]


def use_backend(monkeypatch: Any, name: str) -> None:
    """Select respkv's backend ``name`` for clients LMCache builds (RESPKV_BACKEND)."""
    if name == "native":
        from respkv._backend import load_native

        load_native()  # an ImportError here fails the test: the session builds native
    monkeypatch.setenv("RESPKV_BACKEND", name)


#: How long a restarted server may take to answer PING again.
RESTART_TIMEOUT_S: Final = 15.0
#: Pause between PINGs while it restarts (a bounded readiness poll, nothing else).
RESTART_POLL_S: Final = 0.05


def restart_server(server: Any) -> None:
    """Restart ``server`` in place (``DEBUG RESTART``: same process, port and config;
    every client connection drops), then wait until it answers PING."""
    import time

    try:
        redis_command(server, "DEBUG", "RESTART")
    except OSError:
        pass  # the server closes our connection as it restarts
    deadline = time.monotonic() + RESTART_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            if redis_command(server, "PING") == b"PONG":
                return
        except OSError:
            time.sleep(RESTART_POLL_S)
    raise TimeoutError(f"server did not come back within {RESTART_TIMEOUT_S} s")
