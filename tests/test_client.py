"""The synchronous high-level client over both backends: results, deadlines, the key
prefix, copying reads, ping/check, counters and logs."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator

import numpy as np
import pytest

import respkv
from respkv import ConnectionClosedError, ConnectionOptions, ErrorKind, KeyStatus, Op, ResultError
from respkv._clientbase import PIPELINE_KEYS
from respkv._validate import MAX_KEY_BYTES
from respkv.errors import ReplyError
from respkv.testing import AUTH_PASSWORD
from respkv.testing.faultproxy import FaultProxy
from respkv.testing.servers import LocalServer, free_port

MIB = 1 << 20
#: A poison byte: a buffer still full of it was not written.
POISON = 0xA5


@pytest.fixture
def client(redis_options: ConnectionOptions, backend_name: str) -> Iterator[respkv.Client]:
    c = respkv.connect(redis_options, backend=backend_name)
    yield c
    c.close()


def test_batch_results_are_typed(client: respkv.Client) -> None:
    keys: list[str | bytes] = ["c:a", "c:b", b"c:c"]
    vals = [b"1", b"22", b"333"]
    r = client.batch_set(keys, vals)
    assert r.ok and r.keys == (b"c:a", b"c:b", b"c:c") and len(r) == 3
    assert r.statuses == (KeyStatus.OK,) * 3
    assert r.failures == (None,) * 3 and r.error is None
    out = [bytearray(1), bytearray(2), bytearray(4)]
    g = client.batch_get(keys, out)
    assert g.hits == [True, True, False]
    assert g.failed == [2] and not g.ok
    assert g.statuses[2] is KeyStatus.SIZE_MISMATCH
    failure = g.failures[2]
    assert failure is not None and failure.kind is ErrorKind.SIZE_MISMATCH
    assert (failure.expected, failure.actual) == (4, 3)
    assert g.errors[2] == failure.message and "SIZE_MISMATCH" in (g.error or "")
    assert client.batch_exists(["c:a", "c:zz"]).hits == [True, False]
    assert client.batch_delete(["c:a", "c:zz"]).hits == [True, False]


def test_single_key_helpers(client: respkv.Client) -> None:
    client.set("one", b"value-1")
    buf = bytearray(7)
    assert client.get_into("one", buf) and buf == b"value-1"
    assert client.get("one") == b"value-1"
    assert client.get("none") is None
    assert client.exists("one") and not client.exists("none")
    assert not client.get_into("none", bytearray(7))
    with pytest.raises(ResultError, match="SIZE_MISMATCH"):
        client.get_into("one", bytearray(3))
    assert client.delete("one") and not client.delete("one")
    assert client.command("PING") == b"PONG"
    client.command("SADD", "a-set", "m")
    with pytest.raises(ReplyError, match="WRONGTYPE"):
        client.get("a-set")


def test_many_threads_share_one_client(client: respkv.Client) -> None:
    errors: list[BaseException] = []
    payload = np.arange(50_000, dtype=np.uint8)

    def work(t: int) -> None:
        try:
            for j in range(10):
                keys = [f"th{t}:{j}:{i}" for i in range(3)]
                assert client.batch_set(keys, [payload] * 3).ok
                out = [np.empty_like(payload) for _ in keys]
                assert client.batch_get(keys, out).ok
                assert all(np.array_equal(o, payload) for o in out)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert not errors, errors[:1]
    assert client._done == {}, "every completion went to its caller"


def test_closed_client_raises(redis_options: ConnectionOptions, backend_name: str) -> None:
    with respkv.connect(redis_options, backend=backend_name) as c:
        assert repr(c).startswith("Client(")
    assert c.closed
    c.close()
    with pytest.raises(ConnectionClosedError):
        c.batch_exists(["k"])
    with pytest.raises(ConnectionClosedError):
        c.get("k")
    with pytest.raises(ConnectionClosedError):
        c.ping()


# -- deadlines (issue 9, defect 2) ---------------------------------------------------------


def test_timeout_is_the_batch_deadline_and_nothing_writes_after_the_call(
    redis_options: ConnectionOptions, backend_name: str, fault_proxy: FaultProxy
) -> None:
    """Before: ``timeout=`` raised TimeoutError while the batch kept running and wrote
    the late value into the caller's buffers after the call had returned."""
    opts = redis_options.replace(host=fault_proxy.host, port=fault_proxy.port, num_workers=2)
    size = MIB
    with respkv.connect(opts, backend=backend_name) as c:
        keys = [f"dl:{i}" for i in range(4)]
        assert c.batch_set(keys, [bytes([i + 1]) * size for i in range(4)]).ok
        out = [np.full(size, POISON, dtype=np.uint8) for _ in keys]
        fault_proxy.stall()  # the server answers, the replies are held
        result = c.batch_get(keys, out, timeout=0.5)
        assert result.statuses == (KeyStatus.TIMEOUT,) * 4
        for f in result.failures:
            assert f is not None and f.kind is ErrorKind.DEADLINE and f.timeout == 0.5
        assert "deadline" in (result.error or "")
        # The call has returned: from now on nothing may write into its buffers.
        for o in out:
            o.fill(POISON)
        fault_proxy.unstall()  # the held replies go out now, to a dropped connection
        # The same client recovers; a GET over its new connections sees the values.
        fresh = [np.zeros(size, dtype=np.uint8) for _ in keys]
        assert c.batch_get(keys, fresh).ok
        assert all((f == i + 1).all() for i, f in enumerate(fresh))
        assert all((o == POISON).all() for o in out), "a write followed the returned call"
        stats = c.stats()
        assert stats.timeouts == 4 and stats.errors[ErrorKind.DEADLINE] == 4


