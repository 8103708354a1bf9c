"""Fault matrix, part 1: the network, through a fault-injecting proxy.

Every case drives one connector (``connector_factory``: both backends) through
:class:`~respkv.testing.faultproxy.FaultProxy` in front of the session's real server, with one
worker so that byte offsets name exact phases of the exchange, and asserts the four
things :mod:`respkv.testing.faultcheck` describes: no GET reported OK unless the buffer holds
exactly that key's bytes (buffers poisoned first, values derived from their keys), each
key's status and failure kind, a bounded time, and recovery by the same connector.

A fault is armed only after a first exchange on the connection (:func:`_warm`), so the
handshake's bytes (``CLIENT SETNAME``) are behind it and offsets count from the batch.
With ``window_values=1`` and values of at least ``LARGE_VALUE_BYTES`` only one value is
in flight at a time: a cut inside key 1's exchange fails key 1 alone, and keys 2 and 3
go over a new connection.
"""

from __future__ import annotations

import errno
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Final

import pytest

from respkv import ConnectionOptions, Connector, ErrorKind, KeyStatus
from respkv._admin import AdminConnection
from respkv.testing import ConnectorFactory
from respkv.testing import faultcheck as _faultcheck
from respkv.testing.faultcheck import (
    MATRIX_OPTIONS,
    MISS,
    OK,
    Outcome,
    check_hits,
    expect,
    finish,
    keyed_value,
    poisoned,
    recover,
)
from respkv.testing.faultproxy import FaultProxy
from respkv.testing.servers import LocalServer

#: At least LARGE_VALUE_BYTES (256 KiB), so each value counts against window_values.
BIG: Final = 300_000
#: A batch that should end at once, bounded: past this it is a hang.
PROMPT: Final = 10.0
#: A reset reaches the client as ECONNRESET on a read, EPIPE on a write.
RESET_ERRNOS: Final = frozenset({errno.ECONNRESET, errno.EPIPE})
#: An orderly close (FIN) is errno 0.
FIN_ERRNOS: Final = frozenset({0})

Open = Callable[..., tuple[Connector, ConnectionOptions]]

#: One server for this module's cases (see respkv.testing.faultcheck).
matrix_server = _faultcheck.matrix_server


def lost(errnos: frozenset[int] = RESET_ERRNOS) -> Outcome:
    return Outcome(KeyStatus.IO_ERROR, ErrorKind.CONNECTION_LOST, in_flight=True, errnos=errnos)


def bulk_len(n: int) -> int:
    """Bytes of a bulk reply of ``n`` bytes: ``$<n>\\r\\n`` + payload + CRLF."""
    return len(b"$%d\r\n" % n) + n + 2


def get_request_len(key: str) -> int:
    k = key.encode()
    return len(b"*2\r\n$3\r\nGET\r\n$%d\r\n%b\r\n" % (len(k), k))


def set_header_len(key: str, n: int) -> int:
    k = key.encode()
    return len(b"*3\r\n$3\r\nSET\r\n$%d\r\n%b\r\n$%d\r\n" % (len(k), k, n))


def bulk(value: bytes) -> bytes:
    return b"$%d\r\n%b\r\n" % (len(value), value)


@pytest.fixture
def server_options(matrix_server: LocalServer) -> ConnectionOptions:
    """The module's server, flushed: every case starts from an empty keyspace."""
    options = ConnectionOptions(host=matrix_server.host, port=matrix_server.port)
    with AdminConnection(options) as a:
        a.command("FLUSHALL")
    return options


@pytest.fixture
def fault_proxy(server_options: ConnectionOptions) -> Iterator[FaultProxy]:
    with FaultProxy(server_options.host, server_options.port) as proxy:
        yield proxy


@pytest.fixture
def proxied(
    connector_factory: ConnectorFactory, server_options: ConnectionOptions, fault_proxy: FaultProxy
) -> Iterator[Open]:
    """Open a connector through the proxy: one worker, short timeouts and backoff."""
    opened: list[Connector] = []

    def open_(**kw: Any) -> tuple[Connector, ConnectionOptions]:
        opts = server_options.replace(
            host=fault_proxy.host, port=fault_proxy.port, **(MATRIX_OPTIONS | kw)
        )
        conn = connector_factory(opts)
        opened.append(conn)
        return conn, opts

    yield open_
    for conn in opened:
        conn.close()


