"""The ``respkv`` command against real servers: flags, output format, JSON, exit codes.

Runs are kept tiny (a few 256 KiB chunks) so the whole file takes seconds; throughput
figures are never asserted (speed is for benchmarks). Commands run in-process through
``respkv.cli.main`` except where the process boundary is the point (the embedded
server must be gone after exit; ``respkv server`` stops on SIGINT).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import respkv
from respkv._admin import AdminConnection
from respkv._contract import BatchResult, KeyStatus
from respkv._options import ConnectionOptions
from respkv.cli import main
from respkv.cli._measure import BenchConfig, bench_keys, first_mismatch, make_chunks, verify
from respkv.cli._target import SERVER_ENV
from respkv.testing import ACL_PASSWORD, ACL_USER, AUTH_PASSWORD
from respkv.testing.servers import LocalServer, free_port

#: Flags for a tiny but complete bench run: 6 chunks of 256 KiB over 2 workers.
SMALL = ["--num-keys", "6", "--chunk-mb", "0.25", "--num-workers", "2", "--warmup", "0"]
#: Seconds a child ``respkv`` process may take (server start included).
CHILD_TIMEOUT = 60


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture(autouse=True)
def no_server_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's exported RESPKV_URL must not change what these tests talk to."""
    for name in SERVER_ENV:
        monkeypatch.delenv(name, raising=False)


