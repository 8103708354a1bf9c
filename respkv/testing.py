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
import re
import select
import shutil
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any, Final, NoReturn

import pytest

from respkv._admin import AdminConnection
from respkv._contract import Connector
from respkv._options import ConnectionOptions, TLSOptions
from respkv._server import LocalServer, TlsFiles

__all__ = [
    "ACL_PASSWORD",
    "ACL_USER",
    "AUTH_PASSWORD",
    "BUILTIN_CONNECTORS",
    "CAPABILITIES",
    "CertificateSet",
    "ConnectorFactory",
    "ConnectorSpecError",
    "load_factory",
    "make_certificates",
    "require_native",
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


# -- the connectors under test -------------------------------------------------------------
#
# ``connector_factory`` is parametrized over the connectors chosen for the run: the
# ``--connector`` options if any (each a spec, below), else the built-in ``py``, ``native``
# and ``cluster`` kinds plus ``custom`` when RESPKV_CONFORMANCE_CONNECTOR names one. A
# spec is a built-in name, ``package.module:factory`` or ``path/to/file.py:factory``;
# ``factory(options: ConnectionOptions) -> Connector``.

#: The built-in connector kinds and the factory each runs.
BUILTIN_CONNECTORS: Final = {
    "py": "respkv._pyengine:PyConnector",
    "native": "respkv._native:NativeConnector",
    # The cluster router over the suite's servers (respkv._clustertesting.cluster_factory).
    "cluster": "respkv._clustertesting:cluster_factory",
}
#: The environment variable that adds a ``custom`` connector to the default kinds.
CONNECTOR_ENV: Final = "RESPKV_CONFORMANCE_CONNECTOR"
#: The ``-k`` word that selects the custom connector(s).
CUSTOM: Final = "custom"

#: Behaviours of the contract a connector may be unable to show, by name: a factory
#: lists those it cannot in ``factory.conformance_limits`` (``{name: why}``), and the
#: cases marked ``@pytest.mark.connector_needs(name)`` are skipped for it with that reason.
CAPABILITIES: Final = {
    "reply_types": "tell the RESP type of a reply (a +simple string from a $bulk string)",
    "strict_framing": "check a reply's framing (the CRLF after a bulk payload, a bound on "
    "a line's length)",
    "select_db": "open its connections on options.db (SELECT)",
    "unix_socket": "connect over a unix socket (options.unix_path)",
}


class ConnectorSpecError(ValueError):
    """A connector spec that does not name a factory (the message says what is wrong)."""


def _spec_parts(spec: str) -> tuple[str, str]:
    where, sep, attr = spec.rpartition(":")
    if not sep or not where or not attr or not all(p.isidentifier() for p in attr.split(".")):
        raise ConnectorSpecError(
            f"connector spec {spec!r} must be 'package.module:factory' or "
            "'path/to/file.py:factory' (factory(options) -> Connector), or one of "
            + ", ".join(BUILTIN_CONNECTORS)
        )
    return where, attr


def _load_module(spec: str, where: str) -> ModuleType:
    if where.endswith(".py") or os.sep in where:
        path = Path(where).resolve()
        if not path.is_file():
            raise ConnectorSpecError(f"connector spec {spec!r}: no such file {str(path)!r}")
        name = "_respkv_connector_" + re.sub(r"\W", "_", path.stem)
        if name in sys.modules:
            return sys.modules[name]
        file_spec = importlib.util.spec_from_file_location(name, path)
        assert file_spec is not None and file_spec.loader is not None
        module = importlib.util.module_from_spec(file_spec)
        sys.modules[name] = module  # dataclasses and pickling look the module up here
        try:
            file_spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
        return module
    try:
        return importlib.import_module(where)
    except ImportError as exc:
        raise ConnectorSpecError(
            f"connector spec {spec!r}: cannot import module {where!r}: {exc}"
        ) from exc


def load_factory(spec: str) -> ConnectorFactory:
    """The connector factory ``spec`` names: a built-in kind (:data:`BUILTIN_CONNECTORS`),
    ``package.module:factory`` or ``path/to/file.py:factory`` (the attribute may be
    dotted: ``module:Class.create``). Raises :class:`ConnectorSpecError` saying what is
    wrong: no ``:``, an empty part, a module that does not import, a missing attribute,
    something that is not callable, or ``conformance_limits`` naming an unknown
    capability."""
    spec = BUILTIN_CONNECTORS.get(spec, spec)
    where, attr = _spec_parts(spec)
    target: Any = _load_module(spec, where)
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ConnectorSpecError(
                f"connector spec {spec!r}: {where!r} has no attribute {attr!r}"
            ) from None
    if not callable(target):
        raise ConnectorSpecError(
            f"connector spec {spec!r}: {attr} is a {type(target).__name__}, not a factory "
            "(a callable taking ConnectionOptions and returning a Connector)"
        )
    unknown = sorted(set(conformance_limits(target)) - set(CAPABILITIES))
    if unknown:
        raise ConnectorSpecError(
            f"connector spec {spec!r}: conformance_limits names unknown capabilities "
            f"{unknown}; known: {', '.join(CAPABILITIES)}"
        )
    factory: ConnectorFactory = target
    return factory


def conformance_limits(factory: object) -> Mapping[str, str]:
    """What ``factory`` declares it cannot show: ``{capability: why}`` (empty if none)."""
    limits = getattr(factory, "conformance_limits", None) or {}
    if not isinstance(limits, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) and v for k, v in limits.items()
    ):
        raise ConnectorSpecError(
            f"{factory!r}: conformance_limits must map capability names to reasons (str)"
        )
    return limits


