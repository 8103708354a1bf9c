"""TLS against a real redis-server on its TLS port, with certificates made by the test.

The server listens on TLS only (``--port 0 --tls-port N``). Verified: a round trip of
multi-MiB values through ``resps://``, a CA that did not sign the server's certificate
is rejected, a wrong server name is rejected, ``verify=false`` skips both checks, and a
server requiring client certificates accepts ours and refuses a client without one.
Each refusal is kind TLS_FAILED on both backends, with a message that says what happened
(a TLS client on a plaintext port, a missing client certificate, a CA or a name that
does not match).
"""

from __future__ import annotations

import errno
import re
import ssl
import sys
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import respkv
from respkv import ConnectionOptions, ErrorKind, Failure, KeyStatus, TLSOptions
from respkv._admin import AdminConnection
from respkv._contract import CONTRACT_VERSION
from respkv._tls import NO_TLS_MESSAGE
from respkv.client import Client
from respkv.testing import CertificateSet, make_certificates, require_native
from respkv.testing.servers import LocalServer

MIB = 1024 * 1024
CORE = "respkv_native._core"
#: Short deadlines for connections expected to fail (they fail at the handshake).
FAIL_FAST = {"connect_timeout": 5.0, "op_timeout": 5.0}


@pytest.fixture
def open_client(backend_name: str) -> Iterator[Callable[..., Client]]:
    """``respkv.connect`` on the backend under test; a backend that does not do TLS is
    skipped with its own reason."""
    clients: list[Client] = []

    def open_(source: Any, **overrides: Any) -> Client:
        try:
            client = respkv.connect(source, backend=backend_name, **overrides)
        except respkv.ConfigError as exc:
            if backend_name == "native" and "TLS" in str(exc):
                require_native(tls=True)  # skips (fails under RESPKV_REQUIRE_NATIVE=1)
            raise
        clients.append(client)
        return client

    yield open_
    for c in clients:
        c.close()


def _tls_failure(failure: Failure | None) -> Failure:
    """The key's failure, which must be a TLS one (same kind on both backends)."""
    assert failure is not None
    assert failure.kind is ErrorKind.TLS_FAILED, failure
    assert failure.status is KeyStatus.IO_ERROR
    return failure


def _url(server: LocalServer, ca: str, **query: str) -> str:
    extra = "".join(f"&{k}={v}" for k, v in query.items())
    return f"resps://{server.host}:{server.port}?ca_file={ca}{extra}"


