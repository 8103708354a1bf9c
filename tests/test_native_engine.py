"""What only the native backend has to show: it runs with Python's numbers (no copy of a
shared constant in C++), its contract version is Python's, the GIL is released during
I/O, caller buffers stay referenced until their completion is drained and are released
only after the engine let go of them, TLS failures say what happened, huge timeouts
work, and an exception inside a worker fails keys instead of killing the process.
Behaviour shared with the pure engine is tested once, for both, in ``conformance/``.
"""

from __future__ import annotations

import gc
import importlib
import os
import select
import socket
import ssl
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from respkv import ConnectionOptions, ErrorKind, KeyStatus, Op, TLSOptions, resp2
from respkv._admin import AdminConnection, handshake_commands
from respkv._contract import CONTRACT_VERSION
from respkv._limits import HEADER_RECV, INLINE_VALUE_BYTES, LARGE_VALUE_BYTES, MAX_IOV
from respkv._options import MAX_TIMEOUT
from respkv.errors import ConfigError, ConnectionClosedError
from respkv.testing import require_native, wait_for
from respkv.testing.faultproxy import FaultProxy

MIB = 1024 * 1024
#: Any single wait in these tests (sanitizer builds are several times slower).
PROMPT = 30.0
#: Module attributes the native module may define on its own: the version of the
#: contract it implements, what it was built with, and native-only tuning. Any other
#: constant would be a second copy of a Python number.
NATIVE_ONLY = {"CONTRACT_VERSION", "SUPPORTS_TLS", "READ_CHUNK"}


@pytest.fixture(scope="module")
def core() -> ModuleType:
    """The compiled module, imported directly: a contract mismatch must fail the tests
    below, not skip them (respkv._backend.load_native refuses such a module)."""
    try:
        return importlib.import_module("respkv_native._core")
    except ImportError as exc:
        if os.environ.get("RESPKV_REQUIRE_NATIVE") == "1":
            pytest.fail(f"native backend required (RESPKV_REQUIRE_NATIVE=1) but: {exc}")
        pytest.skip(f"native backend not built: {exc}")


def _native(options: ConnectionOptions) -> Any:
    from respkv._native import NativeConnector

    return NativeConnector(options)


def test_contract_version_is_pythons(core: ModuleType) -> None:
    assert core.CONTRACT_VERSION == CONTRACT_VERSION, (
        f"respkv_native._core implements contract {core.CONTRACT_VERSION}, respkv._contract "
        f"is at {CONTRACT_VERSION}: rebuild the module or bring the C++ side up to date"
    )


def test_engine_runs_with_pythons_numbers(core: ModuleType) -> None:
    """Every shared number reaches the C++ engine from its one Python source, and the
    module defines no constant of its own beyond NATIVE_ONLY."""
    from respkv._native import engine_config

    opts = ConnectionOptions(
        host="127.0.0.1", port=1, password="pw", username="u", db=3, num_workers=3,
        connect_timeout=1.5, op_timeout=2.5, window_values=3, window_bytes=5 * MIB,
        window_small=99, reconnect_backoff_min=0.02, reconnect_backoff_max=0.7,
    )  # fmt: skip
    engine = core.Engine(engine_config(opts))
    try:
        got = engine.config()
    finally:
        engine.close()
    expected = {
        "connect_timeout": opts.connect_timeout,
        "num_workers": opts.num_workers,
        "op_timeout": opts.op_timeout,
        "window_values": opts.window_values,
        "window_bytes": opts.window_bytes,
        "window_small": opts.window_small,
        "reconnect_backoff_min": opts.reconnect_backoff_min,
        "reconnect_backoff_max": opts.reconnect_backoff_max,
        "large_value_bytes": LARGE_VALUE_BYTES,
        "header_recv": HEADER_RECV,
        "inline_value_bytes": INLINE_VALUE_BYTES,
        "max_iov": MAX_IOV,
        "max_bulk_bytes": resp2.MAX_BULK_BYTES,
        "max_multibulk_len": resp2.MAX_MULTIBULK_LEN,
        "max_depth": resp2.MAX_DEPTH,
        "max_line_bytes": resp2.MAX_LINE_BYTES,
    }
    assert {k: got[k] for k in expected} == expected
    commands = [[resp2.encode_arg(a) for a in cmd] for cmd in handshake_commands(opts)]
    assert [args for args, _ in got["handshake"]] == commands
    assert [required for _, required in got["handshake"]] == [True, True, False]
    constants = {name for name in dir(core) if name.isupper()}
    assert constants == NATIVE_ONLY, f"constants not from Python: {constants - NATIVE_ONLY}"


