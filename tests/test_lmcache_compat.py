"""``respkv.compat.lmcache.LMCacheRedisClient``: the real LMCache client's behaviour where
LMCache's code depends on it, respkv's where it is deliberately better, and the keyword
arguments the real one lacks. Both backends; no lmcache package needed (the side-by-side
check against the real extension is in tests/lmcache_integration, ``nox -s lmcache``)."""

from __future__ import annotations

import array
import select
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from respkv import ConnectionOptions
from respkv._admin import AdminConnection
from respkv.compat.lmcache import (
    EMPTY_BATCH_MESSAGE,
    MISMATCH_MESSAGE,
    LMCacheCompletion,
    LMCacheRedisClient,
)
from respkv.errors import ConfigError
from respkv.testing import ACL_PASSWORD, ACL_USER, AUTH_PASSWORD
from respkv.testing.servers import LocalServer

#: Generous bound on one completion here (the engines' own deadlines are shorter).
WAIT_S = 20.0


def wait(c: LMCacheRedisClient, fid: int, timeout: float = WAIT_S) -> LMCacheCompletion:
    """The completion of ``fid``, waiting on the client's event fd (bounded)."""
    poller = select.poll()
    poller.register(c.event_fd(), select.POLLIN)
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        poller.poll(left * 1000)
        for item in c.drain_completions():
            if item[0] == fid:
                return item
    raise AssertionError(f"batch {fid} did not complete within {timeout} s")


@pytest.fixture
def make_lm(backend_name: str) -> Iterator[Callable[..., LMCacheRedisClient]]:
    made: list[LMCacheRedisClient] = []

    def make(*args: object, **kwargs: object) -> LMCacheRedisClient:
        kwargs.setdefault("use_env", False)
        c = LMCacheRedisClient(*args, backend=backend_name, **kwargs)  # type: ignore[arg-type]
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


@pytest.fixture
def lm(make_lm: Callable[..., LMCacheRedisClient], redis_options: ConnectionOptions) -> Any:
    return make_lm(redis_options.host, redis_options.port, 2)


def _redis(options: ConnectionOptions, *args: str) -> object:
    with AdminConnection(options, timeout=5) as admin:
        return admin.command(*args)


def test_completion_shapes(lm: LMCacheRedisClient) -> None:
    # SET completions carry no per-key results, like the real client.
    assert wait(lm, lm.submit_batch_set(["a", "b"], [b"xx", b"yyy"]))[1:] == (True, "", None)
    bufs = [bytearray(2), bytearray(2), bytearray(3)]
    # A size mismatch is a miss and does not fail the batch.
    assert wait(lm, lm.submit_batch_get(["a", "b", "nope"], bufs))[1:] == (
        True,
        "",
        [True, False, False],
    )
    assert bufs[0] == b"xx"
    assert wait(lm, lm.submit_batch_exists(["a", "nope"]))[1:] == (True, "", [True, False])
    assert wait(lm, lm.submit_batch_delete(["a", "nope"]))[1:] == (True, "", [True, False])


def test_buffer_argument_is_named_memoryviews(lm: LMCacheRedisClient) -> None:
    fid = lm.submit_batch_set(keys=["k"], memoryviews=[memoryview(b"v")])
    assert wait(lm, fid)[1]
    out = bytearray(1)
    assert wait(lm, lm.submit_batch_get(keys=["k"], memoryviews=[memoryview(out)]))[3] == [True]
    assert out == b"v"


@pytest.mark.parametrize("op", ["set", "get", "exists", "delete"])
def test_empty_batch_raises_runtime_error(lm: LMCacheRedisClient, op: str) -> None:
    args: tuple[list[object], ...] = ([], []) if op in ("set", "get") else ([],)
    with pytest.raises(RuntimeError, match=EMPTY_BATCH_MESSAGE):
        getattr(lm, f"submit_batch_{op}")(*args)


