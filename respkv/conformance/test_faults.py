"""Deadlines, broken connections, refused connections and close with work in flight,
driven by a fault-injecting proxy in front of the real server.

Failures are asserted as data (status, :class:`~respkv.ErrorKind`, numbers), never as
respkv's wording. The fault matrix (``test_fault_matrix_*.py``) goes much further."""

from __future__ import annotations

import errno
import time

import numpy as np

from respkv import Completion, ConnectionOptions, ErrorKind, KeyStatus
from respkv.testing import ConnectorFactory, wait_for
from respkv.testing.faultproxy import FaultProxy
from respkv.testing.servers import free_port


def _via(proxy: FaultProxy, options: ConnectionOptions, **kw: object) -> ConnectionOptions:
    return options.replace(host=proxy.host, port=proxy.port, num_workers=1, **kw)


def test_timeout_then_recovery(
    connector_factory: ConnectorFactory, redis_options: ConnectionOptions, fault_proxy: FaultProxy
) -> None:
    conn = connector_factory(_via(fault_proxy, redis_options, op_timeout=0.3))
    try:
        assert wait_for(conn, conn.submit_batch_set(["to:a"], [b"1"])).ok
        before = fault_proxy.accepted  # counted from here: a connector may have others
        fault_proxy.stall()
        c = wait_for(conn, conn.submit_batch_exists(["to:a", "to:b"]))
        assert c.statuses == (KeyStatus.TIMEOUT, KeyStatus.TIMEOUT)
        f = c.failures[0]
        assert f is not None and f.kind is ErrorKind.TIMED_OUT and f.timeout == 0.3
        fault_proxy.unstall()
        e = wait_for(conn, conn.submit_batch_exists(["to:a"]))
        assert e.statuses == (KeyStatus.OK,)
        assert fault_proxy.accepted > before, "a timed-out connection is dropped and replaced"
    finally:
        conn.close()


def test_cut_mid_value_fails_only_inflight_keys(
    connector_factory: ConnectorFactory, redis_options: ConnectionOptions, fault_proxy: FaultProxy
) -> None:
    size = 1 << 20
    vals = [np.full(size, i, dtype=np.uint8) for i in range(4)]
    keys = [f"cut:{i}" for i in range(4)]
    conn = connector_factory(_via(fault_proxy, redis_options, window_values=1))
    try:
        assert wait_for(conn, conn.submit_batch_set(keys, vals)).ok
        # Break the stream in the middle of the second value's payload.
        fault_proxy.cut_after(size + 64 + size // 2)
        out = [np.zeros(size, dtype=np.uint8) for _ in range(4)]
        c = wait_for(conn, conn.submit_batch_get(keys, out))
        assert c.statuses[0] is KeyStatus.OK
        assert c.statuses[1] is KeyStatus.IO_ERROR
        f = c.failures[1]
        assert f is not None and f.kind is ErrorKind.CONNECTION_LOST and f.in_flight
        # With one value in flight, the keys after it went over a new connection.
        assert c.statuses[2:] == (KeyStatus.OK, KeyStatus.OK)
        assert np.array_equal(out[0], vals[0]) and np.array_equal(out[3], vals[3])
        again = [np.zeros(size, dtype=np.uint8) for _ in range(4)]
        assert wait_for(conn, conn.submit_batch_get(keys, again)).ok
        for i, (a, b) in enumerate(zip(again, vals)):
            assert np.array_equal(a, b), f"key {keys[i]}: read back differs after the reconnect"
    finally:
        conn.close()


def test_server_reset_then_next_batch_reconnects(
    connector_factory: ConnectorFactory, redis_options: ConnectionOptions, fault_proxy: FaultProxy
) -> None:
    conn = connector_factory(_via(fault_proxy, redis_options))
    try:
        assert wait_for(conn, conn.submit_batch_set(["rs"], [b"v"])).ok
        before = fault_proxy.accepted  # counted from here: a connector may have others
        fault_proxy.reset_all()
        c = wait_for(conn, conn.submit_batch_exists(["rs"]))
        assert c.statuses == (KeyStatus.OK,), "an idle connection reset by the peer is replaced"
        assert fault_proxy.accepted > before, "the reset connection was replaced"
    finally:
        conn.close()


def test_connect_refused(connector_factory: ConnectorFactory) -> None:
    opts = ConnectionOptions(host="127.0.0.1", port=free_port(), num_workers=2, connect_timeout=2)
    conn = connector_factory(opts)
    try:
        c = wait_for(conn, conn.submit_batch_set(["a", "b", "c"], [b"1", b"2", b"3"]))
        assert c.statuses == (KeyStatus.IO_ERROR,) * 3
        for f in c.failures:
            assert f is not None and f.kind is ErrorKind.CONNECT_FAILED, f
            assert f.errno == errno.ECONNREFUSED and f.address == opts.address
            assert not f.in_flight
        c2 = wait_for(conn, conn.submit_batch_exists(["a"]))
        assert c2.statuses == (KeyStatus.IO_ERROR,)
    finally:
        conn.close()


def test_close_with_work_in_flight(
    connector_factory: ConnectorFactory, redis_options: ConnectionOptions, fault_proxy: FaultProxy
) -> None:
    """close() with batches on the wire and queued, to a server whose replies are held:
    nothing can finish, so every key ends CANCELLED (kind CLOSED), the keys whose
    requests had gone out say so (in_flight), and each batch completes exactly once."""
    conn = connector_factory(_via(fault_proxy, redis_options, op_timeout=60.0))
    size = 256 * 1024
    vals = [np.full(size, i, dtype=np.uint8) for i in range(40)]
    assert wait_for(conn, conn.submit_batch_exists(["cl:warm"])).statuses == (KeyStatus.MISS,)
    fault_proxy.stall()
    sent = fault_proxy.forwarded("requests")
    ids = [conn.submit_batch_set([f"cl:{j}:{i}" for i in range(10)], vals[j * 10 : j * 10 + 10])
           for j in range(4)]  # fmt: skip
    # Bounded wait until requests have reached the proxy: the first batch is in flight.
    deadline = time.monotonic() + 30
    while fault_proxy.forwarded("requests") == sent and time.monotonic() < deadline:
        time.sleep(0.005)
    assert fault_proxy.forwarded("requests") > sent, "no request was ever sent"
    conn.close()
    conn.close()
    seen: dict[int, Completion] = {}
    for c in conn.drain_completions():
        assert c.batch_id not in seen, f"batch {c.batch_id} completed twice"
        seen[c.batch_id] = c
    assert sorted(seen) == ids, "every batch completes exactly once, even when closed"
    in_flight = 0
    for bid, c in sorted(seen.items()):
        for i, (s, f) in enumerate(zip(c.statuses, c.failures)):
            where = f"batch {bid} key {i}"
            assert s is KeyStatus.CANCELLED, f"{where}: {s.name} {f} (nothing can finish)"
            assert f is not None and f.kind is ErrorKind.CLOSED, f"{where}: {f}"
            in_flight += f.in_flight
    assert in_flight > 0, "requests were on the wire, yet no key says it was in flight"
    assert conn.drain_completions() == []
