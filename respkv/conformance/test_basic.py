"""Round trips, per-key results, batch shapes, the event fd and batch ids."""

from __future__ import annotations

import select

import numpy as np
import pytest

from respkv import ConnectionOptions, Connector, KeyStatus, Op
from respkv.testing import ConnectorFactory, wait_for

OK, MISS = KeyStatus.OK, KeyStatus.MISS


def _values(n: int, size: int, seed: int = 0) -> list[bytes]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size, dtype=np.uint8).tobytes() for _ in range(n)]


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 8, 12, 13])
def test_batch_sizes_round_trip(connector: Connector, n: int) -> None:
    # 4 workers (redis_options): sizes 1 .. 3*workers+1 cover single, partial and uneven tiles.
    keys = [f"bs{n}:{i}" for i in range(n)]
    vals = _values(n, 1000 + n, seed=n)
    c = wait_for(connector, connector.submit_batch_set(keys, vals))
    assert c.op is Op.SET and c.ok and c.error is None
    assert c.statuses == (OK,) * n and c.errors == (None,) * n
    out = [bytearray(len(v)) for v in vals]
    g = wait_for(connector, connector.submit_batch_get(keys, out))
    assert g.ok and g.statuses == (OK,) * n
    assert [bytes(b) for b in out] == vals
    e = wait_for(connector, connector.submit_batch_exists([*keys, "bs-missing"]))
    assert e.statuses == (OK,) * n + (MISS,)
    assert e.ok  # a miss is an answer, not a failure
    d = wait_for(connector, connector.submit_batch_delete([keys[0], "bs-missing"]))
    assert d.statuses == (OK, MISS)
    e2 = wait_for(connector, connector.submit_batch_exists(keys[:1]))
    assert e2.statuses == (MISS,)


def test_get_misses_are_per_key(connector: Connector) -> None:
    keys = ["m:a", "m:b", "m:c"]
    wait_for(connector, connector.submit_batch_set(["m:b"], [b"bbbb"]))
    out = [bytearray(4) for _ in keys]
    c = wait_for(connector, connector.submit_batch_get(keys, out))
    assert c.statuses == (MISS, OK, MISS)
    assert c.ok and c.hits == 1
    assert bytes(out[1]) == b"bbbb"


def test_variable_sizes_in_one_batch(connector: Connector) -> None:
    sizes = [0, 1, 7, 16 * 1024, 300_000, 2 * 1024 * 1024 + 3, 5, 1 << 20]
    rng = np.random.default_rng(7)
    vals = [rng.integers(0, 256, s, dtype=np.uint8).tobytes() for s in sizes]
    keys = [f"var:{i}" for i in range(len(sizes))]
    assert wait_for(connector, connector.submit_batch_set(keys, vals)).ok
    out = [bytearray(s) for s in sizes]
    c = wait_for(connector, connector.submit_batch_get(keys, out))
    assert c.statuses == (OK,) * len(sizes)
    assert [bytes(b) for b in out] == vals


def test_zero_length_value(connector: Connector) -> None:
    assert wait_for(connector, connector.submit_batch_set(["zero"], [b""])).ok
    c = wait_for(connector, connector.submit_batch_get(["zero"], [bytearray()]))
    assert c.statuses == (OK,)
    assert wait_for(connector, connector.submit_batch_exists(["zero"])).statuses == (OK,)


def test_binary_keys(connector: Connector) -> None:
    keys: list[str | bytes] = [b"\x00\r\n\xff", b"*1\r\n$4\r\nPING\r\n", "ключ", b" "]
    vals = [b"a", b"bb", b"ccc", b"dddd"]
    assert wait_for(connector, connector.submit_batch_set(keys, vals)).ok
    out = [bytearray(len(v)) for v in vals]
    assert wait_for(connector, connector.submit_batch_get(keys, out)).ok
    assert [bytes(b) for b in out] == vals