@pytest.mark.parametrize(
    ("timeout", "error"),
    [(0, ValueError), (-1, ValueError), (float("inf"), ValueError), (float("nan"), ValueError),
     (1e9, ValueError), (True, TypeError), ("1", TypeError)],
)  # fmt: skip
def test_bad_timeouts_are_refused_before_any_io(
    client: respkv.Client, timeout: object, error: type[Exception]
) -> None:
    with pytest.raises(error, match="timeout"):
        client.batch_exists(["k"], timeout=timeout)  # type: ignore[arg-type]
    assert client.stats().batches == 0


# -- the key prefix --------------------------------------------------------------------------


def test_prefix_is_applied_to_every_key_and_results_use_the_callers_keys(
    redis_options: ConnectionOptions, backend_name: str, client: respkv.Client
) -> None:
    with respkv.connect(redis_options, backend=backend_name, prefix="ns1:") as ns:
        assert ns.prefix == b"ns1:"
        r = ns.batch_set(["a", b"b"], [b"1", b"22"])
        assert r.ok and r.keys == (b"a", b"b")
        assert client.command("EXISTS", "ns1:a", "ns1:b", "a", "b") == 2
        out = [bytearray(1), bytearray(2)]
        assert ns.batch_get(["a", "b"], out).ok and out == [b"1", b"22"]
        assert ns.batch_exists(["a", "zz"]).hits == [True, False]
        assert ns.batch_get_bytes(["a", "b", "zz"]) == [b"1", b"22", None]
        assert ns.batch_strlen(["a", "b", "zz"]) == [1, 2, 0]
        assert ns.get("b") == b"22" and ns.exists("a")
        assert ns.command("GET", "ns1:a") == b"1"  # raw commands take keys as given
        assert ns.batch_delete(["a", "b"]).ok
        assert client.command("EXISTS", "ns1:a", "ns1:b") == 0
        too_long = "k" * (MAX_KEY_BYTES - 3)
        with pytest.raises(ValueError, match=r"key 1: .* with the prefix exceeds MAX_KEY_BYTES"):
            ns.batch_exists(["ok", too_long])
    with pytest.raises(TypeError, match="prefix must be str or bytes"):
        respkv.connect(redis_options, backend=backend_name, prefix=3)  # type: ignore[arg-type]


# -- values of unknown size ------------------------------------------------------------------


def test_batch_get_bytes_and_strlen(client: respkv.Client) -> None:
    n = PIPELINE_KEYS * 2 + 7  # more than one pipelined round trip
    keys = [f"gb:{i}" for i in range(n)]
    values = [bytes([i % 251]) * (i % 300) for i in range(n)]
    present = keys[::2]
    assert client.batch_set(present, values[::2]).ok
    got = client.batch_get_bytes(keys)
    assert got == [v if i % 2 == 0 else None for i, v in enumerate(values)]
    assert all(type(v) is bytes for v in got if v is not None)
    assert client.batch_strlen(keys) == [len(v) if i % 2 == 0 else 0 for i, v in enumerate(values)]
    client.command("SADD", "gb:set", "m")
    with pytest.raises(ResultError, match="key 1: GET: WRONGTYPE"):
        client.batch_get_bytes(["gb:0", "gb:set"])
    with pytest.raises(ResultError, match="key 0: STRLEN: WRONGTYPE"):
        client.batch_strlen(["gb:set"])
    # The admin connection stayed in sync after the error replies.
    assert client.batch_get_bytes(["gb:2"]) == [values[2]]
    big = np.arange(3 * MIB, dtype=np.uint8)
    client.set("gb:big", big)
    assert client.batch_get_bytes(["gb:big"]) == [big.tobytes()]


# -- ping and check at connect -----------------------------------------------------------------