def child_env() -> dict[str, str]:
    """The environment for a child ``python -m respkv`` running this same package (no
    variable that names a server: the child must start its own)."""
    env = {k: v for k, v in os.environ.items() if k not in SERVER_ENV}
    root = str(Path(respkv.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


def port_is_closed(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return False
    except OSError:
        return True


# --------------------------------------------------------------------------- no command


def test_no_command_prints_backend_and_reason(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys)
    assert status == 0
    lines = out.splitlines()
    assert lines[0] in ("backend: python", "backend: native")
    assert lines[1].startswith("reason: ") and len(lines[1]) > len("reason: ")


# --------------------------------------------------------------------------- bench


REFERENCE_LINES = [
    r"Redis RESP Client Benchmark",
    r"Server: 127\.0\.0\.1:\d+, Workers: 2",
    r"Chunk size: 256KB, Keys: 6",
    r"Backend: (python|native) \(.+\)",
    r"Units: KB = 1024 bytes, GB = 2\^30 bytes \(GiB\), as the reference counts",
    r"-{60}",
    r"Batch SET: \d+\.\d\d GB/s \(0\.00 GB written\)",
    r"Batch GET: \d+\.\d\d GB/s \(0\.00 GB read\)",
    r"Batch EXISTS: \d+ ops/s \(6/6 hits\)",
    r"-{60}",
    r"All tests passed",
]


def test_bench_prints_the_reference_format(
    capsys: pytest.CaptureFixture[str], redis_url: str
) -> None:
    status, out, _ = run(capsys, "bench", "--url", redis_url, *SMALL)
    assert status == 0, out
    lines = out.splitlines()
    assert len(lines) == len(REFERENCE_LINES), out
    for pattern, line in zip(REFERENCE_LINES, lines, strict=True):
        assert re.fullmatch(pattern, line), (pattern, line)


def test_bench_leaves_no_keys_behind(
    capsys: pytest.CaptureFixture[str], redis_options: ConnectionOptions
) -> None:
    status, _, _ = run(capsys, "bench", "--port", str(redis_options.port), *SMALL)
    assert status == 0
    with AdminConnection(redis_options) as admin:
        assert admin.command("DBSIZE") == 0


def test_bench_repeat_line_and_gib_figures(
    capsys: pytest.CaptureFixture[str], redis_url: str
) -> None:
    # 4 MiB x 64 keys = 0.25 GiB: the "written" figure shows the binary unit in use.
    argv = ["--num-keys", "64", "--chunk-mb", "4", "--num-workers", "2", "--repeat", "2"]
    status, out, _ = run(capsys, "bench", "--url", redis_url, *argv, "--warmup", "1")
    assert status == 0, out
    assert "Runs: 2 timed (median shown), 1 warmup" in out
    assert "(0.25 GB written)" in out
    assert "(0.25 GB read)" in out
    assert "Chunk size: 4096KB, Keys: 64" in out


JSON_OP_KEYS = {"keys", "seconds", "median_s", "failed_keys", "first_error"}


def check_bench_json(doc: dict[str, Any], *, keys: int, chunk: int, repeat: int) -> None:
    assert doc["schema"] == "respkv.bench/1"
    assert set(doc) >= {
        "server",
        "backend",
        "config",
        "units",
        "set",
        "get",
        "exists",
        "passed",
        "failures",
    }
    assert doc["config"] == {
        "chunk_bytes": chunk,
        "num_keys": keys,
        "num_workers": 2,
        "repeat": repeat,
        "warmup": 0,
    }
    assert doc["backend"]["name"] in ("python", "native")
    assert isinstance(doc["backend"]["reason"], str)
    for op in ("set", "get", "exists"):
        assert set(doc[op]) >= JSON_OP_KEYS
        assert len(doc[op]["seconds"]) == repeat
        assert all(isinstance(s, float) and s > 0 for s in doc[op]["seconds"])
        assert doc[op]["failed_keys"] == 0
    for op in ("set", "get"):
        assert doc[op]["bytes"] == keys * chunk
        assert doc[op]["bytes_per_s"] > 0
    assert doc["exists"]["ops_per_s"] > 0
    assert doc["exists"]["hits"] == keys
    assert doc["get"]["verified"] is True
    assert doc["get"]["mismatched_keys"] == 0
    assert doc["passed"] is True
    assert doc["failures"] == []


def test_bench_json_on_stdout(capsys: pytest.CaptureFixture[str], redis_url: str) -> None:
    status, out, _ = run(capsys, "bench", "--url", redis_url, *SMALL, "--repeat", "2", "--json")
    assert status == 0
    doc = json.loads(out)  # stdout holds the JSON document and nothing else
    check_bench_json(doc, keys=6, chunk=256 * 1024, repeat=2)
    assert doc["server"]["embedded"] is False
    assert doc["server"]["address"] == redis_url.removeprefix("resp://")


def test_bench_json_to_a_file_keeps_the_text(
    capsys: pytest.CaptureFixture[str], redis_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "bench.json"
    status, out, _ = run(capsys, "bench", "--url", redis_url, *SMALL, "--json", str(path))
    assert status == 0
    assert out.splitlines()[-1] == "All tests passed"
    check_bench_json(json.loads(path.read_text()), keys=6, chunk=256 * 1024, repeat=1)


def test_bench_starts_and_stops_its_own_server() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "respkv", "bench", *SMALL],
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT,
        env=child_env(),
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "All tests passed"
    m = re.search(r"started a throwaway (redis|valkey) \S+ at 127\.0\.0\.1:(\d+)", proc.stderr)
    assert m, proc.stderr
    assert port_is_closed(int(m.group(2)))


def test_bench_unreachable_server_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    status, out, err = run(capsys, "bench", "--port", str(port), *SMALL)
    assert status == 3
    assert out == ""
    assert f"cannot connect to 127.0.0.1:{port}" in err


def test_bench_failed_keys_exit_1(
    capsys: pytest.CaptureFixture[str], make_server: Callable[..., LocalServer]
) -> None:
    # A real server too small for the data: SETs get -OOM, GET cannot verify.
    server = make_server("--maxmemory", "1mb", "--maxmemory-policy", "noeviction")
    argv = ["--num-keys", "16", "--chunk-mb", "0.25", "--num-workers", "2", "--warmup", "0"]
    status, out, _ = run(capsys, "bench", "--port", str(server.port), *argv)
    assert status == 1
    assert "All tests passed" not in out
    assert re.search(r"^FAILED: SET failed: \d+ of 16 keys failed.*OOM", out, re.M), out
    assert re.search(r"^FAILED: GET", out, re.M), out


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["bench", "--chunk-mb", "0"], id="zero-chunk"),
        pytest.param(["bench", "--chunk-mb", "lots"], id="chunk-not-a-number"),
        pytest.param(["bench", "--chunk-mb", "1024"], id="chunk-over-512MiB"),
        pytest.param(["bench", "--num-keys", "0"], id="no-keys"),
        pytest.param(["bench", "--num-workers", "0"], id="no-workers"),
        pytest.param(["bench", "--num-workers", "100000"], id="too-many-workers"),
        pytest.param(["sweep", "--workers", "1,100000"], id="sweep-too-many-workers"),
        pytest.param(["bench", "--backend", "fortran"], id="unknown-backend"),
        pytest.param(["bench", "--url", "ftp://127.0.0.1:1"], id="bad-url-scheme"),
        pytest.param(["bench", "--url", "resp://127.0.0.1:1", "--port", "2"], id="url-and-port"),
        pytest.param(["sweep", "--workers", "1,x"], id="sweep-bad-workers"),
        pytest.param(["frobnicate"], id="unknown-command"),
    ],
)
def test_bad_usage_exits_2(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    status, out, err = run(capsys, *argv)
    assert status == 2
    assert out == ""
    assert err.strip()


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "bench", "--help")
    assert status == 0
    for flag in (
        "--host",
        "--port",
        "--chunk-mb",
        "--num-workers",
        "--num-keys",
        "--username",
        "--password",
        "--url",
        "--backend",
        "--repeat",
        "--warmup",
        "--json",
    ):
        assert flag in out
    assert "GB = 2^30 bytes" in out


