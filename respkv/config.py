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
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import logging
import os
import stat
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import SplitResult, parse_qsl, unquote, urlsplit

from respkv._cluster.options import ClusterOptions, format_address, parse_address
from respkv._options import ConnectionOptions, TLSOptions
from respkv.chunksize import parse_size
from respkv.errors import ConfigError
from respkv.eviction import VALID_POLICIES, EvictionConfig

__all__ = [
    "ENV_FALLBACKS",
    "RespkvConfig",
    "load",
    "redact_url",
    "resolve",
]

GIB: Final = 1024**3
#: The TCP port range a URL's port must be in (16 bits; port 0 is not a server's).
MIN_PORT: Final = 1
MAX_PORT: Final = 65535
#: Largest config file read (a config is a few hundred bytes; this catches mistakes).
MAX_CONFIG_FILE_BYTES: Final = 1024 * 1024

#: Environment variables consulted, in order, for a value the config leaves empty.
ENV_FALLBACKS: Final[dict[str, tuple[str, ...]]] = {
    "host": ("RESPKV_HOST", "LMCACHE_RESP_HOST"),
    "port": ("RESPKV_PORT", "LMCACHE_RESP_PORT"),
    "username": ("RESPKV_USERNAME", "LMCACHE_RESP_USERNAME"),
    "password": ("RESPKV_PASSWORD", "LMCACHE_RESP_PASSWORD"),
}

#: Keys whose values are secrets: never echoed in messages.
SECRET_KEYS: Final = frozenset({"password"})

#: URL scheme -> (TLS, unix socket).
SCHEMES: Final[dict[str, tuple[bool, bool]]] = {
    "resp": (False, False),
    "resps": (True, False),
    "redis": (False, False),
    "rediss": (True, False),
    "valkey": (False, False),
    "valkeys": (True, False),
    "resp+unix": (False, True),
    "redis+unix": (False, True),
    "unix": (False, True),
}

# -- Redis Cluster (issue 12; docs/cluster.md) ---------------------------------------
#: Cluster URL scheme -> TLS: ``resp+cluster://[user:pass@]host1:port1,host2:port2/?...``.
CLUSTER_SCHEMES: Final[dict[str, bool]] = {
    "resp+cluster": False,
    "resps+cluster": True,
    "redis+cluster": False,
    "rediss+cluster": True,
    "valkey+cluster": False,
    "valkeys+cluster": True,
}
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
_CLUSTER_QUERY_KEYS: Final = ("max_redirects", "cluster_retries", "allow_standalone")

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
_log = logging.getLogger(__name__)


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
#: Keys that a URL carries in its authority or path, not in its query string.
_URL_AUTHORITY_KEYS: Final = frozenset({"host", "port", "username", "password", "unix_path"})


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


def redact_url(text: str) -> str:
    """``text`` with the password of a URL's user information replaced by ``***`` and its
    query string (which may carry ``?password=``) replaced by ``?...``.

    Everything between ``//`` and the *last* ``@`` counts as user information, so a
    password holding ``@``, ``/`` or ``?`` is hidden too (at worst more is hidden).
    """
    start = text.find("//")
    start = 0 if start < 0 else start + 2
    at = text.rfind("@")
    if at >= start:
        user, sep, _ = text[start:at].partition(":")
        shown = user + (":***" if sep else "") + "@"
        text, start = text[:start] + shown + text[at + 1 :], start + len(shown)
    query = min((i for i in (text.find("?", start), text.find("#", start)) if i >= 0), default=-1)
    return text if query < 0 else text[:query] + "?..."


def _userinfo_misplaced(url: str) -> bool:
    """True when an ``@`` follows the authority as :func:`urlsplit` cuts it: the user
    information holds an unescaped ``/``, ``?`` or ``#``, which ends the authority early
    (``resp://:TOP/SECRET@host`` is host ``""``, port ``TOP``, path ``/SECRET@host``)."""
    rest = url.partition("://")[2]
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    return "@" not in rest[:end] and "@" in rest[end:]


