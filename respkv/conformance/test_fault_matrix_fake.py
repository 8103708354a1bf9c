"""Fault matrix, part 4: replies no real server sends, from a scripted fake server.

:class:`~respkv.testing.fakeserver.FakeServer` answers like a minimal server except where a
case scripts it: ``-LOADING`` on demand, integers past 64 bits, an endless line, replies
of the wrong type, an extra reply glued to a real one. The same four checks as every
matrix case (see :mod:`respkv.testing.faultcheck`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

import pytest

from respkv import ErrorKind, KeyStatus
from respkv.testing import faultcheck as _faultcheck
from respkv.testing.fakeserver import FakeServer, bulk
from respkv.testing.faultcheck import (
    OK,
    Open,
    Outcome,
    expect,
    finish,
    keyed_value,
    poisoned,
    recover,
    server_error,
)

PROMPT: Final = 10.0

#: Fixtures shared by the matrix modules (see respkv.testing.faultcheck).
opener = _faultcheck.opener


@pytest.fixture
def fake() -> Iterator[FakeServer]:
    with FakeServer() as server:
        yield server


def test_loading_fake_server(opener: Open, fake: FakeServer) -> None:
    loading = True
    fake.script = lambda cmd: (
        b"-LOADING Redis is loading the dataset in memory\r\n"
        if loading and cmd[0] in (b"SET", b"GET", b"EXISTS", b"UNLINK")
        else None
    )
    conn, opts = opener(fake.host, fake.port)
    expect(
        finish(conn, conn.submit_batch_set(["a", "b"], [b"1", b"2"]), PROMPT),
        [server_error("LOADING")] * 2,
        opts.address,
    )
    out = [poisoned(1)]
    g = finish(conn, conn.submit_batch_get(["a"], out), PROMPT)
    expect(g, [server_error("LOADING")], opts.address)
    assert out[0] == poisoned(1)
    loading = False
    recover(conn, "fake-loading")
    assert fake.data_connections == 1, "error replies never desynchronise the connection"


@pytest.mark.parametrize(
    "reply",
    [b":99999999999999999999", b":9223372036854775808", b":-9223372036854775809", b":12x"],
    ids=["20-digits", "int64-overflow", "int64-underflow", "not-a-number"],
)
@pytest.mark.parametrize("op", ["exists", "delete"])
def test_fake_bad_integer(opener: Open, fake: FakeServer, reply: bytes, op: str) -> None:
    """Issue 9, defect 11: the EXISTS/UNLINK path applies the integer limits."""
    armed = True

    def script(cmd: list[bytes]) -> bytes | None:
        return reply + b"\r\n" if armed and cmd[0] in (b"EXISTS", b"UNLINK") else None

    fake.script = script
    conn, opts = opener(fake.host, fake.port)
    submit = conn.submit_batch_exists if op == "exists" else conn.submit_batch_delete
    c = finish(conn, submit(["k"]), PROMPT)
    expect(c, [Outcome(KeyStatus.PROTOCOL_ERROR, ErrorKind.PROTOCOL_ERROR, in_flight=True)])
    armed = False
    recover(conn, f"fake-int-{op}")
    assert fake.data_connections == 2, "a protocol error drops the connection"
    del opts


@pytest.mark.connector_needs("strict_framing")
def test_fake_endless_integer_line(opener: Open, fake: FakeServer) -> None:
    """10 MB of ``:111...`` and no CRLF: a protocol error at the line limit, not 10 MB
    buffered (issue 9, defect 11)."""
    armed = True
    fake.script = lambda cmd: b":" + b"1" * (10 << 20) if armed and cmd[0] == b"EXISTS" else None
    conn, opts = opener(fake.host, fake.port, op_timeout=5.0)
    c = finish(conn, conn.submit_batch_exists(["k"]), PROMPT)
    expect(c, [Outcome(KeyStatus.PROTOCOL_ERROR, ErrorKind.PROTOCOL_ERROR, in_flight=True)])
    armed = False
    recover(conn, "fake-endless")
    del opts


@pytest.mark.connector_needs("reply_types")
def test_fake_unexpected_reply_types(opener: Open, fake: FakeServer) -> None:
    """Well-formed replies of the wrong type: UNEXPECTED_REPLY, described by the type byte
    and first line; the stream stays in sync."""
    scripted = {b"GET": b"+QUEUED\r\n", b"SET": b":5\r\n", b"EXISTS": b"$3\r\nabc\r\n"}
    armed = True
    fake.script = lambda cmd: scripted.get(cmd[0]) if armed else None
    conn, opts = opener(fake.host, fake.port)

    def unexpected(reply: str) -> Outcome:
        return Outcome(KeyStatus.SERVER_ERROR, ErrorKind.UNEXPECTED_REPLY)

    out = [poisoned(7)]
    g = finish(conn, conn.submit_batch_get(["k"], out), PROMPT)
    expect(g, [unexpected("+QUEUED")], opts.address)
    s = finish(conn, conn.submit_batch_set(["k"], [b"v"]), PROMPT)
    expect(s, [unexpected(":5")], opts.address)
    e = finish(conn, conn.submit_batch_exists(["k"]), PROMPT)
    expect(e, [unexpected("$3")], opts.address)
    replies = [c.failures[0].reply for c in (g, s, e) if c.failures[0] is not None]
    assert replies == ["+QUEUED", ":5", "$3"]
    assert out[0] == poisoned(7)
    armed = False
    recover(conn, "fake-types")


def test_fake_extra_reply_in_the_same_send(opener: Open, fake: FakeServer) -> None:
    """The server itself glues an unsolicited bulk to a GET's reply (one ``sendall``)."""
    intruder = keyed_value("m:intruder", 1000)
    fake.store.update({b"a": keyed_value("a", 1000), b"b": keyed_value("b", 1000)})
    armed = True

    def script(cmd: list[bytes]) -> bytes | None:
        nonlocal armed
        if armed and cmd[0] == b"GET" and cmd[1] == b"a":
            armed = False
            return bulk(fake.store[b"a"]) + bulk(intruder)
        return None

    fake.script = script
    conn, opts = opener(fake.host, fake.port)
    first = [poisoned(1000)]
    expect(finish(conn, conn.submit_batch_get(["a"], first), PROMPT), [OK], opts.address)
    assert bytes(first[0]) == keyed_value("a", 1000)
    second = [poisoned(1000)]
    expect(finish(conn, conn.submit_batch_get(["b"], second), PROMPT), [OK], opts.address)
    assert bytes(second[0]) == keyed_value("b", 1000), "WRONG DATA: the extra reply was used"
    assert fake.data_connections == 2, "bytes with nothing in flight drop the connection"