# --------------------------------------------------------------------------- secrets


def test_no_secrets_printed(capsys: pytest.CaptureFixture[str], auth_server: LocalServer) -> None:
    addr = f"127.0.0.1:{auth_server.port}"
    runs = [
        ["bench", "--url", f"resp://{ACL_USER}:{ACL_PASSWORD}@{addr}", *SMALL, "--json"],
        ["bench", "--port", str(auth_server.port), "--password", AUTH_PASSWORD, *SMALL],
        [
            "bench",
            "--port",
            str(auth_server.port),
            "--username",
            ACL_USER,
            "--password",
            ACL_PASSWORD,
            *SMALL,
            "--json",
        ],
        ["doctor", "--port", str(auth_server.port), "--password", AUTH_PASSWORD],
    ]
    for argv in runs:
        status, out, err = run(capsys, *argv)
        assert status == 0, (argv, err)
        for secret in (ACL_PASSWORD, AUTH_PASSWORD):
            assert secret not in out and secret not in err


def test_wrong_password_exits_3_without_echoing_it(
    capsys: pytest.CaptureFixture[str], auth_server: LocalServer
) -> None:
    wrong = "not-the-password-123"
    for argv in (
        ["bench", "--port", str(auth_server.port), "--password", wrong, *SMALL],
        ["bench", "--url", f"resp://{ACL_USER}:{wrong}@127.0.0.1:{auth_server.port}", *SMALL],
        ["doctor", "--port", str(auth_server.port), "--password", wrong],
    ):
        status, out, err = run(capsys, *argv)
        assert status == 3
        assert "refused us" in err
        assert wrong not in out and wrong not in err


# --------------------------------------------------------------------------- sweep


def test_sweep_table_json_plot_and_progress(
    capsys: pytest.CaptureFixture[str], redis_url: str, tmp_path: Path
) -> None:
    pytest.importorskip("matplotlib", reason="the plot needs the respkv[plot] extra")
    path, png = tmp_path / "sweep.json", tmp_path / "sweep.png"
    status, out, err = run(
        capsys,
        "sweep",
        "--url",
        redis_url,
        "--chunk-mb",
        "0.25,0.5",
        "--workers",
        "1,2",
        "--num-keys",
        "4",
        "--repeat",
        "1",
        "--warmup",
        "0",
        "--json",
        str(path),
        "--plot",
        str(png),
    )
    assert status == 0, err
    assert re.search(r"^SET GiB/s\s+workers:\s+1\s+2$", out, re.M), out
    assert re.search(r"^GET GiB/s\s+workers:\s+1\s+2$", out, re.M), out
    assert re.search(r"^0\.25 MiB\s+\d+\.\d\d\s+\d+\.\d\d\s*$", out, re.M), out
    assert re.search(r"^0\.5 MiB\s+\d+\.\d\d\s+\d+\.\d\d\s*$", out, re.M), out
    assert "All points verified" in out
    assert len(re.findall(r"^\[[#.]{20}\] \d/4 ", err, re.M)) == 4
    doc = json.loads(path.read_text())
    assert doc["schema"] == "respkv.sweep/1"
    assert doc["passed"] is True
    points = {(p["chunk_bytes"], p["num_workers"]) for p in doc["points"]}
    assert points == {(c, w) for c in (256 * 1024, 512 * 1024) for w in (1, 2)}
    for p in doc["points"]:
        assert p["num_keys"] == 4 and p["verified"] is True
        assert p["set_bytes_per_s"] > 0 and p["get_bytes_per_s"] > 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sweep_plot_without_matplotlib_says_how_to_install(redis_url: str) -> None:
    # Import of matplotlib is made to fail in the child only (sys.modules entry None).
    code = (
        "import sys; sys.modules['matplotlib'] = None; from respkv.cli import main; "
        f"sys.exit(main(['sweep', '--url', {redis_url!r}, '--plot', 'x.png']))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT,
        env=child_env(),
        check=False,
    )
    assert proc.returncode == 2
    assert "pip install 'respkv[plot]'" in proc.stderr


# --------------------------------------------------------------------------- server


def test_server_prints_its_url_and_stops_on_sigint() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "respkv", "server"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(),
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        m = re.fullmatch(r"resp://127\.0\.0\.1:(\d+)", url)
        assert m, url
        port = int(m.group(1))
        with AdminConnection(ConnectionOptions(port=port), timeout=5) as admin:
            assert admin.command("PING") == b"PONG"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=CHILD_TIMEOUT) == 0
        assert port_is_closed(port)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


# --------------------------------------------------------------------------- chunk-size


