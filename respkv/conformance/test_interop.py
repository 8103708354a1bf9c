"""Values written by respkv read back byte-identical through redis-py (hiredis), and
the reverse: an independent client as the referee."""

from __future__ import annotations

import numpy as np
import redis

from respkv import ConnectionOptions, Connector, KeyStatus
from respkv.testing import wait_for


def test_respkv_writes_redis_py_reads(
    connector: Connector, redis_options: ConnectionOptions
) -> None:
    rng = np.random.default_rng(11)
    vals = [rng.integers(0, 256, s, dtype=np.uint8).tobytes() for s in (0, 1, 1000, 3 << 20)]
    keys = [b"io:%d" % i for i in range(len(vals))]
    assert wait_for(connector, connector.submit_batch_set(keys, vals)).ok
    r = redis.Redis(host=redis_options.host, port=redis_options.port)
    try:
        assert r.mget(keys) == vals
    finally:
        r.close()


def test_redis_py_writes_respkv_reads(
    connector: Connector, redis_options: ConnectionOptions
) -> None:
    rng = np.random.default_rng(12)
    vals = [rng.integers(0, 256, s, dtype=np.uint8).tobytes() for s in (5, 70_000, 2 << 20)]
    keys = [b"ri:%d" % i for i in range(len(vals))]
    r = redis.Redis(host=redis_options.host, port=redis_options.port)
    try:
        r.mset(dict(zip(keys, vals)))
    finally:
        r.close()
    out = [bytearray(len(v)) for v in vals]
    c = wait_for(connector, connector.submit_batch_get(keys, out))
    assert c.statuses == (KeyStatus.OK,) * 3
    assert [bytes(b) for b in out] == vals
