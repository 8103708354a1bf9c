"""``respkv doctor``, ``--version`` and the messages around a failed connection (issue 11
§2 item 11): the tuning advice is printed, not pointed to in a docs/ folder a pip install
lacks; the "(pass --host/--port or --url)" hint appears only when no server was named;
TLS to a plaintext port says so instead of "handshake operation timed out".
"""

from __future__ import annotations

import socket

import pytest

from respkv import __version__
from respkv.cli import main
from respkv.cli._target import SERVER_ENV
from respkv.testing.servers import LocalServer, free_port


@pytest.fixture(autouse=True)
def no_server_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SERVER_ENV:
        monkeypatch.delenv(name, raising=False)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_doctor_prints_the_tuning_guide_itself(
    capsys: pytest.CaptureFixture[str], redis_server: LocalServer
) -> None:
    status, out, _ = run(capsys, "doctor", "--url", redis_server.url)
    assert status == 0
    assert "docs/performance.md" not in out  # a pip install has no docs/ folder
    guide = out[out.index("Tuning guide:\n") :].splitlines()[1:]
    assert len(guide) == 4 and all(line.startswith("  - ") for line in guide)
    assert guide[0].startswith("  - chunks of 1-4 MiB")
    assert "respkv sweep --workers" in guide[1]


@pytest.mark.parametrize("flag", ["--url", "--port"])
def test_no_hint_to_pass_flags_that_were_passed(
    capsys: pytest.CaptureFixture[str], flag: str
) -> None:
    port = free_port()
    value = f"resp://127.0.0.1:{port}" if flag == "--url" else str(port)
    status, _, err = run(capsys, "doctor", flag, value)
    assert status == 3
    assert f"cannot connect to 127.0.0.1:{port}" in err
    assert "pass --host/--port or --url" not in err


def default_port_is_free() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1):
            return False
    except OSError:
        return True


def test_hint_when_the_default_server_was_tried(capsys: pytest.CaptureFixture[str]) -> None:
    if not default_port_is_free():
        pytest.skip("a server listens on 127.0.0.1:6379 here: the default would connect")
    status, _, err = run(capsys, "doctor")
    assert status == 3
    assert "cannot connect to 127.0.0.1:6379" in err
    assert "(pass --host/--port or --url to name a server)" in err


@pytest.mark.parametrize("command", ["doctor", "bench"])
def test_tls_to_a_plaintext_port_says_what_happened(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    redis_server: LocalServer,
    command: str,
) -> None:
    # The handshake gets no answer (the server waits for a command line): a short wait.
    monkeypatch.setattr("respkv.cli.doctor.PREFLIGHT_TIMEOUT", 1.0)
    monkeypatch.setattr("respkv.cli._target.PREFLIGHT_TIMEOUT", 1.0)
    url = f"resps://127.0.0.1:{redis_server.port}?verify=false"
    status, _, err = run(capsys, command, "--url", url)
    assert status == 3
    assert f"cannot connect to 127.0.0.1:{redis_server.port} with TLS" in err
    assert "answers PING in plaintext, so it does not speak TLS" in err
    assert "resp:// URL" in err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "--version")
    assert status == 0
    assert out == f"respkv {__version__}\n"
