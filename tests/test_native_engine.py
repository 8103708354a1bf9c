"""What only the native backend has to show: the GIL is released during I/O, caller
buffers stay referenced until their completion is drained, the seam to C++ is narrow,
and ``respkv.backend`` picks it. Behaviour shared with the pure engine is tested once,
for both, in ``conformance/``.
"""

from __future__ import annotations

import gc
import os
import select
import subprocess
import sys
import threading
import weakref
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from respkv import ConnectionOptions, KeyStatus, Op, TLSOptions
from respkv._backend import load_native
from respkv._server import LocalServer
from respkv.errors import ConfigError, ConnectionClosedError
from respkv.testing import wait_for

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def core() -> ModuleType:
    try:
        return load_native()
    except ImportError as exc:
        if os.environ.get("RESPKV_REQUIRE_NATIVE") == "1":
            pytest.fail(f"native backend required (RESPKV_REQUIRE_NATIVE=1) but: {exc}")
        pytest.skip(f"native backend not built: {exc}")


def _connector(options: ConnectionOptions) -> object:
    from respkv._native import NativeConnector

    return NativeConnector(options)


def test_contract_version_matches(core: ModuleType) -> None:
    from respkv import CONTRACT_VERSION

    assert core.CONTRACT_VERSION == CONTRACT_VERSION
    from respkv._pyengine.worker import LARGE_VALUE_BYTES

    assert core.LARGE_VALUE_BYTES == LARGE_VALUE_BYTES


def test_gil_released_while_400mb_get_in_flight(
    core: ModuleType, redis_options: ConnectionOptions
) -> None:
    """A Python thread keeps counting while a 400 MB batch GET is in flight, and the
    submitting thread itself gets control back before the batch is done."""
    from respkv._native import NativeConnector

    n, size = 100, 4 * MIB
    src = np.random.default_rng(5).integers(0, 256, size, dtype=np.uint8)
    keys = [f"gil:{i}" for i in range(n)]
    conn = NativeConnector(redis_options.replace(num_workers=4))
    try:
        assert wait_for(conn, conn.submit_batch_set(keys, [src] * n)).ok
        out = np.zeros((n, size), dtype=np.uint8)  # 400 MB, touched
        counted = [0]
        stop = threading.Event()

        def count() -> None:
            while not stop.is_set():
                counted[0] += 1

        counter = threading.Thread(target=count)
        counter.start()
        try:
            batch = conn.submit_batch_get(keys, list(out))
            at_submit = counted[0]
            spins = 0
            fd = conn.event_fd()
            while not select.select([fd], [], [], 0)[0]:
                spins += 1
            at_done = counted[0]
        finally:
            stop.set()
            counter.join()
        c = wait_for(conn, batch)
        assert c.ok, c.error
        assert spins > 0, "submit returned only after the batch was done"
        assert at_done > at_submit, "no other Python thread ran while the batch was in flight"
        assert np.array_equal(out[0], src) and np.array_equal(out[n - 1], src)
        assert wait_for(conn, conn.submit_batch_delete(keys)).ok
    finally:
        conn.close()


def test_buffers_stay_referenced_until_drained(
    core: ModuleType, redis_options: ConnectionOptions
) -> None:
    conn = _connector(redis_options)
    from respkv._native import NativeConnector

    assert isinstance(conn, NativeConnector)
    try:
        value = np.arange(1 << 20, dtype=np.uint8)
        alive = weakref.ref(value)
        batch = conn.submit_batch_set(["ref:a"], [value])
        del value
        gc.collect()
        assert alive() is not None, "the connector must keep the buffer until drained"
        select.select([conn.event_fd()], [], [], 30)
        done = conn.drain_completions()
        assert [c.batch_id for c in done] == [batch] and done[0].ok
        gc.collect()
        assert alive() is None, "a drained batch must not keep its buffers"
        # EXISTS and DELETE have no buffers to keep.
        assert wait_for(conn, conn.submit_batch_exists(["ref:a"])).statuses == (KeyStatus.OK,)
    finally:
        conn.close()


def test_event_fd_coalesced_and_reset_by_drain(
    core: ModuleType, redis_options: ConnectionOptions
) -> None:
    conn = _connector(redis_options)
    from respkv._native import NativeConnector

    assert isinstance(conn, NativeConnector)
    try:
        fd = conn.event_fd()
        assert not select.select([fd], [], [], 0)[0]
        ids = [conn.submit_batch_exists([f"ev{i}"]) for i in range(10)]
        assert ids == list(range(ids[0], ids[0] + 10)), "batch ids increase by one"
        seen: list[int] = []
        while len(seen) < len(ids):
            assert select.select([fd], [], [], 30)[0], "event fd never became readable"
            done = conn.drain_completions()
            assert all(c.op is Op.EXISTS for c in done)
            seen += [c.batch_id for c in done]
        assert sorted(seen) == ids
        assert not select.select([fd], [], [], 0)[0], "drained: the event fd is reset"
        conn.close()
        assert select.select([fd], [], [], 0)[0], "close makes the event fd readable"
        assert conn.drain_completions() == []
        with pytest.raises(ConnectionClosedError):
            conn.submit_batch_exists(["late"])
    finally:
        conn.close()