@pytest.mark.parametrize("op", ["set", "get"])
def test_mismatched_batch_raises_runtime_error(lm: LMCacheRedisClient, op: str) -> None:
    with pytest.raises(RuntimeError, match=MISMATCH_MESSAGE):
        getattr(lm, f"submit_batch_{op}")(["x", "y"], [bytearray(1)])


def test_empty_key_is_a_miss(lm: LMCacheRedisClient) -> None:
    assert wait(lm, lm.submit_batch_set(["a"], [b"1"]))[1]
    assert wait(lm, lm.submit_batch_exists(["", "a", ""]))[1:] == (True, "", [False, True, False])
    bufs = [bytearray(1), bytearray(1)]
    assert wait(lm, lm.submit_batch_get(["a", ""], bufs))[1:] == (True, "", [True, False])
    assert wait(lm, lm.submit_batch_delete([""]))[1:] == (True, "", [False])
    # A batch of empty keys only is answered without I/O, through the same event fd.
    assert wait(lm, lm.submit_batch_get([""], [bytearray(1)]))[1:] == (True, "", [False])


def test_set_under_an_empty_key_fails_that_key(
    lm: LMCacheRedisClient, redis_options: ConnectionOptions
) -> None:
    # Deliberately stricter than LMCache's client, which stores the value under "".
    _, ok, error, results = wait(lm, lm.submit_batch_set(["x", ""], [b"1", b"2"]))
    assert not ok and results is None
    assert error.startswith("1 of 2 keys failed; key 1: empty key")
    assert _redis(redis_options, "GET", "x") == b"1"
    assert _redis(redis_options, "EXISTS", "") == 0


def test_wrongtype_on_get_is_a_miss(
    lm: LMCacheRedisClient, redis_options: ConnectionOptions
) -> None:
    _redis(redis_options, "RPUSH", "lst", "x")
    assert wait(lm, lm.submit_batch_set(["s"], [b"v"]))[1]
    bufs = [bytearray(1), bytearray(1)]
    assert wait(lm, lm.submit_batch_get(["lst", "s"], bufs))[1:] == (True, "", [False, True])
    # The connection stays in sync: the next batch is answered correctly.
    assert wait(lm, lm.submit_batch_exists(["lst", "s", "no"]))[3] == [True, True, False]


def test_whole_buffer_is_stored(lm: LMCacheRedisClient, redis_options: ConnectionOptions) -> None:
    # LMCache's client stores len() bytes of a float32 view (4 of 16): respkv stores nbytes.
    view = memoryview(array.array("f", [1.0, 2.0, 3.0, 4.0]))
    assert wait(lm, lm.submit_batch_set(["f"], [view]))[1]
    assert _redis(redis_options, "STRLEN", "f") == 16


def test_get_of_a_deleted_key_completes(lm: LMCacheRedisClient) -> None:
    big = bytes(4 << 20)
    assert wait(lm, lm.submit_batch_set(["big"], [big]))[1]
    assert wait(lm, lm.submit_batch_delete(["big"]))[3] == [True]
    out = bytearray(len(big))
    assert wait(lm, lm.submit_batch_get(["big"], [out]))[1:] == (True, "", [False])
    assert wait(lm, lm.submit_batch_exists(["big"]))[3] == [False]


#: How long a restarted server may take to answer PING again; pause between PINGs.
RESTART_TIMEOUT_S = 15.0
RESTART_POLL_S = 0.05


def _restart_in_place(options: ConnectionOptions) -> None:
    """``DEBUG RESTART`` (same process and port, every connection dropped), then a
    bounded wait for PING."""
    try:
        _redis(options, "DEBUG", "RESTART")
    except OSError:
        pass  # the server closes our connection as it restarts
    deadline = time.monotonic() + RESTART_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            if _redis(options, "PING") == b"PONG":
                return
        except OSError:
            time.sleep(RESTART_POLL_S)
    raise AssertionError("server did not come back")