def test_chunk_size_for_a_preset(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(
        capsys, "chunk-size", "--model", "meta-llama/Llama-3.1-8B-Instruct", "--tokens", "256"
    )
    assert status == 0
    assert "KV cache per token: 128 KiB (131072 bytes)" in out
    assert "Tokens per chunk for a 4 MiB target: 32 (4 MiB per chunk)" in out
    assert "A chunk of 256 tokens: 32 MiB (too big" in out


def test_chunk_size_explicit_dims_json(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(
        capsys,
        "chunk-size",
        "--layers",
        "32",
        "--kv-heads",
        "8",
        "--head-dim",
        "128",
        "--dtype",
        "fp8",
        "--tp",
        "2",
        "--target",
        "2MiB",
        "--json",
    )
    assert status == 0
    doc = json.loads(out)
    assert doc["bytes_per_token"] == 2 * 4 * 128 * 32 * 1
    assert doc["tokens_per_chunk"] == 2 * 1024 * 1024 // doc["bytes_per_token"]
    assert doc["chunk_bytes"] == doc["tokens_per_chunk"] * doc["bytes_per_token"]
    assert doc["tokens_for"]["4 MiB"] == 4 * 1024 * 1024 // doc["bytes_per_token"]


def test_chunk_size_list(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "chunk-size", "--list")
    assert status == 0
    assert re.search(r"^Llama-3\.1-8B\s+32\s+8\s+128\s+128 KiB$", out, re.M), out


@pytest.mark.parametrize(
    "argv",
    [
        ["chunk-size", "--model", "GPT-17"],
        ["chunk-size", "--layers", "32"],
        ["chunk-size", "--model", "Llama-3.1-8B", "--layers", "2"],
        ["chunk-size", "--model", "Llama-3.1-8B", "--target", "4 parsecs"],
        ["chunk-size", "--model", "Llama-3.1-8B", "--target", "1KiB"],
    ],
)
def test_chunk_size_errors_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    status, out, err = run(capsys, *argv)
    assert status == 2
    assert out == ""
    assert err.startswith("respkv chunk-size: ")


# --------------------------------------------------------------------------- doctor


def test_doctor_reports_server_and_advice(
    capsys: pytest.CaptureFixture[str], redis_server: LocalServer
) -> None:
    status, out, _ = run(capsys, "doctor", "--url", redis_server.url)
    assert status == 0
    assert re.search(r"^Backend: (python|native) \(.+\)$", out, re.M)
    assert re.search(rf"^Server: 127\.0\.0\.1:{redis_server.port}: (redis|valkey) \d+\.", out, re.M)
    assert re.search(r"^io-threads: \d+", out, re.M)
    assert "maxmemory: 0 (no limit), policy noeviction" in out
    assert "Persistence: save '', appendonly no" in out
    assert "no maxmemory" in out  # the advice for an unlimited server
    assert "persistence is on" not in out


def test_doctor_advises_against_persistence(
    capsys: pytest.CaptureFixture[str], make_server: Callable[..., LocalServer]
) -> None:
    server = make_server("--appendonly", "yes", "--maxmemory", "64mb")
    status, out, _ = run(capsys, "doctor", "--port", str(server.port))
    assert status == 0
    assert "appendonly yes" in out
    assert "persistence is on" in out
    assert "maxmemory-policy noeviction" in out
    assert "no maxmemory" not in out


def test_doctor_unreachable_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(capsys, "doctor", "--port", str(free_port()))
    assert status == 3
    assert "cannot connect" in err


# --------------------------------------------------------------------------- helpers


def test_chunks_are_distinct_and_verification_catches_one_byte() -> None:
    chunks = make_chunks(4, 3 * 4096 + 5)
    assert len({bytes(c) for c in chunks}) == 4
    copies = [bytearray(c) for c in chunks]
    ok = BatchResult((b"k",) * 4, (KeyStatus.OK,) * 4, (None,) * 4, True)
    assert verify(chunks, copies, ok) == 0
    copies[2][4096 + 17] ^= 0x01
    assert verify(chunks, copies, ok) == 1
    assert first_mismatch(chunks, copies, ok) == "key 2: bytes differ from offset 4113"
    swapped = [copies[1], copies[0], chunks[2], chunks[3]]
    assert verify(chunks, swapped, ok) == 2
    miss = BatchResult((b"k",) * 4, (KeyStatus.MISS,) + (KeyStatus.OK,) * 3, (None,) * 4, True)
    assert verify(chunks, [bytearray(c) for c in chunks], miss) == 1


def test_tiny_chunks_and_config_validation() -> None:
    assert len({bytes(c) for c in make_chunks(3, 3)}) == 3
    assert len(set(bench_keys(5))) == 5
    with pytest.raises(ValueError, match="repeat"):
        BenchConfig(1024, 1, 1, repeat=0)
