"""respkv's test kit, public: what respkv's own suites use and any connector author may.

Everything here works without pytest (the ``respkv server`` and ``respkv bench``
commands start their servers with :class:`LocalServer`); the pytest side is
:mod:`respkv.testing.plugin`, loaded with ``-p respkv.testing.plugin`` or, once respkv is
installed, automatically (its ``pytest11`` entry point).

=============================  ========================================================
:mod:`~respkv.testing.plugin`  the pytest plugin: server fixtures, the connectors under
                               test (``--connector``), ``connector_needs`` markers
``connectors``                 connector specs (:func:`load_factory`), the capabilities
                               a factory may declare it lacks (:data:`CAPABILITIES`)
``waiting``                    :func:`wait_for`: one batch's completion, via the event fd
``servers``                    :class:`LocalServer`: a throwaway redis-server/valkey-server
``clusters``                   :class:`~respkv.testing.clusters.LocalCluster`: a local
                               Redis Cluster
``certs``                      :func:`make_certificates`: a test PKI for TLS
``credentials``                the ``auth_server`` fixture's test-only passwords
``faultproxy``                 :class:`FaultProxy`: a loopback proxy that cuts, stalls,
                               trickles, corrupts and injects bytes
``fakeserver``                 :class:`FakeServer`: a scripted RESP server for replies no
                               real server sends
``faultcheck``                 what every case of the fault matrix asserts (pytest)
``cluster``                    the cluster fixtures (pytest, loaded by the plugin)
=============================  ========================================================

The conformance suite that uses all this ships as :mod:`respkv.conformance`; run it
against your connector with ``respkv-conformance mypkg.module:factory``.
"""

from __future__ import annotations

__all__ = [
    "ACL_PASSWORD",
    "ACL_USER",
    "AUTH_PASSWORD",
    "BUILTIN_CONNECTORS",
    "CAPABILITIES",
    "CONNECTOR_ENV",
    "CertificateSet",
    "ConnectorFactory",
    "ConnectorSpecError",
    "FakeServer",
    "FaultProxy",
    "LocalServer",
    "PortTakenError",
    "TlsFiles",
    "conformance_limits",
    "find_server_binary",
    "free_port",
    "load_factory",
    "make_certificates",
    "require_native",
    "wait_for",
]

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
from respkv.testing.fakeserver import FakeServer
from respkv.testing.faultproxy import FaultProxy
from respkv.testing.servers import (
    LocalServer,
    PortTakenError,
    TlsFiles,
    find_server_binary,
    free_port,
)
from respkv.testing.waiting import wait_for
