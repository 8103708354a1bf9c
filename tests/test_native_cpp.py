"""Run the C++ unit tests of the native codec and tiling (respkv_native/tests) through
CMake and ctest, exactly as CI does:

    cmake -S respkv_native/tests -B BUILD -G Ninja -DRESPKV_WERROR=ON
    cmake --build BUILD
    ctest --test-dir BUILD --output-on-failure

The test executable has no Python in it; it is built with the warnings of the
extension (-Wall -Wextra -Wpedantic) as errors. Skipped when CMake or a C++ compiler
is missing (a pure install), unless ``RESPKV_REQUIRE_NATIVE=1``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "respkv_native" / "tests"
#: Configuring and compiling three small files takes seconds; the bound is for a
#: loaded machine.
BUILD_TIMEOUT = 300
RUN_TIMEOUT = 120


def _missing_tools() -> str | None:
    if not (TESTS / "CMakeLists.txt").exists():
        return "native test sources are not part of this installation"
    for tool in ("cmake", "ctest"):
        if shutil.which(tool) is None:
            return f"{tool} is not on PATH"
    if not any(shutil.which(c) for c in (os.environ.get("CXX") or "c++", "g++", "clang++")):
        return "no C++ compiler on PATH (CXX, c++, g++, clang++)"
    return None


def _run(args: list[str], timeout: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)


def test_cpp_unit_tests_through_ctest(tmp_path: Path) -> None:
    missing = _missing_tools()
    if missing is not None:
        if os.environ.get("RESPKV_REQUIRE_NATIVE") == "1":
            pytest.fail(f"RESPKV_REQUIRE_NATIVE=1 but {missing}")
        pytest.skip(missing)
    build = tmp_path / "ctest"
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    configure = _run(
        ["cmake", "-S", str(TESTS), "-B", str(build), *generator, "-DRESPKV_WERROR=ON"],
        BUILD_TIMEOUT,
    )
    assert configure.returncode == 0, (configure.stdout + configure.stderr)[-4000:]
    compiled = _run(["cmake", "--build", str(build)], BUILD_TIMEOUT)
    assert compiled.returncode == 0, (compiled.stdout + compiled.stderr)[-4000:]
    ran = _run(["ctest", "--test-dir", str(build), "--output-on-failure"], RUN_TIMEOUT)
    assert ran.returncode == 0, (ran.stdout + ran.stderr)[-4000:]
    assert "100% tests passed" in ran.stdout, ran.stdout[-4000:]
