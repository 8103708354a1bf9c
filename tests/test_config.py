"""Configuration: URLs, the LMCache JSON, environment fallbacks, validation."""

from __future__ import annotations

import itertools
import json
import socket
from pathlib import Path
from typing import Any

import pytest

import respkv
from respkv import ConfigError, ConnectionOptions, TLSOptions
from respkv.config import ENV_FALLBACKS, VALID_KEYS, load, redact_url, resolve
from respkv.eviction import EvictionConfig
from respkv.testing import ACL_PASSWORD, ACL_USER, AUTH_PASSWORD
from respkv.testing.servers import LocalServer

#: The reference system's L2-adapter JSON, field for field.
REFERENCE_JSON: dict[str, Any] = {
    "type": "resp",
    "host": "redis.example",
    "port": 6380,
    "num_workers": 8,
    "username": "",
    "password": "",
    "max_capacity_gb": 0,
    "eviction": {"eviction_policy": "LRU", "trigger_watermark": 0.8, "eviction_ratio": 0.2},
}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No respkv/LMCache variable from the outer environment leaks into a test."""
    for names in ENV_FALLBACKS.values():
        for name in names:
            monkeypatch.delenv(name, raising=False)


# -- URLs ----------------------------------------------------------------------------


def test_url_with_everything() -> None:
    opts = resolve("resp://alice:pa%40ss@redis.example:7000/3")
    assert (opts.host, opts.port, opts.db) == ("redis.example", 7000, 3)
    assert (opts.username, opts.password) == ("alice", "pa@ss")
    assert opts.tls is None


def test_url_defaults_and_aliases() -> None:
    assert resolve("resp://example") == ConnectionOptions(host="example")
    assert resolve("redis://example:1/2") == ConnectionOptions(host="example", port=1, db=2)
    assert resolve("rediss://example").tls == TLSOptions()
    assert resolve(None) == ConnectionOptions()


def test_ipv6_host() -> None:
    opts = resolve("resp://[::1]:6390")
    assert (opts.host, opts.port) == ("::1", 6390)
    assert opts.address == "[::1]:6390"


@pytest.mark.parametrize("url", ["resp+unix:///run/redis.sock?db=2", "unix:///run/redis.sock?db=2"])
def test_unix_socket_url(url: str) -> None:
    opts = resolve(url)
    assert opts.unix_path == "/run/redis.sock"
    assert opts.db == 2
    assert opts.address == "/run/redis.sock"


def test_unix_socket_url_with_password() -> None:
    opts = resolve("resp+unix://:pw@/run/redis.sock")
    assert (opts.unix_path, opts.password) == ("/run/redis.sock", "pw")


def test_resps_url_with_tls_parameters(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    opts = resolve(f"resps://h:6390?ca_file={ca}&server_hostname=cache.internal&verify=yes")
    assert opts.tls == TLSOptions(ca_file=str(ca), server_hostname="cache.internal", verify=True)


def test_url_query_carries_other_keys() -> None:
    cfg = load(
        "resp://h:1?num_workers=3&key_prefix=kv:&max_capacity_bytes=64MiB"
        "&trigger_watermark=0.5&op_timeout=2.5"
    )
    assert cfg.connection.num_workers == 3
    assert cfg.connection.op_timeout == 2.5
    assert cfg.key_prefix == "kv:"
    assert cfg.max_capacity_bytes == 64 * 1024 * 1024
    assert cfg.eviction == EvictionConfig(trigger_watermark=0.5)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://h", "unsupported URL scheme 'ftp'"),
        ("resp://h:99999", r"port 99999 is out of range 1\.\.65535"),
        ("resp://h/x", "database number"),
        ("resp://h?colour=red", r"unknown URL query parameter #1 in 'resp://h\?\.\.\.'.*valid: db"),
        ("resp://h?ca_file=/x", "need the resps:// scheme"),
        ("resp://h?num_workers=many", "URL parameter 'num_workers': expected int"),
        ("resp://h?host=other", "unknown URL query parameter #1"),
        ("resp+unix://", "names no socket path"),
        ("resps://h?verify=maybe", "URL parameter 'verify': expected bool"),
    ],
)
def test_bad_urls(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        resolve(url)


def test_redact_url() -> None:
    assert redact_url("resp://u:secret@h:1/0") == "resp://u:***@h:1/0"
    assert redact_url("resp://:secret@h") == "resp://:***@h"
    assert redact_url("resp://u:se@c/re?t@h") == "resp://u:***@h"
    assert redact_url("resp://u@h") == "resp://u@h"
    assert redact_url("resp://h:1") == "resp://h:1"


def test_config_url_property_hides_the_password() -> None:
    assert load("resp://u:pw@h:7/2").url == "resp://u:***@h:7/2"
    assert load("resps://[::1]:7").url == "resps://[::1]:7"
    assert load("unix:///s.sock?db=1").url == "resp+unix:///s.sock?db=1"


# -- JSON ----------------------------------------------------------------------------


def test_reference_json_is_accepted_with_its_defaults() -> None:
    cfg = load(REFERENCE_JSON)
    assert cfg.connection.host == "redis.example"
    assert cfg.connection.port == 6380
    assert cfg.connection.num_workers == 8
    assert cfg.max_capacity_bytes == 0
    assert cfg.eviction == EvictionConfig("LRU", 0.8, 0.2)


def test_json_with_our_keys(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    doc = {
        **REFERENCE_JSON,
        "max_capacity_gb": 1.5,
        "key_prefix": "lmc:",
        "db": 2,
        "tls": {"ca_file": str(ca), "server_hostname": "cache"},
        "connect_timeout": 1,
        "op_timeout": 9.5,
        "window_values": 3,
        "window_bytes": "16MiB",
        "window_small": 64,
        "recover_usage": True,
    }
    cfg = load(doc)
    assert cfg.max_capacity_bytes == 3 * 512 * 1024 * 1024
    assert cfg.key_prefix == "lmc:"
    assert cfg.recover_usage is True
    c = cfg.connection
    assert (c.db, c.connect_timeout, c.op_timeout) == (2, 1.0, 9.5)
    assert (c.window_values, c.window_bytes, c.window_small) == (3, 16 * 1024 * 1024, 64)
    assert c.tls == TLSOptions(ca_file=str(ca), server_hostname="cache")


def test_json_text_and_file(tmp_path: Path) -> None:
    path = tmp_path / "respkv.json"
    path.write_text(json.dumps(REFERENCE_JSON))
    assert load(str(path)) == load(REFERENCE_JSON)
    assert load(path) == load(REFERENCE_JSON)
    assert load(json.dumps(REFERENCE_JSON)) == load(REFERENCE_JSON)


def test_unix_socket_path_as_source(tmp_path: Path) -> None:
    path = tmp_path / "r.sock"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))
        assert resolve(str(path)).unix_path == str(path)


def test_overrides_win_over_the_source() -> None:
    opts = resolve("resp://h:1/2", num_workers=2, db=5)
    assert (opts.num_workers, opts.db, opts.host) == (2, 5, "h")
    base = ConnectionOptions(host="x", port=2)
    assert resolve(base) is not None
    assert resolve(base, num_workers=3) == base.replace(num_workers=3)


def test_max_capacity_in_bytes_or_gib() -> None:
    assert load({"max_capacity_gb": 2}).max_capacity_bytes == 2 * 1024**3
    assert load({"max_capacity_bytes": "10MiB"}).max_capacity_bytes == 10 * 1024**2
    with pytest.raises(ConfigError, match="not both"):
        load({"max_capacity_gb": 1, "max_capacity_bytes": 5})
    with pytest.raises(ConfigError, match=">= 0"):
        load({"max_capacity_gb": -1})


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"hots": "h"}, r"unknown config key 'hots'; valid: type, tls, eviction, host, port"),
        ({"type": "redis"}, "'type' must be 'resp'"),
        ({"port": "6379"}, "'port': expected int, got str '6379'"),
        ({"port": True}, "'port': expected int, got bool"),
        ({"port": 70000}, r"port must be in 1\.\.65535"),
        ({"num_workers": 0}, r"num_workers must be in 1\.\.256"),
        ({"op_timeout": 0}, "op_timeout must be > 0"),
        ({"db": -1}, "db must be >= 0"),
        ({"tls": "yes"}, "'tls': expected true/false or an object"),
        ({"tls": {"ca": "/x"}}, r"unknown config key 'tls\.ca'; valid: ca_file"),
        ({"tls": {"ca_file": "/nonexistent/ca.pem"}}, "no such file"),
        ({"eviction": {"policy": "LRU"}}, r"unknown config key 'eviction\.policy'"),
        ({"eviction": {"eviction_policy": "FIFO"}}, "valid: LRU, noop"),
        ({"eviction": {"trigger_watermark": 1.5}}, r"trigger_watermark must be in \(0, 1\]"),
        ({"eviction": {"eviction_ratio": 0}}, r"eviction_ratio must be in \(0, 1\]"),
        ({"eviction": []}, "'eviction': expected an object"),
        ({"key_prefix": 5}, "'key_prefix': expected str"),
        ({"recover_usage": "yes"}, "'recover_usage': expected bool"),
        ({"window_bytes": "lots"}, "window_bytes.*expected int"),
        ({"unix_path": "/s", "tls": True}, "TLS is not supported over a unix socket"),
    ],
)
def test_every_field_is_validated(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load(doc)


def test_bad_sources(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a URL"):
        load("localhost:6379")
    with pytest.raises(ConfigError, match="not valid JSON at line 1"):
        load("{nope")
    listing = tmp_path / "list.json"
    listing.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="must hold a JSON object, not list"):
        load(listing)
    with pytest.raises(ConfigError, match="cannot read config file"):
        load(tmp_path)
    with pytest.raises(ConfigError, match="config source must be"):
        load(42)  # type: ignore[arg-type]


def test_config_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="unknown config key"):
        load({"nope": 1})


# -- environment: the precedence matrix ------------------------------------------------

CONFIG_VALUES = {"host": "cfg-host", "port": 1111, "username": "cfg-user", "password": "cfg-pw"}
RESPKV_VALUES = {"host": "rk-host", "port": 2222, "username": "rk-user", "password": "rk-pw"}
LMCACHE_VALUES = {"host": "lm-host", "port": 3333, "username": "lm-user", "password": "lm-pw"}
DEFAULTS = {"host": "127.0.0.1", "port": 6379, "username": "", "password": ""}


MATRIX = [
    (field, form, sources)
    for field in ENV_FALLBACKS
    for form in ("json", "url")
    for sources in itertools.product([True, False], repeat=3)
]


@pytest.mark.parametrize(("field", "form", "sources"), MATRIX)
def test_precedence_matrix(
    monkeypatch: pytest.MonkeyPatch, field: str, form: str, sources: tuple[bool, bool, bool]
) -> None:
    in_config, in_respkv, in_lmcache = sources
    respkv_name, lmcache_name = ENV_FALLBACKS[field]
    if in_respkv:
        monkeypatch.setenv(respkv_name, str(RESPKV_VALUES[field]))
    if in_lmcache:
        monkeypatch.setenv(lmcache_name, str(LMCACHE_VALUES[field]))
    # The field under test is set or left empty; the others are always given, so the
    # outcome depends on this field's sources only.
    values = {k: v for k, v in CONFIG_VALUES.items() if k != field}
    if in_config:
        values[field] = CONFIG_VALUES[field]
    else:
        values[field] = 0 if field == "port" else ""
    if form == "json":
        source: Any = {"type": "resp", **values}
    else:
        host = values["host"]
        port = f":{values['port']}" if values["port"] else ""
        source = f"resp://{values['username']}:{values['password']}@{host}{port}"
    opts = resolve(source)
    expected = (
        CONFIG_VALUES if in_config else RESPKV_VALUES if in_respkv
        else LMCACHE_VALUES if in_lmcache else DEFAULTS
    )[field]  # fmt: skip
    assert getattr(opts, field) == expected


def test_env_fills_a_missing_json_host_unlike_the_reference(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LMCACHE_RESP_HOST", "from-env")
    monkeypatch.setenv("LMCACHE_RESP_PORT", "7777")
    opts = resolve({"type": "resp", "host": "", "num_workers": 2})
    assert (opts.host, opts.port, opts.num_workers) == ("from-env", 7777, 2)


def test_empty_env_value_counts_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESPKV_HOST", "")
    monkeypatch.setenv("LMCACHE_RESP_HOST", "lm")
    assert resolve({}).host == "lm"


def test_bad_env_port_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESPKV_PORT", "http")
    with pytest.raises(ConfigError, match="environment variable RESPKV_PORT: expected int"):
        resolve({})


def test_env_is_not_applied_to_resolved_options(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESPKV_PASSWORD", "env-pw")
    assert resolve(ConnectionOptions()).password == ""
    assert load({}, environ={"RESPKV_PASSWORD": "given"}).connection.password == "given"


def test_host_port_env_is_ignored_for_a_unix_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESPKV_PORT", "not-a-port")
    assert resolve("unix:///s.sock").unix_path == "/s.sock"


# -- against a real server -------------------------------------------------------------


def test_connect_with_host_and_port_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, redis_options: ConnectionOptions
) -> None:
    monkeypatch.setenv("RESPKV_HOST", redis_options.host)
    monkeypatch.setenv("LMCACHE_RESP_PORT", str(redis_options.port))
    with respkv.connect({"type": "resp", "host": "", "num_workers": 2}) as client:
        client.set("k", b"value")
        assert client.get("k") == b"value"


def test_connect_with_acl_user_from_lmcache_env(
    monkeypatch: pytest.MonkeyPatch, auth_server: LocalServer
) -> None:
    monkeypatch.setenv("LMCACHE_RESP_USERNAME", ACL_USER)
    monkeypatch.setenv("LMCACHE_RESP_PASSWORD", ACL_PASSWORD)
    with respkv.connect(f"resp://{auth_server.host}:{auth_server.port}", num_workers=1) as c:
        assert c.command("ACL", "WHOAMI") == ACL_USER.encode()
        c.set("acl-key", b"v")
        assert c.exists("acl-key")


def test_connect_with_default_user_password_in_url(auth_server: LocalServer) -> None:
    url = f"resp://:{AUTH_PASSWORD}@{auth_server.host}:{auth_server.port}/1"
    with respkv.connect(url, num_workers=1) as c:
        assert c.command("ACL", "WHOAMI") == b"default"
        c.set("db1-key", b"v")
        assert c.command("CLIENT", "INFO").split(b" db=")[1].startswith(b"1 ")


def test_connect_over_a_unix_socket(make_server: Any, tmp_path: Path) -> None:
    sock = tmp_path / "redis.sock"
    make_server("--unixsocket", str(sock), "--unixsocketperm", "700")
    with respkv.connect(f"resp+unix://{sock}", num_workers=1) as c:
        c.set("over-unix", b"payload")
        buf = bytearray(7)
        assert c.get_into("over-unix", buf)
        assert buf == b"payload"


def test_connect_over_ipv6_loopback(make_server: Any) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 support in this Python build")
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError as exc:
        pytest.skip(f"IPv6 loopback unavailable: {exc}")
    server = make_server(host="::1")
    with respkv.connect(f"resp://[::1]:{server.port}", num_workers=1) as c:
        c.set("v6", b"x")
        assert c.exists("v6")


def test_valid_keys_cover_the_reference_fields() -> None:
    for key in REFERENCE_JSON:
        assert key in VALID_KEYS
