#!/usr/bin/env bash
# Installs what respkv's tests and benchmarks need on a fresh Debian/Ubuntu machine:
# redis-server and redis-tools (apt, only when missing), then respkv itself with its
# native extension, its runtime dependencies and its test dependencies (the `test` extra
# in pyproject.toml: the one list of them). Idempotent; safe to run again.
#
# It installs into the Python that `python3` (or $PYTHON) is: run it inside a virtual
# environment (`python3 -m venv .venv && . .venv/bin/activate`), as README.md says.
# respkv is installed *with* its dependencies: an install with --no-deps works only where
# they happen to be present already (the machine's global Python), never in a fresh venv.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-benchmark >/dev/null 2>&1; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server redis-tools >/dev/null
fi

PY=${PYTHON:-python3}
PIP=("$PY" -m pip install -q --disable-pip-version-check)
# The build backend and its tools ([build-system] in pyproject.toml, plus CMake and
# Ninja), installed here so the build below can run without isolation (no second copy
# of them per build, and the persistent CMake build directory keeps working).
"${PIP[@]}" "scikit-build-core>=0.10" "pybind11>=2.12" cmake ninja
# respkv with its dependencies and the test extra. pip always rebuilds and reinstalls a
# project given as a directory, so a second run picks up changed sources.
"${PIP[@]}" --no-build-isolation ".[test]"
# pyenv puts console scripts behind shims that exist only after a rehash.
if command -v pyenv >/dev/null 2>&1; then pyenv rehash; fi
