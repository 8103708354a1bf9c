"""Secrets and malformed URLs as a newcomer writes them (issue 11 §2 items 2 and 11).

A URL's query is never echoed (it may hold ``?password=``, which redis-py users write
and respkv now accepts); a password holding an unescaped ``/`` is named as the cause
instead of "bad host or port" next to a redacted URL that looks valid; a port out of
range names the range; JSON that is not an object is called JSON. Each message is
checked for the secret's absence as well as for what it must say.
"""

from __future__ import annotations

import pytest

from respkv.cli import main
from respkv.config import load, redact_url
from respkv.errors import ConfigError
from respkv.testing import AUTH_PASSWORD
from respkv.testing.servers import LocalServer

SECRET = "TOPSECRET"


def config_error(source: str) -> str:
    with pytest.raises(ConfigError) as info:
        load(source, environ={})
    return str(info.value)


def test_query_password_is_accepted_as_redis_py_users_write_it() -> None:
    cfg = load(f"redis://127.0.0.1:6379?password={SECRET}&db=2", environ={})
    assert cfg.connection.password == SECRET
    assert cfg.connection.db == 2
    assert SECRET not in repr(cfg) and SECRET not in cfg.url
    user = load(f"resp://h:1?username=kv&password={SECRET}", environ={}).connection
    assert (user.username, user.password) == ("kv", SECRET)


@pytest.mark.parametrize(
    "url",
    [
        pytest.param(f"resp://127.0.0.1:6379?pasword={SECRET}", id="misspelt-key"),
        pytest.param(f"resp://127.0.0.1:6379?{SECRET}", id="bare-word"),
        pytest.param(f"resp://127.0.0.1:6379?db=1&{SECRET}=1&x", id="secret-as-a-name"),
        pytest.param(f"resp://:a@127.0.0.1:6379?password={SECRET}", id="password-twice"),
    ],
)
def test_a_bad_query_is_refused_without_echoing_it(url: str) -> None:
    message = config_error(url)
    assert SECRET not in message
    assert "resp://" in message  # the URL is still named, without its query


def test_unknown_query_name_is_located_and_the_nearest_key_suggested() -> None:
    message = config_error(f"resp://h?db=1&pasword={SECRET}")
    assert "unknown URL query parameter #2 in 'resp://h?...' (did you mean 'password'?)" in message
    assert "pasword" not in message  # a misspelt key may hold the secret's first letters
    assert "did you mean" not in config_error(f"resp://h?{SECRET}")


def test_redact_url_hides_the_query() -> None:
    assert redact_url(f"resp://h:1?password={SECRET}") == "resp://h:1?..."
    assert redact_url(f"resp://u:{SECRET}@h:1/0?ca_file=/x") == "resp://u:***@h:1/0?..."
    assert redact_url("resp://h:1/0") == "resp://h:1/0"


@pytest.mark.parametrize(
    "url",
    [
        "resp://:TOP/SECRET@host:6379",
        "resp://:TOP?SECRET@host:6379",
        "resp://:TOP#SECRET@host:6379",
        "resp://user:12/SECRET@host",  # parses as host "user", port 12, path "/SECRET@host"
        "resp://:12?SECRET@host",  # parses as port 12, query "SECRET@host"
    ],
)
def test_unescaped_slash_in_the_password_is_named_as_the_cause(url: str) -> None:
    message = config_error(url)
    assert "unescaped '/', '?' or '#'" in message, message
    assert "%2F" in message
    assert "SECRET" not in message and "TOP" not in message
    assert "bad host or port" not in message


def test_escaped_slash_in_the_password_works() -> None:
    assert load("resp://:TOP%2FSECRET@host:6379", environ={}).connection.password == "TOP/SECRET"


@pytest.mark.parametrize(("port", "shown"), [("99999", "99999"), ("0", "0"), ("070000", "70000")])
def test_port_out_of_range_names_the_range(port: str, shown: str) -> None:
    assert f"port {shown} is out of range 1..65535" in config_error(f"resp://h:{port}")


def test_port_that_is_not_a_number() -> None:
    assert "the port is not a number" in config_error("resp://h:http")


@pytest.mark.parametrize(
    ("text", "kind"), [("[1,2]", "a list"), ("42", "a number"), ('"x"', "a string")]
)
def test_json_that_is_not_an_object_is_called_json(text: str, kind: str) -> None:
    message = config_error(text)
    assert f"is JSON, but {kind}" in message
    assert "is not a URL" not in message


def test_cli_accepts_query_password_and_never_prints_it(
    capsys: pytest.CaptureFixture[str], auth_server: LocalServer
) -> None:
    url = f"resp://127.0.0.1:{auth_server.port}?password={AUTH_PASSWORD}"
    assert main(["doctor", "--url", url]) == 0
    out, err = capsys.readouterr()
    assert "Server: 127.0.0.1:" in out
    assert AUTH_PASSWORD not in out + err


@pytest.mark.parametrize("command", ["doctor", "bench"])
def test_cli_bad_query_exits_2_without_the_secret(
    capsys: pytest.CaptureFixture[str], command: str
) -> None:
    assert main([command, "--url", f"resp://127.0.0.1:1?pasword={SECRET}"]) == 2
    out, err = capsys.readouterr()
    assert "unknown URL query parameter #1" in err
    assert SECRET not in out + err
