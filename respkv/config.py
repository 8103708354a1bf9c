"""Configuration: URLs, LMCache-style JSON and environment variables, validated.

Every way of configuring respkv ends in one :class:`RespkvConfig`: the connection
(:class:`~respkv.ConnectionOptions`, what the engines read) plus the KV-cache layer's
settings (key prefix, capacity, eviction). :func:`load` builds it; :func:`resolve`
returns just the connection part and is what :func:`respkv.connect` calls.

Sources, in the order they are merged (later wins):

1. the source: a URL (``resp://``, ``resps://``, ``resp+unix://``, aliases ``redis://``
   ``rediss://`` ``unix://``), a mapping (the LMCache L2-adapter JSON plus our keys),
   JSON text, a path to a JSON file, a unix socket path, or ``ConnectionOptions``;
2. keyword overrides (the same flat keys as the JSON);
3. for ``host``, ``port``, ``username`` and ``password`` left empty by both:
   ``RESPKV_*``, then ``LMCACHE_RESP_*`` environment variables, then the built-in
   default. The reference system rejects an empty host before it reads its
   variable; here the variable fills it, from JSON as from a URL.

Every key is checked: an unknown one is a :class:`~respkv.ConfigError` naming it and
the valid ones; a value of the wrong type or out of range names the key and the limit.

Secrets: a password (from a URL, JSON or the environment) never appears in a message,
a ``repr`` or a log line; URLs are shown through :func:`redact_url`. Exceptions raised
while parsing are re-raised ``from None``, so no traceback carries the raw input.

``max_capacity_gb`` is in GiB (2**30 bytes), as in the reference.

This module loads and builds (sources, JSON, the environment, the checks across keys);
the key tables with LMCache's keys are :mod:`respkv._config.keys`, URL parsing and
:func:`redact_url` are :mod:`respkv._config.url`.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from respkv._cluster.options import ClusterOptions, format_address, parse_address
from respkv._config.keys import (
    CLUSTER_KEYS,
    CONFIG_TYPE,
    CONNECTION_KEYS,
    ENV_FALLBACKS,
    EVICTION_KEYS,
    LMCACHE_EVICTION_KEYS,
    LMCACHE_GENERIC_KEYS,
    LMCACHE_ONLY_POLICIES,
    STORE_KEYS,
    TLS_KEYS,
    VALID_KEYS,
    check_keys,
    drop_lmcache_keys,
    from_text,
    typed,
)
from respkv._config.url import parse_url, redact_url
from respkv._options import ConnectionOptions, TLSOptions
from respkv.errors import ConfigError
from respkv.eviction import VALID_POLICIES, EvictionConfig

__all__ = [
    "ENV_FALLBACKS",
    "GIB",
    "VALID_KEYS",
    "RespkvConfig",
    "load",
    "parse_url",
    "redact_url",
    "resolve",
]

GIB: Final = 1024**3
#: Largest config file read (a config is a few hundred bytes; this catches mistakes).
MAX_CONFIG_FILE_BYTES: Final = 1024 * 1024


# -- the result ----------------------------------------------------------------------


@dataclass(frozen=True)
class RespkvConfig:
    """A validated configuration. Its ``repr`` shows no password."""

    connection: ConnectionOptions
    key_prefix: str = ""
    max_capacity_bytes: int = 0
    eviction: EvictionConfig | None = None
    recover_usage: bool = False

    @property
    def url(self) -> str:
        """The connection as a URL with the password hidden (for messages)."""
        c = self.connection
        scheme = "resps" if c.tls is not None else "resp"
        user = c.username + (":***" if c.password else "")
        auth = f"{user}@" if user else ""
        if isinstance(c, ClusterOptions):
            return f"{scheme}+cluster://{auth}{','.join(c.seeds)}"
        if c.unix_path is not None:
            return f"{scheme}+unix://{auth}{c.unix_path}" + (f"?db={c.db}" if c.db else "")
        return f"{scheme}://{auth}{c.address}" + (f"/{c.db}" if c.db else "")


# -- entry points ----------------------------------------------------------------------


def resolve(
    source: str | os.PathLike[str] | Mapping[str, Any] | ConnectionOptions | None = None,
    **overrides: Any,
) -> ConnectionOptions:
    """The :class:`~respkv.ConnectionOptions` for ``source`` plus keyword overrides.

    Connection keys only make sense here, but KV-cache keys are accepted (and
    validated) so that one config serves both :func:`respkv.connect` and the store.
    """
    return load(source, **overrides).connection


def load(
    source: str | os.PathLike[str] | Mapping[str, Any] | ConnectionOptions | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    **overrides: Any,
) -> RespkvConfig:
    """The full :class:`RespkvConfig` for ``source``, keyword overrides and the environment.

    ``environ`` replaces ``os.environ`` for the fallbacks (tests, embedding).
    """
    env = os.environ if environ is None else environ
    if isinstance(source, ConnectionOptions):
        raw: dict[str, Any] = source.given()
        use_env = False
    else:
        raw = _raw_from_source(source)
        use_env = True
    for key, value in overrides.items():
        if value is not None:
            raw[key] = value
    return _build(raw, env if use_env else {})


# -- sources to a raw mapping ----------------------------------------------------------


def _raw_from_source(source: object) -> dict[str, Any]:
    if source is None:
        return {}
    if isinstance(source, Mapping):
        return dict(source)
    if isinstance(source, os.PathLike):
        return _read_json_file(Path(source))
    if not isinstance(source, str):
        raise ConfigError(
            "config source must be a URL, a mapping, JSON text, a file path, "
            f"ConnectionOptions or None, not {type(source).__name__}"
        )
    text = source.strip()
    if text.startswith("{"):
        return _parse_json(text, "JSON config text")
    if "://" in text:
        return parse_url(text)
    path = Path(text)
    try:
        mode = path.stat().st_mode
    except OSError:
        _refuse_json_non_object(text)
        raise ConfigError(
            f"{redact_url(text)!r} is not a URL (resp://host:port), JSON text, an existing "
            "config file or a unix socket"
        ) from None
    if stat.S_ISSOCK(mode):
        return {"unix_path": str(path)}
    return _read_json_file(path)


def _refuse_json_non_object(text: str) -> None:
    """A source that is valid JSON but no object (``[1,2]``, ``42``) is named as such."""
    try:
        value = json.loads(text)
    except ValueError:
        return
    kinds = {list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    raise ConfigError(
        f"the config text is JSON, but {kinds.get(type(value), 'a number')}: a config must "
        'be a JSON object such as {"host": "127.0.0.1", "port": 6379}'
    ) from None


def _read_json_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            data = f.read(MAX_CONFIG_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {str(path)!r}: {exc.strerror}") from None
    if len(data) > MAX_CONFIG_FILE_BYTES:
        raise ConfigError(
            f"config file {str(path)!r} is larger than MAX_CONFIG_FILE_BYTES "
            f"({MAX_CONFIG_FILE_BYTES})"
        )
    return _parse_json(data, f"config file {str(path)!r}")


def _parse_json(text: str | bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        # The message names the position only, never the text around it.
        where = (
            f" at line {exc.lineno} column {exc.colno}"
            if isinstance(exc, json.JSONDecodeError)
            else ""
        )
        raise ConfigError(f"{what} is not valid JSON{where}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{what} must hold a JSON object, not {type(value).__name__}")
    return value


# -- building --------------------------------------------------------------------------


def _build(raw: dict[str, Any], env: Mapping[str, str]) -> RespkvConfig:
    check_keys(raw, VALID_KEYS, "")
    kind_value = raw.pop("type", None)
    if kind_value is not None and str(kind_value).lower() != CONFIG_TYPE:
        raise ConfigError(f"config key 'type' must be {CONFIG_TYPE!r}, got {kind_value!r}")
    drop_lmcache_keys(raw, LMCACHE_GENERIC_KEYS, "")

    conn: dict[str, Any] = {}
    for key, kind in CONNECTION_KEYS.items():
        value = raw.get(key)
        if value is not None:
            conn[key] = typed(key, value, kind, "")
    _apply_env(conn, env)
    conn["tls"] = _build_tls(raw.get("tls"))
    if conn["tls"] is not None and conn.get("unix_path"):
        raise ConfigError("TLS is not supported over a unix socket (unix_path with tls)")
    cluster = _cluster_fields(raw, conn)
    try:
        connection = (
            ConnectionOptions(**conn) if cluster is None else ClusterOptions(**conn, **cluster)
        )
    except ValueError as exc:
        raise ConfigError(f"invalid connection settings: {exc}") from None

    store = {k: typed(k, raw[k], t, "") for k, t in STORE_KEYS.items() if raw.get(k) is not None}
    gb = store.get("max_capacity_gb", 0.0)
    nbytes = store.get("max_capacity_bytes", 0)
    if gb < 0 or nbytes < 0:
        raise ConfigError("max_capacity_gb / max_capacity_bytes must be >= 0 (0: unlimited)")
    if gb and nbytes:
        raise ConfigError("give max_capacity_gb or max_capacity_bytes, not both")
    return RespkvConfig(
        connection=connection,
        key_prefix=store.get("key_prefix", ""),
        max_capacity_bytes=nbytes or int(gb * GIB),
        eviction=_build_eviction(raw.get("eviction")),
        recover_usage=store.get("recover_usage", False),
    )


def _cluster_fields(raw: Mapping[str, Any], conn: Mapping[str, Any]) -> dict[str, Any] | None:
    """The :class:`ClusterOptions` fields ``raw`` asks for, or ``None`` for one server.

    ``cluster: true`` without ``seeds`` uses the host and port (after the environment
    fallbacks) as the one seed."""
    present = {k: raw[k] for k in CLUSTER_KEYS if raw.get(k) is not None}
    if not present:
        return None
    seeds_value = present.pop("seeds", None)
    fields = {k: typed(k, v, CLUSTER_KEYS[k], "") for k, v in present.items()}
    enabled = fields.pop("cluster", None)
    if enabled is False:
        if seeds_value:
            raise ConfigError("config keys 'seeds' and 'cluster: false' contradict each other")
        return None
    if isinstance(seeds_value, str):
        seeds_value = [s for s in seeds_value.split(",") if s.strip()]
    if seeds_value is None or seeds_value == []:
        seeds_value = [format_address(conn.get("host", "127.0.0.1"), conn.get("port", 6379))]
    if not isinstance(seeds_value, list | tuple) or not all(
        isinstance(s, str) for s in seeds_value
    ):
        raise ConfigError("config key 'seeds': expected a list of 'host:port' strings")
    fields["seeds"] = tuple(format_address(*parse_address(s)) for s in seeds_value)
    return fields


def _apply_env(conn: dict[str, Any], env: Mapping[str, str]) -> None:
    """Fill empty host/port/username/password from the environment (config wins)."""
    for key, names in ENV_FALLBACKS.items():
        if conn.get(key) or (key in ("host", "port") and conn.get("unix_path")):
            continue
        for name in names:
            text = env.get(name, "")
            if text:
                conn[key] = from_text(
                    key, text, CONNECTION_KEYS[key], f"environment variable {name}"
                )
                break
        if not conn.get(key):
            # Still empty: the built-in default (127.0.0.1, 6379, no user, no password).
            conn.pop(key, None)


def _build_tls(value: object) -> TLSOptions | None:
    if value is None or value is False:
        return None
    if value is True:
        return TLSOptions()
    if isinstance(value, TLSOptions):
        return value
    if not isinstance(value, Mapping):
        raise ConfigError(
            f"config key 'tls': expected true/false or an object, got {type(value).__name__}"
        )
    check_keys(value, tuple(TLS_KEYS), "tls.")
    fields = {k: typed(k, v, TLS_KEYS[k], "tls.") for k, v in value.items() if v is not None}
    if "key_file" in fields and "cert_file" not in fields:
        raise ConfigError("config key 'tls.key_file' needs 'tls.cert_file' too")
    for key in ("ca_file", "cert_file", "key_file"):
        if key in fields and not Path(fields[key]).is_file():
            raise ConfigError(f"config key 'tls.{key}': no such file {fields[key]!r}")
    return TLSOptions(**fields)


def _build_eviction(value: object) -> EvictionConfig | None:
    if value is None:
        return None
    if isinstance(value, EvictionConfig):
        return value
    if not isinstance(value, Mapping):
        raise ConfigError(f"config key 'eviction': expected an object, got {type(value).__name__}")
    check_keys(value, (*EVICTION_KEYS, *LMCACHE_EVICTION_KEYS), "eviction.")
    value = dict(value)
    drop_lmcache_keys(value, LMCACHE_EVICTION_KEYS, "eviction.")
    policy = value.get("eviction_policy")
    if isinstance(policy, str) and policy.lower() in {p.lower() for p in LMCACHE_ONLY_POLICIES}:
        raise ConfigError(
            f"config key 'eviction.eviction_policy': {policy!r} is an LMCache policy that "
            f"respkv's KV store does not implement; supported: {', '.join(VALID_POLICIES)}. "
            "(Inside LMCache, its own L2EvictionController runs ARC and IsolatedLRU: put the "
            "policy in LMCache's adapter JSON, around the respkv plugin.)"
        )
    fields = {
        k: typed(k, v, EVICTION_KEYS[k], "eviction.") for k, v in value.items() if v is not None
    }
    try:
        return EvictionConfig(**fields)
    except ValueError as exc:
        raise ConfigError(f"config key 'eviction': {exc}") from None
