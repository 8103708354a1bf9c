"""Fault matrix, part 2: the real server misbehaves (signals, limits, ACLs, replicas).

Dedicated servers come from ``make_server`` or are started directly on a fixed port
(never the shared session server: a case that stops or kills a server owns it). The same
four checks as every matrix case (see :mod:`respkv.testing.faultcheck`): no wrong hit, each
key's status and failure kind, bounded time, recovery by the same connector. Replies no
real server sends are in ``test_fault_matrix_fake.py``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final

from respkv import Client, ConnectionOptions, Connector, ErrorKind, KeyStatus
from respkv._admin import AdminConnection
from respkv.testing import ConnectorFactory
from respkv.testing import faultcheck as _faultcheck
from respkv.testing.faultcheck import (
    MISS,
    OK,
    Open,
    Outcome,
    check_hits,
    expect,
    finish,
    keyed_value,
    poisoned,
    recover,
    server_error,
)
from respkv.testing.servers import LocalServer, find_server_binary, free_port

PROMPT: Final = 10.0
#: Redis loads the RDB with a pause per key of this many microseconds (``key-load-delay``)
#: so that LOADING lasts long enough to be seen: 400 keys x 2.5 ms = 1 s.
LOAD_DELAY_US: Final = 2500
LOAD_KEYS: Final = 400

MakeServer = Callable[..., LocalServer]

#: Fixtures shared by the matrix modules (see respkv.testing.faultcheck).
opener = _faultcheck.opener


def _store(conn: Connector, keys: list[str], size: int) -> list[bytes]:
    values = [keyed_value(k, size) for k in keys]
    c = finish(conn, conn.submit_batch_set(keys, values), PROMPT)
    assert c.statuses == (KeyStatus.OK,) * len(keys), c.failures
    return values


def _poll(what: str, cond: Callable[[], bool], within: float = PROMPT) -> None:
    """Wait for ``cond`` in a bounded loop (reading server state; no event to await)."""
    deadline = time.monotonic() + within
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.002)


@contextlib.contextmanager
def _raw_server(port: int, workdir: Path, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    """A server process on a fixed port, started directly: a restart on the port of a
    killed server (LocalServer refuses a port its TIME_WAIT sockets still hold, though
    the server itself binds with SO_REUSEADDR), or one watched while it loads."""
    cmd = [
        find_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir),
        "--save", "", "--appendonly", "no", "--daemonize", "no", *args,
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield proc
    finally:
        proc.terminate()
        proc.wait(PROMPT)


def _ready(port: int) -> None:
    _poll(f"a server on port {port}", lambda: _ping(port).startswith(b"+PONG"), 30)


@contextlib.contextmanager
def _stopped(server: LocalServer) -> Iterator[None]:
    assert server.process is not None
    os.kill(server.process.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(server.process.pid, signal.SIGCONT)


# -- SIGKILL and restart ---------------------------------------------------------------


def test_sigkill_mid_set_then_restart(
    opener: Open, make_server: MakeServer, tmp_path: Path
) -> None:
    """With ``appendfsync always``, every SET reported OK is there after a restart on the
    same port; a key never sent is not; the same connector carries on."""
    args = ("--dir", str(tmp_path), "--appendonly", "yes", "--appendfsync", "always")
    server = make_server(*args)
    conn, opts = opener(server.host, server.port)
    keys = [f"m:kill-set:{i}" for i in range(400)]
    values = [keyed_value(k, 128 * 1024) for k in keys]
    with AdminConnection(opts) as admin:
        bid = conn.submit_batch_set(keys, values)
        _poll("the first SETs", lambda: int(admin.command("DBSIZE")) >= 20)
        assert server.process is not None
        server.process.kill()
    server.process.wait(PROMPT)
    c = finish(conn, bid, PROMPT)
    lost = Outcome(KeyStatus.IO_ERROR, ErrorKind.CONNECTION_LOST, in_flight=True)
    for i, f in enumerate(c.failures):
        if f is None:
            OK.check(i, c, opts.address)
        elif f.in_flight:
            lost.check(i, c, opts.address)
        else:
            # Not written: queued on the lost connection, or no connection could be made.
            assert f.kind in (ErrorKind.CONNECTION_LOST, ErrorKind.CONNECT_FAILED), f
            assert c.statuses[i] is KeyStatus.IO_ERROR
    # The server held 20 keys when it died: their replies were on the way (the last
    # ones may not have arrived: those are the unknown outcomes).
    assert KeyStatus.OK in c.statuses, "no SET was acknowledged before the kill"
    assert KeyStatus.IO_ERROR in c.statuses, "the kill did not land mid-batch"
    with _raw_server(server.port, tmp_path, *args) as _:
        _ready(server.port)
        out = [poisoned(128 * 1024) for _ in keys]
        g = finish(conn, conn.submit_batch_get(keys, out), PROMPT)
        recover(conn, "kill-set")
    check_hits(g, keys, out)
    for i, (s, f) in enumerate(zip(c.statuses, c.failures)):
        if s is KeyStatus.OK:
            assert g.statuses[i] is KeyStatus.OK, f"key {i}: SET was OK, gone after restart"
        elif f is not None and not f.in_flight:
            assert g.statuses[i] is KeyStatus.MISS, f"key {i} was never sent but is stored"
        else:
            assert g.statuses[i] in (KeyStatus.OK, KeyStatus.MISS), f"key {i}: {g.failures[i]}"


def test_sigkill_mid_get_then_restart(
    opener: Open, make_server: MakeServer, tmp_path: Path
) -> None:
    """Keys in flight when the server dies fail; after a restart (empty: no
    persistence) every key is a MISS: nothing OK that the server does not hold."""
    server = make_server()
    conn, opts = opener(server.host, server.port, num_workers=2)
    keys = [f"m:kill-get:{i}" for i in range(200)]
    size = 256 * 1024
    _store(conn, keys, size)
    out = [poisoned(size) for _ in keys]
    with AdminConnection(opts) as admin:
        before = _net_output(admin)
        bid = conn.submit_batch_get(keys, out)
        _poll("the first GET replies", lambda: _net_output(admin) > before + 8 * size)
        assert server.process is not None
        server.process.kill()
    server.process.wait(PROMPT)
    c = finish(conn, bid, PROMPT)
    check_hits(c, keys, out)
    for i, f in enumerate(c.failures):
        if f is not None:
            assert f.kind in (ErrorKind.CONNECTION_LOST, ErrorKind.CONNECT_FAILED), f
            assert c.statuses[i] is KeyStatus.IO_ERROR
    assert KeyStatus.IO_ERROR in c.statuses, "the kill did not land mid-batch"
    with _raw_server(server.port, tmp_path) as _:
        _ready(server.port)
        again = [poisoned(size) for _ in keys]
        g = finish(conn, conn.submit_batch_get(keys, again), PROMPT)
        expect(g, [MISS] * len(keys), opts.address)
        for key, buf in zip(keys, again):
            assert buf == poisoned(size), f"{key}: a MISS wrote into its buffer"
        recover(conn, "kill-get")


def _net_output(admin: AdminConnection) -> int:
    info = admin.command("INFO", "stats").decode()
    line = next(x for x in info.splitlines() if x.startswith("total_net_output_bytes:"))
    return int(line.split(":")[1])


# -- SIGSTOP ---------------------------------------------------------------------------


def test_sigstop_past_op_timeout(opener: Open, make_server: MakeServer) -> None:
    server = make_server()
    conn, opts = opener(server.host, server.port, op_timeout=0.5)
    keys = ["m:stop:0", "m:stop:1"]
    _store(conn, keys, 1000)
    out = [poisoned(1000), poisoned(1000)]
    with _stopped(server):
        c = finish(conn, conn.submit_batch_get(keys, out), PROMPT)
    timed_out = Outcome(KeyStatus.TIMEOUT, ErrorKind.TIMED_OUT, in_flight=True, timeout=0.5)
    expect(c, [timed_out, timed_out], opts.address)
    before = [bytes(b) for b in out]
    recover(conn, "stop")
    assert [bytes(b) for b in out] == before, "a buffer was written after its completion"


def test_sigstop_batch_deadline(opener: Open, make_server: MakeServer) -> None:
    """``timeout=`` shorter than op_timeout: the completion arrives by the deadline, and
    when the server wakes up its replies never land in the buffers."""
    server = make_server()
    conn, opts = opener(server.host, server.port, op_timeout=5.0, window_values=1)
    size = 300_000
    keys = [f"m:stop-deadline:{i}" for i in range(3)]
    _store(conn, keys, size)
    out = [poisoned(size) for _ in keys]
    with _stopped(server):
        start = time.monotonic()
        c = finish(conn, conn.submit_batch_get(keys, out, timeout=0.3), PROMPT)
        elapsed = time.monotonic() - start
    assert 0.3 <= elapsed < 3.0, f"a 0.3 s deadline completed after {elapsed:.3f} s"
    sent = Outcome(KeyStatus.TIMEOUT, ErrorKind.DEADLINE, in_flight=True, timeout=0.3)
    unsent = Outcome(KeyStatus.TIMEOUT, ErrorKind.DEADLINE, in_flight=False, timeout=0.3)
    expect(c, [sent, unsent, unsent], opts.address)
    for i, buf in enumerate(out):
        assert buf == poisoned(size), f"key {i}: nothing was sent back, yet its buffer changed"
    recover(conn, "stop-deadline")
    for i, buf in enumerate(out):
        assert buf == poisoned(size), f"key {i}: its buffer was written after its completion"


def test_sigstop_client_timeout_then_buffer_reuse(
    connector_factory: ConnectorFactory, make_server: MakeServer
) -> None:
    """Issue 9, defect 2: ``Client.batch_get(..., timeout=)`` returns (or raises), the
    caller reuses the buffers for other keys, the server wakes up: the second GET must
    hold exactly the second keys' bytes."""
    server = make_server()
    opts = ConnectionOptions(host=server.host, port=server.port, num_workers=2, op_timeout=5.0)
    size = 1 << 20
    first = [f"m:reuse:a:{i}" for i in range(6)]
    second = [f"m:reuse:b:{i}" for i in range(6)]
    with Client(opts, connector=connector_factory(opts)) as client:
        assert client.batch_set(first + second, [keyed_value(k, size) for k in first + second]).ok
        bufs = [poisoned(size) for _ in first]
        with _stopped(server):
            start = time.monotonic()
            try:
                r = client.batch_get(first, bufs, timeout=0.3)
                assert set(r.statuses) == {KeyStatus.TIMEOUT}, r.failures
            except TimeoutError:
                pass
            assert time.monotonic() - start < 3.0
        for b in bufs:
            b[:] = poisoned(size)
        r2 = client.batch_get(second, bufs)
        assert r2.ok, r2.failures
        for k, b in zip(second, bufs):
            assert bytes(b) == keyed_value(k, size), "WRONG DATA: the abandoned GET wrote here"