def test_engine_refuses_work_after_close(core: ModuleType) -> None:
    engine = core.Engine(
        host="127.0.0.1", port=1, unix_path=None, username="", password="", db=0,
        num_workers=2, connect_timeout=1.0, op_timeout=1.0, client_name="",
        window_values=2, window_bytes=8 * MIB, window_small=256,
        reconnect_backoff_min=0.01, reconnect_backoff_max=1.0,
    )  # fmt: skip
    engine.close()
    engine.close()
    assert engine.submit(int(Op.EXISTS), [b"k"], None) == 0
    with pytest.raises(ValueError, match="op must be"):
        engine.submit(9, [b"k"], None)


def test_tls_support_is_reported_and_honoured(core: ModuleType) -> None:
    """``SUPPORTS_TLS`` says whether this build has OpenSSL; without it, TLS options are
    refused at once with a message naming the way out."""
    from respkv._native import TLS_UNSUPPORTED, NativeConnector

    opts = ConnectionOptions(tls=TLSOptions(), num_workers=1)
    if core.SUPPORTS_TLS:
        conn = NativeConnector(opts)  # connects lazily: nothing is sent yet
        conn.close()
        return
    with pytest.raises(ConfigError, match="native backend does not support TLS") as info:
        NativeConnector(opts)
    assert str(info.value) == TLS_UNSUPPORTED


def test_tls_many_small_replies_and_large_values(
    core: ModuleType, tls_options: ConnectionOptions
) -> None:
    """Over TLS, replies decrypted in one read wait inside the session where poll()
    cannot see them: a deep EXISTS pipeline and multi-MiB values must still complete."""
    if not core.SUPPORTS_TLS:
        pytest.skip("this native build has no TLS (OpenSSL was not found at build time)")
    from respkv._native import NativeConnector

    conn = NativeConnector(tls_options.replace(num_workers=1))
    try:
        keys = [f"tls-p:{i}" for i in range(3000)]
        assert wait_for(conn, conn.submit_batch_set(keys[::3], [b"v"] * 1000)).ok
        c = wait_for(conn, conn.submit_batch_exists(keys))
        assert c.statuses == (KeyStatus.OK, KeyStatus.MISS, KeyStatus.MISS) * 1000
        big = np.random.default_rng(9).integers(0, 256, 8 * MIB + 7, dtype=np.uint8)
        assert wait_for(conn, conn.submit_batch_set(["tls-big:0", "tls-big:1"], [big, big])).ok
        out = [np.zeros(big.nbytes, dtype=np.uint8) for _ in range(2)]
        g = wait_for(conn, conn.submit_batch_get(["tls-big:0", "tls-big:1"], out))
        assert g.ok, g.error
        assert all(np.array_equal(o, big) for o in out)
    finally:
        conn.close()


def test_unix_socket(
    core: ModuleType, make_server: Callable[..., LocalServer], tmp_path: Path
) -> None:
    path = str(tmp_path / "redis.sock")
    make_server("--unixsocket", path, "--unixsocketperm", "700")
    conn = _connector(ConnectionOptions(unix_path=path, num_workers=2))
    from respkv._native import NativeConnector

    assert isinstance(conn, NativeConnector)
    try:
        vals = [b"x" * 100, b"y" * (1 << 20)]
        assert wait_for(conn, conn.submit_batch_set(["u:1", "u:2"], vals)).ok
        out = [bytearray(100), bytearray(1 << 20)]
        assert wait_for(conn, conn.submit_batch_get(["u:1", "u:2"], out)).ok
        assert [bytes(b) for b in out] == vals
    finally:
        conn.close()


def test_unix_socket_missing_path_fails_keys(core: ModuleType, tmp_path: Path) -> None:
    path = str(tmp_path / "absent.sock")
    conn = _connector(ConnectionOptions(unix_path=path, num_workers=1))
    from respkv._native import NativeConnector

    assert isinstance(conn, NativeConnector)
    try:
        c = wait_for(conn, conn.submit_batch_exists(["k"]))
        assert c.statuses == (KeyStatus.IO_ERROR,)
        assert c.errors[0] == f"connect to {path} failed: [Errno 2] No such file or directory"
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("requested", "expected"), [("", "native"), ("native", "native"), ("python", "python")]
)
def test_backend_selection(core: ModuleType, requested: str, expected: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "RESPKV_BACKEND"}
    if requested:
        env["RESPKV_BACKEND"] = requested
    code = "import respkv; print(respkv.backend.name); print(respkv.backend.reason)"
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path,
        timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    name, reason = proc.stdout.splitlines()[:2]
    assert name == expected
    assert reason
