"""Observability (issue 11 §3): the engines' connection counters (``engine_stats``, read
by ``Client.stats()``) and the Prometheus text exposition of ``respkv.metrics``.

The exposition is read back with ``prometheus_client``'s own parser (an independent
implementation of the format); the counters are compared with ``stats()`` and with
what was done (a reconnect forced by ``CLIENT KILL`` on the server).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

import respkv
import respkv.aio
from respkv import ConnectionOptions, Connector, ErrorKind, KeyStatus, Op
from respkv._admin import AdminConnection
from respkv._clientbase import ClientStats
from respkv.metrics import CONTENT_TYPE, prometheus_text
from respkv.testing import ACL_PASSWORD, ACL_USER, AUTH_PASSWORD, wait_for
from respkv.testing.servers import LocalServer

parser = pytest.importorskip("prometheus_client.parser")

#: Batches tried after the server closed the engine's connection before its reconnect
#: must have been counted (the first may fail: its request can meet the closed socket).
MAX_TRIES_AFTER_KILL = 20


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for family in parser.text_string_to_metric_families(text):
        assert family.type == "counter", family.name
        for s in family.samples:
            key = (s.name, frozenset(s.labels.items()))
            assert key not in out, f"duplicate series {key}"
            out[key] = s.value
    return out


def _value(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    matches = [v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= ls]
    assert len(matches) == 1, (name, labels, matches)
    return matches[0]


@pytest.fixture
def admin(redis_options: ConnectionOptions) -> Iterator[AdminConnection]:
    with AdminConnection(redis_options) as conn:
        yield conn


# -- the engines' counters ---------------------------------------------------------------


def test_engine_stats_count_connections(connector: Connector) -> None:
    """Every connector kind (py, native, cluster) answers ``engine_stats``."""
    assert wait_for(connector, connector.submit_batch_exists([f"es:{i}" for i in range(40)])).ok
    stats = connector.engine_stats()  # type: ignore[attr-defined]
    assert set(stats) == {
        "connections_opened",
        "reconnects",
        "connect_failures",
        "connections_dropped",
    }
    assert stats["connections_opened"] >= 1
    assert stats["reconnects"] == stats["connect_failures"] == stats["connections_dropped"] == 0


def test_reconnect_is_counted(
    redis_options: ConnectionOptions, backend_name: str, admin: AdminConnection
) -> None:
    opts = redis_options.replace(num_workers=1)
    with respkv.connect(opts, backend=backend_name) as c:
        assert c.batch_set(["rc:a"], [b"v"]).ok
        before = c.stats()
        assert (before.connections_opened, before.reconnects) == (1, 0)
        admin.command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
        for _ in range(MAX_TRIES_AFTER_KILL):
            ok = c.batch_exists(["rc:a"]).statuses == (KeyStatus.OK,)
            if ok and c.stats().reconnects >= 1:
                break
        after = c.stats()
        assert ok and after.reconnects >= 1 and after.connections_dropped >= 1
        assert after.connections_opened == 1 + after.reconnects
        text = prometheus_text(c)
    samples = _samples(text)
    assert _value(samples, "respkv_reconnects_total") == after.reconnects
    assert _value(samples, "respkv_connections_dropped_total") == after.connections_dropped


def test_connect_failures_are_counted(backend_name: str) -> None:
    from respkv.testing.servers import free_port

    opts = ConnectionOptions(host="127.0.0.1", port=free_port(), num_workers=2)
    with respkv.connect(opts, backend=backend_name) as c:
        r = c.batch_set(["cf:a", "cf:b"], [b"1", b"2"])
        assert not r.ok and {f.kind for f in r.failures if f} == {ErrorKind.CONNECT_FAILED}
        s = c.stats()
    assert (s.connections_opened, s.connect_failures) == (0, 2)
    assert s.errors == {ErrorKind.CONNECT_FAILED: 2}


# -- the exposition ------------------------------------------------------------------------


def test_exposition_matches_stats(client_and_ops: respkv.Client) -> None:
    c = client_and_ops
    s = c.stats()
    text = prometheus_text(c, labels={"instance_name": "prefill-0"})
    samples = _samples(text)
    every = {ls for _, ls in samples}
    assert all(
        ("address", c.options.address) in ls and ("instance_name", "prefill-0") in ls
        for ls in every
    )
    for op in Op:
        assert _value(samples, "respkv_batches_total", op=op.name.lower()) == s.batches_by_op.get(
            op, 0
        )
    assert _value(samples, "respkv_keys_total", outcome="ok") == s.ok_keys
    assert _value(samples, "respkv_keys_total", outcome="miss") == s.missed_keys
    assert _value(samples, "respkv_keys_total", outcome="failed") == s.failed_keys == 1
    assert _value(samples, "respkv_key_failures_total", kind="size_mismatch") == 1
    assert _value(samples, "respkv_key_failures_total", kind="connection_lost") == 0
    assert _value(samples, "respkv_value_bytes_total", direction="out") == s.bytes_out == 3000
    assert _value(samples, "respkv_value_bytes_total", direction="in") == s.bytes_in
    assert _value(samples, "respkv_failed_batches_total") == s.failed_batches == 1
    assert _value(samples, "respkv_connections_opened_total") == s.connections_opened >= 1
    # Every op and kind is there from the start; nothing else.
    names = {n for n, _ in samples}
    assert all(n.startswith("respkv_") and n.endswith("_total") for n in names)
    assert len([1 for n, _ in samples if n == "respkv_key_failures_total"]) == len(ErrorKind)
    assert text.endswith("\n") and CONTENT_TYPE.startswith("text/plain; version=0.0.4")


@pytest.fixture
def client_and_ops(redis_options: ConnectionOptions, backend_name: str) -> Iterator[respkv.Client]:
    with respkv.connect(redis_options, backend=backend_name, prefix="secret-prefix:") as c:
        assert c.batch_set(["mx:a", "mx:b", "mx:c"], [b"x" * 1000] * 3).ok
        assert not c.batch_get(
            ["mx:a", "mx:zz"], [bytearray(999), bytearray(5)]
        ).ok  # size mismatch
        assert c.batch_exists(["mx:b"]).ok
        yield c


def test_async_client_and_several_sources(
    redis_options: ConnectionOptions, backend_name: str
) -> None:
    async def main() -> str:
        async with await respkv.aio.connect(redis_options, backend=backend_name) as a:
            assert (await a.batch_set(["ma:1"], [b"12"])).ok
            with respkv.connect(redis_options, backend=backend_name) as b:
                assert b.batch_delete(["ma:1"]).ok
                with pytest.raises(ValueError, match="same labels"):
                    prometheus_text(a, b)
                return prometheus_text((a, {"client": "async"}), (b, {"client": "sync"}))

    samples = _samples(asyncio.run(main()))
    assert _value(samples, "respkv_batches_total", op="set", client="async") == 1
    assert _value(samples, "respkv_batches_total", op="delete", client="sync") == 1
    assert _value(samples, "respkv_batches_total", op="set", client="sync") == 0


def test_no_secret_or_key_is_exported(auth_server: LocalServer, backend_name: str) -> None:
    url = f"resp://{ACL_USER}:{ACL_PASSWORD}@127.0.0.1:{auth_server.port}"
    with respkv.connect(url, backend=backend_name, prefix="tenant-7:") as c:
        assert c.batch_set(["chunk-key-xyz"], [b"v"]).ok
        text = prometheus_text(c)
    for secret in (ACL_PASSWORD, ACL_USER, AUTH_PASSWORD, "tenant-7", "chunk-key-xyz"):
        assert secret not in text
    assert f'address="127.0.0.1:{auth_server.port}"' in text


def test_snapshot_exact_text() -> None:
    s = ClientStats(
        batches=3,
        keys=5,
        ok_keys=4,
        failed_keys=1,
        bytes_out=10,
        errors={ErrorKind.TIMED_OUT: 1},
        timeouts=1,
        failed_batches=1,
        batches_by_op={Op.SET: 2, Op.GET: 1},
        reconnects=2,
    )
    lines = prometheus_text(s).splitlines()
    assert lines[:4] == [
        "# HELP respkv_batches_total Batches completed, per operation.",
        "# TYPE respkv_batches_total counter",
        'respkv_batches_total{op="set"} 2',
        'respkv_batches_total{op="get"} 1',
    ]
    assert 'respkv_key_failures_total{kind="timed_out"} 1' in lines
    assert "respkv_timeouts_total 1" in lines and "respkv_reconnects_total 2" in lines
    assert sum(1 for ln in lines if ln.startswith("# TYPE")) == 10


@pytest.mark.parametrize(
    ("labels", "text"),
    [
        ({"9lives": "x"}, "invalid Prometheus label name"),
        ({"a-b": "x"}, "invalid Prometheus label name"),
        ({"__name": "x"}, "invalid Prometheus label name"),
        ({"op": "x"}, "set by respkv.metrics itself"),
        ({"address": "x"}, "set by respkv.metrics itself"),
        ({"n": 5}, "value must be str"),
    ],
)
def test_bad_labels(labels: dict[str, object], text: str) -> None:
    with pytest.raises(ValueError, match=text):
        prometheus_text(ClientStats(), labels=labels)  # type: ignore[arg-type]


def test_label_values_are_escaped() -> None:
    text = prometheus_text(ClientStats(), labels={"who": 'a"b\\c\nd'})
    assert 'who="a\\"b\\\\c\\nd"' in text
    samples = _samples(text)
    assert all(("who", 'a"b\\c\nd') in ls for _, ls in samples)
