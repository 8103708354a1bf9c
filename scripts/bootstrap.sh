#!/usr/bin/env bash
# Installs what respkv's tests and benchmarks need on a fresh Debian/Ubuntu machine:
# redis-server and redis-tools (apt, only when missing), the Python test dependencies,
# and respkv itself with its native extension. Idempotent; safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-benchmark >/dev/null 2>&1; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server redis-tools >/dev/null
fi

PY=${PYTHON:-python3}
$PY -m pip install -q --disable-pip-version-check \
  "scikit-build-core>=0.10" "pybind11>=2.12" cmake ninja \
  "pytest>=8" "pytest-xdist>=3" "hypothesis>=6" "hiredis>=2.0" "redis>=5" numpy \
  cryptography matplotlib
$PY -m pip install -q --disable-pip-version-check --no-build-isolation --force-reinstall --no-deps .
# pyenv puts console scripts behind shims that exist only after a rehash.
if command -v pyenv >/dev/null 2>&1; then pyenv rehash; fi