# -- error replies from a real server --------------------------------------------------


def test_oom_noeviction(opener: Open, make_server: MakeServer) -> None:
    server = make_server("--maxmemory", "4mb", "--maxmemory-policy", "noeviction")
    conn, opts = opener(server.host, server.port)
    keys = [f"m:oom:{i}" for i in range(16)]
    size = 512 * 1024
    c = finish(conn, conn.submit_batch_set(keys, [keyed_value(k, size) for k in keys]), PROMPT)
    stored = c.statuses.count(KeyStatus.OK)
    assert 0 < stored < len(keys), c.statuses
    expect(c, [OK] * stored + [server_error("OOM")] * (len(keys) - stored), opts.address)
    out = [poisoned(size) for _ in keys]
    g = finish(conn, conn.submit_batch_get(keys, out), PROMPT)
    expect(g, [OK] * stored + [MISS] * (len(keys) - stored), opts.address)
    assert check_hits(g, keys, out) == stored
    d = finish(conn, conn.submit_batch_delete(keys), PROMPT)
    expect(d, [OK] * stored + [MISS] * (len(keys) - stored), opts.address)
    recover(conn, "oom")


def test_loading_real_server(opener: Open, make_server: MakeServer, tmp_path: Path) -> None:
    """A restarted server answers ``-LOADING`` while it reads its RDB: per key, and the
    same connector works once loading is over."""
    seed = make_server("--dir", str(tmp_path))
    with AdminConnection(ConnectionOptions(host=seed.host, port=seed.port)) as admin:
        for i in range(0, LOAD_KEYS, 100):
            admin.command("MSET", *[x for j in range(i, i + 100) for x in (f"seed:{j}", "v")])
        admin.command("SAVE")
    seed.stop()
    port = free_port()
    loading = ("--key-load-delay", str(LOAD_DELAY_US))
    events = ("--loading-process-events-interval-bytes", "1024")
    with _raw_server(port, tmp_path, *loading, *events):
        _poll("LOADING", lambda: _ping(port).startswith(b"-LOADING"))
        conn, opts = opener("127.0.0.1", port, client_name="")
        c = finish(conn, conn.submit_batch_set(["m:loading"], [b"v"]), PROMPT)
        expect(c, [server_error("LOADING")], opts.address)
        _ready(port)
        recover(conn, "loading")


