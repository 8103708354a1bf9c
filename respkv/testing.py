"""pytest plugin: real-server fixtures and the backend parametrization.

Loaded by respkv's own test suites (``-p respkv.testing`` in ``pyproject.toml``) and
usable by anyone writing a connector: ``pytest -p respkv.testing``.

Fixtures
--------
``redis_server``
    A session-wide local server (one per xdist worker), parametrized over the server
    binaries on PATH: ``redis-server`` always, ``valkey-server`` when present. A
    missing ``redis-server`` is an error, never a skip.
``redis_options`` / ``redis_url``
    :class:`~respkv.ConnectionOptions` / URL for ``redis_server`` after ``FLUSHALL``.
``auth_server``
    A server with ``requirepass`` (:data:`AUTH_PASSWORD`) and an ACL user
    (:data:`ACL_USER` / :data:`ACL_PASSWORD`) limited to ``~*`` keys.
``make_server``
    A factory for a dedicated server with extra flags (``maxmemory`` ...), stopped at
    the end of the test.
``connector_factory``
    Parametrized over the connector implementations: ``py``, ``native`` and ``cluster``
    (the cluster router over the same servers, see :mod:`respkv._clustertesting`, which
    also holds the cluster fixtures: ``local_cluster``, ``cluster_connector`` ...). Add your
    own with ``RESPKV_CONFORMANCE_CONNECTOR=package.module:factory`` (id ``custom``),
    where ``factory(options: ConnectionOptions) -> Connector``. When the native module
    cannot be loaded the ``native`` case is skipped with the import error as reason,
    unless ``RESPKV_REQUIRE_NATIVE=1`` (set by CI), where it fails.
``tls_certs`` / ``tls_server`` / ``tls_options``
    A generated test PKI (:class:`CertificateSet`), a session server serving TLS only,
    and CA-verified options for it. ``make_server(tls=certs.server_files("yes"))``
    starts one that requires client certificates.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from respkv._admin import AdminConnection
from respkv._contract import Connector
from respkv._options import ConnectionOptions, TLSOptions
from respkv._server import LocalServer, TlsFiles

__all__ = [
    "ACL_PASSWORD",
    "ACL_USER",
    "AUTH_PASSWORD",
    "CertificateSet",
    "ConnectorFactory",
    "make_certificates",
    "wait_for",
]

AUTH_PASSWORD = "s3cret-default-pw"
ACL_USER = "kvuser"
ACL_PASSWORD = "kv-user-pw-42"

ConnectorFactory = Callable[[ConnectionOptions], Connector]


def _server_binaries() -> list[str]:
    names = ["redis-server"]
    if shutil.which("valkey-server"):
        names.append("valkey-server")
    return names


def _flush(options: ConnectionOptions) -> None:
    with AdminConnection(options, timeout=10) as admin:
        admin.command("FLUSHALL")


@pytest.fixture(scope="session", params=_server_binaries())
def redis_server(request: pytest.FixtureRequest) -> Iterator[LocalServer]:
    if shutil.which(request.param) is None:
        pytest.fail(
            f"{request.param} is not on PATH: the tests need a real server "
            "(apt-get install -y redis-server redis-tools)"
        )
    with LocalServer(binary=request.param) as server:
        yield server


@pytest.fixture
def redis_options(redis_server: LocalServer) -> ConnectionOptions:
    options = ConnectionOptions(host=redis_server.host, port=redis_server.port, num_workers=4)
    _flush(options)
    return options


@pytest.fixture
def redis_url(redis_options: ConnectionOptions) -> str:
    return f"resp://{redis_options.address}"


@pytest.fixture(scope="session")
def auth_server() -> Iterator[LocalServer]:
    acl = f"user {ACL_USER} on >{ACL_PASSWORD} ~* &* +@all -flushall"
    with LocalServer(password=AUTH_PASSWORD, acl_users=[acl]) as server:
        yield server


@pytest.fixture
def make_server() -> Iterator[Callable[..., LocalServer]]:
    started: list[LocalServer] = []

    def start(*args: str, **kwargs: Any) -> LocalServer:
        server = LocalServer(args=args, **kwargs).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def _native_factory() -> ConnectorFactory:
    from respkv._native import NativeConnector

    return NativeConnector


def _py_factory() -> ConnectorFactory:
    from respkv._pyengine import PyConnector

    return PyConnector


def _custom_factory() -> ConnectorFactory:
    spec = os.environ["RESPKV_CONFORMANCE_CONNECTOR"]
    module_name, _, attr = spec.partition(":")
    factory: ConnectorFactory = getattr(importlib.import_module(module_name), attr)
    return factory


def _connector_params() -> list[Any]:
    params = [pytest.param("py", id="py"), pytest.param("native", id="native")]
    # The cluster router over the suite's servers (respkv._clustertesting.cluster_factory).
    params.append(pytest.param("cluster", id="cluster"))
    if os.environ.get("RESPKV_CONFORMANCE_CONNECTOR"):
        params.append(pytest.param("custom", id="custom"))
    return params


@pytest.fixture(params=_connector_params())
def connector_factory(request: pytest.FixtureRequest) -> ConnectorFactory:
    kind = request.param
    if kind == "py":
        return _py_factory()
    if kind == "custom":
        return _custom_factory()
    if kind == "cluster":
        from respkv._clustertesting import cluster_factory

        return cluster_factory
    try:
        from respkv._backend import load_native

        load_native()
        return _native_factory()
    except ImportError as exc:
        if os.environ.get("RESPKV_REQUIRE_NATIVE") == "1":
            pytest.fail(f"native backend required (RESPKV_REQUIRE_NATIVE=1) but: {exc}")
        pytest.skip(f"native backend not built: {exc}")


@pytest.fixture
def backend_name(connector_factory: ConnectorFactory) -> str:
    """``python`` or ``native`` for the connector under test (for the high-level client)."""
    module = getattr(connector_factory, "__module__", "")
    return "native" if "native" in module else "python"


@pytest.fixture
def connector(
    connector_factory: ConnectorFactory, redis_options: ConnectionOptions
) -> Iterator[Connector]:
    conn = connector_factory(redis_options)
    try:
        yield conn
    finally:
        conn.close()


@pytest.fixture
def fault_proxy(redis_options: ConnectionOptions) -> Iterator[Any]:
    """A :class:`~respkv._faultproxy.FaultProxy` in front of ``redis_server``."""
    from respkv._faultproxy import FaultProxy

    with FaultProxy(redis_options.host, redis_options.port) as proxy:
        yield proxy


_unclaimed: dict[int, dict[int, Any]] = {}


def wait_for(connector: Connector, batch_id: int, timeout: float = 60.0) -> Any:
    """Block until ``batch_id`` completes on ``connector`` and return its Completion.

    Waits on the event fd (no polling loop with sleeps) with ``poll``, which, unlike
    ``select``, takes descriptors above 1023; completions of other batches are kept for
    their own ``wait_for`` call.
    """
    import select
    import time

    store = _unclaimed.setdefault(id(connector), {})
    deadline = time.monotonic() + timeout
    poller = select.poll()
    poller.register(connector.event_fd(), select.POLLIN)
    while batch_id not in store:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"batch {batch_id} did not complete within {timeout} s")
        poller.poll(remaining * 1000.0)
        for c in connector.drain_completions():
            assert c.batch_id not in store, f"batch {c.batch_id} completed twice"
            store[c.batch_id] = c
    return store.pop(batch_id)


# -- TLS -----------------------------------------------------------------------------------
#
# Certificates are made fresh for each session (never checked in): a CA, a server
# certificate for the loopback names signed by it, a client certificate signed by it, and a
# second, unrelated CA for "wrong CA" tests. Keys are ECDSA P-256: fast to make, and every
# TLS library accepts them. The ``cryptography`` package makes them when installed, the
# ``openssl`` command otherwise.

#: Names the test server certificate is valid for.
TLS_SERVER_NAMES = ("localhost", "127.0.0.1", "::1")
#: Validity of the generated certificates (a test session is far shorter).
TLS_CERT_DAYS = 2


@dataclasses.dataclass(frozen=True)
class CertificateSet:
    """Paths of a generated test PKI (PEM files)."""

    ca_file: str
    server_cert_file: str
    server_key_file: str
    client_cert_file: str
    client_key_file: str
    other_ca_file: str

    def server_files(self, auth_clients: str = "optional") -> TlsFiles:
        """What :class:`~respkv._server.LocalServer` needs to serve TLS with these."""
        return TlsFiles(
            cert_file=self.server_cert_file,
            key_file=self.server_key_file,
            ca_file=self.ca_file,
            client_cert_file=self.client_cert_file,
            client_key_file=self.client_key_file,
            auth_clients=auth_clients,
        )


def make_certificates(directory: Path, tool: str = "auto") -> CertificateSet:
    """Generate a test PKI under ``directory`` with ``cryptography`` or ``openssl``.

    ``tool`` is ``auto`` (``cryptography`` when importable), ``cryptography`` or ``openssl``.
    """
    if tool not in ("auto", "cryptography", "openssl"):
        raise ValueError(f"tool must be auto, cryptography or openssl, not {tool!r}")
    if tool == "auto":
        tool = "cryptography" if importlib.util.find_spec("cryptography") else "openssl"
    directory.mkdir(parents=True, exist_ok=True)
    make = _certs_with_cryptography if tool == "cryptography" else _certs_with_openssl
    return make(directory)


def _certs_with_cryptography(d: Path) -> CertificateSet:
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )

    def build(
        name: str,
        key: ec.EllipticCurvePrivateKey,
        issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
        usage: x509.ObjectIdentifier | None,
    ) -> x509.Certificate:
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        issuer_name, signer = issuer if issuer else (subject, key)
        b = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=TLS_CERT_DAYS))
            .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), True)
        )
        if issuer is None:
            b = b.add_extension(
                x509.KeyUsage(
                    digital_signature=True, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=True,
                    crl_sign=True, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )  # fmt: skip
        if usage is not None:
            b = b.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        if usage == ExtendedKeyUsageOID.SERVER_AUTH:
            alt: list[x509.GeneralName] = []
            for n in TLS_SERVER_NAMES:
                try:
                    alt.append(x509.IPAddress(ipaddress.ip_address(n)))
                except ValueError:
                    alt.append(x509.DNSName(n))
            b = b.add_extension(x509.SubjectAlternativeName(alt), critical=False)
        return b.sign(signer, hashes.SHA256())

    def pem(cert: x509.Certificate, path: Path) -> str:
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return str(path)

    ca_key, other_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    ca = build("respkv test CA", ca_key, None, None)
    other = build("respkv unrelated CA", other_key, None, None)
    files: dict[str, str] = {
        "ca_file": pem(ca, d / "ca.pem"),
        "other_ca_file": pem(other, d / "other-ca.pem"),
    }
    for role, usage in (
        ("server", ExtendedKeyUsageOID.SERVER_AUTH),
        ("client", ExtendedKeyUsageOID.CLIENT_AUTH),
    ):
        key = ec.generate_private_key(ec.SECP256R1())
        write_key(key, d / f"{role}.key")
        cert = build(f"respkv test {role}", key, (ca.subject, ca_key), usage)
        files[f"{role}_cert_file"] = pem(cert, d / f"{role}.pem")
        files[f"{role}_key_file"] = str(d / f"{role}.key")
    return CertificateSet(**files)


def _certs_with_openssl(d: Path) -> CertificateSet:
    import subprocess

    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("neither the cryptography package nor the openssl command is available")

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], check=True, capture_output=True, timeout=60)

    days = str(TLS_CERT_DAYS)
    curve = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for name, cn in (("ca", "respkv test CA"), ("other-ca", "respkv unrelated CA")):
        run("req", "-x509", *curve, "-keyout", str(d / f"{name}.key"), "-out",
            str(d / f"{name}.pem"), "-days", days, "-subj", f"/CN={cn}")  # fmt: skip
    alt = ",".join(
        f"IP:{n}" if n[0].isdigit() or ":" in n else f"DNS:{n}" for n in TLS_SERVER_NAMES
    )
    for role, ext in (
        ("server", f"extendedKeyUsage=serverAuth\nsubjectAltName={alt}\n"),
        ("client", "extendedKeyUsage=clientAuth\n"),
    ):
        (d / f"{role}.ext").write_text(ext)
        run("req", *curve, "-keyout", str(d / f"{role}.key"), "-out", str(d / f"{role}.csr"),
            "-subj", f"/CN=respkv test {role}")  # fmt: skip
        run("x509", "-req", "-in", str(d / f"{role}.csr"), "-CA", str(d / "ca.pem"),
            "-CAkey", str(d / "ca.key"), "-CAcreateserial", "-out", str(d / f"{role}.pem"),
            "-days", days, "-extfile", str(d / f"{role}.ext"))  # fmt: skip
    return CertificateSet(
        ca_file=str(d / "ca.pem"),
        server_cert_file=str(d / "server.pem"),
        server_key_file=str(d / "server.key"),
        client_cert_file=str(d / "client.pem"),
        client_key_file=str(d / "client.key"),
        other_ca_file=str(d / "other-ca.pem"),
    )


@pytest.fixture(scope="session")
def tls_certs(tmp_path_factory: pytest.TempPathFactory) -> CertificateSet:
    """A fresh test PKI for the session (see :func:`make_certificates`)."""
    return make_certificates(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def tls_server(tls_certs: CertificateSet) -> Iterator[LocalServer]:
    """A session-wide redis-server serving TLS only (client certificates optional)."""
    with LocalServer(tls=tls_certs.server_files()) as server:
        yield server


@pytest.fixture
def tls_options(tls_server: LocalServer, tls_certs: CertificateSet) -> ConnectionOptions:
    """Options for ``tls_server`` (CA-verified, name checked as ``localhost``), flushed."""
    tls = TLSOptions(ca_file=tls_certs.ca_file, server_hostname="localhost")
    options = ConnectionOptions(host=tls_server.host, port=tls_server.port, num_workers=2, tls=tls)
    _flush(options)
    return options


# -- Redis Cluster (issue 12) --------------------------------------------------------------
# local_cluster, cluster_backend, cluster_options, cluster_connector, make_cluster.
pytest_plugins = ["respkv._clustertesting"]
