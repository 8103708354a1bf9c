"""``respkv bench --json`` reports the client's CPU cost per GB (issue 13 item 7).

The figure is the client process's CPU seconds (user + system, all threads) over the
timed SET or GET, per 1e9 bytes moved, median of the timed runs. The run is tiny and
nothing about speed is asserted: only that the figure is there, consistent with the
per-run CPU seconds it was computed from, and absent for EXISTS (no bytes moved).
"""

from __future__ import annotations

import json
import statistics

import pytest

from respkv.cli import main
from respkv.cli._measure import OpStats
from respkv.cli._target import SERVER_ENV
from respkv.testing import require_native

#: 8 chunks of 256 KiB, 2 workers, 2 timed runs: enough for a median of two samples.
ARGV = ["--num-keys", "8", "--chunk-mb", "0.25", "--num-workers", "2", "--repeat", "2"]


@pytest.fixture(autouse=True)
def no_server_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SERVER_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("backend", ["python", "native"])
def test_bench_json_has_client_cpu_per_gb(
    capsys: pytest.CaptureFixture[str], redis_url: str, backend: str
) -> None:
    if backend == "native":
        require_native()  # skips without the build (fails under RESPKV_REQUIRE_NATIVE=1)
    argv = ["bench", "--url", redis_url, *ARGV, "--warmup", "0", "--backend", backend, "--json"]
    assert main(argv) == 0
    doc = json.loads(capsys.readouterr().out)
    assert "client_cpu_s_per_gb" in doc["units"]
    for op in ("set", "get"):
        cpu = doc[op]["client_cpu_seconds"]
        assert len(cpu) == 2 and all(c >= 0 for c in cpu)
        expected = statistics.median(cpu) / (doc[op]["bytes"] / 1e9)
        assert doc[op]["client_cpu_s_per_gb"] == pytest.approx(expected)
        assert doc[op]["client_cpu_s_per_gb"] > 0  # a batch of 2 MiB costs some CPU
    assert "client_cpu_s_per_gb" not in doc["exists"]


def test_cpu_per_gb_is_none_without_bytes_or_runs() -> None:
    assert OpStats("EXISTS", 10).cpu_s_per_gb is None
    assert OpStats("SET", 10, bytes=1000).cpu_s_per_gb is None
    stats = OpStats("SET", 10, bytes=2_000_000_000, cpu_seconds=[1.0, 3.0, 2.0])
    assert stats.cpu_s_per_gb == pytest.approx(1.0)
