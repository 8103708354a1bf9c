"""The shipped conformance suite run as a third party runs it: ``respkv-conformance``
(here ``python -m respkv.conformance``, the same ``main``) from a directory outside the
checkout, against a connector written over redis-py (``tests/thirdparty``).

The directory is hostile on purpose: its ``pytest.ini`` asks for ``filterwarnings = error``
and an unknown option, its ``conftest.py`` raises, ``PYTEST_ADDOPTS`` is set, and the
connector's worker threads emit a DeprecationWarning (what killed a connector author's
workers under respkv's own ``filterwarnings = error``, and made every later test wait
60 s). None of it may reach the run: the suite uses its own configuration.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Final

import pytest

from respkv.conformance._run import SUITE, pytest_args

THIRDPARTY: Final = Path(__file__).resolve().parent / "thirdparty" / "redispy_connector.py"
#: The cases the redis-py connector declares it cannot show (conformance_limits).
DECLARED_SKIPS: Final = 3
#: Bound on one run of the whole suite (about 15 s with two workers on 2 cores).
RUN_TIMEOUT: Final = 900

NOISY: Final = textwrap.dedent(
    """
    import warnings

    from redispy_connector import RedisPyConnector


    class Noisy(RedisPyConnector):
        '''Its worker threads warn, as a deprecated dependency would.'''

        def _run(self, w):
            warnings.warn("a dependency's deprecated API", DeprecationWarning, stacklevel=1)
            super()._run(w)
    """
)


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory outside the checkout: the connector's copy and a hostile pytest setup."""
    shutil.copy(THIRDPARTY, tmp_path / "redispy_connector.py")
    (tmp_path / "noisy_connector.py").write_text(NOISY)
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\naddopts = -x --no-such-option\nfilterwarnings = error\n"
    )
    (tmp_path / "conftest.py").write_text("raise RuntimeError('the caller conftest was loaded')\n")
    return tmp_path


def run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESPKV_")}
    env["PYTHONPATH"] = str(cwd)
    env["PYTEST_ADDOPTS"] = "--no-such-option-either"
    return subprocess.run(
        [sys.executable, "-m", "respkv.conformance", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False,
    )  # fmt: skip


def _counts(output: str) -> dict[str, int]:
    last = output.strip().splitlines()[-1]
    return {word: int(n) for n, word in re.findall(r"(\d+) (passed|failed|skipped|error)", last)}


def test_the_suite_passes_a_redis_py_connector_from_outside_the_checkout(outside: Path) -> None:
    proc = run(outside, "noisy_connector.py:Noisy", "-n", "2", "-q", "-p", "no:benchmark")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-5000:]
    counts = _counts(proc.stdout)
    assert counts.get("failed", 0) == 0 and counts.get("error", 0) == 0, counts
    assert counts.get("skipped") == DECLARED_SKIPS, out[-5000:]
    assert counts.get("passed", 0) > 150, counts
    # Every skip names the capability and redis-py's reason.
    reasons = [line for line in proc.stdout.splitlines() if line.startswith("SKIPPED")]
    assert len(reasons) == DECLARED_SKIPS, reasons
    for line in reasons:
        assert "custom connector cannot" in line and "redis-py" in line, line
    assert "the caller conftest was loaded" not in out


def test_usage_and_bad_specs(outside: Path) -> None:
    none = run(outside)
    assert none.returncode == 2 and "usage: respkv-conformance SPEC" in none.stdout
    helped = run(outside, "--help")
    assert helped.returncode == 0 and "reply_types" in helped.stdout  # capabilities listed
    for spec, says in [
        ("redispy_connector", "must be 'package.module:factory'"),
        ("redispy_connector.py:Missing", "has no attribute 'Missing'"),
        ("no_such_module_xyz:factory", "cannot import module 'no_such_module_xyz'"),
    ]:
        proc = run(outside, spec)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert says in proc.stdout, proc.stdout
    flag_first = run(outside, "-x", "redispy_connector.py:RedisPyConnector")
    assert flag_first.returncode == 2 and "the first argument is the connector SPEC" in (
        flag_first.stdout
    )


def test_the_runner_brings_its_own_configuration() -> None:
    args = pytest_args("pkg.mod:factory", ["-k", "basic"])
    ini = Path(args[args.index("-c") + 1])
    assert ini.parent == SUITE and ini.is_file() and ini.name != "pytest.ini"
    assert "filterwarnings =\n    default" in ini.read_text(), "warnings must not be errors"
    assert args[args.index("--rootdir") + 1] == str(SUITE)
    assert args[args.index("--connector") + 1] == "pkg.mod:factory"
    assert "respkv.testing.plugin" in args and args[-2:] == ["-k", "basic"]


def test_pytest_pyargs_with_the_connector_option(outside: Path) -> None:
    """``pytest --pyargs respkv.conformance --connector SPEC`` (the plugin comes from the
    installed entry point; named here with -p, as this checkout's install may predate it)."""
    (outside / "conftest.py").unlink()
    (outside / "pytest.ini").write_text("[pytest]\n")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "respkv.testing.plugin", "-p", "no:cacheprovider",
         "-p", "no:benchmark", "--pyargs", "respkv.conformance",
         "--connector", "redispy_connector.py:RedisPyConnector", "-q", "-k", "test_basic"],
        cwd=outside, capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False,
        env={**os.environ, "PYTHONPATH": str(outside)},
    )  # fmt: skip
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
    assert _counts(proc.stdout).get("passed", 0) > 10, proc.stdout[-2000:]