def test_numpy_buffers_sized_in_bytes(connector: Connector) -> None:
    src = np.arange(1024, dtype=np.float16).reshape(32, 32)  # 2048 bytes, 1024 elements
    assert wait_for(connector, connector.submit_batch_set(["np"], [src])).ok
    dst = np.zeros((32, 32), dtype=np.float16)
    assert wait_for(connector, connector.submit_batch_get(["np"], [dst])).statuses == (OK,)
    assert np.array_equal(src, dst)
    wrong = np.zeros(2048, dtype=np.float16)  # 4096 bytes: same element count as bytes
    c = wait_for(connector, connector.submit_batch_get(["np"], [wrong]))
    assert c.statuses == (KeyStatus.SIZE_MISMATCH,)


def test_overwrite_changes_size(connector: Connector) -> None:
    wait_for(connector, connector.submit_batch_set(["ow"], [b"x" * 10]))
    wait_for(connector, connector.submit_batch_set(["ow"], [b"y" * 3]))
    out = bytearray(3)
    assert wait_for(connector, connector.submit_batch_get(["ow"], [out])).ok
    assert out == b"yyy"


def test_event_fd_and_exactly_once(connector: Connector) -> None:
    fd = connector.event_fd()
    assert isinstance(fd, int) and fd >= 0
    assert connector.drain_completions() == []
    ids = [connector.submit_batch_exists([f"e{i}"]) for i in range(20)]
    assert ids == sorted(ids) and len(set(ids)) == 20
    seen: list[int] = []
    while len(seen) < 20:
        r, _, _ = select.select([fd], [], [], 30)
        assert r, "event fd never became readable"
        seen += [c.batch_id for c in connector.drain_completions()]
    assert sorted(seen) == ids
    assert connector.drain_completions() == []
    r, _, _ = select.select([fd], [], [], 0)
    assert not r, "event fd stays readable with nothing to drain"


def test_large_values_pipelined(connector: Connector) -> None:
    n, size = 24, 4 * 1024 * 1024 + 1
    rng = np.random.default_rng(3)
    vals = [rng.integers(0, 256, size, dtype=np.uint8) for _ in range(n)]
    keys = [f"big:{i}" for i in range(n)]
    assert wait_for(connector, connector.submit_batch_set(keys, vals)).ok
    out = [np.empty(size, dtype=np.uint8) for _ in range(n)]
    assert wait_for(connector, connector.submit_batch_get(keys, out)).ok
    for i, (a, b) in enumerate(zip(vals, out)):
        assert np.array_equal(a, b), f"key {keys[i]}: read back differs from what was stored"


def test_many_small_exists_deep_pipeline(connector: Connector) -> None:
    keys = [f"s:{i}" for i in range(2000)]
    assert wait_for(connector, connector.submit_batch_set(keys[::2], [b"v"] * 1000)).ok
    c = wait_for(connector, connector.submit_batch_exists(keys))
    assert c.statuses == (OK, MISS) * 1000


@pytest.mark.connector_needs("select_db")
def test_select_db_and_client_name(
    connector_factory: ConnectorFactory, redis_options: ConnectionOptions
) -> None:
    from respkv._admin import AdminConnection

    opts = redis_options.replace(db=3, client_name="conformance-x", num_workers=1)
    conn = connector_factory(opts)
    try:
        assert wait_for(conn, conn.submit_batch_set(["dbkey"], [b"in-db-3"])).ok
        with AdminConnection(redis_options.replace(db=3)) as admin:
            assert admin.command("GET", "dbkey") == b"in-db-3"
            names = admin.command("CLIENT", "LIST")
            assert b"name=conformance-x" in names
        with AdminConnection(redis_options) as admin0:
            assert admin0.command("EXISTS", "dbkey") == 0
    finally:
        conn.close()


def test_concurrent_submitters(connector: Connector) -> None:
    import threading

    results: dict[int, list[int]] = {}
    errors: list[BaseException] = []

    def run(t: int) -> None:
        try:
            ids = []
            for j in range(25):
                ids.append(connector.submit_batch_set([f"t{t}:{j}"], [b"%d" % j]))
            results[t] = ids
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    assert not errors
    all_ids = [i for ids in results.values() for i in ids]
    assert len(set(all_ids)) == 200
    for i in all_ids:
        assert wait_for(connector, i).ok
    c = wait_for(connector, connector.submit_batch_exists([f"t{t}:24" for t in range(8)]))
    assert c.statuses == (OK,) * 8
