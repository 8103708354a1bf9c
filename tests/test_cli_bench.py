"""``respkv bench`` and ``respkv sweep`` as a newcomer meets them (issue 11 §2 items 3, 5,
6 and 8): the header at once and progress per phase, a failed phase reported as a
failure (not a rate), output paths checked before any work, and the server named by
``RESPKV_URL``/``RESPKV_HOST``/``RESPKV_PORT``/``LMCACHE_RESP_*`` used instead of a
throwaway one, as the first line says. Runs are tiny; no speed is asserted.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable
from typing import Any

import pytest

from respkv.cli import bench as bench_cmd
from respkv.cli import main
from respkv.cli._measure import BenchConfig, Phase, bench_steps, run_bench
from respkv.cli._progress import PhaseReporter
from respkv.cli._target import SERVER_ENV
from respkv.testing.servers import LocalServer

#: A tiny complete run: 4 chunks of 256 KiB, 2 workers, no warmup.
SMALL = ["--num-keys", "4", "--chunk-mb", "0.25", "--num-workers", "2", "--warmup", "0"]


@pytest.fixture(autouse=True)
def no_server_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's exported RESPKV_URL must not change what these tests talk to."""
    for name in SERVER_ENV:
        monkeypatch.delenv(name, raising=False)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


# --------------------------------------------------------------------------- item 3


def test_header_is_printed_before_measuring(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, redis_url: str
) -> None:
    seen: list[str] = []
    real = run_bench

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(capsys.readouterr().out)  # what stdout held when measuring began
        return real(*args, **kwargs)

    monkeypatch.setattr(bench_cmd, "run_bench", spy)
    status, out, _ = run(capsys, "bench", "--url", redis_url, *SMALL)
    assert status == 0
    assert seen[0].startswith("Redis RESP Client Benchmark\n")
    assert seen[0].rstrip().endswith("-" * 60)  # the whole header, then the rule
    assert "Batch SET" not in seen[0]
    assert out.startswith("Batch SET: ") and out.rstrip().endswith("All tests passed")


def test_progress_is_one_plain_line_per_phase_off_a_terminal(
    capsys: pytest.CaptureFixture[str], redis_url: str
) -> None:
    status, _, err = run(capsys, "bench", "--url", redis_url, *SMALL, "--repeat", "2")
    assert status == 0
    steps = bench_steps(BenchConfig(256 * 1024, 4, 2, repeat=2, warmup=0))
    lines = re.findall(r"^respkv bench: \[(\d+)/(\d+)\] (.*)$", err, re.M)
    assert [int(i) for i, _, _ in lines] == list(range(1, steps + 1))
    assert {int(n) for _, n, _ in lines} == {steps}
    texts = [t for _, _, t in lines]
    assert texts[0].startswith("preparing 4 distinct chunks")
    assert texts[1].startswith("run 1/2 SET: ") and "GiB/s" in texts[1]
    assert texts[2].startswith("run 1/2 GET: ")
    assert texts[3].startswith("run 1/2 EXISTS: ") and "ops/s" in texts[3]
    assert texts[-1].startswith("DELETE: ")
    assert "\r" not in err  # no terminal control codes in a log


def test_progress_on_a_terminal_is_a_bar_redrawn_in_place() -> None:
    stream = io.StringIO()
    reporter = PhaseReporter(stream, "respkv bench", 1024, tty=True)
    for step, op in enumerate(("SET", "GET"), 1):
        phase = Phase(step, 2, "run 1/1", op, 8)
        reporter(phase)
        reporter(Phase(step, 2, "run 1/1", op, 8, seconds=0.5))
    reporter.close()
    text = stream.getvalue()
    frames = text.split("\r")[1:]
    assert len(frames) == 4
    assert frames[0].startswith("respkv bench: [....................] 1/2 run 1/1 SET...")
    assert frames[1].startswith("respkv bench: [##########..........] 1/2 run 1/1 SET: 0.50 s")
    assert frames[3].startswith("respkv bench: [####################] 2/2 run 1/1 GET: 0.50 s")
    assert text.endswith("\x1b[K\n")  # the last frame ends its line when the run is over
    assert text.count("\n") == 1


# --------------------------------------------------------------------------- item 5


@pytest.fixture
def tiny_server(make_server: Callable[..., LocalServer]) -> LocalServer:
    """A real server too small for the data: every SET gets -OOM."""
    return make_server("--maxmemory", "1mb", "--maxmemory-policy", "noeviction")