#: The message for :func:`_userinfo_misplaced` (it names the cause, never the text).
_USERINFO_HINT: Final = (
    "the user name or password holds an unescaped '/', '?' or '#', which ends the host "
    "part early; percent-encode them (%2F, %3F, %23)"
)


def _bad_authority(url: str, shown: str) -> ConfigError:
    """Why :func:`urlsplit` refused ``url``'s host or port, without echoing a secret."""
    if _userinfo_misplaced(url):
        return ConfigError(f"invalid URL {shown!r}: {_USERINFO_HINT}")
    rest = url.partition("://")[2]
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    hostport = rest[:end].rpartition("@")[2]
    port_text = hostport.rpartition("]")[2] if hostport.startswith("[") else hostport
    port_text = port_text.rpartition(":")[2] if ":" in port_text else ""
    if port_text.isdigit():
        return ConfigError(
            f"invalid URL {shown!r}: port {int(port_text)} is out of range {MIN_PORT}..{MAX_PORT}"
        )
    if port_text:
        return ConfigError(f"invalid URL {shown!r}: the port is not a number")
    return ConfigError(f"invalid URL {shown!r}: bad host (an IPv6 address needs [brackets])")


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
        raw: dict[str, Any] = {f.name: getattr(source, f.name) for f in dataclasses.fields(source)}
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


def parse_url(url: str) -> dict[str, Any]:
    """The raw config mapping a URL stands for (validated later by :func:`load`).

    ``resp://[user[:password]@]host[:port][/db][?key=value...]``; ``resps://`` adds TLS
    (query keys ``ca_file``, ``cert_file``, ``key_file``, ``server_hostname``,
    ``verify``); ``resp+unix://[user[:password]@]/path/to/socket[?db=N]``. Any other
    config key may be given in the query (``?num_workers=4&key_prefix=kv:``), and so may
    ``username`` and ``password``, as redis-py users write them. Messages show the URL
    through :func:`redact_url` (no password, no query) and name a malformed part by its
    cause (an unescaped ``/`` in the password, a port out of range), never by its text.
    """
    shown = redact_url(url)
    if url.partition("://")[0].lower() in CLUSTER_SCHEMES:
        return _parse_cluster_url(url, shown)
    try:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        port = parts.port
    except ValueError:
        raise _bad_authority(url, shown) from None
    if scheme not in SCHEMES:
        raise ConfigError(
            f"unsupported URL scheme {scheme!r} in {shown!r}; "
            f"valid: {', '.join([*SCHEMES, *CLUSTER_SCHEMES])}"
        )
    tls, unix = SCHEMES[scheme]
    raw: dict[str, Any] = {}
    if parts.username:
        raw["username"] = unquote(parts.username)
    if parts.password:
        raw["password"] = unquote(parts.password)
    if unix:
        if not parts.path:
            raise ConfigError(f"URL {shown!r} names no socket path (resp+unix:///path/to/sock)")
        raw["unix_path"] = unquote(parts.path)
    else:
        raw.update(_server_address(parts, port, url, shown))
    return _add_query(raw, parts.query, tls, shown)


def _server_address(parts: SplitResult, port: int | None, url: str, shown: str) -> dict[str, Any]:
    """Host, port and database of a server URL; a malformed one named by its cause."""
    if port == 0 or (not parts.hostname and _userinfo_misplaced(url)):
        raise _bad_authority(url, shown)
    raw: dict[str, Any] = {}
    if parts.hostname:
        raw["host"] = unquote(parts.hostname)
    if port is not None:
        raw["port"] = port
    db_text = parts.path.strip("/")
    if db_text:
        if not db_text.isdigit():
            if _userinfo_misplaced(url):
                raise ConfigError(f"invalid URL {shown!r}: {_USERINFO_HINT}")
            raise ConfigError(f"URL {shown!r}: the path must be a database number, like /0")
        raw["db"] = int(db_text)
    return raw


