"""Which backend runs the connector, and why: one small module whose result you can see.

``RESPKV_BACKEND`` chooses:

* ``auto`` (default): the native module when it imports *and* its ``CONTRACT_VERSION``
  equals ours, else the pure-Python engine; the reason for a fallback is recorded.
* ``python``: always the pure-Python engine.
* ``native``: the native module or an ``ImportError`` carrying the real cause.

Any other value raises ``ValueError`` listing the valid ones. The choice is made on
first use and shown by ``respkv.backend`` and ``python -m respkv``.

:func:`open_connector` lives here too: it is what the selection is for, and the clients
import it from here (never from the package root), so dependencies point one way:
``respkv/__init__`` -> clients -> ``_backend`` -> engines.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from types import ModuleType
from typing import Final

from respkv._contract import CONTRACT_VERSION, Connector
from respkv._options import ConnectionOptions
from respkv._tls import NO_TLS_MESSAGE, NO_TLS_REASON

__all__ = ["VALID_BACKENDS", "BackendInfo", "load_native", "open_connector", "select_backend"]

VALID_BACKENDS: Final = ("auto", "python", "native")


@dataclass(frozen=True)
class BackendInfo:
    """The selected backend: ``name`` is ``"python"`` or ``"native"``."""

    name: str
    requested: str
    reason: str

    def __str__(self) -> str:
        return f"{self.name} (requested {self.requested}: {self.reason})"


def load_native() -> ModuleType:
    """Import the native core and check its contract version; raise ImportError if unusable."""
    core = importlib.import_module("respkv_native._core")
    version = getattr(core, "CONTRACT_VERSION", None)
    if version != CONTRACT_VERSION:
        raise ImportError(
            f"respkv_native._core has CONTRACT_VERSION {version}, respkv needs "
            f"{CONTRACT_VERSION}; rebuild it (pip install .)"
        )
    return core


def select_backend(requested: str | None = None, *, tls: bool = False) -> BackendInfo:
    """Resolve ``requested`` (default: ``$RESPKV_BACKEND`` or ``auto``).

    ``tls``: the connection needs TLS. ``auto`` then picks native only when the native
    module reports ``SUPPORTS_TLS``; a forced ``native`` without it raises ConfigError.
    """
    source = "backend argument"
    if requested is None:
        source = "RESPKV_BACKEND"
        requested = os.environ.get("RESPKV_BACKEND", "auto").strip().lower() or "auto"
    if requested not in VALID_BACKENDS:
        raise ValueError(
            f"unknown backend {requested!r} (RESPKV_BACKEND); valid: {', '.join(VALID_BACKENDS)}"
        )
    if requested == "python":
        return BackendInfo("python", requested, f"forced by {source}=python")
    try:
        core = load_native()
    except ImportError as exc:
        if requested == "native":
            raise
        return BackendInfo("python", requested, f"native backend unavailable: {exc}")
    if tls and not getattr(core, "SUPPORTS_TLS", False):
        if requested == "native":
            from respkv.errors import ConfigError

            raise ConfigError(NO_TLS_MESSAGE)
        return BackendInfo("python", requested, f"TLS requested and {NO_TLS_REASON}")
    return BackendInfo("native", requested, "native module loaded, contract version matches")


def open_connector(options: ConnectionOptions, backend: str | None = None) -> Connector:
    """A low-level :class:`Connector` on the selected backend (see ``respkv.backend``)."""
    info = select_backend(backend, tls=options.tls is not None)
    from respkv._cluster.options import ClusterOptions

    if isinstance(options, ClusterOptions):  # a cluster: the slot router over per-node connectors
        from respkv._cluster.router import ClusterConnector

        return ClusterConnector(options, backend=info.name)
    if info.name == "native":
        from respkv._native import NativeConnector

        return NativeConnector(options)
    from respkv._pyengine import PyConnector

    return PyConnector(options)
