"""Run the C++ unit tests of the native codec and tiling (respkv_native/tests).

The test executable has no Python in it, so it is compiled here straight from the
sources with the system compiler (the same flags as the extension: C++17, warnings as
errors) and run. Skipped when there is no C++ compiler, like a pure install.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = [
    ROOT / "respkv_native" / "tests" / "test_native.cpp",
    ROOT / "respkv_native" / "src" / "resp2.cpp",
    ROOT / "respkv_native" / "src" / "tiling.cpp",
]
#: Compiling three small files takes seconds; the bound is for a loaded machine.
COMPILE_TIMEOUT = 300
RUN_TIMEOUT = 120


def _compiler() -> str | None:
    for name in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        if name and shutil.which(name):
            return name
    return None


def test_cpp_unit_tests(tmp_path: Path) -> None:
    cxx = _compiler()
    if cxx is None:
        pytest.skip("no C++ compiler on PATH (CXX, c++, g++, clang++)")
    if not all(p.exists() for p in SOURCES):
        pytest.skip("native sources are not part of this installation")
    exe = tmp_path / "respkv_native_tests"
    build = subprocess.run(
        [cxx, "-std=c++17", "-O1", "-Wall", "-Wextra", "-Werror",
         f"-I{ROOT / 'respkv_native' / 'src'}", *map(str, SOURCES), "-o", str(exe)],
        capture_output=True, text=True, timeout=COMPILE_TIMEOUT, check=False,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr[-4000:]
    run = subprocess.run(
        [str(exe)], capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False
    )
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    assert run.stdout.rstrip().endswith(" 0 failures")