@pytest.fixture
def admin(server_options: ConnectionOptions) -> Iterator[AdminConnection]:
    """A plain connection straight to the server (not through the proxy)."""
    with AdminConnection(server_options) as a:
        yield a


def _replaced(proxy: FaultProxy, before: int) -> bool:
    """Whether a new connection was made since ``before`` (``accepted`` then). Counted
    from a point after setup, since a connector may keep other connections of its own
    (the cluster router's discovery connection)."""
    return proxy.accepted > before


def _warm(conn: Connector) -> None:
    """One exchange, so that the connection (and its handshake) is behind us."""
    c = finish(conn, conn.submit_batch_exists(["m:warm"]), PROMPT)
    assert c.statuses == (KeyStatus.MISS,), c.failures


def _store(conn: Connector, keys: list[str], size: int) -> list[bytes]:
    values = [keyed_value(k, size) for k in keys]
    c = finish(conn, conn.submit_batch_set(keys, values), PROMPT)
    assert c.statuses == (KeyStatus.OK,) * len(keys), c.failures
    return values


def _same_after(buffers: list[bytearray], action: Callable[[], None]) -> None:
    """The buffer rule: after a completion, nothing writes into its buffers."""
    before = [bytes(b) for b in buffers]
    action()
    assert [bytes(b) for b in buffers] == before, "a buffer was written after its completion"


# -- cuts at every phase ---------------------------------------------------------------