def require_native(*, tls: bool = False) -> ModuleType:
    """The native module, loaded and checked (with TLS support when ``tls``); else the
    calling test is skipped with the reason, or fails when ``RESPKV_REQUIRE_NATIVE=1``
    (set by CI, whose build has everything)."""
    from respkv._backend import load_native

    try:
        core = load_native()
    except ImportError as exc:
        _skip_or_fail(f"native backend not built: {exc}")
    if tls and not getattr(core, "SUPPORTS_TLS", False):
        _skip_or_fail("this native build has no TLS (OpenSSL was not found at build time)")
    return core


def _skip_or_fail(reason: str) -> NoReturn:
    if os.environ.get("RESPKV_REQUIRE_NATIVE") == "1":
        pytest.fail(f"native backend required (RESPKV_REQUIRE_NATIVE=1): {reason}")
    pytest.skip(reason)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("respkv", "respkv conformance")
    group.addoption(
        "--connector",
        action="append",
        default=[],
        metavar="SPEC",
        help="a connector to test (repeatable): package.module:factory, path/to/file.py:factory, "
        f"or one of {', '.join(BUILTIN_CONNECTORS)}. Default: py, native, cluster (and "
        f"custom from ${CONNECTOR_ENV}).",
    )


def _chosen_connectors(config: pytest.Config) -> dict[str, str]:
    """``{id: spec}`` for this run, in order. Custom specs get the id ``custom`` (one) or
    ``custom1``, ``custom2``, ... (several)."""
    specs: list[str] = list(config.getoption("connector", None) or [])
    if not specs:
        specs = list(BUILTIN_CONNECTORS)
        if os.environ.get(CONNECTOR_ENV):
            specs.append(os.environ[CONNECTOR_ENV])
    customs = [s for s in specs if s not in BUILTIN_CONNECTORS]
    chosen: dict[str, str] = {}
    for spec in specs:
        if spec in BUILTIN_CONNECTORS:
            chosen[spec] = spec
        else:
            n = customs.index(spec) + 1
            chosen[CUSTOM if len(customs) == 1 else f"{CUSTOM}{n}"] = spec
    return chosen