def test_reconnects_after_server_restart(
    make_lm: Callable[..., LMCacheRedisClient], make_server: Callable[..., LocalServer]
) -> None:
    server = make_server("--enable-debug-command", "yes")
    c = make_lm(server.host, server.port, 1, op_timeout=5.0)
    assert wait(c, c.submit_batch_set(["a"], [b"1"]))[1]
    _restart_in_place(ConnectionOptions(host=server.host, port=server.port))
    # The first batch may meet the dead connection; a later one must succeed
    # (LMCache's own client never reconnects).
    outcomes = [wait(c, c.submit_batch_set(["a"], [b"2"]))[1] for _ in range(3)]
    assert outcomes[-1], outcomes
    assert wait(c, c.submit_batch_exists(["a"]))[3] == [True]


def test_failures_carry_the_reason(
    make_lm: Callable[..., LMCacheRedisClient], auth_server: LocalServer
) -> None:
    c = make_lm(auth_server.host, auth_server.port, 1)
    _, ok, error, results = wait(c, c.submit_batch_set(["k"], [b"v"]))
    assert not ok and results is None and "NOAUTH" in error
    _, ok, error, results = wait(c, c.submit_batch_get(["k"], [bytearray(1)]))
    # Stricter than the real client, which reports NOAUTH on GET as a miss.
    assert not ok and results == [False] and "NOAUTH" in error


def test_credentials_from_the_environment(
    make_lm: Callable[..., LMCacheRedisClient],
    auth_server: LocalServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LMCACHE_RESP_HOST", auth_server.host)
    monkeypatch.setenv("LMCACHE_RESP_PORT", str(auth_server.port))
    monkeypatch.setenv("LMCACHE_RESP_USERNAME", ACL_USER)
    monkeypatch.setenv("LMCACHE_RESP_PASSWORD", ACL_PASSWORD)
    c = make_lm(use_env=True)
    assert c.options.username == ACL_USER and ACL_PASSWORD not in repr(c)
    assert wait(c, c.submit_batch_set(["env"], [b"v"]))[1]
    # RESPKV_* wins over LMCACHE_RESP_*; arguments win over both.
    monkeypatch.setenv("RESPKV_USERNAME", "default")
    monkeypatch.setenv("RESPKV_PASSWORD", AUTH_PASSWORD)
    assert make_lm(use_env=True).options.username == "default"
    assert make_lm(username="other", use_env=True).options.username == "other"
    off = make_lm(auth_server.host, auth_server.port, 1)
    assert off.options.password == ""


def test_keyword_arguments_beyond_the_real_client(
    make_lm: Callable[..., LMCacheRedisClient], redis_options: ConnectionOptions
) -> None:
    c = make_lm(url=f"resp://{redis_options.address}", op_timeout=3.0, connect_timeout=2.0)
    assert (c.options.op_timeout, c.options.connect_timeout) == (3.0, 2.0)
    assert c.options.port == redis_options.port
    d = make_lm(redis_options.host, redis_options.port, 3, batch_timeout=10.0, window_values=1)
    assert d.options.num_workers == 3 and d.options.window_values == 1
    assert wait(d, d.submit_batch_set(["t"], [b"v"]))[1]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_capacity_gb": 1}, "next to adapter_params"),
        ({"op_timeout": float("inf")}, "op_timeout"),
        ({"batch_timeout": -1}, "timeout"),
        ({"no_such_key": 1}, "unknown config key 'no_such_key'"),
        ({"url": 5}, "'url': expected str"),
    ],
)
def test_bad_arguments(
    make_lm: Callable[..., LMCacheRedisClient], kwargs: dict[str, object], match: str
) -> None:
    with pytest.raises((ConfigError, ValueError), match=match):
        make_lm("127.0.0.1", 6379, 1, **kwargs)


def test_close(
    make_lm: Callable[..., LMCacheRedisClient], redis_options: ConnectionOptions
) -> None:
    c = make_lm(redis_options.host, redis_options.port, 1)
    assert c.event_fd() >= 0
    c.close()
    c.close()
    assert c.event_fd() == -1
