"""The pytest plugin of the test kit: real-server fixtures, the connectors under test,
and the ``--connector`` option.

Loaded by respkv's own suites (``-p respkv.testing.plugin`` in ``pyproject.toml``), by
``respkv-conformance``, and by any pytest run where respkv is installed (the ``pytest11``
entry point), so ``pytest --pyargs respkv.conformance --connector mypkg.mod:factory``
works as is.

Options
-------
``--connector SPEC`` (repeatable)
    The connectors ``connector_factory`` runs over (see :mod:`respkv.testing.connectors`
    for specs): ``package.module:factory``, ``path/to/file.py:factory``, or a built-in kind
    (``py``, ``native``, ``cluster``). A custom spec gets the id ``custom``. Default: the
    built-in kinds, plus ``custom`` when ``RESPKV_CONFORMANCE_CONNECTOR`` names a spec.
    A bad spec is a usage error at start; so is ``-k custom`` with no custom connector.

Markers
-------
``connector_needs(*capabilities)``
    The case needs these capabilities (:data:`~respkv.testing.CAPABILITIES`); it is
    skipped, with the factory's own reason, for a connector whose factory lists one in
    ``conformance_limits``.

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
``connector_factory`` / ``connector`` / ``connector_spec``
    The factory of the connector under test (parametrized, above), a connector it made
    on ``redis_options`` (closed after the test), and its spec (for a subprocess:
    :func:`~respkv.testing.load_factory`). The ``native`` kind is skipped when the
    native module cannot be loaded, with the import error as reason, unless
    ``RESPKV_REQUIRE_NATIVE=1`` (set by CI), where it fails. The ``cluster`` kind (the
    router over the same servers) runs the conformance suite only; its fixtures
    (``local_cluster``, ``cluster_connector``, ...) are in :mod:`respkv.testing.cluster`.
``backend_name``
    ``python`` or ``native`` for tests that open a high-level client by backend name;
    skipped, with why, for any other connector.
``fault_proxy``
    A :class:`~respkv.testing.FaultProxy` in front of ``redis_server``.
``tls_certs`` / ``tls_server`` / ``tls_options``
    A generated test PKI (:class:`~respkv.testing.CertificateSet`), a session server
    serving TLS only, and CA-verified options for it.
    ``make_server(tls=certs.server_files("yes"))`` starts one that requires client
    certificates.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterator
from typing import Any, Final

import pytest

from respkv._admin import AdminConnection
from respkv._contract import Connector
from respkv._options import ConnectionOptions, TLSOptions
from respkv.testing.certs import CertificateSet, make_certificates
from respkv.testing.connectors import (
    BUILTIN_CONNECTORS,
    CAPABILITIES,
    CONNECTOR_ENV,
    ConnectorFactory,
    ConnectorSpecError,
    conformance_limits,
    load_factory,
    require_native,
)
from respkv.testing.credentials import ACL_PASSWORD, ACL_USER, AUTH_PASSWORD
from respkv.testing.faultproxy import FaultProxy
from respkv.testing.servers import LocalServer

__all__: list[str] = []  # fixtures and hooks only: the API is respkv.testing

#: The ``-k`` word that selects the custom connector(s).
CUSTOM: Final = "custom"


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
def fault_proxy(redis_options: ConnectionOptions) -> Iterator[FaultProxy]:
    """A :class:`~respkv.testing.FaultProxy` in front of ``redis_server``."""
    with FaultProxy(redis_options.host, redis_options.port) as proxy:
        yield proxy


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
pytest_plugins = ["respkv.testing.cluster"]
