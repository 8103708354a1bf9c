"""``respkv server`` (issue 11 §2 item 9): with its port taken it prints no URL and exits
with status 3, as documented; ``--maxmemory``, ``--maxmemory-policy``, ``--requirepass``
and ``--io-threads`` reach the server (read back with CONFIG GET); ``--server-binary``
with a missing binary names that binary, not a missing redis-server, and suggests no
flag the command does not have.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import respkv
from respkv._admin import AdminConnection
from respkv._options import ConnectionOptions
from respkv.cli import main
from respkv.errors import ReplyError
from respkv.testing.servers import LocalServer

#: Seconds a child ``respkv server`` may take to start or stop.
CHILD_TIMEOUT = 60
PASSWORD = "srv-pass-4711"


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    root = str(Path(respkv.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


@pytest.fixture
def served(request: pytest.FixtureRequest) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """``respkv server`` with the test's flags in a child; its port from the first line."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "respkv", "server", *request.param],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(),
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        m = re.fullmatch(r"resp://127\.0\.0\.1:(\d+)", url)
        assert m, (url, proc.stderr.read() if proc.stderr and proc.poll() is not None else "")
        yield proc, int(m.group(1))
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=CHILD_TIMEOUT) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def config_get(admin: AdminConnection, name: str) -> str:
    reply = admin.command("CONFIG", "GET", name)
    return bytes(reply[1]).decode()


def test_port_taken_prints_no_url_and_exits_3(
    capsys: pytest.CaptureFixture[str], redis_server: LocalServer
) -> None:
    # Before: the other server's PONG passed the readiness check, the URL of *its* port
    # was printed, and the command exited 1 when our process died.
    status = main(["server", "--port", str(redis_server.port)])
    out, err = capsys.readouterr()
    assert status == 3
    assert out == ""
    assert f"cannot listen on 127.0.0.1:{redis_server.port}" in err


#: Every pass-through flag at once.
FLAGS = ["--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru", "--requirepass", PASSWORD]


@pytest.mark.parametrize("served", [[*FLAGS, "--io-threads", "2"]], indirect=True)
def test_server_flags_reach_the_server(served: tuple[subprocess.Popen[str], int]) -> None:
    _, port = served
    with (
        pytest.raises(ReplyError, match="NOAUTH"),
        AdminConnection(ConnectionOptions(port=port), timeout=5) as anonymous,
    ):
        anonymous.command("PING")
    with AdminConnection(ConnectionOptions(port=port, password=PASSWORD), timeout=5) as admin:
        assert config_get(admin, "maxmemory") == str(64 * 1024 * 1024)
        assert config_get(admin, "maxmemory-policy") == "allkeys-lru"
        assert config_get(admin, "io-threads") == "2"


@pytest.mark.parametrize("served", [["--io-threads", "1"]], indirect=True)
def test_io_threads_1_replaces_the_recommended_count(
    served: tuple[subprocess.Popen[str], int],
) -> None:
    _, port = served
    with AdminConnection(ConnectionOptions(port=port), timeout=5) as admin:
        assert config_get(admin, "io-threads") == "1"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--maxmemory", "lots"], "not a memory size: 'lots'"),
        (["--io-threads", "0"], "must be >= 1"),
        (["--io-threads", "129"], "must be at most 128"),
        (["--maxmemory-policy", "lru"], "invalid choice: 'lru'"),
    ],
)
def test_bad_server_flags_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert main(["server", *argv]) == 2
    assert message in capsys.readouterr().err


def test_missing_server_binary_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["server", "--server-binary", "nosuch"])
    out, err = capsys.readouterr()
    assert status == 3
    assert out == ""
    assert "server binary 'nosuch': no executable of that name on PATH" in err
    assert "no redis-server" not in err  # there is one; it was not asked for
    assert "--host" not in err and "--url" not in err  # flags `server` does not have


def test_bench_without_any_server_binary_suggests_a_running_server(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no redis-server, no valkey-server
    for name in ("RESPKV_URL", "RESPKV_HOST", "RESPKV_PORT", "LMCACHE_RESP_HOST"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("LMCACHE_RESP_PORT", raising=False)
    status = main(["bench", "--num-keys", "1", "--chunk-mb", "0.01"])
    err = capsys.readouterr().err
    assert status == 3
    assert "no redis-server or valkey-server on PATH" in err
    assert "pass --host/--port/--url to use a running server" in err