def _ping(port: int) -> bytes:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"*1\r\n$4\r\nPING\r\n")
            return s.recv(100)
    except OSError:
        return b""


def test_readonly_replica(opener: Open, make_server: MakeServer) -> None:
    server = make_server("--replicaof", "127.0.0.1", str(free_port()))
    conn, opts = opener(server.host, server.port)
    keys = ["m:ro:0", "m:ro:1"]
    c = finish(conn, conn.submit_batch_set(keys, [b"a", b"b"]), PROMPT)
    expect(c, [server_error("READONLY")] * 2, opts.address)
    out = [poisoned(1), poisoned(1)]
    expect(finish(conn, conn.submit_batch_get(keys, out), PROMPT), [MISS, MISS], opts.address)
    with AdminConnection(opts) as admin:
        admin.command("REPLICAOF", "NO", "ONE")
    recover(conn, "readonly")


def test_noauth_after_requirepass_while_connected(opener: Open, make_server: MakeServer) -> None:
    """The server starts asking for a password and drops its clients: the connector
    (no password, no handshake) gets NOAUTH per key; once the password is gone, it works."""
    server = make_server()
    conn, opts = opener(server.host, server.port, client_name="")
    _store(conn, ["m:noauth"], 100)
    with AdminConnection(opts) as admin:
        admin.command("CONFIG", "SET", "requirepass", "m-new-pw")
        admin.command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
        c = finish(conn, conn.submit_batch_set(["m:noauth", "m:noauth2"], [b"a", b"b"]), PROMPT)
        expect(c, [server_error("NOAUTH")] * 2, opts.address)
        out = [poisoned(100)]
        g = finish(conn, conn.submit_batch_get(["m:noauth"], out), PROMPT)
        expect(g, [server_error("NOAUTH")], opts.address)
        assert out[0] == poisoned(100)
        admin.command("AUTH", "m-new-pw")
        admin.command("CONFIG", "SET", "requirepass", "")
    recover(conn, "noauth")


