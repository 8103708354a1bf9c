"""Connector specs: which factory a run tests, what it declares it cannot do.

A *spec* names a connector factory, ``factory(options: ConnectionOptions) -> Connector``:
a built-in kind (:data:`BUILTIN_CONNECTORS`), ``package.module:factory`` or
``path/to/file.py:factory``. :func:`load_factory` turns one into the factory, or raises
:class:`ConnectorSpecError` saying exactly what is wrong with it.

A factory (a function, or a class) may declare the behaviours of the contract it cannot
show in ``conformance_limits``, ``{capability: why}``, capabilities being the names of
:data:`CAPABILITIES`; the conformance suite skips the cases marked
``@pytest.mark.connector_needs(capability)`` for it, with that reason, and runs everything
else. Nothing is skipped silently.

No pytest at import time: only :func:`require_native` needs it, when called.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any, Final, NoReturn

from respkv._contract import Connector
from respkv._options import ConnectionOptions

__all__ = [
    "BUILTIN_CONNECTORS",
    "CAPABILITIES",
    "CONNECTOR_ENV",
    "ConnectorFactory",
    "ConnectorSpecError",
    "conformance_limits",
    "load_factory",
    "require_native",
]

ConnectorFactory = Callable[[ConnectionOptions], Connector]

#: The built-in connector kinds and the factory each runs.
BUILTIN_CONNECTORS: Final = {
    "py": "respkv._pyengine:PyConnector",
    "native": "respkv._native:NativeConnector",
    # The cluster router over the suite's servers (respkv.testing.cluster.cluster_factory).
    "cluster": "respkv.testing.cluster:cluster_factory",
}
#: The environment variable that adds a ``custom`` connector to the default kinds.
CONNECTOR_ENV: Final = "RESPKV_CONFORMANCE_CONNECTOR"

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
    import pytest

    if os.environ.get("RESPKV_REQUIRE_NATIVE") == "1":
        pytest.fail(f"native backend required (RESPKV_REQUIRE_NATIVE=1): {reason}")
    pytest.skip(reason)