def test_failed_phase_prints_its_failure_not_a_rate(
    capsys: pytest.CaptureFixture[str], tiny_server: LocalServer
) -> None:
    argv = ["--num-keys", "16", "--chunk-mb", "0.25", "--num-workers", "2", "--warmup", "0"]
    status, out, err = run(capsys, "bench", "--port", str(tiny_server.port), *argv)
    assert status == 1
    set_line = next(line for line in out.splitlines() if line.startswith("Batch SET: "))
    assert re.fullmatch(r"Batch SET: FAILED, \d+ of 16 keys \(see below\)", set_line), out
    get_line = next(line for line in out.splitlines() if line.startswith("Batch GET: "))
    assert get_line.startswith("Batch GET: FAILED, "), out
    assert "GB/s" not in set_line + get_line
    assert re.search(r"^FAILED: SET failed: .*OOM", out, re.M), out
    assert re.search(r"^respkv bench: \[\d+/\d+\] run 1/1 SET: FAILED, \d+ of 16 keys", err, re.M)


def test_failed_phase_has_no_rate_in_json(
    capsys: pytest.CaptureFixture[str], tiny_server: LocalServer
) -> None:
    argv = ["--num-keys", "16", "--chunk-mb", "0.25", "--num-workers", "2", "--warmup", "0"]
    status, out, _ = run(capsys, "bench", "--port", str(tiny_server.port), *argv, "--json")
    assert status == 1
    doc = json.loads(out)
    assert doc["set"]["failed_keys"] > 0 and doc["set"]["bytes_per_s"] is None
    assert doc["get"]["bytes_per_s"] is None
    assert doc["passed"] is False


# --------------------------------------------------------------------------- item 6


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["sweep", "--plot", "/nonexistent/dir/x.png"], id="sweep-plot"),
        pytest.param(["sweep", "--json", "/nonexistent/dir/x.json"], id="sweep-json"),
        pytest.param(["bench", "--json", "/nonexistent/dir/x.json"], id="bench-json"),
    ],
)
def test_unwritable_output_is_refused_before_starting(
    capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    pytest.importorskip("matplotlib", reason="without it --plot stops earlier, for that")
    status, out, err = run(capsys, *argv)
    assert status == 2
    assert out == ""
    assert "no such directory '/nonexistent/dir'" in err
    assert "started a throwaway" not in err and "Traceback" not in err


def test_output_that_is_a_directory_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Any
) -> None:
    status, _, err = run(capsys, "bench", "--json", str(tmp_path))
    assert status == 2
    assert "is a directory" in err


# --------------------------------------------------------------------------- item 8


@pytest.mark.parametrize(
    "variables",
    [
        pytest.param(lambda port: {"RESPKV_URL": f"resp://127.0.0.1:{port}"}, id="RESPKV_URL"),
        pytest.param(lambda port: {"RESPKV_PORT": str(port)}, id="RESPKV_PORT"),
        pytest.param(
            lambda port: {"LMCACHE_RESP_HOST": "127.0.0.1", "LMCACHE_RESP_PORT": str(port)},
            id="LMCACHE_RESP",
        ),
    ],
)
def test_bench_uses_the_server_the_environment_names(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    redis_server: LocalServer,
    variables: Callable[[int], dict[str, str]],
) -> None:
    env = variables(redis_server.port)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    status, out, err = run(capsys, "bench", *SMALL)
    assert status == 0, err
    first = err.splitlines()[0]
    assert first == (
        f"respkv bench: using the server at 127.0.0.1:{redis_server.port}, named by "
        f"{'/'.join(env)} (no throwaway server is started)"
    )
    assert f"Server: 127.0.0.1:{redis_server.port}, Workers: 2" in out
    assert "throwaway redis" not in err and "throwaway valkey" not in err


def test_flags_win_over_the_environment(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, redis_server: LocalServer
) -> None:
    monkeypatch.setenv("RESPKV_URL", "resp://127.0.0.1:1")  # nothing listens there
    status, _, err = run(capsys, "bench", "--port", str(redis_server.port), *SMALL)
    assert status == 0, err
    assert err.splitlines()[0].endswith(f"127.0.0.1:{redis_server.port}, named by --port")


def test_a_bad_respkv_url_is_named_as_the_source(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RESPKV_URL", "resp://127.0.0.1:99999")
    status, _, err = run(capsys, "bench", *SMALL)
    assert status == 2
    assert "bad server settings (RESPKV_URL): " in err and "out of range" in err


def test_sweep_uses_the_server_the_environment_names(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, redis_server: LocalServer
) -> None:
    monkeypatch.setenv("RESPKV_PORT", str(redis_server.port))
    argv = ["--chunk-mb", "0.25", "--workers", "1", "--num-keys", "2", "--repeat", "1"]
    status, out, err = run(capsys, "sweep", *argv, "--warmup", "0")
    assert status == 0, err
    assert err.splitlines()[0].startswith(
        f"respkv sweep: using the server at 127.0.0.1:{redis_server.port}, named by RESPKV_PORT"
    )
    assert err.splitlines()[1].startswith("respkv sweep: 1 points (1 chunk sizes x 1 worker")
    assert out.startswith(f"Sweep: 127.0.0.1:{redis_server.port}, backend ")