def _add_query(raw: dict[str, Any], query_text: str, tls: bool, shown: str) -> dict[str, Any]:
    """``raw`` with a URL's query parameters added (TLS and eviction keys nested)."""
    query = dict(_parse_query(query_text, shown))
    for key in _URL_QUERY_CREDENTIALS:
        if key in query and key in raw:
            raise ConfigError(
                f"URL {shown!r} gives the {key} twice: in the user information and as ?{key}="
            )
    tls_fields = {k: query.pop(k) for k in list(query) if k in TLS_KEYS}
    if tls_fields and not tls:
        raise ConfigError(
            f"URL {shown!r}: TLS parameters ({', '.join(tls_fields)}) need the resps:// scheme"
        )
    if tls:
        raw["tls"] = tls_fields
    eviction = {k: query.pop(k) for k in list(query) if k in EVICTION_KEYS}
    if eviction:
        raw["eviction"] = eviction
    raw.update(query)
    return raw


def _parse_cluster_url(url: str, shown: str) -> dict[str, Any]:
    """``resp+cluster://[user[:password]@]host1[:port1],host2[:port2][/][?key=value...]``.

    Every host is a seed; the path may only be empty, ``/`` or ``/0`` (a cluster has
    database 0 only). The query takes the same keys as for one server."""
    scheme, _, rest = url.partition("://")
    tls = CLUSTER_SCHEMES[scheme.lower()]
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    netloc, tail = rest[:end], rest[end:]
    path, _, query = tail.partition("?")
    query = query.partition("#")[0]
    raw: dict[str, Any] = {"cluster": True}
    userinfo, at, hosts = netloc.rpartition("@")
    if at:
        user, colon, password = userinfo.partition(":")
        if user:
            raw["username"] = unquote(user)
        if colon and password:
            raw["password"] = unquote(password)
    if path.split("#")[0].strip("/") not in ("", "0"):
        raise ConfigError(f"URL {shown!r}: a cluster has database 0 only (no /N path)")
    seeds = []
    for text in hosts.split(","):
        try:
            seeds.append(format_address(*parse_address(unquote(text))))
        except ConfigError as exc:
            raise ConfigError(f"URL {shown!r}: {exc}") from None
    raw["seeds"] = seeds
    return _add_query(raw, query, tls, shown)


#: Credentials a URL may also carry in its query, as redis-py users write them
#: (``redis://host:6379?password=...``): accepted, never echoed.
_URL_QUERY_CREDENTIALS: Final[dict[str, type]] = {"username": str, "password": str}
#: Keys a URL query string may carry, with their types.
_QUERY_KEYS: Final[dict[str, type]] = (
    {
        k: t
        for table in (CONNECTION_KEYS, STORE_KEYS, TLS_KEYS, EVICTION_KEYS)
        for k, t in table.items()
        if k not in _URL_AUTHORITY_KEYS
    }
    | {k: CLUSTER_KEYS[k] for k in _CLUSTER_QUERY_KEYS}
    | _URL_QUERY_CREDENTIALS
)


def _parse_query(query: str, shown: str) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for position, (key, text) in enumerate(parse_qsl(query, keep_blank_values=True), 1):
        kind = _QUERY_KEYS.get(key)
        if kind is None:
            if "@" in key:
                raise ConfigError(f"invalid URL {shown!r}: {_USERINFO_HINT}")
            # The query may hold a secret (a pasted password, a misspelt ?pasword=), so
            # the unknown name is not echoed: its position and the nearest valid key are.
            near = difflib.get_close_matches(key.lower(), list(_QUERY_KEYS), n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise ConfigError(
                f"unknown URL query parameter #{position} in {shown!r}{hint}; names are not "
                f"echoed, a query may hold secrets; valid: {', '.join(_QUERY_KEYS)}"
            )
        out.append((key, _from_text(key, text, kind, f"URL parameter {key!r}")))
    return out


# -- typed values ----------------------------------------------------------------------

_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})


def _show(key: str, value: object) -> str:
    return "" if key in SECRET_KEYS else f" {value!r}"