@pytest.mark.parametrize("verify", [True, False])
def test_engine_runs_with_pythons_tls_policy(core: ModuleType, verify: bool) -> None:
    """TLS policy is Python's (respkv._tls): the minimum version, peer verification and
    the hostname check the engine runs with are those of the context Python makes for
    the same options."""
    from respkv._native import engine_config
    from respkv._tls import make_ssl_context

    require_native(tls=True)  # skips a build without TLS (fails under RESPKV_REQUIRE_NATIVE=1)
    tls = TLSOptions(verify=verify)
    engine = core.Engine(engine_config(ConnectionOptions(port=1, tls=tls)))
    try:
        got = engine.config()
    finally:
        engine.close()
    ctx = make_ssl_context(tls)
    assert got["tls"] is True
    assert got["tls_min_version"] == ctx.minimum_version.value == ssl.TLSVersion.TLSv1_2
    assert got["tls_verify_peer"] is (ctx.verify_mode == ssl.CERT_REQUIRED) is verify
    assert got["tls_check_hostname"] is ctx.check_hostname is verify


def test_gil_released_while_400mb_get_in_flight(
    core: ModuleType, redis_options: ConnectionOptions
) -> None:
    """A Python thread keeps counting while a 400 MB batch GET is in flight, and the
    submitting thread itself gets control back before the batch is done."""
    n, size = 100, 4 * MIB
    src = np.random.default_rng(5).integers(0, 256, size, dtype=np.uint8)
    keys = [f"gil:{i}" for i in range(n)]
    conn = _native(redis_options.replace(num_workers=4))
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
            poller = select.poll()
            poller.register(conn.event_fd(), select.POLLIN)
            while not poller.poll(0):
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
    conn = _native(redis_options)
    try:
        value = np.arange(1 << 20, dtype=np.uint8)
        alive = weakref.ref(value)
        batch = conn.submit_batch_set(["ref:a"], [value])
        del value
        gc.collect()
        assert alive() is not None, "the connector must keep the buffer until drained"
        c = wait_for(conn, batch)
        assert c.ok
        gc.collect()
        assert alive() is None, "a drained batch must not keep its buffers"
        # EXISTS and DELETE have no buffers to keep.
        assert wait_for(conn, conn.submit_batch_exists(["ref:a"])).statuses == (KeyStatus.OK,)
    finally:
        conn.close()


def test_unclosed_connector_releases_buffers_after_its_engine(
    core: ModuleType, redis_options: ConnectionOptions, fault_proxy: FaultProxy
) -> None:
    """A connector dropped unclosed with a GET in flight: its finalizer closes the engine
    (workers joined) before the buffer is let go, so the buffer stays alive exactly as
    long as a worker could write into it, and then goes, with a ResourceWarning."""
    opts = redis_options.replace(
        host=fault_proxy.host, port=fault_proxy.port, num_workers=1, op_timeout=0.5
    )
    conn = _native(opts)
    assert wait_for(conn, conn.submit_batch_set(["fin:a"], [b"v" * 1000])).ok
    fault_proxy.stall()
    buf = np.zeros(1000, dtype=np.uint8)
    alive = weakref.ref(buf)
    conn.submit_batch_get(["fin:a"], [buf])
    del buf
    gc.collect()
    assert alive() is not None
    engine = conn._engine
    # The last reference: the finalizer runs, engine.close() (ending the GET), the views.
    with pytest.warns(ResourceWarning, match="unclosed NativeConnector"):
        del conn
    gc.collect()
    assert alive() is None, "the finalizer must release the views"
    assert engine.drain()[0][3][0][1] == int(ErrorKind.CLOSED), "the GET ended by close"
    fault_proxy.unstall()


