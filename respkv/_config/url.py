"""Config URLs: parsing ``resp://``-style URLs into a raw config mapping, and hiding
their secrets in messages.

Part of :mod:`respkv.config` (the public module; :mod:`respkv._config` holds its parts).
A URL becomes the same raw mapping a JSON config is (validated afterwards by
:func:`respkv.config.load`); every message shows the URL through :func:`redact_url` and
names a malformed part by its cause, never by its text.
"""

from __future__ import annotations

import difflib
from typing import Any, Final
from urllib.parse import SplitResult, parse_qsl, unquote, urlsplit

from respkv._cluster.options import format_address, parse_address
from respkv._config.keys import (
    CLUSTER_KEYS,
    CLUSTER_QUERY_KEYS,
    CONNECTION_KEYS,
    EVICTION_KEYS,
    STORE_KEYS,
    TLS_KEYS,
    from_text,
)
from respkv.errors import ConfigError

__all__ = ["CLUSTER_SCHEMES", "MAX_PORT", "MIN_PORT", "SCHEMES", "parse_url", "redact_url"]

#: The TCP port range a URL's port must be in (16 bits; port 0 is not a server's).
MIN_PORT: Final = 1
MAX_PORT: Final = 65535
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

#: Keys that a URL carries in its authority or path, not in its query string.
_URL_AUTHORITY_KEYS: Final = frozenset({"host", "port", "username", "password", "unix_path"})


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
    | {k: CLUSTER_KEYS[k] for k in CLUSTER_QUERY_KEYS}
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
        out.append((key, from_text(key, text, kind, f"URL parameter {key!r}")))
    return out
