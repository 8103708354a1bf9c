"""The synchronous high-level client over both backends."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import numpy as np
import pytest

import respkv
from respkv import ConnectionClosedError, ConnectionOptions, KeyStatus, ResultError
from respkv._faultproxy import FaultProxy


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
    out = [bytearray(1), bytearray(2), bytearray(4)]
    g = client.batch_get(keys, out)
    assert g.hits == [True, True, False]
    assert g.failed == [2] and not g.ok
    assert g.statuses[2] is KeyStatus.SIZE_MISMATCH
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


def test_closed_client_raises(redis_options: ConnectionOptions, backend_name: str) -> None:
    with respkv.connect(redis_options, backend=backend_name) as c:
        assert repr(c).startswith("Client(")
    assert c.closed
    c.close()
    with pytest.raises(ConnectionClosedError):
        c.batch_exists(["k"])
    with pytest.raises(ConnectionClosedError):
        c.get("k")


def test_wait_timeout_then_late_completion_is_dropped(
    redis_options: ConnectionOptions, backend_name: str, fault_proxy: FaultProxy
) -> None:
    opts = redis_options.replace(host=fault_proxy.host, port=fault_proxy.port, num_workers=1)
    with respkv.connect(opts, backend=backend_name) as c:
        assert c.batch_set(["late"], [b"v"]).ok
        fault_proxy.stall()
        with pytest.raises(TimeoutError, match=r"did not complete within 0\.2 s"):
            c.batch_exists(["late"], timeout=0.2)
        fault_proxy.unstall()
        # The next call drains the late completion too and must not keep it.
        assert c.batch_exists(["late"]).hits == [True]
        assert c._done == {} and c._abandoned == set()