_CHOSEN = pytest.StashKey[dict[str, str]]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "connector_needs(*capabilities): the case needs these capabilities of the connector "
        "(respkv.testing.CAPABILITIES); skipped, with the reason, for a connector whose "
        "factory lists one in conformance_limits",
    )
    chosen = _chosen_connectors(config)
    for spec in chosen.values():
        if spec not in BUILTIN_CONNECTORS:
            try:
                load_factory(spec)  # a bad spec is a usage error now, not 100 test errors
            except ConnectorSpecError as exc:
                raise pytest.UsageError(str(exc)) from exc
    config.stash[_CHOSEN] = chosen


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    defs = metafunc.definition._fixtureinfo.name2fixturedefs.get("connector_factory")
    if not defs or defs[-1].func is not connector_factory.__wrapped__:  # type: ignore[attr-defined]
        return  # a test module's own connector_factory: not ours to parametrize
    chosen = metafunc.config.stash[_CHOSEN]
    ids = list(chosen)
    metafunc.parametrize("connector_factory", ids, ids=ids, indirect=True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``-k custom`` with no custom connector configured would deselect everything and
    say only "N deselected": refuse it with the way out instead."""
    keyword = config.getoption("keyword", "") or ""
    if not re.search(rf"\b{CUSTOM}\w*\b", keyword):
        return
    if any(i.startswith(CUSTOM) for i in config.stash[_CHOSEN]):
        return
    if any("connector_factory" in getattr(i, "fixturenames", ()) for i in items):
        raise pytest.UsageError(
            f"-k {keyword!r} selects the custom connector, but none is configured: pass "
            f"--connector package.module:factory or set {CONNECTOR_ENV}=package.module:factory"
        )


def _skip_unmet_needs(request: pytest.FixtureRequest, kind: str, factory: object) -> None:
    limits = conformance_limits(factory)
    for mark in request.node.iter_markers("connector_needs"):
        for name in mark.args:
            if name not in CAPABILITIES:
                pytest.fail(f"connector_needs({name!r}): unknown capability", pytrace=False)
            if name in limits:
                pytest.skip(f"{kind} connector cannot {CAPABILITIES[name]}: {limits[name]}")


@pytest.fixture
def connector_factory(request: pytest.FixtureRequest) -> ConnectorFactory:
    """The factory of the connector under test (parametrized: see the module essay)."""
    kind: str = request.param
    spec = request.config.stash[_CHOSEN][kind]
    if kind == "native":
        require_native()
    factory = load_factory(spec)
    _skip_unmet_needs(request, kind, factory)
    return factory


@pytest.fixture
def connector_spec(connector_factory: ConnectorFactory, request: pytest.FixtureRequest) -> str:
    """The spec of the connector under test, for a subprocess: ``load_factory(spec)``."""
    kind = request.node.callspec.params["connector_factory"]
    spec = request.config.stash[_CHOSEN][kind]
    return BUILTIN_CONNECTORS.get(spec, spec)


#: The high-level client's backend for each built-in connector kind.
_CLIENT_BACKENDS: Final = {"py": "python", "native": "native"}


@pytest.fixture
def backend_name(connector_factory: ConnectorFactory, request: pytest.FixtureRequest) -> str:
    """``python`` or ``native``: the backend of the connector under test, for the tests
    that open a high-level client with ``respkv.connect(..., backend=backend_name)``.
    Any other connector is skipped here with the reason: such a client opens its
    connector by backend name, so it would silently test a built-in engine instead."""
    kind = request.node.callspec.params["connector_factory"]
    backend = _CLIENT_BACKENDS.get(kind)
    if backend is None:
        pytest.skip(
            f"{kind} connector: this test opens a high-level client by backend name "
            "(respkv.connect(backend=...)), which cannot run a custom connector; the "
            "connector itself is tested by the conformance suite"
        )
    return backend


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


# Completions drained by wait_for() for other batches than the one awaited, kept for their
# own wait_for() call: per connector *object* (weakly, so a collected connector's leftovers
# go with it, and a new connector that reuses its id() starts clean). A connector that
# cannot be weakly referenced is pinned instead (kept alive, so its id is never reused).
_unclaimed: weakref.WeakKeyDictionary[object, dict[int, Any]] = weakref.WeakKeyDictionary()
_unclaimed_pinned: dict[int, tuple[object, dict[int, Any]]] = {}
_unclaimed_lock = threading.Lock()


def _unclaimed_of(connector: object) -> dict[int, Any]:
    with _unclaimed_lock:
        try:
            return _unclaimed.setdefault(connector, {})
        except TypeError:  # no weak reference (``__slots__``) or unhashable
            return _unclaimed_pinned.setdefault(id(connector), (connector, {}))[1]


def wait_for(connector: Connector, batch_id: int, timeout: float = 60.0) -> Any:
    """Block until ``batch_id`` completes on ``connector`` and return its Completion.

    Waits on the event fd (no polling loop with sleeps) with ``poll``, which, unlike
    ``select``, takes descriptors above 1023; completions of other batches are kept for
    their own ``wait_for`` call on the same connector object.
    """
    store = _unclaimed_of(connector)
    deadline = time.monotonic() + timeout
    poller = select.poll()
    poller.register(connector.event_fd(), select.POLLIN)
    while True:
        with _unclaimed_lock:
            if batch_id in store:
                return store.pop(batch_id)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"batch {batch_id} did not complete within {timeout} s")
        poller.poll(remaining * 1000.0)
        done = connector.drain_completions()
        with _unclaimed_lock:
            for c in done:
                assert c.batch_id not in store, f"batch {c.batch_id} completed twice"
                store[c.batch_id] = c


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
