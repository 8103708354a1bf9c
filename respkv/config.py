"""Configuration: URLs, LMCache-style JSON and environment variables to ConnectionOptions.

(Initial version: ``resp://host:port[/db]`` URLs and ``ConnectionOptions`` pass-through.
The full URL / JSON / env layer is built in the configuration issue.)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from respkv._options import ConnectionOptions
from respkv.errors import ConfigError

__all__ = ["resolve"]


def resolve(source: str | Mapping[str, Any] | ConnectionOptions | None = None, **overrides: Any) -> ConnectionOptions:
    """Turn a URL, a config mapping or options (plus keyword overrides) into options."""
    if isinstance(source, ConnectionOptions):
        options = source
    elif source is None:
        options = ConnectionOptions()
    elif isinstance(source, str):
        parts = urlsplit(source)
        if parts.scheme != "resp":
            raise ConfigError(f"unsupported URL scheme {parts.scheme!r}")
        db = int(parts.path.strip("/") or 0)
        options = ConnectionOptions(
            host=parts.hostname or "127.0.0.1", port=parts.port or 6379, db=db,
            username=parts.username or "", password=parts.password or "",
        )
    else:
        options = ConnectionOptions(**dict(source))
    return options.replace(**overrides) if overrides else options
