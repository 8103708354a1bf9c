"""Backend selection: ``RESPKV_BACKEND=auto|python|native`` and the visible reason.

An unloadable native module is simulated the way Python itself reports one: a
``None`` entry in ``sys.modules`` makes the import fail with ``ImportError``, and a
stand-in module object with another ``CONTRACT_VERSION`` plays a stale build. Nothing
else is faked. ``python -m respkv`` runs in a real subprocess.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import types
from pathlib import Path
from typing import Final

import pytest

import respkv
from respkv._backend import VALID_BACKENDS, BackendInfo, load_native, select_backend
from respkv._contract import CONTRACT_VERSION
from respkv.testing import require_native

CORE: Final = "respkv_native._core"
#: Where the respkv under test was imported from, so subprocesses run the same one.
PACKAGE_ROOT: Final = str(Path(respkv.__file__).resolve().parents[1])


@pytest.fixture
def no_native(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``respkv_native._core`` fail to import, as on a machine without the build."""
    monkeypatch.setitem(sys.modules, CORE, None)


def stand_in_core(monkeypatch: pytest.MonkeyPatch, version: object) -> None:
    module = types.ModuleType(CORE)
    module.CONTRACT_VERSION = version  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, CORE, module)


def test_python_forced_by_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESPKV_BACKEND", "python")
    info = select_backend()
    assert info == BackendInfo("python", "python", "forced by RESPKV_BACKEND=python")


@pytest.mark.parametrize("spelling", ["PYTHON", " python ", "Python"])
def test_env_value_is_trimmed_and_case_insensitive(
    monkeypatch: pytest.MonkeyPatch, spelling: str
) -> None:
    monkeypatch.setenv("RESPKV_BACKEND", spelling)
    assert select_backend().name == "python"


@pytest.mark.parametrize("value", ["", "   "])
def test_empty_env_means_auto(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("RESPKV_BACKEND", value)
    assert select_backend().requested == "auto"


@pytest.mark.parametrize(("version_offset", "expected"), [(0, "native"), (1, "python")])
def test_unset_env_means_auto(
    monkeypatch: pytest.MonkeyPatch, version_offset: int, expected: str
) -> None:
    """Unset means auto: a matching native module is taken, a stale one is not."""
    monkeypatch.delenv("RESPKV_BACKEND", raising=False)
    stand_in_core(monkeypatch, CONTRACT_VERSION + version_offset)
    info = select_backend()
    assert (info.name, info.requested) == (expected, "auto")


@pytest.mark.parametrize("bad", ["fast", "cpp", "pure", "c++"])
def test_unknown_value_lists_the_valid_ones(monkeypatch: pytest.MonkeyPatch, bad: str) -> None:
    monkeypatch.setenv("RESPKV_BACKEND", bad)
    with pytest.raises(ValueError, match=re.escape(f"unknown backend '{bad}'")) as info:
        select_backend()
    assert all(name in str(info.value) for name in VALID_BACKENDS)
    with pytest.raises(ValueError, match="valid: auto, python, native"):
        select_backend(bad)  # the same check for an explicit argument


@pytest.mark.usefixtures("no_native")
def test_forced_native_raises_the_real_import_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESPKV_BACKEND", "native")
    with pytest.raises(ImportError, match=r"respkv_native\._core"):
        select_backend()


@pytest.mark.usefixtures("no_native")
def test_auto_falls_back_and_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESPKV_BACKEND", "auto")
    info = select_backend()
    assert info.name == "python" and info.requested == "auto"
    assert info.reason.startswith("native backend unavailable:")
    assert "respkv_native._core" in info.reason  # the import error itself is kept
    assert "python (requested auto: native backend unavailable" in str(info)


def test_stale_native_build_is_not_used_by_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    stand_in_core(monkeypatch, CONTRACT_VERSION + 1)
    info = select_backend("auto")
    assert info.name == "python"
    assert f"CONTRACT_VERSION {CONTRACT_VERSION + 1}" in info.reason
    assert f"respkv needs {CONTRACT_VERSION}" in info.reason
    with pytest.raises(ImportError, match="rebuild it"):
        select_backend("native")


def test_native_without_a_version_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType(CORE)  # no CONTRACT_VERSION at all
    monkeypatch.setitem(sys.modules, CORE, module)
    with pytest.raises(ImportError, match="CONTRACT_VERSION None"):
        load_native()


def test_matching_native_is_chosen_by_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    stand_in_core(monkeypatch, CONTRACT_VERSION)
    info = select_backend("auto")
    assert info == BackendInfo("native", "auto", "native module loaded, contract version matches")
    assert load_native() is sys.modules[CORE]


def test_explicit_argument_wins_over_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESPKV_BACKEND", "native")
    monkeypatch.setitem(sys.modules, CORE, None)
    assert select_backend("python").name == "python"


# ------------------------------------------------------------------ subprocesses


def run_respkv(code_or_module: list[str], backend: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESPKV_")}
    env["RESPKV_BACKEND"] = backend
    env["PYTHONPATH"] = PACKAGE_ROOT
    return subprocess.run(
        [sys.executable, *code_or_module],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=Path(PACKAGE_ROOT).parent,
    )


def test_python_m_respkv_prints_the_forced_backend() -> None:
    proc = run_respkv(["-m", "respkv"], "python")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "backend: python",
        "reason: forced by RESPKV_BACKEND=python",
    ]


def test_python_m_respkv_prints_the_auto_choice_of_native() -> None:
    """With the native module built (required in CI), ``auto`` picks it and says so."""
    require_native()
    proc = run_respkv(["-m", "respkv"], "auto")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "backend: native",
        "reason: native module loaded, contract version matches",
    ]


def test_python_m_respkv_prints_the_auto_fallback() -> None:
    """In a process whose native module cannot be imported, ``auto`` falls back to the
    pure engine and prints the import error as the reason."""
    code = (
        "import runpy, sys; sys.modules['respkv_native._core'] = None; "
        "runpy.run_module('respkv', run_name='__main__', alter_sys=True)"
    )
    proc = run_respkv(["-c", code], "auto")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "backend: python"
    assert lines[1].startswith("reason: native backend unavailable:"), lines
    assert "respkv_native._core" in lines[1]


def test_python_m_respkv_rejects_an_unknown_backend() -> None:
    proc = run_respkv(["-m", "respkv"], "turbo")
    assert proc.returncode == 2
    assert "unknown backend 'turbo'" in proc.stderr
    assert "valid: auto, python, native" in proc.stderr
    assert proc.stdout == ""


def test_python_m_respkv_forced_native_that_cannot_load() -> None:
    # The same entry point as `python -m respkv`, in a process whose native module
    # cannot be imported.
    code = (
        "import runpy, sys; sys.modules['respkv_native._core'] = None; "
        "runpy.run_module('respkv', run_name='__main__', alter_sys=True)"
    )
    proc = run_respkv(["-c", code], "native")
    assert proc.returncode == 2
    assert "backend error" in proc.stderr and "respkv_native._core" in proc.stderr


def test_respkv_backend_attribute() -> None:
    code = "import respkv; b = respkv.backend; print(b.name, b.requested, sep='|')"
    assert run_respkv(["-c", code], "python").stdout.strip() == "python|python"
    failed = run_respkv(["-c", code], "bogus")
    assert failed.returncode != 0 and "unknown backend 'bogus'" in failed.stderr