def test_wrongpass_after_acl_change_while_connected(opener: Open, make_server: MakeServer) -> None:
    """The user's password changes and its connections are killed: reconnecting fails the
    handshake (WRONGPASS, never sent keys); the old password back, the connector works."""
    acl = "user m-user on >m-old-pw ~* &* +@all"
    server = make_server(acl_users=[acl])
    conn, opts = opener(server.host, server.port, username="m-user", password="m-old-pw")
    _store(conn, ["m:wrongpass"], 100)
    with AdminConnection(ConnectionOptions(host=server.host, port=server.port)) as admin:
        admin.command("ACL", "SETUSER", "m-user", "resetpass", ">m-new-pw")
        admin.command("CLIENT", "KILL", "USER", "m-user")
        c = finish(conn, conn.submit_batch_set(["m:wrongpass"], [b"x"]), PROMPT)
        rejected = Outcome(
            KeyStatus.SERVER_ERROR, ErrorKind.HANDSHAKE_FAILED, in_flight=False, code="WRONGPASS"
        )
        expect(c, [rejected], opts.address)
        failure = c.failures[0]
        assert failure is not None and failure.detail == "AUTH"
        assert "m-old-pw" not in (failure.message + (c.error or "")), "a secret in a message"
        admin.command("ACL", "SETUSER", "m-user", "resetpass", ">m-old-pw")
    recover(conn, "wrongpass")


