"""respkv: move large binary chunks (LLM KV-cache) in and out of Redis/Valkey over RESP2.

Quick use::

    import respkv
    with respkv.connect("resp://127.0.0.1:6379") as client:
        client.batch_set(keys, buffers)
        result = client.batch_get(keys, out_buffers)

``respkv.backend`` tells which engine runs (``native`` or ``python``) and why.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Final

from respkv._backend import BackendInfo, open_connector, select_backend
from respkv._contract import (
    CONTRACT_VERSION,
    BatchResult,
    Completion,
    Connector,
    ErrorKind,
    Failure,
    KeyStatus,
    Op,
)
from respkv._options import ConnectionOptions, TLSOptions
from respkv.errors import (
    ConfigError,
    ConnectionClosedError,
    ForkedError,
    ProtocolError,
    ReplyError,
    RespkvError,
    ResultError,
    ServerNotFoundError,
)

if TYPE_CHECKING:
    from respkv.client import Client

__version__ = "0.1.0"

__all__ = [
    "CONTRACT_VERSION",
    "BackendInfo",
    "BatchResult",
    "Client",
    "Completion",
    "ConfigError",
    "ConnectionClosedError",
    "ConnectionOptions",
    "Connector",
    "ErrorKind",
    "Failure",
    "ForkedError",
    "KeyStatus",
    "Op",
    "ProtocolError",
    "ReplyError",
    "RespkvError",
    "ResultError",
    "ServerNotFoundError",
    "TLSOptions",
    "backend",
    "connect",
    "open_connector",
]


def connect(
    source: Any = None,
    *,
    backend: str | None = None,
    prefix: str | bytes = b"",
    check: bool = False,
    **overrides: Any,
) -> Client:
    """A high-level :class:`~respkv.client.Client` from a URL, a config mapping, or options.

    ``prefix``: a namespace put in front of every key. ``check=True``: ping the server
    now and raise ``ConnectionError`` naming the address if it cannot be used."""
    from respkv.client import Client
    from respkv.config import resolve

    return Client(resolve(source, **overrides), backend=backend, prefix=prefix, check=check)


#: Submodules loaded on first attribute access, so that ``import respkv`` stays cheap and
#: ``respkv.aio.connect`` or ``respkv.config.load`` work without importing them first.
_LAZY_SUBMODULES: Final = frozenset(
    {
        "aio",
        "chunksize",
        "client",
        "cluster",
        "compat",
        "config",
        "eviction",
        "kvstore",
        "metrics",
        "resp2",
    }
)


def __getattr__(name: str) -> Any:
    if name == "backend":
        info = select_backend()
        globals()["backend"] = info
        return info
    if name == "Client":
        from respkv.client import Client

        return Client
    if name in _LAZY_SUBMODULES:
        return importlib.import_module(f"respkv.{name}")
    raise AttributeError(f"module 'respkv' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__, *_LAZY_SUBMODULES})
