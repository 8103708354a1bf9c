"""Error replies and size mismatches are per-key values; the connection stays in sync.

Failures are asserted as data (status, :class:`~respkv.ErrorKind`, numbers, the server's
error code), never as respkv's wording, so that any connector can pass."""

from __future__ import annotations

from collections.abc import Callable

from respkv import ConnectionOptions, ErrorKind, Failure, KeyStatus
from respkv._admin import AdminConnection
from respkv.testing import ACL_PASSWORD, ACL_USER, AUTH_PASSWORD, ConnectorFactory, wait_for
from respkv.testing.servers import LocalServer


def _failure(f: Failure | None, kind: ErrorKind) -> Failure:
    assert f is not None, "a failed key carries a Failure"
    assert f.kind is kind, f
    return f


def _one_worker(options: ConnectionOptions) -> ConnectionOptions:
    # One connection, so "the next command" really runs on the same stream.
    return options.replace(num_workers=1)


def test_size_mismatch_then_good_get_same_connection(
    connector_factory: ConnectorFactory, redis_options: ConnectionOptions
) -> None:
    conn = connector_factory(_one_worker(redis_options))
    try:
        big = bytes(range(256)) * 4096  # 1 MiB
        assert wait_for(conn, conn.submit_batch_set(["mm", "ok"], [big, b"fine"])).ok
        small, exact = bytearray(1000), bytearray(4)
        c = wait_for(conn, conn.submit_batch_get(["mm", "ok"], [small, exact]))
        assert c.statuses == (KeyStatus.SIZE_MISMATCH, KeyStatus.OK)
        f = _failure(c.failures[0], ErrorKind.SIZE_MISMATCH)
        assert (f.expected, f.actual) == (1000, len(big))
        assert not c.ok and c.error is not None and c.failures[1] is None
        assert exact == b"fine"
        assert bytes(small) == bytes(1000), "a mismatched payload must not be written"
        larger = bytearray(len(big) + 1)
        c2 = wait_for(conn, conn.submit_batch_get(["mm", "ok"], [larger, bytearray(4)]))
        assert c2.statuses == (KeyStatus.SIZE_MISMATCH, KeyStatus.OK)
        full = bytearray(len(big))
        assert wait_for(conn, conn.submit_batch_get(["mm"], [full])).ok
        assert full == big
    finally:
        conn.close()


def test_wrongtype_is_per_key_and_stream_stays_in_sync(
    connector_factory: ConnectorFactory, redis_options: ConnectionOptions
) -> None:
    with AdminConnection(redis_options) as admin:
        admin.command("HSET", "hash", "f", "v")
    conn = connector_factory(_one_worker(redis_options))
    try:
        wait_for(conn, conn.submit_batch_set(["plain"], [b"12345"]))
        out = [bytearray(5), bytearray(5), bytearray(5)]
        c = wait_for(conn, conn.submit_batch_get(["hash", "plain", "hash"], out))
        assert c.statuses == (KeyStatus.SERVER_ERROR, KeyStatus.OK, KeyStatus.SERVER_ERROR)
        assert _failure(c.failures[0], ErrorKind.SERVER_ERROR).code == "WRONGTYPE"
        assert _failure(c.failures[2], ErrorKind.SERVER_ERROR).code == "WRONGTYPE"
        assert out[1] == b"12345"
        s = wait_for(conn, conn.submit_batch_set(["after"], [b"x"]))
        assert s.ok
    finally:
        conn.close()


def test_oom_under_maxmemory_noeviction(
    connector_factory: ConnectorFactory, make_server: Callable[..., LocalServer]
) -> None:
    server = make_server("--maxmemory", "3mb", "--maxmemory-policy", "noeviction")
    opts = ConnectionOptions(host=server.host, port=server.port, num_workers=1)
    conn = connector_factory(opts)
    try:
        vals = [bytes([i]) * (512 * 1024) for i in range(12)]  # 6 MiB > 3 MiB
        keys = [f"oom:{i}" for i in range(12)]
        c = wait_for(conn, conn.submit_batch_set(keys, vals))
        assert KeyStatus.OK in c.statuses
        failed = [i for i, s in enumerate(c.statuses) if s is KeyStatus.SERVER_ERROR]
        assert failed, "expected OOM replies once memory is full"
        for i in failed:
            f = _failure(c.failures[i], ErrorKind.SERVER_ERROR)
            assert f.code == "OOM", f"key {keys[i]}: {f}"
        assert not c.ok
        # Keys the server acknowledged really are there, and the stream still works.
        ok_keys = [k for k, s in zip(keys, c.statuses) if s is KeyStatus.OK]
        e = wait_for(conn, conn.submit_batch_exists(ok_keys))
        assert e.statuses == (KeyStatus.OK,) * len(ok_keys)
        d = wait_for(conn, conn.submit_batch_delete(ok_keys))
        assert d.ok
        assert wait_for(conn, conn.submit_batch_set(["oom:after"], [b"small"])).ok
    finally:
        conn.close()


def test_noauth_per_key(connector_factory: ConnectorFactory, auth_server: LocalServer) -> None:
    opts = ConnectionOptions(host=auth_server.host, port=auth_server.port, num_workers=2)
    conn = connector_factory(opts)
    try:
        c = wait_for(conn, conn.submit_batch_set(["na1", "na2", "na3"], [b"a", b"b", b"c"]))
        assert c.statuses == (KeyStatus.SERVER_ERROR,) * 3
        # The first command refused may be the handshake's CLIENT SETNAME or the key's own.
        for i, f in enumerate(c.failures):
            assert f is not None and f.code == "NOAUTH", f"key {i}: {f}"
        e = wait_for(conn, conn.submit_batch_exists(["na1"]))
        assert e.statuses == (KeyStatus.SERVER_ERROR,)
    finally:
        conn.close()


def test_auth_with_password(connector_factory: ConnectorFactory, auth_server: LocalServer) -> None:
    opts = ConnectionOptions(host=auth_server.host, port=auth_server.port, password=AUTH_PASSWORD)
    conn = connector_factory(opts)
    try:
        assert wait_for(conn, conn.submit_batch_set(["pw:k"], [b"v"])).ok
        assert wait_for(conn, conn.submit_batch_exists(["pw:k"])).statuses == (KeyStatus.OK,)
    finally:
        conn.close()


def test_auth_with_acl_user(connector_factory: ConnectorFactory, auth_server: LocalServer) -> None:
    opts = ConnectionOptions(
        host=auth_server.host, port=auth_server.port, username=ACL_USER, password=ACL_PASSWORD
    )
    conn = connector_factory(opts)
    try:
        assert wait_for(conn, conn.submit_batch_set(["acl:k"], [b"v"])).ok
        out = bytearray(1)
        assert wait_for(conn, conn.submit_batch_get(["acl:k"], [out])).ok
        assert out == b"v"
    finally:
        conn.close()


def test_wrong_password_fails_keys_not_submit(
    connector_factory: ConnectorFactory, auth_server: LocalServer
) -> None:
    opts = ConnectionOptions(
        host=auth_server.host, port=auth_server.port, username=ACL_USER, password="wrong-pw"
    )
    conn = connector_factory(opts)
    try:
        c = wait_for(conn, conn.submit_batch_set(["bad:k"], [b"v"]))
        assert c.statuses == (KeyStatus.SERVER_ERROR,)
        f = _failure(c.failures[0], ErrorKind.HANDSHAKE_FAILED)
        assert f.code == "WRONGPASS" and f.detail == "AUTH" and not f.in_flight
        assert "wrong-pw" not in (c.error or "") + repr(f), "a secret in a failure"
    finally:
        conn.close()