def test_event_fd_coalesced_and_reset_by_drain(
    core: ModuleType, redis_options: ConnectionOptions
) -> None:
    conn = _native(redis_options)
    try:
        fd = conn.event_fd()
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        assert not poller.poll(0)
        ids = [conn.submit_batch_exists([f"ev{i}"]) for i in range(10)]
        assert ids == list(range(ids[0], ids[0] + 10)), "batch ids increase by one"
        seen: list[int] = []
        while len(seen) < len(ids):
            assert poller.poll(PROMPT * 1000), "event fd never became readable"
            done = conn.drain_completions()
            assert all(c.op is Op.EXISTS for c in done)
            seen += [c.batch_id for c in done]
        assert sorted(seen) == ids
        assert not poller.poll(0), "drained: the event fd is reset"
        conn.close()  # waking a waiter on close: conformance/test_concurrency.py
        assert conn.drain_completions() == []
        with pytest.raises(ConnectionClosedError):
            conn.submit_batch_exists(["late"])
    finally:
        conn.close()


def test_dropping_an_engine_releases_the_gil_while_it_joins(
    core: ModuleType, redis_options: ConnectionOptions
) -> None:
    """The last reference to an Engine goes: its destructor joins the workers with the
    GIL released, so other Python threads run meanwhile. A worker that is slow to exit
    (the engine's test hook: 0.5 s, standing for a blocking getaddrinfo that close()
    cannot interrupt) makes the join long enough to see it."""
    from respkv._native import engine_config

    config = engine_config(redis_options.replace(num_workers=1)) | {"test_exit_delay": 0.5}
    engine = core.Engine(config)
    counted = [0]
    stop = threading.Event()

    def count() -> None:
        while not stop.is_set():
            counted[0] += 1
            time.sleep(0.001)

    counter = threading.Thread(target=count)
    counter.start()
    try:
        before = counted[0]
        start = time.monotonic()
        del engine  # no close() first: the destructor closes and joins
        joined = time.monotonic() - start
        during = counted[0] - before
    finally:
        stop.set()
        counter.join()
    assert joined >= 0.4, f"the destructor returned after {joined:.2f} s: nothing was joined"
    assert during >= 10, f"another thread ran {during} times in {joined:.2f} s: GIL held"


def test_engine_refuses_work_after_close(core: ModuleType) -> None:
    from respkv._native import engine_config

    engine = core.Engine(engine_config(ConnectionOptions(port=1, num_workers=2)))
    engine.close()
    engine.close()
    assert engine.submit(int(Op.EXISTS), [b"k"], None) == 0
    assert engine.cancel(1) is False
    with pytest.raises(ValueError, match="op must be"):
        engine.submit(9, [b"k"], None)


def test_tls_support_is_reported_and_honoured(
    core: ModuleType, tls_options: ConnectionOptions
) -> None:
    """``SUPPORTS_TLS`` says whether this build has OpenSSL: with it, a TLS round trip
    works; without it, TLS options are refused at once with a message naming the way
    out."""
    from respkv._tls import NO_TLS_MESSAGE

    if not core.SUPPORTS_TLS:
        with pytest.raises(ConfigError) as info:
            _native(tls_options)
        assert str(info.value) == NO_TLS_MESSAGE
        return
    conn = _native(tls_options)
    try:
        assert wait_for(conn, conn.submit_batch_set(["tls:a"], [b"secret"])).ok
        out = bytearray(6)
        assert wait_for(conn, conn.submit_batch_get(["tls:a"], [out])).ok
        assert out == b"secret"
    finally:
        conn.close()


