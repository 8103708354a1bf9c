"""Pure engine: batch deadlines and cancel are met whatever a worker is doing.

The pure worker opens connections as phases of its ``selectors`` loop (TCP connect, TLS
handshake, AUTH/SELECT/CLIENT SETNAME), so a batch deadline or a cancel ends a batch
promptly even while its connection is still being made, well before
``connect_timeout``. These tests hold each phase open on purpose: a scripted server
that never answers the handshake, a listening socket that never accepts (a TLS
handshake that never starts), a server that goes silent in the middle of a pipeline.
They also check the dropping rule's records: which keys had their request written
(``in_flight``) and that keys of *another* batch in flight on a dropped connection end
ABORTED.

The conformance suite checks the same contract through a proxy in front of a real
server; these are the pure engine's own phases.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Final

import pytest

from respkv import ConnectionOptions, ErrorKind, KeyStatus, TLSOptions
from respkv._pyengine import PyConnector
from respkv.testing import wait_for
from respkv.testing.fakeserver import SILENT, FakeServer

#: A connect_timeout far longer than any wait below: a batch that completes within
#: WAIT did not wait for it.
SLOW_CONNECT: Final = 60.0
#: Bound on every wait of these tests.
WAIT: Final = 10.0
#: The batch deadline used (short: the tests wait for it to pass).
DEADLINE: Final = 0.3


class Gate:
    """A script for FakeServer: answers normally until ``close()``d, then silent (the
    server stops answering anything on any connection) until ``open()``ed."""

    def __init__(self, closed: bool = False, close_on: bytes | None = None) -> None:
        self._closed = threading.Event()
        if closed:
            self._closed.set()
        self.close_on = close_on

    def close(self) -> None:
        self._closed.set()

    def open(self) -> None:
        self._closed.clear()
        self.close_on = None

    def __call__(self, command: list[bytes]) -> bytes | None:
        if self.close_on is not None and command[1:2] == [self.close_on]:
            self._closed.set()
        return SILENT if self._closed.is_set() else None


def options_for(server: FakeServer | socket.socket, **kw: object) -> ConnectionOptions:
    port = server.port if isinstance(server, FakeServer) else server.getsockname()[1]
    base = ConnectionOptions(
        host="127.0.0.1", port=port, num_workers=1, connect_timeout=SLOW_CONNECT
    )
    return base.replace(**kw)


@pytest.fixture
def silent_server() -> Iterator[FakeServer]:
    """A server that accepts and never answers (the handshake hangs)."""
    with FakeServer(Gate(closed=True)) as server:
        yield server


def test_deadline_while_the_handshake_is_unanswered(silent_server: FakeServer) -> None:
    conn = PyConnector(options_for(silent_server))
    try:
        c = wait_for(conn, conn.submit_batch_exists(["a", "b"], timeout=DEADLINE), WAIT)
        assert c.statuses == (KeyStatus.TIMEOUT, KeyStatus.TIMEOUT)
        for f in c.failures:
            assert f is not None and f.kind is ErrorKind.DEADLINE and f.timeout == DEADLINE
            assert not f.in_flight, "no request was written: the handshake never ended"
    finally:
        conn.close()


def test_cancel_and_close_while_connecting(silent_server: FakeServer) -> None:
    conn = PyConnector(options_for(silent_server, num_workers=2))
    try:
        first = conn.submit_batch_exists(["a", "b", "c"])
        assert conn.cancel(first)
        c = wait_for(conn, first, WAIT)
        assert c.statuses == (KeyStatus.CANCELLED,) * 3
        assert {f.kind for f in c.failures if f is not None} == {ErrorKind.CANCELLED}
        assert not conn.cancel(first), "a completed batch cannot be cancelled"
        assert not conn.cancel(10_000), "an unknown batch cannot be cancelled"
        second = conn.submit_batch_exists(["d"])
    finally:
        closer = threading.Thread(target=conn.close)
        closer.start()
        closer.join(WAIT)
        assert not closer.is_alive(), "close() waited for connect_timeout"
    (done,) = conn.drain_completions()
    assert done.batch_id == second and done.statuses == (KeyStatus.CANCELLED,)
    assert done.failures[0] is not None and done.failures[0].kind is ErrorKind.CLOSED


def test_deadline_while_the_tls_handshake_hangs() -> None:
    """A listener that never accepts: TCP completes in its backlog, the TLS handshake
    never gets an answer."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        tls = TLSOptions(verify=False)
        conn = PyConnector(options_for(listener, tls=tls))
        try:
            c = wait_for(conn, conn.submit_batch_get(["k"], [bytearray(3)], timeout=DEADLINE), WAIT)
            assert c.statuses == (KeyStatus.TIMEOUT,)
            assert c.failures[0] is not None and c.failures[0].kind is ErrorKind.DEADLINE
        finally:
            conn.close()


def test_cancel_drops_the_connection_and_aborts_the_other_batch_in_flight() -> None:
    """Batch A's GET and batch B's EXISTS are in flight on one connection when the
    server goes silent; cancelling A drops the connection: A's key ends CANCELLED and
    B's ABORTED, both with their requests written. The worker then reconnects."""
    gate = Gate(close_on=b"slow")
    with FakeServer(gate) as server:
        server.store[b"slow"] = b"xyz"
        conn = PyConnector(options_for(server))
        try:
            warm = wait_for(conn, conn.submit_batch_exists(["warm"]), WAIT)
            assert warm.statuses == (KeyStatus.MISS,)
            a = conn.submit_batch_get(["slow"], [bytearray(3)])
            b = conn.submit_batch_exists(["other"])
            _until_received(server, b"EXISTS", 2)
            assert conn.cancel(a)
            ca, cb = wait_for(conn, a, WAIT), wait_for(conn, b, WAIT)
            assert ca.statuses == (KeyStatus.CANCELLED,) and cb.statuses == (KeyStatus.IO_ERROR,)
            fa, fb = ca.failures[0], cb.failures[0]
            assert fa is not None and fa.kind is ErrorKind.CANCELLED and fa.in_flight
            assert fb is not None and fb.kind is ErrorKind.ABORTED and fb.in_flight
            gate.open()
            out = [bytearray(3)]
            c = wait_for(conn, conn.submit_batch_get(["slow"], out), WAIT)
            assert c.ok and out[0] == b"xyz"
            assert server.connections == 2, "the cancelled batch's connection was replaced"
        finally:
            conn.close()


def test_deadline_tells_written_requests_from_unsent_ones() -> None:
    """With one request in flight at a time (``window_small=1``) and a silent server,
    the deadline finds the first key written and the others never sent."""
    with FakeServer(Gate(close_on=b"k0")) as server:
        conn = PyConnector(options_for(server, window_small=1))
        try:
            keys = ["k0", "k1", "k2"]
            c = wait_for(conn, conn.submit_batch_exists(keys, timeout=DEADLINE), WAIT)
            assert c.statuses == (KeyStatus.TIMEOUT,) * 3
            assert [f.in_flight for f in c.failures if f is not None] == [True, False, False]
        finally:
            conn.close()


def _until_received(server: FakeServer, name: bytes, count: int) -> None:
    """Wait (bounded) until the server has received ``count`` commands ``name``."""
    stop = threading.Event()
    for _ in range(int(WAIT / 0.01)):
        if server.count(name) >= count:
            return
        stop.wait(0.01)  # a bounded poll of the server's own record
    raise AssertionError(f"the server never received {count} {name!r}")