def _from_text(key: str, text: str, kind: type, what: str) -> Any:
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
        raise ConfigError(f"{what}: expected {kind.__name__}, got{_show(key, text)}") from None
    return text


def _typed(key: str, value: object, kind: type, where: str) -> Any:
    """``value`` checked against ``kind`` (JSON is strict; sizes may be strings)."""
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is int and key.endswith("_bytes") and isinstance(value, str):
        return _from_text(key, value, int, f"config key '{where}{key}'")
    if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    raise ConfigError(
        f"config key '{where}{key}': expected {kind.__name__}, "
        f"got {type(value).__name__}{_show(key, value)}"
    )


def _check_keys(raw: Mapping[str, Any], valid: Any, where: str) -> None:
    for key in raw:
        if key not in valid:
            raise ConfigError(f"unknown config key '{where}{key}'; valid: {', '.join(valid)}")


# -- building --------------------------------------------------------------------------


def _build(raw: dict[str, Any], env: Mapping[str, str]) -> RespkvConfig:
    _check_keys(raw, VALID_KEYS, "")
    kind_value = raw.pop("type", None)
    if kind_value is not None and str(kind_value).lower() != CONFIG_TYPE:
        raise ConfigError(f"config key 'type' must be {CONFIG_TYPE!r}, got {kind_value!r}")
    _drop_lmcache_keys(raw, LMCACHE_GENERIC_KEYS, "")

    conn: dict[str, Any] = {}
    for key, kind in CONNECTION_KEYS.items():
        value = raw.get(key)
        if value is not None:
            conn[key] = _typed(key, value, kind, "")
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

    store = {k: _typed(k, raw[k], t, "") for k, t in STORE_KEYS.items() if raw.get(k) is not None}
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
    fields = {k: _typed(k, v, CLUSTER_KEYS[k], "") for k, v in present.items()}
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


def _drop_lmcache_keys(raw: dict[str, Any], keys: Mapping[str, type], where: str) -> None:
    """Remove LMCache's own keys from ``raw`` after checking their types (debug-logged)."""
    dropped = [k for k in keys if k in raw]
    for key in dropped:
        value = raw.pop(key)
        if value is not None:
            _typed(key, value, keys[key], where)
    if dropped:
        _log.debug("ignoring LMCache-only config keys: %s", ", ".join(where + k for k in dropped))


def _apply_env(conn: dict[str, Any], env: Mapping[str, str]) -> None:
    """Fill empty host/port/username/password from the environment (config wins)."""
    for key, names in ENV_FALLBACKS.items():
        if conn.get(key) or (key in ("host", "port") and conn.get("unix_path")):
            continue
        for name in names:
            text = env.get(name, "")
            if text:
                conn[key] = _from_text(
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
    _check_keys(value, tuple(TLS_KEYS), "tls.")
    fields = {k: _typed(k, v, TLS_KEYS[k], "tls.") for k, v in value.items() if v is not None}
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
    _check_keys(value, (*EVICTION_KEYS, *LMCACHE_EVICTION_KEYS), "eviction.")
    value = dict(value)
    _drop_lmcache_keys(value, LMCACHE_EVICTION_KEYS, "eviction.")
    policy = value.get("eviction_policy")
    if isinstance(policy, str) and policy.lower() in {p.lower() for p in LMCACHE_ONLY_POLICIES}:
        raise ConfigError(
            f"config key 'eviction.eviction_policy': {policy!r} is an LMCache policy that "
            f"respkv's KV store does not implement; supported: {', '.join(VALID_POLICIES)}. "
            "(Inside LMCache, its own L2EvictionController runs ARC and IsolatedLRU: put the "
            "policy in LMCache's adapter JSON, around the respkv plugin.)"
        )
    fields = {
        k: _typed(k, v, EVICTION_KEYS[k], "eviction.") for k, v in value.items() if v is not None
    }
    try:
        return EvictionConfig(**fields)
    except ValueError as exc:
        raise ConfigError(f"config key 'eviction': {exc}") from None
