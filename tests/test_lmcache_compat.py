"""LMCache's native client surface: constructor, completion tuples, size mismatch as miss."""

from __future__ import annotations

import select
from collections.abc import Iterator

import pytest

from respkv import ConnectionOptions
from respkv.compat.lmcache import LMCacheRedisClient
from respkv.testing import ACL_PASSWORD, ACL_USER


def _wait(c: LMCacheRedisClient, fid: int) -> tuple[int, bool, str, list[bool]]:
    for _ in range(1000):
        select.select([c.event_fd()], [], [], 10)
        for item in c.drain_completions():
            if item[0] == fid:
                return item
    raise AssertionError("never completed")


@pytest.fixture
def lm(redis_options: ConnectionOptions) -> Iterator[LMCacheRedisClient]:
    c = LMCacheRedisClient(redis_options.host, redis_options.port, 2)
    yield c
    c.close()


def test_surface(lm: LMCacheRedisClient) -> None:
    _, ok, err, res = _wait(lm, lm.submit_batch_set(["a", "b"], [b"xx", b"yyy"]))
    assert ok and err == "" and res == [True, True]
    bufs = [bytearray(2), bytearray(2), bytearray(3)]
    _, ok, err, res = _wait(lm, lm.submit_batch_get(["a", "b", "nope"], bufs))
    # LMCache semantics: a size mismatch is a miss and does not fail the batch.
    assert ok and err == "" and res == [True, False, False]
    assert bufs[0] == b"xx"
    _, ok, _, res = _wait(lm, lm.submit_batch_exists(["a", "nope"]))
    assert ok and res == [True, False]
    _, ok, _, res = _wait(lm, lm.submit_batch_delete(["a", "nope"]))
    assert ok and res == [True, False]


def test_acl_credentials_and_failures(auth_server: object) -> None:
    from respkv._server import LocalServer

    assert isinstance(auth_server, LocalServer)
    good = LMCacheRedisClient(auth_server.host, auth_server.port, 1, ACL_USER, ACL_PASSWORD)
    bad = LMCacheRedisClient(auth_server.host, auth_server.port, 1)
    try:
        _, ok, err, res = _wait(good, good.submit_batch_set(["lm"], [b"v"]))
        assert ok and res == [True]
        _, ok, err, res = _wait(bad, bad.submit_batch_set(["lm"], [b"v"]))
        assert not ok and "NOAUTH" in err and res == [False]
    finally:
        good.close()
        bad.close()
