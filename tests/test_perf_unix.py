"""Unix sockets for co-located servers (issue 13 item 4).

``LocalServer(unix_socket=True)`` listens on a unix socket in its private directory as
well as on its TCP port, and ``respkv bench --unix`` runs through the throwaway
server's socket. Both backends move verified values through it. No speed is asserted
(the figures are in docs/performance.md, "Unix sockets").
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator

import pytest

import respkv
from respkv.cli import main
from respkv.cli._target import SERVER_ENV
from respkv.testing.servers import LocalServer

#: Values above LARGE_VALUE_BYTES (256 KiB), so the large-value path is the one used.
VALUE_BYTES = 512 * 1024


@pytest.fixture(autouse=True)
def no_server_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SERVER_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def unix_server() -> Iterator[LocalServer]:
    with LocalServer(unix_socket=True) as server:
        yield server


def test_server_listens_on_a_private_unix_socket_and_tcp(unix_server: LocalServer) -> None:
    path = unix_server.unix_path
    assert path is not None and stat.S_ISSOCK(os.stat(path).st_mode)
    assert os.stat(path).st_mode & 0o077 == 0  # --unixsocketperm 700
    assert unix_server.port > 0
    assert LocalServer().unix_path is None  # only when asked for


@pytest.mark.parametrize("backend", ["python", "native"])
def test_values_round_trip_over_the_socket(unix_server: LocalServer, backend: str) -> None:
    if backend == "native":
        pytest.importorskip("respkv_native._core", reason="the native backend is not built")
    keys = [f"unix:{backend}:{i}" for i in range(6)]
    values = [bytearray(os.urandom(VALUE_BYTES)) for _ in keys]
    out = [bytearray(VALUE_BYTES) for _ in keys]
    with respkv.connect(f"resp+unix://{unix_server.unix_path}", backend=backend) as client:
        assert client.batch_set(keys, values).ok
        assert client.batch_get(keys, out).ok
    assert out == values
    # The same keys through TCP: one server behind both.
    with respkv.connect(unix_server.url, backend=backend) as client:
        assert sum(client.batch_exists(keys).hits) == len(keys)


def test_bench_unix_runs_through_the_socket(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["bench", "--unix", "--num-keys", "4", "--chunk-mb", "0.5", "--warmup", "0"]
    assert main([*argv, "--num-workers", "2", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["passed"] is True
    assert doc["server"]["address"].endswith("/server.sock")


def test_bench_unix_refuses_a_named_server(
    capsys: pytest.CaptureFixture[str], redis_url: str
) -> None:
    assert main(["bench", "--unix", "--url", redis_url]) == 2
    assert "resp+unix://" in capsys.readouterr().err
