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
    Parametrized over the connector implementations: ``py`` and ``native``. Add your
    own with ``RESPKV_CONFORMANCE_CONNECTOR=package.module:factory`` (id ``custom``),
    where ``factory(options: ConnectionOptions) -> Connector``. When the native module
    cannot be loaded the ``native`` case is skipped with the import error as reason,
    unless ``RESPKV_REQUIRE_NATIVE=1`` (set by CI), where it fails.
"""

from __future__ import annotations

import importlib
import os
import shutil
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from respkv._admin import AdminConnection
from respkv._contract import Connector
from respkv._options import ConnectionOptions
from respkv._server import LocalServer

__all__ = ["ACL_PASSWORD", "ACL_USER", "AUTH_PASSWORD", "ConnectorFactory", "wait_for"]

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

    Waits on the event fd (no polling loop with sleeps); completions of other batches
    are kept for their own ``wait_for`` call.
    """
    import select
    import time

    store = _unclaimed.setdefault(id(connector), {})
    deadline = time.monotonic() + timeout
    while batch_id not in store:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"batch {batch_id} did not complete within {timeout} s")
        select.select([connector.event_fd()], [], [], remaining)
        for c in connector.drain_completions():
            assert c.batch_id not in store, f"batch {c.batch_id} completed twice"
            store[c.batch_id] = c
    return store.pop(batch_id)
