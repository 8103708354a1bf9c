"""The matrix's own tools, checked with raw sockets: a fault that does not happen where
the proxy says it does would make every matrix case meaningless.

Not parametrized by backend: no connector is involved.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from respkv import ConnectionOptions
from respkv.testing.fakeserver import CLOSE, SILENT, FakeServer
from respkv.testing.faultcheck import POISON, keyed_value, poisoned
from respkv.testing.faultproxy import FaultProxy

GET_K = b"*2\r\n$3\r\nGET\r\n$4\r\ntool\r\n"
SET_K = b"*3\r\n$3\r\nSET\r\n$4\r\ntool\r\n$5\r\nhello\r\n"
REPLY = b"$5\r\nhello\r\n"


@pytest.fixture
def client(fault_proxy: FaultProxy, redis_options: ConnectionOptions) -> Iterator[socket.socket]:
    s = socket.create_connection((fault_proxy.host, fault_proxy.port), timeout=5)
    s.sendall(SET_K)
    assert _read(s, 5) == b"+OK\r\n"
    yield s
    s.close()


def _read(s: socket.socket, n: int) -> bytes:
    """Exactly ``n`` bytes, or fewer if the connection ends; OSError on a reset."""
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def test_cut_replies_with_reset(client: socket.socket, fault_proxy: FaultProxy) -> None:
    fault_proxy.cut_after(6)
    client.sendall(GET_K)
    assert _read(client, 6) == REPLY[:6]
    with pytest.raises(ConnectionResetError):
        client.recv(100)


def test_cut_replies_with_orderly_close(client: socket.socket, fault_proxy: FaultProxy) -> None:
    fault_proxy.cut_after(3, how="close")
    client.sendall(GET_K)
    assert _read(client, 100) == REPLY[:3]  # then EOF, not a reset


def test_cut_requests_stops_the_request(
    client: socket.socket, fault_proxy: FaultProxy, redis_options: ConnectionOptions
) -> None:
    fault_proxy.cut_after(10, "requests")
    client.sendall(b"*3\r\n$3\r\nSET\r\n$5\r\ntool2\r\n$1\r\nx\r\n")
    with pytest.raises(ConnectionResetError):
        client.recv(1)
    with socket.create_connection((redis_options.host, redis_options.port), timeout=5) as s:
        s.sendall(b"*2\r\n$6\r\nEXISTS\r\n$5\r\ntool2\r\n")
        assert _read(s, 4) == b":0\r\n"


def test_stall_then_unstall_in_order(client: socket.socket, fault_proxy: FaultProxy) -> None:
    fault_proxy.stall()
    client.sendall(GET_K + GET_K)
    client.settimeout(0.2)
    with pytest.raises(TimeoutError):
        client.recv(1)
    client.settimeout(5)
    fault_proxy.unstall()
    assert _read(client, 2 * len(REPLY)) == REPLY * 2


def test_stall_after_holds_the_rest(client: socket.socket, fault_proxy: FaultProxy) -> None:
    fault_proxy.stall_after(4)
    client.sendall(GET_K)
    assert _read(client, 4) == REPLY[:4]
    client.settimeout(0.2)
    with pytest.raises(TimeoutError):
        client.recv(1)
    client.settimeout(5)
    fault_proxy.unstall()
    assert _read(client, len(REPLY) - 4) == REPLY[4:]


def test_stall_requests(client: socket.socket, fault_proxy: FaultProxy) -> None:
    fault_proxy.stall("requests")
    client.sendall(GET_K)
    client.settimeout(0.2)
    with pytest.raises(TimeoutError):
        client.recv(1)
    client.settimeout(5)
    fault_proxy.unstall("requests")
    assert _read(client, len(REPLY)) == REPLY


def test_inject_after_goes_out_with_the_reply(
    client: socket.socket, fault_proxy: FaultProxy
) -> None:
    fault_proxy.inject_after(len(REPLY), b":7\r\n")
    client.sendall(GET_K)
    # One recv gets both: they were sent together (same segment on loopback).
    assert _read(client, len(REPLY) + 4) == REPLY + b":7\r\n"


def test_inject_now_and_corrupt_at(client: socket.socket, fault_proxy: FaultProxy) -> None:
    fault_proxy.inject_now(b"+HI\r\n")
    assert _read(client, 5) == b"+HI\r\n"
    fault_proxy.corrupt_at(1, b"9")
    client.sendall(GET_K)
    assert _read(client, len(REPLY)) == b"$9" + REPLY[2:]


def test_trickle_keeps_bytes_in_order(client: socket.socket, fault_proxy: FaultProxy) -> None:
    fault_proxy.trickle()
    client.sendall(GET_K * 3)
    assert _read(client, 3 * len(REPLY)) == REPLY * 3
    fault_proxy.trickle(on=False)


def test_refuse_then_allow_on_the_same_port(fault_proxy: FaultProxy) -> None:
    fault_proxy.refuse()
    assert not fault_proxy.listening
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((fault_proxy.host, fault_proxy.port), timeout=2)
    fault_proxy.allow()
    with socket.create_connection((fault_proxy.host, fault_proxy.port), timeout=2) as s:
        s.sendall(b"*1\r\n$4\r\nPING\r\n")
        assert _read(s, 7) == b"+PONG\r\n"
    assert fault_proxy.accepted == 1


def test_reset_all(client: socket.socket, fault_proxy: FaultProxy) -> None:
    fault_proxy.reset_all()
    with pytest.raises(ConnectionResetError):
        client.recv(1)
    assert fault_proxy.open_connections == 0


def test_fake_server_default_and_script() -> None:
    replies = {b"GET": b"+QUEUED\r\n", b"EXISTS": SILENT, b"UNLINK": CLOSE}
    with FakeServer() as fake:
        with socket.create_connection((fake.host, fake.port), timeout=5) as s:
            s.sendall(SET_K + GET_K + b"*2\r\n$6\r\nEXISTS\r\n$4\r\ntool\r\n")
            assert _read(s, 5 + len(REPLY) + 4) == b"+OK\r\n" + REPLY + b":1\r\n"
            fake.script = lambda cmd: replies.get(cmd[0])
            s.sendall(GET_K + b"*2\r\n$6\r\nEXISTS\r\n$1\r\nk\r\n" + GET_K)
            assert _read(s, 18) == b"+QUEUED\r\n" * 2
            s.sendall(b"*2\r\n$6\r\nUNLINK\r\n$1\r\nk\r\n")
            assert _read(s, 1) == b""
        assert fake.count(b"GET") == 3 and fake.connections == 1


def test_keyed_values_and_poison() -> None:
    a, b = keyed_value("k1", 4096), keyed_value("k2", 4096)
    assert a != b and len(a) == 4096 and a == keyed_value(b"k1", 4096)
    assert keyed_value("k1", 4095) != a[:4095], "the length is part of the value"
    assert b"\r" not in a and b"\n" not in a and POISON not in a
    assert poisoned(3) == bytes([POISON]) * 3