def test_wrongtype(opener: Open, make_server: MakeServer) -> None:
    server = make_server()
    conn, opts = opener(server.host, server.port)
    with AdminConnection(opts) as admin:
        admin.command("HSET", "m:hash", "f", "v")
    keys = ["m:hash", "m:plain", "m:hash"]
    _store(conn, ["m:plain"], 5)
    out = [poisoned(5) for _ in keys]
    c = finish(conn, conn.submit_batch_get(keys, out), PROMPT)
    expect(c, [server_error("WRONGTYPE"), OK, server_error("WRONGTYPE")], opts.address)
    assert check_hits(c, keys, out) == 1
    assert out[0] == poisoned(5) and out[2] == poisoned(5)
    e = finish(conn, conn.submit_batch_exists(keys), PROMPT)
    expect(e, [OK, OK, OK], opts.address)
    recover(conn, "wrongtype")


def test_client_output_buffer_limit(opener: Open, make_server: MakeServer) -> None:
    """A reply over the server's hard output limit gets the connection closed: that key
    fails, smaller values still work, and with the limit lifted the big one does too."""
    server = make_server()
    conn, opts = opener(server.host, server.port)
    big, small = 4 << 20, 64 * 1024
    _store(conn, ["m:cobl:big"], big)
    _store(conn, ["m:cobl:small"], small)
    with AdminConnection(opts) as admin:
        admin.command("CONFIG", "SET", "client-output-buffer-limit", "normal 1mb 1mb 0")
        out = [poisoned(big)]
        c = finish(conn, conn.submit_batch_get(["m:cobl:big"], out), PROMPT)
        closed = Outcome(
            KeyStatus.IO_ERROR,
            ErrorKind.CONNECTION_LOST,
            in_flight=True,
            errnos=frozenset({0, errno.ECONNRESET}),
        )
        expect(c, [closed], opts.address)
        s_out = [poisoned(small)]
        s = finish(conn, conn.submit_batch_get(["m:cobl:small"], s_out), PROMPT)
        expect(s, [OK], opts.address)
        assert check_hits(s, ["m:cobl:small"], s_out) == 1
        admin.command("CONFIG", "SET", "client-output-buffer-limit", "normal 0 0 0")
    out = [poisoned(big)]
    g = finish(conn, conn.submit_batch_get(["m:cobl:big"], out), PROMPT)
    expect(g, [OK], opts.address)
    assert check_hits(g, ["m:cobl:big"], out) == 1


def test_server_idle_timeout(opener: Open, make_server: MakeServer) -> None:
    """The server closes the idle connection (``timeout 1``): the next batch is sent on a
    new one and succeeds."""
    server = make_server("--timeout", "1")
    conn, opts = opener(server.host, server.port, client_name="m-idle")
    _store(conn, ["m:idle"], 1000)
    with AdminConnection(opts.replace(client_name="m-admin")) as admin:
        _poll(
            "the server to close the idle connection",
            lambda: b"name=m-idle" not in admin.command("CLIENT", "LIST"),
        )
    out = [poisoned(1000)]
    c = finish(conn, conn.submit_batch_get(["m:idle"], out), PROMPT)
    expect(c, [OK], opts.address)
    assert check_hits(c, ["m:idle"], out) == 1
