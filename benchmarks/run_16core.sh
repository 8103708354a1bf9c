#!/usr/bin/env bash
# The 16-core run of issue 13, prepared for a bare Linux host with this checkout and
# shared/valkey beside it (../shared/valkey/bin/valkey-server; --valkey names another).
#
# What it does, in under 8 minutes on 16 cores (each step prints its elapsed time):
#  1. a virtualenv (~/.cache/respkv-16core-venv, reused when there; --venv DIR), pip
#     from PyPI only;
#  2. respkv from this checkout with its native module, built on every core (needs g++
#     with C++17; scikit-build-core fetches cmake/ninja when the host has none);
#  3. LMCache's own connector: pip install --no-deps lmcache==0.5.6. Its extension is
#     loaded alone with stand-in torch libraries (benchmarks/_lmcache_loader.py says
#     how); only when the host's libstdc++ is too old for it is a torch wheel added
#     (--no-deps, never imported) for its libc10.so;
#  4. Valkey 8 with --io-threads 4 (a throwaway server started by the harness);
#  5. python -m benchmarks.scaling: 1/4/8/16 workers x 1 and 4 MiB, respkv native,
#     respkv python, LMCache native alternating, 5 rounds, medians, probes;
#  6. python -m benchmarks.targets_16core: GET >= 6 GB/s, SET >= 5 GB/s, >= 1.3x LMCache
#     at 8 workers, >= 1.5x respkv python at 16 workers.
# Results (text and JSON) go to --out (default $OUT when set, else ./out-16core).
#
# --quick: the same steps at a small scale (1 and 4 workers, 1 MiB, 64 MiB batches,
#   2 rounds, io-threads 2), for a small machine: it proves the script works.
# --python PY: use this interpreter as it is (respkv and its native module installed
#   already), no virtualenv and no installs of respkv; --lmcache-site DIR: a
#   site-packages directory that has lmcache (e.g. the `nox -s lmcache` venv's).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
QUICK=0
PY=""
VENV="${XDG_CACHE_HOME:-$HOME/.cache}/respkv-16core-venv"
OUT="${OUT:-$PWD/out-16core}"  # the device tool's $OUT when set
VALKEY=""
LMCACHE_SITE=""
IO_THREADS=""
LMCACHE_PIN="lmcache==0.5.6"

usage() { sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --python) PY="$2"; shift ;;
    --venv) VENV="$2"; shift ;;
    --out) OUT="$2"; shift ;;
    --valkey) VALKEY="$2"; shift ;;
    --lmcache-site) LMCACHE_SITE="$2"; shift ;;
    --io-threads) IO_THREADS="$2"; shift ;;
    -h|--help) usage 0 ;;
    *) echo "run_16core.sh: unknown argument $1" >&2; usage 2 ;;
  esac
  shift
done

START=$(date +%s)
step() { echo; echo "== [$(( $(date +%s) - START )) s] $*"; }

if [ "$QUICK" = 1 ]; then
  WORKERS=1,4; SIZES=1; ROUNDS=2; BATCH_MIB=64; IO_THREADS=${IO_THREADS:-2}
else
  WORKERS=1,4,8,16; SIZES=1,4; ROUNDS=5; BATCH_MIB=512; IO_THREADS=${IO_THREADS:-4}
fi

step "host: $(nproc) cores, $(uname -sr), load $(cut -d' ' -f1-3 /proc/loadavg)"
if [ -z "$VALKEY" ]; then
  for candidate in "$ROOT/../shared/valkey/bin/valkey-server" "$ROOT/shared/valkey/bin/valkey-server"; do
    if [ -x "$candidate" ]; then VALKEY=$(cd "$(dirname "$candidate")" && pwd)/valkey-server; break; fi
  done
fi
if [ -z "$VALKEY" ] || [ ! -x "$VALKEY" ]; then
  echo "no valkey-server: expected ../shared/valkey/bin/valkey-server beside the checkout (--valkey PATH)" >&2
  exit 3
fi
"$VALKEY" --version

if [ -z "$PY" ]; then
  step "virtualenv $VENV"
  if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
  fi
  PY="$VENV/bin/python"
  "$PY" -m pip install --quiet --upgrade pip
  step "respkv with its native module (build on $(nproc) cores)"
  CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) "$PY" -m pip install --quiet \
    -Cbuild-dir="$ROOT/build/16core" "$ROOT"
fi
"$PY" -c "import respkv, respkv_native._core; print('respkv', respkv.__version__, 'native module', respkv_native._core.__file__)"

# The benchmarks package comes in through a link, so that `respkv` and `respkv_native`
# are the installed ones, not the checkout's sources (which have no built module).
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/path" "$OUT"
ln -s "$ROOT/benchmarks" "$WORK/path/benchmarks"
run_py() { (cd "$WORK" && PYTHONPATH="$WORK/path" "$PY" "$@"); }

step "LMCache's connector ($LMCACHE_PIN)"
SITE_ARGS=()
if [ -n "$LMCACHE_SITE" ]; then
  SITE_ARGS=(--site "$LMCACHE_SITE")
elif ! run_py -m benchmarks._lmcache_loader >/dev/null 2>&1; then
  "$PY" -m pip install --quiet --no-deps "$LMCACHE_PIN" || echo "(pip could not install $LMCACHE_PIN)"
  if ! run_py -m benchmarks._lmcache_loader >/dev/null 2>&1; then
    echo "(the extension needs a newer libstdc++: a torch wheel's libc10.so, --no-deps, never imported)"
    "$PY" -m pip install --quiet --no-deps torch || echo "(pip could not install torch)"
  fi
fi
run_py -m benchmarks._lmcache_loader ${SITE_ARGS[@]+"${SITE_ARGS[@]}"} || echo "(LMCache native will be skipped)"

step "side by side: Valkey 8 --io-threads $IO_THREADS, workers $WORKERS, chunks $SIZES MiB"
SCALING=(-m benchmarks.scaling --servers "$VALKEY:io=$IO_THREADS" --workers "$WORKERS"
  --sizes "$SIZES" --rounds "$ROUNDS" --batch-mib "$BATCH_MIB" --probe
  --contenders native python lmcache --json "$OUT/16core.json")
if [ -n "$LMCACHE_SITE" ]; then SCALING+=(--lmcache-site "$LMCACHE_SITE"); fi
run_py "${SCALING[@]}" 2>&1 | grep -v -E "LMCache (INFO|WARNING)" | tee "$OUT/16core.txt"

step "targets"
run_py -m benchmarks.targets_16core "$OUT/16core.json" | tee "$OUT/targets.txt"
step "done: $OUT/16core.txt, $OUT/16core.json, $OUT/targets.txt"