@pytest.mark.parametrize("phase", ["request-header", "payload", "reply"])
def test_set_cut(
    proxied: Open, fault_proxy: FaultProxy, admin: AdminConnection, phase: str
) -> None:
    """SET of 4 large values, the connection cut inside key 1's exchange."""
    conn, opts = proxied(window_values=1)
    keys = [f"m:setcut:{phase}:{i}" for i in range(4)]
    values = [keyed_value(k, BIG) for k in keys]
    _warm(conn)
    request0 = set_header_len(keys[0], BIG) + BIG + 2
    if phase == "request-header":
        fault_proxy.cut_after(request0 + 10, "requests")
    elif phase == "payload":
        fault_proxy.cut_after(request0 + set_header_len(keys[1], BIG) + BIG // 2, "requests")
    else:
        fault_proxy.cut_after(len(b"+OK\r\n") + 2, "replies")  # inside key 1's +OK
    c = finish(conn, conn.submit_batch_set(keys, values), PROMPT)
    expect(c, [OK, lost(), OK, OK], opts.address)
    failure = c.failures[1]
    assert failure is not None and failure.outcome_unknown, "a cut SET has an unknown outcome"
    stored = admin.command("GET", keys[1])
    if phase == "reply":
        assert stored == values[1], "the server applied the SET whose reply was cut"
    else:
        assert stored is None, "a partly received SET was applied"
    for k, v in zip(keys, values):
        if k != keys[1]:
            assert admin.command("GET", k) == v
    recover(conn, f"setcut-{phase}")


@pytest.mark.parametrize(
    "phase", ["request", "reply-header", "payload", "final-crlf", "payload-orderly-close"]
)
def test_get_cut(proxied: Open, fault_proxy: FaultProxy, phase: str) -> None:
    """GET of 4 large values, the connection cut inside key 1's exchange."""
    conn, opts = proxied(window_values=1)
    keys = [f"m:getcut:{phase}:{i}" for i in range(4)]
    _store(conn, keys, BIG)
    header = len(b"$%d\r\n" % BIG)
    reply0 = bulk_len(BIG)
    how = "reset"
    if phase == "request":
        fault_proxy.cut_after(get_request_len(keys[0]) + 5, "requests")
    elif phase == "reply-header":
        fault_proxy.cut_after(reply0 + 3)
    elif phase == "payload":
        fault_proxy.cut_after(reply0 + header + BIG // 2)
    elif phase == "final-crlf":
        fault_proxy.cut_after(2 * reply0 - 1)
    else:
        how = "close"
        fault_proxy.cut_after(reply0 + header + BIG // 2, how="close")
    out = [poisoned(BIG) for _ in keys]
    c = finish(conn, conn.submit_batch_get(keys, out), PROMPT)
    expect(c, [OK, lost(FIN_ERRNOS if how == "close" else RESET_ERRNOS), OK, OK], opts.address)
    assert check_hits(c, keys, out) == 3
    _same_after(out, lambda: recover(conn, f"getcut-{phase}"))


def test_get_cut_at_every_offset(proxied: Open, fault_proxy: FaultProxy) -> None:
    """Two pipelined GET replies cut after each of their bytes: a key is OK exactly when
    its whole reply got through, and then holds its own bytes."""
    conn, opts = proxied()
    keys = ["m:sweep:0", "m:sweep:1"]
    _store(conn, keys, 16)
    reply = bulk_len(16)
    for offset in range(2 * reply):
        _warm(conn)
        fault_proxy.cut_after(offset)
        out = [poisoned(16), poisoned(16)]
        c = finish(conn, conn.submit_batch_get(keys, out), PROMPT)
        expect(c, [OK if offset >= reply else lost(), lost()], opts.address)
        check_hits(c, keys, out)
    recover(conn, "sweep")


def test_set_cut_at_every_offset(
    proxied: Open, fault_proxy: FaultProxy, admin: AdminConnection
) -> None:
    """Two pipelined SET requests cut after each of their bytes: a request that did not
    get through whole is never applied; an OK SET is stored."""
    conn, opts = proxied()
    keys = ["m:setsweep:0", "m:setsweep:1"]
    values = [keyed_value(k, 16) for k in keys]
    first = set_header_len(keys[0], 16) + 18
    total = first + set_header_len(keys[1], 16) + 18
    for offset in range(total):
        admin.command("DEL", *keys)
        _warm(conn)
        fault_proxy.cut_after(offset, "requests")
        c = finish(conn, conn.submit_batch_set(keys, values), PROMPT)
        if offset < first:
            expect(c, [lost(), lost()], opts.address)
            assert admin.command("EXISTS", keys[0]) == 0, f"partial SET applied (cut at {offset})"
        else:
            # Key 0 went through whole: its reply may or may not have come back first.
            (OK if c.statuses[0] is KeyStatus.OK else lost()).check(0, c, opts.address)
            lost().check(1, c, opts.address)
            if c.statuses[0] is KeyStatus.OK:
                assert admin.command("GET", keys[0]) == values[0]
        assert admin.command("EXISTS", keys[1]) == 0, f"partial SET applied (cut at {offset})"
    recover(conn, "setsweep")


# -- trickles --------------------------------------------------------------------------


@pytest.mark.parametrize("direction", ["replies", "requests", "both"])
def test_trickle_one_byte_per_send(proxied: Open, fault_proxy: FaultProxy, direction: str) -> None:
    """Every split of every request and reply: all exact."""
    conn, opts = proxied()
    keys = [f"m:trickle:{direction}:{i}" for i in range(3)]
    size = 1500
    fault_proxy.trickle(None if direction == "both" else direction)  # type: ignore[arg-type]
    _store(conn, keys, size)
    before = fault_proxy.accepted
    out = [poisoned(size) for _ in keys]
    g = finish(conn, conn.submit_batch_get(keys, out), 60)
    expect(g, [OK] * 3, opts.address)
    assert check_hits(g, keys, out) == 3
    e = finish(conn, conn.submit_batch_exists([*keys, "m:trickle:none"]), 30)
    expect(e, [OK, OK, OK, MISS], opts.address)
    d = finish(conn, conn.submit_batch_delete([keys[0], "m:trickle:none"]), 30)
    expect(d, [OK, MISS], opts.address)
    fault_proxy.trickle(on=False)
    assert fault_proxy.accepted == before, "a trickled stream must not be dropped"
    recover(conn, f"trickle-{direction}")


# -- stalls, deadlines, cancel, close --------------------------------------------------


@pytest.mark.parametrize("direction", ["replies", "requests"])
def test_stall_past_op_timeout(proxied: Open, fault_proxy: FaultProxy, direction: str) -> None:
    conn, opts = proxied(op_timeout=0.5)
    keys = [f"m:stall:{direction}:{i}" for i in range(2)]
    _store(conn, keys, 1000)
    before = fault_proxy.accepted
    fault_proxy.stall(direction)  # type: ignore[arg-type]
    out = [poisoned(1000), poisoned(1000)]
    c = finish(conn, conn.submit_batch_get(keys, out), PROMPT)
    timed_out = Outcome(KeyStatus.TIMEOUT, ErrorKind.TIMED_OUT, in_flight=True, timeout=0.5)
    expect(c, [timed_out, timed_out], opts.address)

    def release_and_recover() -> None:
        fault_proxy.unstall()
        recover(conn, f"stall-{direction}")

    _same_after(out, release_and_recover)
    assert _replaced(fault_proxy, before), "a timed-out connection is dropped and replaced"


@pytest.mark.parametrize("where", ["before-reply", "mid-payload"])
def test_batch_deadline_while_stalled(proxied: Open, fault_proxy: FaultProxy, where: str) -> None:
    """A batch ``timeout=`` shorter than op_timeout: the completion comes at the
    deadline, not before and not much later, and no byte lands in the buffers after."""
    conn, opts = proxied(op_timeout=5.0, window_values=1)
    keys = [f"m:deadline:{where}:{i}" for i in range(3)]
    _store(conn, keys, BIG)
    if where == "before-reply":
        fault_proxy.stall()
    else:
        fault_proxy.stall_after(len(b"$%d\r\n" % BIG) + BIG // 2)
    out = [poisoned(BIG) for _ in keys]
    start = time.monotonic()
    c = finish(conn, conn.submit_batch_get(keys, out, timeout=0.3), PROMPT)
    elapsed = time.monotonic() - start
    assert elapsed >= 0.3, f"deadline reported early ({elapsed:.3f} s)"
    assert elapsed < 3.0, f"deadline of 0.3 s reported after {elapsed:.1f} s"
    sent = Outcome(KeyStatus.TIMEOUT, ErrorKind.DEADLINE, in_flight=True, timeout=0.3)
    unsent = Outcome(KeyStatus.TIMEOUT, ErrorKind.DEADLINE, in_flight=False, timeout=0.3)
    expect(c, [sent, unsent, unsent], opts.address)

    def release_and_recover() -> None:
        fault_proxy.unstall()
        recover(conn, f"deadline-{where}")

    _same_after(out, release_and_recover)


def test_cancel_while_stalled(proxied: Open, fault_proxy: FaultProxy) -> None:
    conn, opts = proxied(op_timeout=5.0, window_values=1)
    keys = [f"m:cancel:{i}" for i in range(2)]
    _store(conn, keys, BIG)
    fault_proxy.stall()
    out = [poisoned(BIG) for _ in keys]
    sent = fault_proxy.forwarded("requests")
    bid = conn.submit_batch_get(keys, out)
    # Bounded wait until the first request has reached the proxy: it is in flight.
    deadline = time.monotonic() + PROMPT
    while fault_proxy.forwarded("requests") == sent and time.monotonic() < deadline:
        time.sleep(0.005)
    assert conn.cancel(bid) is True
    c = finish(conn, bid, 2.0)
    expect(
        c,
        [
            Outcome(KeyStatus.CANCELLED, ErrorKind.CANCELLED, in_flight=True),
            Outcome(KeyStatus.CANCELLED, ErrorKind.CANCELLED, in_flight=False),
        ],
        opts.address,
    )
    assert conn.cancel(bid) is False, "cancel of a completed batch"
    assert conn.cancel(bid + 1000) is False, "cancel of an unknown batch"

    def release_and_recover() -> None:
        fault_proxy.unstall()
        recover(conn, "cancel")

    _same_after(out, release_and_recover)


def test_close_while_stalled(proxied: Open, fault_proxy: FaultProxy) -> None:
    conn, opts = proxied(op_timeout=5.0)
    keys = ["m:close:0"]
    _store(conn, keys, 1000)
    fault_proxy.stall()
    out = [poisoned(1000)]
    bid = conn.submit_batch_get(keys, out)
    closer = threading.Thread(target=conn.close)
    closer.start()
    closer.join(PROMPT)
    assert not closer.is_alive(), "close() hangs with a batch in flight"
    done = {c.batch_id: c for c in conn.drain_completions()}
    assert list(done) == [bid], "close() completes every batch, once"
    expect(done[bid], [Outcome(KeyStatus.CANCELLED, ErrorKind.CLOSED)], opts.address)
    _same_after(out, fault_proxy.unstall)


# -- resets and refusals ---------------------------------------------------------------


def test_reset_in_flight(proxied: Open, fault_proxy: FaultProxy) -> None:
    conn, opts = proxied(op_timeout=5.0)
    keys = [f"m:reset:{i}" for i in range(2)]
    _store(conn, keys, 1000)
    fault_proxy.stall()
    before = fault_proxy.forwarded("requests")
    want = before + sum(get_request_len(k) for k in keys)
    out = [poisoned(1000), poisoned(1000)]
    bid = conn.submit_batch_get(keys, out)
    deadline = time.monotonic() + PROMPT
    while fault_proxy.forwarded("requests") < want and time.monotonic() < deadline:
        time.sleep(0.005)
    fault_proxy.reset_all()
    c = finish(conn, bid, PROMPT)
    expect(c, [lost(), lost()], opts.address)
    fault_proxy.unstall()
    _same_after(out, lambda: recover(conn, "reset"))


def test_reset_while_idle(proxied: Open, fault_proxy: FaultProxy) -> None:
    conn, opts = proxied()
    keys = ["m:idle-reset"]
    _store(conn, keys, 1000)
    before = fault_proxy.accepted
    fault_proxy.reset_all()
    out = [poisoned(1000)]
    c = finish(conn, conn.submit_batch_get(keys, out), PROMPT)
    expect(c, [OK], opts.address)
    assert check_hits(c, keys, out) == 1
    assert _replaced(fault_proxy, before), "an idle connection reset by the peer is replaced"


@pytest.mark.parametrize("how", ["until-allowed", "for-a-while"])
def test_refused_connections(
    proxied: Open, fault_proxy: FaultProxy, admin: AdminConnection, how: str
) -> None:
    conn, opts = proxied()
    keys = [f"m:refused:{how}:{i}" for i in range(2)]
    _warm(conn)
    fault_proxy.refuse(None if how == "until-allowed" else 0.5)
    fault_proxy.reset_all()
    c = finish(conn, conn.submit_batch_set(keys, [b"a", b"b"]), PROMPT)
    refused = Outcome(
        KeyStatus.IO_ERROR,
        ErrorKind.CONNECT_FAILED,
        in_flight=False,
        errnos=frozenset({errno.ECONNREFUSED}),
    )
    expect(c, [refused, refused], opts.address)
    assert admin.command("EXISTS", *keys) == 0, "keys that were never sent are not stored"
    if how == "until-allowed":
        fault_proxy.allow()
    deadline = time.monotonic() + PROMPT
    while not fault_proxy.listening and time.monotonic() < deadline:
        time.sleep(0.01)
    recover(conn, f"refused-{how}")


# -- unsolicited bytes -----------------------------------------------------------------


def test_extra_reply_in_the_same_segment(proxied: Open, fault_proxy: FaultProxy) -> None:
    """An unsolicited bulk glued to the end of a GET's reply must never become the
    next key's value (issue 9, defect 1): the connection is dropped as out of sync."""
    conn, opts = proxied()
    keys = ["m:extra:a", "m:extra:b"]
    _store(conn, keys, 1000)
    before = fault_proxy.accepted
    fault_proxy.inject_after(bulk_len(1000), bulk(keyed_value("m:intruder", 1000)))
    first = [poisoned(1000)]
    a = finish(conn, conn.submit_batch_get(keys[:1], first), PROMPT)
    expect(a, [OK], opts.address)
    assert check_hits(a, keys[:1], first) == 1
    second = [poisoned(1000)]
    b = finish(conn, conn.submit_batch_get(keys[1:], second), PROMPT)
    expect(b, [OK], opts.address)
    assert check_hits(b, keys[1:], second) == 1
    assert _replaced(fault_proxy, before), "bytes with nothing in flight drop the connection"


def test_unsolicited_reply_while_idle(proxied: Open, fault_proxy: FaultProxy) -> None:
    conn, opts = proxied()
    keys = ["m:unsolicited"]
    _store(conn, keys, 1000)
    before = fault_proxy.accepted
    fault_proxy.inject_now(bulk(keyed_value("m:intruder", 1000)))
    out = [poisoned(1000)]
    c = finish(conn, conn.submit_batch_get(keys, out), PROMPT)
    expect(c, [OK], opts.address)
    assert check_hits(c, keys, out) == 1
    assert _replaced(fault_proxy, before), "bytes with nothing in flight drop the connection"


def test_extra_integer_after_exists(proxied: Open, fault_proxy: FaultProxy) -> None:
    """An extra ``:1`` after an EXISTS reply must not answer the next EXISTS."""
    conn, opts = proxied()
    _store(conn, ["m:present"], 10)
    before = fault_proxy.accepted
    fault_proxy.inject_after(len(b":1\r\n"), b":1\r\n")
    expect(finish(conn, conn.submit_batch_exists(["m:present"]), PROMPT), [OK], opts.address)
    expect(finish(conn, conn.submit_batch_exists(["m:absent"]), PROMPT), [MISS], opts.address)
    assert _replaced(fault_proxy, before), "bytes with nothing in flight drop the connection"


# -- corrupted lengths -----------------------------------------------------------------


@pytest.mark.parametrize(
    "how",
    [
        "not-a-digit",
        # The CRLF is then not where the length says: only a parser that checks it sees it.
        pytest.param("shorter", marks=pytest.mark.connector_needs("strict_framing")),
        "longer",
    ],
)
def test_corrupt_bulk_length(proxied: Open, fault_proxy: FaultProxy, how: str) -> None:
    """``$1009`` made ``$x009`` or ``$1000`` is a protocol error (the CRLF is not where the
    length says); ``$1000`` made ``$1001`` waits for a byte that never comes."""
    conn, opts = proxied(op_timeout=0.5)
    size = 1009 if how == "shorter" else 1000
    keys = [f"m:corrupt:{how}"]
    _store(conn, keys, size)
    before = fault_proxy.accepted
    if how == "not-a-digit":
        fault_proxy.corrupt_at(1, b"x")
    elif how == "shorter":
        fault_proxy.corrupt_at(4, b"0")
    else:
        fault_proxy.corrupt_at(4, b"1")
    out = [poisoned(size)]
    c = finish(conn, conn.submit_batch_get(keys, out), PROMPT)
    if how == "longer":
        outcome = Outcome(KeyStatus.TIMEOUT, ErrorKind.TIMED_OUT, in_flight=True, timeout=0.5)
    else:
        outcome = Outcome(KeyStatus.PROTOCOL_ERROR, ErrorKind.PROTOCOL_ERROR, in_flight=True)
    expect(c, [outcome], opts.address)
    failure = c.failures[0]
    assert failure is not None
    if how != "longer":
        assert failure.detail, "a protocol error says what was wrong"
    _same_after(out, lambda: recover(conn, f"corrupt-{how}"))
    assert _replaced(fault_proxy, before), "a corrupt stream drops the connection"


def test_corrupt_integer_reply(proxied: Open, fault_proxy: FaultProxy) -> None:
    conn, opts = proxied()
    _store(conn, ["m:corrupt-int"], 10)
    before = fault_proxy.accepted
    fault_proxy.corrupt_at(1, b"x")
    c = finish(conn, conn.submit_batch_exists(["m:corrupt-int"]), PROMPT)
    bad = Outcome(KeyStatus.PROTOCOL_ERROR, ErrorKind.PROTOCOL_ERROR, in_flight=True)
    expect(c, [bad], opts.address)
    recover(conn, "corrupt-int")
    assert _replaced(fault_proxy, before), "a corrupt stream drops the connection"
