"""Secrets never leak: not in reprs, messages, exception texts, logs or command output.

A distinctive password is fed through every door (URL, JSON, environment, overrides) and
every text respkv produces around it is searched for it, including full tracebacks with
their chained exceptions, and log records at DEBUG level from every respkv logger.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import pytest

import respkv
from respkv import ConfigError, KeyStatus
from respkv.cli import main as cli_main
from respkv.config import load, redact_url
from respkv.kvstore import KVStore
from respkv.testing.servers import LocalServer

SECRET = "Sup3r-Secret/Value@42"
#: Every spelling in which the secret could show up.
SPELLINGS = (SECRET, quote(SECRET, safe=""), repr(SECRET), SECRET.encode().hex())


def assert_clean(text: str, where: str) -> None:
    for spelling in SPELLINGS:
        assert spelling not in text, f"the password leaked into {where}: {text!r}"


def exception_text(exc: BaseException) -> str:
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)) + repr(exc)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RESPKV_PASSWORD", "LMCACHE_RESP_PASSWORD", "RESPKV_USERNAME", "RESPKV_HOST"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def all_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    with caplog.at_level(logging.DEBUG):
        yield caplog


def url_with_secret(host: str = "127.0.0.1", port: int = 6379, tail: str = "") -> str:
    return f"resp://user:{quote(SECRET, safe='')}@{host}:{port}{tail}"


def _from_url(mp: pytest.MonkeyPatch) -> Any:
    return url_with_secret()


def _from_json(mp: pytest.MonkeyPatch) -> Any:
    return {"host": "h", "password": SECRET}


def _from_respkv_env(mp: pytest.MonkeyPatch) -> Any:
    mp.setenv("RESPKV_PASSWORD", SECRET)
    return {"host": "h"}


def _from_lmcache_env(mp: pytest.MonkeyPatch) -> Any:
    mp.setenv("LMCACHE_RESP_PASSWORD", SECRET)
    return "resp://h:1"


SOURCES: list[Callable[[pytest.MonkeyPatch], Any]] = [
    _from_url,
    _from_json,
    _from_respkv_env,
    _from_lmcache_env,
]


@pytest.mark.parametrize("make_source", SOURCES, ids=["url", "json", "respkv-env", "lmcache-env"])
def test_reprs_hide_the_password(
    monkeypatch: pytest.MonkeyPatch, make_source: Callable[[pytest.MonkeyPatch], Any]
) -> None:
    config = load(make_source(monkeypatch))
    assert config.connection.password == SECRET
    assert_clean(repr(config), "repr(RespkvConfig)")
    assert_clean(str(config), "str(RespkvConfig)")
    assert_clean(repr(config.connection), "repr(ConnectionOptions)")
    assert_clean(config.url, "RespkvConfig.url")
    assert_clean(repr(config.connection.replace(db=1)), "repr after replace")


@pytest.mark.parametrize(
    "source",
    [
        url_with_secret(tail="/not-a-db"),
        url_with_secret(port=6379, tail="?num_workers=lots"),
        url_with_secret(tail="?unknown_key=1"),
        url_with_secret().replace("resp://", "ftp://"),
        url_with_secret().replace(":6379", ":99999"),
        url_with_secret().replace("resp://", ""),
        {"password": SECRET, "port": "not-an-int"},
        {"password": SECRET, "num_workers": 0},
        {"password": SECRET, "unknown": 1},
        {"password": SECRET, "tls": {"ca_file": "/nonexistent"}},
        {"password": 12345678, "host": "h"},
        '{"password": "' + SECRET + '", "port": }',
    ],
)
def test_config_errors_never_contain_the_password(source: Any) -> None:
    with pytest.raises(ConfigError) as info:
        load(source)
    assert_clean(exception_text(info.value), "a ConfigError")


def test_password_type_error_does_not_echo_the_value() -> None:
    with pytest.raises(ConfigError) as info:
        load({"password": 12345678})
    assert "12345678" not in str(info.value)


def test_bad_env_password_never_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESPKV_PASSWORD", SECRET)
    monkeypatch.setenv("RESPKV_PORT", "bad-port")
    with pytest.raises(ConfigError) as info:
        load({})
    assert_clean(exception_text(info.value), "an env ConfigError")


def test_redact_url_hides_odd_passwords() -> None:
    assert_clean(redact_url(f"resp://u:{SECRET}@h:1"), "redact_url")
    assert_clean(redact_url(url_with_secret()), "redact_url")


def test_wrong_password_against_a_real_server(
    auth_server: LocalServer, backend_name: str, all_logs: pytest.LogCaptureFixture
) -> None:
    url = url_with_secret(auth_server.host, auth_server.port)
    with respkv.connect(url, backend=backend_name, num_workers=1, op_timeout=10) as client:
        assert_clean(repr(client), "repr(Client)")
        result = client.batch_set(["k"], [b"v"])
        assert not result.ok
        assert result.statuses[0] in (KeyStatus.SERVER_ERROR, KeyStatus.IO_ERROR)
        assert_clean(repr(result), "a BatchResult")
        assert_clean(str(result.error), "BatchResult.error")
        with pytest.raises(respkv.RespkvError) as info:
            client.command("PING")
        assert_clean(exception_text(info.value), "the AUTH failure")
        store = KVStore(client, key_prefix="s:", evict_in="manual")
        assert_clean(repr(store), "repr(KVStore)")
        store.close()
    records = all_logs.records
    assert_clean("\n".join(r.getMessage() for r in records), "the logs")
    assert_clean(all_logs.text, "the formatted logs")


def test_right_password_works_and_still_does_not_leak(
    auth_server: LocalServer, backend_name: str, all_logs: pytest.LogCaptureFixture
) -> None:
    from respkv.testing import AUTH_PASSWORD

    url = f"resp://:{AUTH_PASSWORD}@{auth_server.host}:{auth_server.port}"
    with respkv.connect(url, backend=backend_name, num_workers=1) as client:
        assert client.batch_set(["secret-test"], [b"v"]).ok
        assert AUTH_PASSWORD not in repr(client.options)
        assert AUTH_PASSWORD not in repr(client)
    assert AUTH_PASSWORD not in all_logs.text


def test_cli_output_never_shows_the_password(
    capsys: pytest.CaptureFixture[str], auth_server: LocalServer
) -> None:
    url = url_with_secret(auth_server.host, auth_server.port)
    status = cli_main(["doctor", "--url", url])
    out = capsys.readouterr()
    assert status != 0  # the password is wrong for this server
    assert_clean(out.out, "the command's stdout")
    assert_clean(out.err, "the command's stderr")
