"""``respkv server --cluster N`` and ``respkv bench --cluster``: throwaway local clusters
from the command line, the URL a script can read, per-master figures."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import respkv
from respkv.cli import main
from respkv.cluster import ClusterConnector, ClusterOptions

#: Seconds the command may take to form a cluster and print its URL.
START_BOUND = 60


def _respkv(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "respkv", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parent,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def test_server_cluster_prints_a_url_that_works_and_stops_on_sigterm(cluster_binary: str) -> None:
    args = ["server", "--cluster", "3", "--replicas", "1", "--server-binary", cluster_binary,
            "--requirepass", "cli-cl-pw"]  # fmt: skip
    with _respkv(*args) as proc:
        try:
            assert proc.stdout is not None
            url = proc.stdout.readline().strip()
            assert url.startswith("resp+cluster://"), url
            assert "cli-cl-pw" not in url and len(url.split(",")) == 6
            options = respkv.config.resolve(url, password="cli-cl-pw", num_workers=1)
            assert isinstance(options, ClusterOptions)
            with respkv.connect(options) as client:
                assert isinstance(client.connector, ClusterConnector)
                keys = [f"cli:{i}" for i in range(90)]
                assert client.batch_set(keys, [b"v"] * 90).ok
                assert len(client.connector.masters()) == 3
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=START_BOUND)
        finally:
            if proc.poll() is None:  # pragma: no cover - only when an assertion failed
                proc.kill()
    assert proc.returncode == 0, err
    assert "cli-cl-pw" not in err and "stopping the cluster" in err


def test_server_cluster_refuses_a_fixed_port() -> None:
    assert main(["server", "--cluster", "3", "--port", "7000"]) == 2


def test_bench_cluster_reports_per_master(
    capsys: pytest.CaptureFixture[str], cluster_binary: str
) -> None:
    args = ["bench", "--cluster", "2", "--server-binary", cluster_binary, "--num-keys", "40",
            "--chunk-mb", "0.25", "--num-workers", "2", "--warmup", "0", "--json", "-"]  # fmt: skip
    status = main(args)
    out = capsys.readouterr().out
    assert status == 0, out
    doc = json.loads(out)
    assert doc["passed"] and doc["cluster"]["masters"] == 2
    shares = doc["cluster"]["per_master"]
    assert len(shares) == 2 and abs(sum(m["share"] for m in shares.values()) - 1) < 1e-9
    assert sum(m["keys_per_run"] for m in shares.values()) == pytest.approx(40)
    assert doc["server"]["embedded"] is True


def test_bench_cluster_refuses_a_named_server(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--cluster", "--url", "resp://127.0.0.1:1"]) == 2
    assert "throwaway cluster" in capsys.readouterr().err