def test_round_trip_over_tls(
    open_client: Callable[..., Client], tls_server: LocalServer, tls_certs: CertificateSet
) -> None:
    client = open_client(_url(tls_server, tls_certs.ca_file), num_workers=2)
    keys = [f"tls-{i}" for i in range(6)]
    values = [bytes([i]) * (i * MIB // 2 + 1000) for i in range(6)]
    assert client.batch_set(keys, values).ok
    out = [bytearray(len(v)) for v in values]
    result = client.batch_get(keys, out)
    assert result.ok, result.error
    assert out == values
    assert client.batch_exists([*keys, "absent"]).statuses[-1] is KeyStatus.MISS
    assert client.batch_delete(keys).hits == [True] * 6


def test_server_name_is_checked_and_can_be_given(
    open_client: Callable[..., Client], tls_server: LocalServer, tls_certs: CertificateSet
) -> None:
    good = open_client(_url(tls_server, tls_certs.ca_file, server_hostname="localhost"))
    good.set("named", b"ok")
    bad = open_client(
        _url(tls_server, tls_certs.ca_file, server_hostname="not-the-server"), **FAIL_FAST
    )
    result = bad.batch_set(["named"], [b"no"])
    assert result.statuses == (KeyStatus.IO_ERROR,)
    message = _tls_failure(result.failures[0]).message
    assert "certificate verify failed: hostname mismatch" in message.lower(), message


def test_wrong_ca_is_rejected(
    open_client: Callable[..., Client], tls_server: LocalServer, tls_certs: CertificateSet
) -> None:
    client = open_client(_url(tls_server, tls_certs.other_ca_file), **FAIL_FAST)
    result = client.batch_set(["k"], [b"v"])
    assert result.statuses == (KeyStatus.IO_ERROR,)
    assert "certificate verify failed" in _tls_failure(result.failures[0]).message
    with pytest.raises(ssl.SSLCertVerificationError):
        client.command("PING")


def test_verify_false_skips_the_checks(
    open_client: Callable[..., Client], tls_server: LocalServer, tls_certs: CertificateSet
) -> None:
    url = _url(tls_server, tls_certs.other_ca_file, verify="false", server_hostname="wrong")
    client = open_client(url)
    client.set("unverified", b"v")
    assert client.exists("unverified")


def test_plaintext_client_on_a_tls_port_fails_without_hanging(
    open_client: Callable[..., Client], tls_server: LocalServer
) -> None:
    client = open_client(f"resp://{tls_server.host}:{tls_server.port}", **FAIL_FAST)
    result = client.batch_set(["k"], [b"v"])
    assert not result.ok
    assert result.statuses[0] in (KeyStatus.IO_ERROR, KeyStatus.PROTOCOL_ERROR, KeyStatus.TIMEOUT)


def test_client_certificate_required(
    open_client: Callable[..., Client],
    make_server: Callable[..., LocalServer],
    tls_certs: CertificateSet,
) -> None:
    server = make_server(tls=tls_certs.server_files(auth_clients="yes"))
    # LocalServer.url carries the CA and the client pair.
    assert "cert_file=" in server.url
    with_cert = open_client(server.url)
    with_cert.set("mtls", b"ok")
    assert with_cert.get("mtls") == b"ok"
    without = open_client(_url(server, tls_certs.ca_file), **FAIL_FAST)
    result = without.batch_set(["mtls"], [b"no"])
    assert result.statuses == (KeyStatus.IO_ERROR,)
    # TLS 1.3: the server refuses after the client's side of the handshake is done, with
    # an alert ("certificate required") or by closing: both name the certificate, never
    # "EOF occurred in violation of protocol" or a lost connection.
    message = _tls_failure(result.failures[0]).message
    assert "certificate" in message, message
    assert "violation of protocol" not in message


def test_tls_client_on_a_plaintext_port_says_so(
    open_client: Callable[..., Client], redis_server: LocalServer
) -> None:
    """Redis never answers a ClientHello (it waits for a newline that never comes): the
    handshake times out, and the message says the port may be plaintext."""
    url = f"resps://{redis_server.host}:{redis_server.port}?verify=false"
    client = open_client(url, connect_timeout=0.5, op_timeout=5.0, num_workers=1)
    result = client.batch_set(["k"], [b"v"])
    failure = _tls_failure(result.failures[0])
    assert failure.errno == errno.ETIMEDOUT
    assert "TLS handshake within connect_timeout" in failure.message
    assert "plaintext" in failure.message


def test_tls_from_json_config(
    open_client: Callable[..., Client], tls_server: LocalServer, tls_certs: CertificateSet
) -> None:
    doc = {
        "type": "resp",
        "host": tls_server.host,
        "port": tls_server.port,
        "num_workers": 1,
        "tls": {
            "ca_file": tls_certs.ca_file,
            "cert_file": tls_certs.client_cert_file,
            "key_file": tls_certs.client_key_file,
        },
    }
    client = open_client(doc)
    assert client.options.tls == TLSOptions(
        ca_file=tls_certs.ca_file,
        cert_file=tls_certs.client_cert_file,
        key_file=tls_certs.client_key_file,
    )
    client.set("json-tls", b"x")
    assert client.exists("json-tls")


def test_tls_options_fixture(tls_options: ConnectionOptions) -> None:
    with AdminConnection(tls_options, timeout=10) as admin:
        assert admin.command("PING") == b"PONG"


@pytest.mark.parametrize("tool", ["cryptography", "openssl"])
def test_both_certificate_generators_work(
    tool: str, tmp_path: Path, make_server: Callable[..., LocalServer]
) -> None:
    if tool == "cryptography":
        pytest.importorskip("cryptography", reason="the cryptography package is optional")
    certs = make_certificates(tmp_path / tool, tool=tool)
    server = make_server(tls=certs.server_files(auth_clients="yes"))
    tls = TLSOptions(
        ca_file=certs.ca_file, cert_file=certs.client_cert_file, key_file=certs.client_key_file
    )
    options = ConnectionOptions(host=server.host, port=server.port, tls=tls)
    with AdminConnection(options, timeout=10) as admin:
        assert admin.command("PING") == b"PONG"
    with pytest.raises(ValueError, match="tool must be"):
        make_certificates(tmp_path, tool="gnutls")


@pytest.mark.parametrize("build", ["tls-build", "no-tls-build", "no-native"])
def test_auto_backend_over_tls(
    build: str, monkeypatch: pytest.MonkeyPatch, tls_server: LocalServer, tls_certs: CertificateSet
) -> None:
    """``auto`` takes the native backend for ``resps://`` only from a build with TLS, and
    says why it fell back otherwise; the client works either way. A build without TLS
    and a missing build are stand-ins (``sys.modules``), as in test_backend.py."""
    from respkv._backend import select_backend

    if build == "tls-build":
        require_native(tls=True)
    elif build == "no-tls-build":
        core = types.ModuleType(CORE)
        core.CONTRACT_VERSION = CONTRACT_VERSION  # type: ignore[attr-defined]
        core.SUPPORTS_TLS = False  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, CORE, core)
        assert select_backend("auto").name == "native", "no TLS asked: native is fine"
        with pytest.raises(respkv.ConfigError, match=re.escape(NO_TLS_MESSAGE)):
            select_backend("native", tls=True)
    else:
        monkeypatch.setitem(sys.modules, CORE, None)
    expected = "native" if build == "tls-build" else "python"
    info = select_backend("auto", tls=True)
    assert (info.name, info.requested) == (expected, "auto"), info
    if build == "no-tls-build":
        assert "TLS" in info.reason, info.reason
    with respkv.connect(_url(tls_server, tls_certs.ca_file)) as client:
        assert client.backend.name == expected
        client.set("auto-tls", b"v")
        assert client.get("auto-tls") == b"v"
