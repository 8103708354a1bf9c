"""Packaging facts a user relies on without knowing it.

* The checkout's ``respkv_native/`` is a source folder with no ``__init__.py``: run from
  the repository root (``python -m pytest``, ``python -m benchmarks``), Python puts the
  checkout first on ``sys.path``, and a regular package there would shadow the installed
  build and silently turn every native case into a skip. A folder without
  ``__init__.py`` is at most a namespace portion, which an installed regular package
  always beats.
* Both packages are typed (``py.typed``), so ``mypy --strict`` on user code checks calls
  into respkv.
* A pure build (``RESPKV_BUILD_NATIVE=OFF``) is a ``py3-none-any`` wheel with no
  ``respkv_native`` in it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import respkv

ROOT = Path(__file__).resolve().parent.parent


def _native_required() -> bool:
    return os.environ.get("RESPKV_REQUIRE_NATIVE") == "1"


def test_checkout_respkv_native_has_no_init() -> None:
    assert (ROOT / "respkv_native" / "src").is_dir()
    assert not (ROOT / "respkv_native" / "__init__.py").exists()


def test_importing_from_the_checkout_root_gets_the_installed_native_build() -> None:
    # The same sys.path as `python -m pytest` from the root: the checkout comes first.
    code = (
        "import respkv_native, respkv_native._core as c; "
        "print(respkv_native.__file__); print(c.CONTRACT_VERSION)"
    )
    run = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if run.returncode != 0 and not _native_required():
        pytest.skip(f"native backend not installed: {run.stderr.strip()[-200:]}")
    assert run.returncode == 0, run.stderr
    init, version = run.stdout.split()
    assert Path(init).resolve() != (ROOT / "respkv_native" / "__init__.py").resolve()
    assert int(version) == respkv.CONTRACT_VERSION


def test_packages_are_typed() -> None:
    assert (Path(respkv.__file__).parent / "py.typed").exists()
    assert (ROOT / "respkv_native" / "package" / "py.typed").exists()


def test_pure_build_is_a_pure_wheel(tmp_path: Path) -> None:
    env = {**os.environ, "RESPKV_BUILD_NATIVE": "OFF"}
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-build-isolation", "--no-deps",
         "-w", str(tmp_path), str(ROOT)],
        env=env, check=False, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = tmp_path.glob("*.whl")
    assert wheel.name.endswith("-py3-none-any.whl"), wheel.name
    names = zipfile.ZipFile(wheel).namelist()
    assert "respkv/py.typed" in names
    assert not [n for n in names if n.startswith("respkv_native")], names
    # The conformance suite ships with its own pytest configuration, the test kit with
    # it, and the wheel declares respkv-conformance and the plugin's pytest11 entry point.
    for shipped in ("respkv/conformance/conformance.ini", "respkv/conformance/conftest.py",
                    "respkv/conformance/test_basic.py", "respkv/testing/plugin.py"):  # fmt: skip
        assert shipped in names, shipped
    (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    declared = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "respkv-conformance = respkv.conformance._run:main" in declared
    assert "[pytest11]\nrespkv.testing.plugin = respkv.testing.plugin" in declared


def test_no_hiredis_extra() -> None:
    """respkv parses with its own reader (measured: no engine path gains from hiredis,
    see respkv/resp2.py), so no extra advertises hiredis; the test extra keeps it as the
    codec's independent reference."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    assert "hiredis" not in extras
    assert any(dep.startswith("hiredis") for dep in extras["test"])
