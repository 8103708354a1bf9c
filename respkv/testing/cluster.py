"""pytest fixtures for Redis Cluster / Valkey Cluster tests (loaded by :mod:`respkv.testing`).

Fixtures
--------
``cluster_binary`` / ``local_cluster``
    The server binary, and a session-wide :class:`~respkv.testing.clusters.LocalCluster`
    (3 masters, 3 replicas; one per xdist worker), parametrized over the binaries on PATH:
    ``redis-server`` always, ``valkey-server`` when present. Tests that share it must
    leave it healthy (every slot owned, every node up); tests that kill nodes or
    take slots away use ``make_cluster`` instead.
``cluster_backend``
    ``python`` or ``native`` (ids ``py`` / ``native``): the backend of each master's
    connector. ``native`` is skipped when the native module cannot be loaded, unless
    ``RESPKV_REQUIRE_NATIVE=1``, where it fails (the rule of ``connector_factory``).
``cluster_options`` / ``cluster_connector``
    :class:`~respkv.cluster.ClusterOptions` for ``local_cluster`` after ``FLUSHALL`` on
    every master, and a :class:`~respkv.cluster.ClusterConnector` on them whose slot
    map has been read.
``make_cluster``
    A factory for a dedicated cluster (``make_cluster(masters=3, replicas=1,
    node_timeout_ms=...)``) on ``cluster_binary``, stopped at the end of the test.

``RESPKV_CLUSTER_NODE_FACTORY=package.module:factory`` runs the router over your own
connector (``factory(options) -> Connector``) instead of ``cluster_backend``'s.

The ``cluster`` id of ``connector_factory`` (:func:`cluster_factory`) runs the
conformance suite through the router over the suite's own plain servers
(``allow_standalone``): every contract rule then holds with the router in the path.
The suite's connector-only tests also run on a real 3-master cluster:
``tests/test_cluster_conformance.py``.
"""

from __future__ import annotations

import importlib
import os
import shutil
from collections.abc import Callable, Iterator
from typing import Any, Final

import pytest

from respkv._cluster.options import ClusterOptions
from respkv._cluster.router import ClusterConnector, NodeFactory
from respkv._contract import Connector
from respkv._options import ConnectionOptions
from respkv.testing.clusters import LocalCluster

__all__ = ["CLUSTER_READY_TIMEOUT", "cluster_factory", "node_factory_override"]

#: Seconds a new router may take to read its first slot map in tests.
CLUSTER_READY_TIMEOUT: Final = 15.0


def _cluster_binaries() -> list[str]:
    names = ["redis-server"]
    if shutil.which("valkey-server"):
        names.append("valkey-server")
    return names


def node_factory_override() -> NodeFactory | None:
    """The factory named by ``RESPKV_CLUSTER_NODE_FACTORY``, if set."""
    spec = os.environ.get("RESPKV_CLUSTER_NODE_FACTORY")
    if not spec:
        return None
    module_name, _, attr = spec.partition(":")
    factory: NodeFactory = getattr(importlib.import_module(module_name), attr)
    return factory


def open_cluster_connector(options: ClusterOptions, backend: str) -> ClusterConnector:
    """A router on ``backend`` (or the override factory), its slot map read."""
    override = node_factory_override()
    if override is not None:
        conn = ClusterConnector(options, node_factory=override)
    else:
        conn = ClusterConnector(options, backend=backend)
    conn.wait_ready(CLUSTER_READY_TIMEOUT)
    return conn


def cluster_factory(options: ConnectionOptions) -> Connector:
    """The conformance suite's ``cluster`` connector: the router over ``options``' server
    (a plain server is a one-node map, ``allow_standalone``), nodes on the auto backend."""
    cluster = ClusterOptions.from_options(options, allow_standalone=True)
    override = node_factory_override()
    if override is not None:
        conn = ClusterConnector(cluster, node_factory=override)
    else:
        conn = ClusterConnector(cluster)
    # The first map read is a connection of its own: done before the test counts any.
    conn.wait_ready(CLUSTER_READY_TIMEOUT)
    return conn


#: What the router cannot do in the conformance suite, and why (respkv.testing skips the
#: cases marked ``connector_needs`` with these reasons).
cluster_factory.conformance_limits = {  # type: ignore[attr-defined]
    "select_db": "Redis Cluster has database 0 only (SELECT is refused)",
    "unix_socket": "a cluster is reached over TCP: its nodes announce host:port",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The ``cluster`` kind runs the conformance suite (a ``conformance`` directory) only:
    elsewhere ``connector_factory`` / ``backend_name`` pick a backend for a high-level
    client, which the cluster kind would only repeat (``tests/test_cluster_*.py`` test
    the clients on clusters). Conformance tests that do not apply are skipped, with why
    (``cluster_factory.conformance_limits``)."""
    keep: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is None or callspec.params.get("connector_factory") != "cluster":
            keep.append(item)
            continue
        if "conformance" not in item.path.parts:
            dropped.append(item)
            continue
        keep.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


@pytest.fixture(scope="session", params=_cluster_binaries())
def cluster_binary(request: pytest.FixtureRequest) -> str:
    """The server binary the cluster tests run on (``redis-server``, ``valkey-server``)."""
    name: str = request.param
    if shutil.which(name) is None:
        pytest.fail(f"{name} is not on PATH: the cluster tests need a real server")
    return name


@pytest.fixture(scope="session")
def local_cluster(cluster_binary: str) -> Iterator[LocalCluster]:
    with LocalCluster(binary=cluster_binary) as cluster:
        yield cluster


@pytest.fixture(params=[pytest.param("python", id="py"), pytest.param("native", id="native")])
def cluster_backend(request: pytest.FixtureRequest) -> str:
    backend: str = request.param
    if backend == "native":
        try:
            from respkv._backend import load_native

            load_native()
        except ImportError as exc:
            if os.environ.get("RESPKV_REQUIRE_NATIVE") == "1":
                pytest.fail(f"native backend required (RESPKV_REQUIRE_NATIVE=1) but: {exc}")
            pytest.skip(f"native backend not built: {exc}")
    return backend


@pytest.fixture
def cluster_options(local_cluster: LocalCluster) -> ClusterOptions:
    local_cluster.wait_healthy()
    local_cluster.flushall()
    return ClusterOptions.from_seeds(local_cluster.seeds, num_workers=2)


@pytest.fixture
def cluster_connector(
    cluster_options: ClusterOptions, cluster_backend: str
) -> Iterator[ClusterConnector]:
    conn = open_cluster_connector(cluster_options, cluster_backend)
    try:
        yield conn
    finally:
        conn.close()


@pytest.fixture
def make_cluster(cluster_binary: str) -> Iterator[Callable[..., LocalCluster]]:
    started: list[LocalCluster] = []

    def start(**kwargs: Any) -> LocalCluster:
        kwargs.setdefault("binary", cluster_binary)
        cluster = LocalCluster(**kwargs).start()
        started.append(cluster)
        return cluster

    yield start
    for cluster in started:
        cluster.stop()