def test_tls_many_small_replies_and_large_values(
    core: ModuleType, tls_options: ConnectionOptions
) -> None:
    """Over TLS, replies decrypted in one read wait inside the session where poll()
    cannot see them: a deep EXISTS pipeline and multi-MiB values must still complete."""
    require_native(tls=True)  # skips a build without TLS (fails under RESPKV_REQUIRE_NATIVE=1)
    conn = _native(tls_options.replace(num_workers=1))
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


def test_tls_context_is_made_once_per_engine(
    core: ModuleType, tls_options: ConnectionOptions, tmp_path: Path
) -> None:
    """The CA file is read when the engine first connects, not on every reconnect: with
    the file gone, a connection killed by the server is made again."""
    require_native(tls=True)  # skips a build without TLS (fails under RESPKV_REQUIRE_NATIVE=1)
    assert tls_options.tls is not None and tls_options.tls.ca_file is not None
    ca = tmp_path / "ca.pem"
    ca.write_bytes(Path(tls_options.tls.ca_file).read_bytes())
    opts = tls_options.replace(num_workers=1, tls=replace(tls_options.tls, ca_file=str(ca)))
    conn = _native(opts)
    try:
        assert wait_for(conn, conn.submit_batch_set(["ctx:a"], [b"v"])).ok
        ca.unlink()
        with AdminConnection(tls_options) as admin:
            assert admin.command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes") >= 1
        c = wait_for(conn, conn.submit_batch_exists(["ctx:a"]))
        assert c.statuses == (KeyStatus.OK,), c.failures
    finally:
        conn.close()


@pytest.fixture
def plaintext_answerer() -> Iterator[tuple[str, int]]:
    """A server that answers whatever it receives with a plaintext error line, the way a
    RESP server answers bytes it cannot parse."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                peer, _ = listener.accept()
            except TimeoutError:
                continue
            with peer:
                peer.settimeout(PROMPT)
                try:
                    peer.recv(4096)
                    peer.sendall(b"-ERR unknown command\r\n")
                    peer.recv(4096)  # until the client gives up
                except OSError:
                    pass

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield listener.getsockname()[:2]
    stop.set()
    t.join(PROMPT)
    listener.close()


def test_tls_against_a_plaintext_answer_quotes_it(
    core: ModuleType, plaintext_answerer: tuple[str, int]
) -> None:
    """A TLS client pointed at a server that answers in plaintext: the answer is quoted
    (``Failure.reply``), as data; respkv._failure words it. Native only: Python's ssl
    module keeps the bytes it read to itself, so the pure engine reports OpenSSL's
    reason alone (same kind). The silent case (Redis) is tested on both backends in
    tests/test_tls.py."""
    require_native(tls=True)  # skips a build without TLS (fails under RESPKV_REQUIRE_NATIVE=1)
    host, port = plaintext_answerer
    opts = ConnectionOptions(
        host=host, port=port, num_workers=1, connect_timeout=0.5, client_name="",
        tls=TLSOptions(verify=False),
    )  # fmt: skip
    conn = _native(opts)
    try:
        c = wait_for(conn, conn.submit_batch_exists(["k"]), PROMPT)
    finally:
        conn.close()
    f = c.failures[0]
    assert f is not None and f.kind is ErrorKind.TLS_FAILED, c.failures
    assert c.statuses == (KeyStatus.IO_ERROR,)
    assert f.reply == "-ERR unknown command", f
    assert 'did not answer with TLS (it sent "-ERR unknown command")' in f.message


def test_largest_timeouts_work(
    core: ModuleType, redis_options: ConnectionOptions, fault_proxy: FaultProxy
) -> None:
    """op_timeout, connect_timeout and a batch timeout of MAX_TIMEOUT (one day): the
    poll() milliseconds and the clock arithmetic do not overflow, a stalled request is
    still waited for (not timed out at once), and cancel() still ends it promptly."""
    opts = redis_options.replace(
        host=fault_proxy.host, port=fault_proxy.port, num_workers=1,
        op_timeout=MAX_TIMEOUT, connect_timeout=MAX_TIMEOUT,
    )  # fmt: skip
    conn = _native(opts)
    try:
        c = wait_for(conn, conn.submit_batch_set(["big-t"], [b"v"], timeout=MAX_TIMEOUT))
        assert c.statuses == (KeyStatus.OK,)
        fault_proxy.stall()
        bid = conn.submit_batch_exists(["big-t"], timeout=MAX_TIMEOUT)
        with pytest.raises(TimeoutError):
            wait_for(conn, bid, 0.3)  # neither timeout fires early
        start = time.monotonic()
        assert conn.cancel(bid) is True
        c = wait_for(conn, bid, PROMPT)
        assert time.monotonic() - start < PROMPT / 2
        f = c.failures[0]
        assert f is not None and f.kind is ErrorKind.CANCELLED and f.in_flight, c.failures
        fault_proxy.unstall()
        assert wait_for(conn, conn.submit_batch_exists(["big-t"])).statuses == (KeyStatus.OK,)
    finally:
        conn.close()


def test_worker_survives_an_exception_and_fails_what_it_held(
    core: ModuleType, redis_options: ConnectionOptions
) -> None:
    """std::bad_alloc inside a worker (thrown by the engine's test hook at the third
    reply) must not end the process: the keys the worker held fail INTERNAL with the
    exception's text, and the same worker serves the next batch."""
    from respkv._native import NativeConnector, engine_config

    opts = redis_options.replace(num_workers=1)
    conn = NativeConnector(opts)
    conn._engine.close()  # replaced by one with the test hook
    conn._engine = core.Engine(engine_config(opts) | {"test_throw_at_reply": 3})
    try:
        c = wait_for(conn, conn.submit_batch_exists([f"ba:{i}" for i in range(10)]))
        assert c.statuses[:2] == (KeyStatus.MISS,) * 2
        assert set(c.statuses[2:]) == {KeyStatus.IO_ERROR}
        for f in c.failures[2:]:
            assert f is not None and f.kind is ErrorKind.INTERNAL, f
            assert "bad_alloc" in f.detail and f.address == opts.address
        c = wait_for(conn, conn.submit_batch_exists(["ba:0", "ba:1"]))
        assert c.statuses == (KeyStatus.MISS,) * 2, c.failures
    finally:
        conn.close()