def test_ping_and_check_at_connect(redis_options: ConnectionOptions, backend_name: str) -> None:
    with respkv.connect(redis_options, backend=backend_name, check=True) as c:
        assert c.ping() is True
    port = free_port()
    with pytest.raises(ConnectionError, match=rf"cannot use the server at 127\.0\.0\.1:{port}"):
        respkv.connect(f"resp://127.0.0.1:{port}", backend=backend_name, check=True)
    # Without check the client opens and reports per key, as before.
    with respkv.connect(f"resp://127.0.0.1:{port}", backend=backend_name, num_workers=1) as c:
        assert c.batch_exists(["k"]).statuses == (KeyStatus.IO_ERROR,)
        with pytest.raises(ConnectionError, match="ConnectionRefusedError"):
            c.ping()


def test_check_names_a_rejected_password_without_echoing_it(
    auth_server: LocalServer, backend_name: str
) -> None:
    wrong = "not-the-password-123"
    url = f"resp://:{wrong}@{auth_server.host}:{auth_server.port}"
    with pytest.raises(ConnectionError, match=r"WRONGPASS|invalid password") as info:
        respkv.connect(url, backend=backend_name, check=True)
    assert wrong not in str(info.value)
    assert f"{auth_server.host}:{auth_server.port}" in str(info.value)


# -- counters and logs -----------------------------------------------------------------------


def test_stats_count_batches_keys_bytes_and_errors(client: respkv.Client) -> None:
    assert client.stats().batches == 0
    client.batch_set(["s:a", "s:b"], [b"x" * 100, b"y" * 300])
    client.batch_get(["s:a", "s:b", "s:none"], [bytearray(100), bytearray(5), bytearray(1)])
    client.batch_exists(["s:a"])
    client.batch_get_bytes(["s:b", "s:none"])
    s = client.stats()
    assert (s.batches, s.keys) == (4, 8)
    assert (s.ok_keys, s.missed_keys, s.failed_keys, s.failed_batches) == (5, 2, 1, 1)
    assert (s.bytes_out, s.bytes_in) == (400, 100 + 300)
    assert s.errors == {ErrorKind.SIZE_MISMATCH: 1} and s.timeouts == 0
    assert s.batches_by_op == {Op.SET: 1, Op.GET: 2, Op.EXISTS: 1}


def test_failed_batches_are_logged_without_secrets(
    auth_server: LocalServer, backend_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"resp://:{AUTH_PASSWORD}@{auth_server.host}:{auth_server.port}"
    with respkv.connect(url, backend=backend_name, num_workers=1) as c:
        c.set("log:k", b"abc")
        with caplog.at_level(logging.DEBUG, logger="respkv"):
            assert c.batch_get(["log:k"], [bytearray(1)]).statuses == (KeyStatus.SIZE_MISMATCH,)
            assert c.batch_get(["log:k"], [bytearray(3)]).ok
    records = [r for r in caplog.records if r.name.startswith("respkv")]
    assert len(records) == 1, "one record per failed batch, none for a good one"
    text = records[0].getMessage()
    assert records[0].levelno == logging.WARNING
    assert f"{auth_server.host}:{auth_server.port}" in text and "SIZE_MISMATCH" in text
    assert AUTH_PASSWORD not in text and "log:k" not in text


class _Interrupted(Exception):
    """Raised by a signal handler in the waiting thread, as Ctrl-C would be."""


def test_an_interrupted_wait_cancels_the_batch_and_settles_it_first(
    redis_options: ConnectionOptions, backend_name: str, fault_proxy: FaultProxy
) -> None:
    """An exception raised while the caller waits (``KeyboardInterrupt``) cancels the
    batch and waits for its completion before it propagates: no write follows."""
    opts = redis_options.replace(host=fault_proxy.host, port=fault_proxy.port, num_workers=1)
    with respkv.connect(opts, backend=backend_name) as c:
        assert c.batch_set(["int:k"], [b"v" * MIB]).ok
        out = np.full(MIB, POISON, dtype=np.uint8)

        def interrupt(signum: int, frame: object) -> None:
            raise _Interrupted

        previous = signal.signal(signal.SIGALRM, interrupt)
        fault_proxy.stall()
        try:
            # Fires while the caller waits: the stalled batch cannot complete on its own.
            signal.setitimer(signal.ITIMER_REAL, 0.3)
            with pytest.raises(_Interrupted):
                c.batch_get(["int:k"], [out])
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
        assert c._done == {}, "the cancelled batch's completion was collected, not left over"
        assert c.stats().errors.get(ErrorKind.CANCELLED) == 1
        out.fill(POISON)
        fault_proxy.unstall()
        fresh = np.zeros(MIB, dtype=np.uint8)
        assert c.batch_get(["int:k"], [fresh]).ok and (fresh == ord("v")).all()
        assert (out == POISON).all(), "a write followed the interrupted call"
