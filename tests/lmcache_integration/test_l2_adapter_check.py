# mypy: disable-error-code="import-not-found,import-untyped"
"""LMCache's own L2-adapter check (``basic_check --mode test_l2_adapter``) on respkv:
through ``native_plugin``, ``plugin`` and the registered ``respkv`` type, on both
backends, next to LMCache's own ``resp`` adapter; and the documented command lines."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from typing import Any

import pytest
from _lmhelpers import MODEL, adapter_json, run_command

NUM_KEYS = 8
#: Elements per object (float32 by default in the check: 256 KiB objects).
OBJ_SIZE = 65536


def _run_check(spec: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> str:
    from lmcache.v1.check.check_mode_test_l2_adapter import run_test_mode

    import respkv.compat.lmcache_plugin  # noqa: F401  (registers the "respkv" type)

    asyncio.run(
        run_test_mode(
            MODEL,
            l2_adapter=[json.dumps(spec)],
            num_keys=NUM_KEYS,
            obj_size=OBJ_SIZE,
            kv_dtype="float32",
        )
    )
    return capsys.readouterr().out


def _assert_all_passed(out: str) -> None:
    assert "Test Failed" not in out, out
    n = NUM_KEYS
    for line in (
        f"Validation: {n}/{n} correctly absent",
        "Batch store OK",
        f"Validation: {n}/{n} found",
        f"Validation (loaded): {n}/{n}",
        f"Validation (content): {n}/{n}",
    ):
        assert line in out, f"{line!r} missing from:\n{out}"


@pytest.mark.parametrize("kind", ["native_plugin", "plugin", "respkv"])
def test_check_passes_on_respkv(
    kind: str, backend: str, flushed: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    out = _run_check(adapter_json(kind, flushed), capsys)
    _assert_all_passed(out)
    expected = "NativeConnectorL2Adapter" if kind == "native_plugin" else "RespkvL2Adapter"
    assert f"({expected})" in out


def test_check_passes_on_lmcache_own_resp(flushed: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """The reference: LMCache's own client passes the same check (it has no misses)."""
    _assert_all_passed(_run_check(adapter_json("resp", flushed), capsys))


def _secret_server() -> Any:
    from respkv.testing.servers import LocalServer

    return LocalServer(password="pw-only-in-the-environment").start()


def test_documented_native_plugin_command(backend: str) -> None:
    """docs/lmcache.md's MP command: credentials only in the environment, never printed."""
    server = _secret_server()
    try:
        spec = {
            "type": "native_plugin",
            "module_path": "respkv.compat.lmcache",
            "class_name": "LMCacheRedisClient",
            "adapter_params": {"url": f"resp://{server.host}:{server.port}"},
        }
        cmd = [sys.executable, "-m", "lmcache.v1.basic_check", "--mode", "test_l2_adapter"]
        cmd += ["--l2-adapter", json.dumps(spec), "--num-keys", str(NUM_KEYS)]
        env = {"LMCACHE_RESP_PASSWORD": server.password, "RESPKV_BACKEND": backend}
        out = run_command(cmd, env)
        _assert_all_passed(out)
    finally:
        server.stop()


def test_documented_launcher_command(backend: str) -> None:
    """The registered ``respkv`` type through ``python -m respkv.compat.lmcache_run``."""
    server = _secret_server()
    try:
        spec = {"type": "respkv", "host": server.host, "port": server.port}
        cmd = [sys.executable, "-m", "respkv.compat.lmcache_run", "-m", "lmcache.v1.basic_check"]
        cmd += ["--mode", "test_l2_adapter", "--l2-adapter", json.dumps(spec)]
        cmd += ["--num-keys", str(NUM_KEYS)]
        env = {"RESPKV_PASSWORD": server.password, "RESPKV_BACKEND": backend}
        out = run_command(cmd, env)
        _assert_all_passed(out)
        assert re.search(r"Testing L2 adapter #0 \(RespkvL2Adapter\)", out)
    finally:
        server.stop()


def test_password_never_logged(backend: str, capfd: pytest.CaptureFixture[str]) -> None:
    """LMCache logs native_plugin's adapter_params at INFO: with the password in the
    environment, nothing secret is there to print."""
    import logging

    from _lmhelpers import make_adapter

    server = _secret_server()
    try:
        logging.getLogger("lmcache").setLevel(logging.INFO)
        spec = adapter_json("native_plugin", server)
        import os

        os.environ["LMCACHE_RESP_PASSWORD"] = server.password
        try:
            _, adapter = make_adapter(spec)
            adapter.close()
            _, adapter = make_adapter(adapter_json("respkv", server))
            assert server.password not in repr(adapter) + str(adapter.report_status())
            adapter.close()
        finally:
            del os.environ["LMCACHE_RESP_PASSWORD"]
        captured = capfd.readouterr()
        assert server.password not in captured.out + captured.err
    finally:
        server.stop()
