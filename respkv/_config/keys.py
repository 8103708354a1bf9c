"""Every key a respkv config may have, with its type, and how values are typed.

Part of :mod:`respkv.config` (the public module; :mod:`respkv._config` holds its parts).
Here: the environment fallbacks, the secret keys, the key tables of the connection
(read from :class:`~respkv.ConnectionOptions` itself, so a new field is configurable at
once), the KV store, TLS, eviction and Redis Cluster, and LMCache's own keys, which one
adapter JSON may carry for LMCache and respkv alike: accepted, type-checked, ignored.
The typing helpers turn text (URLs, environment variables) and JSON values into the
types of those tables, with messages that name the key and never echo a secret.
"""

from __future__ import annotations

import dataclasses
import logging
import typing
from collections.abc import Mapping
from typing import Any, Final

from respkv._options import ConnectionOptions
from respkv.chunksize import parse_size
from respkv.errors import ConfigError

__all__ = [
    "CLUSTER_KEYS",
    "CONFIG_TYPE",
    "CONNECTION_KEYS",
    "ENV_FALLBACKS",
    "EVICTION_KEYS",
    "LMCACHE_EVICTION_KEYS",
    "LMCACHE_GENERIC_KEYS",
    "LMCACHE_ONLY_POLICIES",
    "SECRET_KEYS",
    "STORE_KEYS",
    "TLS_KEYS",
    "VALID_KEYS",
    "check_keys",
    "drop_lmcache_keys",
    "from_text",
    "show",
    "typed",
]

#: Environment variables consulted, in order, for a value the config leaves empty.
ENV_FALLBACKS: Final[dict[str, tuple[str, ...]]] = {
    "host": ("RESPKV_HOST", "LMCACHE_RESP_HOST"),
    "port": ("RESPKV_PORT", "LMCACHE_RESP_PORT"),
    "username": ("RESPKV_USERNAME", "LMCACHE_RESP_USERNAME"),
    "password": ("RESPKV_PASSWORD", "LMCACHE_RESP_PASSWORD"),
}

#: Keys whose values are secrets: never echoed in messages.
SECRET_KEYS: Final = frozenset({"password"})

#: Cluster keys. ``cluster``/``seeds`` select the router (``seeds``: a list of
#: ``host:port`` strings, or one comma-separated string); the others tune it and may
#: also be URL query parameters (see :class:`~respkv.cluster.ClusterOptions`).
CLUSTER_KEYS: Final[dict[str, type]] = {
    "cluster": bool,
    "seeds": list,
    "max_redirects": int,
    "cluster_retries": int,
    "allow_standalone": bool,
}
CLUSTER_QUERY_KEYS: Final = ("max_redirects", "cluster_retries", "allow_standalone")

#: The KV-cache layer's keys (besides the connection's and ``tls``/``eviction``/``type``).
STORE_KEYS: Final[dict[str, type]] = {
    "key_prefix": str,
    "max_capacity_gb": float,
    "max_capacity_bytes": int,
    "recover_usage": bool,
}
TLS_KEYS: Final[dict[str, type]] = {
    "ca_file": str,
    "cert_file": str,
    "key_file": str,
    "server_hostname": str,
    "verify": bool,
}
EVICTION_KEYS: Final[dict[str, type]] = {
    "eviction_policy": str,
    "trigger_watermark": float,
    "eviction_ratio": float,
}
#: The value ``type`` must have (the reference's adapter type).
CONFIG_TYPE: Final = "resp"

# LMCache's generic L2-adapter keys (lmcache 0.5.6, ``v1/distributed/l2_adapters/config.py``
# ``parse_args_to_l2_adapters_config`` and ``L2AdapterConfigBase``). They configure LMCache
# itself (which L1 buffers an adapter uses, serde, persistence, LMCache's eviction logging),
# not the connection, so one adapter JSON can serve LMCache and respkv: they are accepted,
# their types checked, and otherwise ignored with a debug log line naming them.
LMCACHE_GENERIC_KEYS: Final[dict[str, type]] = {
    "affinity_tag": str,
    "shared": bool,
    "persist_enabled": bool,
    "serde": dict,
    "per_op_workers": dict,
}
#: LMCache's eviction keys respkv's KV store has no use for (its eviction loop's logging).
LMCACHE_EVICTION_KEYS: Final[dict[str, type]] = {
    "extra_logging_enabled": bool,
    "extra_logging_interval": float,
}
#: Eviction policies LMCache offers that respkv's KV store does not implement.
LMCACHE_ONLY_POLICIES: Final = ("ARC", "IsolatedLRU")
# The logger of the public module: "ignoring LMCache-only config keys" is its message.
_log = logging.getLogger("respkv.config")


def _connection_keys() -> dict[str, type]:
    """ConnectionOptions' scalar fields and their types, read from the dataclass so a
    field added there is configurable here at once."""
    hints = typing.get_type_hints(ConnectionOptions)
    keys: dict[str, type] = {}
    for f in dataclasses.fields(ConnectionOptions):
        if f.name == "tls":
            continue
        args = [a for a in typing.get_args(hints[f.name]) if a is not type(None)]
        base = args[0] if len(args) == 1 else hints[f.name]
        if base in (str, int, float, bool):
            keys[f.name] = base
    return keys


CONNECTION_KEYS: Final[dict[str, type]] = _connection_keys()
#: Every key a config mapping may have at its top level.
VALID_KEYS: Final = (
    "type", "tls", "eviction", *CONNECTION_KEYS, *STORE_KEYS, *LMCACHE_GENERIC_KEYS,
    *CLUSTER_KEYS,
)  # fmt: skip


_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})


def show(key: str, value: object) -> str:
    return "" if key in SECRET_KEYS else f" {value!r}"


def from_text(key: str, text: str, kind: type, what: str) -> Any:
    """A string from a URL or the environment, converted to ``kind``."""
    try:
        if kind is bool:
            lowered = text.strip().lower()
            if lowered in _TRUE | _FALSE:
                return lowered in _TRUE
            raise ValueError
        if kind is int:
            return parse_size(text) if key.endswith("_bytes") else int(text)
        if kind is float:
            return float(text)
    except ValueError:
        raise ConfigError(f"{what}: expected {kind.__name__}, got{show(key, text)}") from None
    return text


def typed(key: str, value: object, kind: type, where: str) -> Any:
    """``value`` checked against ``kind`` (JSON is strict; sizes may be strings)."""
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is int and key.endswith("_bytes") and isinstance(value, str):
        return from_text(key, value, int, f"config key '{where}{key}'")
    if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    raise ConfigError(
        f"config key '{where}{key}': expected {kind.__name__}, "
        f"got {type(value).__name__}{show(key, value)}"
    )


def check_keys(raw: Mapping[str, Any], valid: Any, where: str) -> None:
    for key in raw:
        if key not in valid:
            raise ConfigError(f"unknown config key '{where}{key}'; valid: {', '.join(valid)}")


def drop_lmcache_keys(raw: dict[str, Any], keys: Mapping[str, type], where: str) -> None:
    """Remove LMCache's own keys from ``raw`` after checking their types (debug-logged)."""
    dropped = [k for k in keys if k in raw]
    for key in dropped:
        value = raw.pop(key)
        if value is not None:
            typed(key, value, keys[key], where)
    if dropped:
        _log.debug("ignoring LMCache-only config keys: %s", ", ".join(where + k for k in dropped))