@pytest.fixture
def huge_bulk_server() -> Iterator[tuple[str, int, int]]:
    """A fake server answering each EXISTS with a 64 MiB bulk string (a wrong type)."""
    size = 64 * MIB
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(PROMPT)
    chunk = b"z" * MIB

    def serve() -> None:
        try:
            peer, _ = listener.accept()
        except OSError:
            return
        with peer:
            peer.settimeout(PROMPT)
            try:
                peer.recv(4096)
                peer.sendall(b"$%d\r\n" % size)
                for _ in range(size // MIB):
                    peer.sendall(chunk)
                peer.sendall(b"\r\n")
                peer.recv(4096)
                peer.sendall(b":1\r\n")
                peer.recv(4096)  # until the client closes
            except OSError:
                pass

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    host, port = listener.getsockname()[:2]
    yield host, port, size
    listener.close()
    t.join(PROMPT)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs Linux /proc")
def test_unexpected_huge_reply_costs_no_memory(
    core: ModuleType, huge_bulk_server: tuple[str, int, int]
) -> None:
    """A 64 MiB bulk where an integer was expected is drained as it arrives, never held
    (the receive buffer is bounded), and reported by its first line."""
    host, port, size = huge_bulk_server
    conn = _native(ConnectionOptions(host=host, port=port, num_workers=1, client_name=""))
    try:
        before = _rss_bytes()
        c = wait_for(conn, conn.submit_batch_exists(["k"]), PROMPT)
        grown = _rss_bytes() - before
        f = c.failures[0]
        assert f is not None and (f.kind, f.reply) == (ErrorKind.UNEXPECTED_REPLY, f"${size}")
        assert grown < size // 4, f"RSS grew by {grown} bytes for a drained {size}-byte reply"
        assert wait_for(conn, conn.submit_batch_exists(["k"]), PROMPT).statuses == (KeyStatus.OK,)
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
