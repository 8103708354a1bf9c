"""Developer sessions: ``nox -l`` lists them; ``nox -s lint typecheck tests`` is the gate."""

from __future__ import annotations

import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - nox runs on 3.11+ here
    import tomli as tomllib

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["lint", "typecheck", "tests"]

PYTHON_PATHS = ["respkv", "tests", "benchmarks", "noxfile.py"]
_PYPROJECT = tomllib.loads((Path(__file__).parent / "pyproject.toml").read_text())
# The one list of test dependencies is pyproject's `test` extra (bootstrap installs the same).
# cryptography (TLS test certificates) and matplotlib (the sweep plot) are optional for
# users but installed for the tests, so that no test is skipped for want of them.
TEST_DEPS: list[str] = _PYPROJECT["project"]["optional-dependencies"]["test"]
# What the build needs without isolation: pyproject's build requirements plus the tools.
BUILD_DEPS: list[str] = [*_PYPROJECT["build-system"]["requires"], "cmake", "ninja"]
# Warnings are errors in every developer build (a user's `pip install` keeps them off).
WERROR = {"RESPKV_WERROR": "ON"}


def _install(session: nox.Session, *, env: dict[str, str] | None = None) -> None:
    session.install(*BUILD_DEPS)
    session.install("--no-build-isolation", "-v", ".", env={**WERROR, **(env or {})})


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check over all Python sources."""
    session.install("ruff>=0.5")
    session.run("ruff", "check", *PYTHON_PATHS)
    session.run("ruff", "format", "--check", *PYTHON_PATHS)


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict over respkv (with its conformance suite), tests, benchmarks and this file."""
    session.install("mypy>=1.10", "nox", *TEST_DEPS)
    _install(session, env={"RESPKV_BUILD_NATIVE": "OFF"})
    session.run("mypy", "--strict", *PYTHON_PATHS)


@nox.session
def tests(session: nox.Session) -> None:
    """Build and install (native included), then the whole suite in parallel (pytest -n auto)."""
    session.install(*TEST_DEPS)
    _install(session)
    session.run("pytest", "-n", "auto", *session.posargs, env={"RESPKV_REQUIRE_NATIVE": "1"})


@nox.session
def dev(session: nox.Session) -> None:
    """Editable install with a persistent build dir (build/dev) for quick native rebuilds."""
    session.install(*BUILD_DEPS, *TEST_DEPS, "mypy", "ruff")
    session.install(
        "--no-build-isolation",
        "-Cbuild-dir=build/dev",
        "-Ceditable.rebuild=true",
        "-e",
        ".",
        env=WERROR,
    )


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks of the installed build (native included): RESP2 codec, side by side with
    redis-py, redis-benchmark and iperf3, memory, pipelining windows; about 3 minutes on
    2 cores. ``nox -s bench -- --full`` takes more rounds, ``-- --json-dir /abs/dir``
    keeps the figures (see benchmarks/README.md)."""
    session.install(*TEST_DEPS)
    _install(session)
    # Run outside the checkout so the installed respkv (and its native module) is what
    # gets measured, not the source tree; the benchmarks package comes in through a link.
    tmp = Path(session.create_tmp()).resolve()
    link = tmp / "path" / "benchmarks"
    link.parent.mkdir(exist_ok=True)
    if not link.is_symlink():
        link.symlink_to(Path.cwd() / "benchmarks")
    session.chdir(str(tmp))
    session.run(
        "python", "-m", "benchmarks", *session.posargs, env={"PYTHONPATH": str(link.parent)}
    )


# -- native backend ------------------------------------------------------------------------
#
# Each native session builds into its own persistent build dir (incremental rebuilds) and
# runs with RESPKV_REQUIRE_NATIVE=1, so a module that failed to build fails the session
# instead of being skipped. Sanitizer builds are loaded into an uninstrumented Python, so
# the sanitizer runtime (and libstdc++, which ASan must see to intercept C++ throws) is
# preloaded; any report aborts the run (halt_on_error), so "passed" means zero reports.

NATIVE_TESTS = sorted(str(p) for p in Path("tests").glob("test_native_*.py"))


def _native_install(session: nox.Session, build_dir: str, sanitize: str = "") -> None:
    session.install(*BUILD_DEPS, *TEST_DEPS)
    env = {"RESPKV_BUILD_NATIVE": "ON", "RESPKV_WERROR": "ON", "RESPKV_SANITIZE": sanitize}
    session.install("--no-build-isolation", f"-Cbuild-dir={build_dir}", ".", env=env)


def _preload(session: nox.Session, runtime: str) -> str:
    """LD_PRELOAD value: the compiler's sanitizer runtime, then its libstdc++."""
    import os

    cxx = os.environ.get("CXX", "c++")
    paths = []
    for lib in (runtime, "libstdc++.so"):
        out = session.run(cxx, f"-print-file-name={lib}", silent=True, external=True)
        path = str(out).strip()
        if not os.path.isabs(path):
            session.error(f"{cxx} cannot find {lib}; install the compiler's sanitizer runtime")
        paths.append(path)
    return " ".join(paths)


@nox.session
def native(session: nox.Session) -> None:
    """Build the native backend (-Werror) and run the conformance suite on both backends,
    plus the native tests: C++ unit tests, codec and tiling against the pure modules, GIL
    release, buffer lifetime, 16-thread stress."""
    _native_install(session, "build/nox-native")
    session.run(
        "pytest", "-n", "2", "respkv/conformance", *NATIVE_TESTS, *session.posargs,
        env={"RESPKV_REQUIRE_NATIVE": "1"},
    )  # fmt: skip


@nox.session(name="native-asan")
def native_asan(session: nox.Session) -> None:
    """AddressSanitizer + UBSan build; the native conformance cases, native tests and the
    native TLS cases."""
    _native_install(session, "build/nox-asan", sanitize="address,undefined")
    env = {
        "RESPKV_REQUIRE_NATIVE": "1",
        "LD_PRELOAD": _preload(session, "libasan.so"),
        # Python's own allocations are not freed at exit by design: leaks are not ours.
        "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=1:halt_on_error=1",
        "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1",
    }
    session.run(
        "pytest", "-p", "no:xdist", "-k", "native", "respkv/conformance", *NATIVE_TESTS,
        "tests/test_tls.py", *session.posargs, env=env,
    )  # fmt: skip


@nox.session(name="native-tsan")
def native_tsan(session: nox.Session) -> None:
    """ThreadSanitizer build: the native conformance cases, among them the stress and
    race cases (respkv/conformance/test_concurrency.py: 16 submitting threads, 8 workers, 10,000
    small batches, cancel racing completion; the close race of the fault matrix)."""
    _native_install(session, "build/nox-tsan", sanitize="thread")
    env = {
        "RESPKV_REQUIRE_NATIVE": "1",
        "LD_PRELOAD": _preload(session, "libtsan.so"),
        # One documented false positive (glibc's dynamic TLS teardown) is suppressed.
        "TSAN_OPTIONS": "halt_on_error=1:second_deadlock_stack=1:suppressions="
        + str(Path("respkv_native/tests/tsan.supp").resolve()),
    }
    session.run(
        "pytest", "-p", "no:xdist", "-k", "native", "respkv/conformance", *session.posargs,
        env=env,
    )  # fmt: skip


# -- LMCache integration ------------------------------------------------------------------
#
# The released LMCache wheel without its GPU stack: `--no-deps`, then only the pure-Python
# packages its adapter layer, check modes and non-MP backend import (found by importing
# them in a fresh venv), and CPU torch (LMCache's native extensions link libtorch).
# Nothing is stubbed. torch must resolve to a `+cpu` build: checked before anything is
# installed (pip's resolution report) and again after, so a CUDA build is never pulled.

LMCACHE = "lmcache==0.5.6"
LMCACHE_TORCH = "torch==2.13.0"
LMCACHE_DEPS = [
    # torch's own (installed with --no-deps to keep nvidia-* packages out)
    "filelock", "typing-extensions", "sympy", "networkx", "jinja2", "fsspec",
    # what lmcache's adapter layer, check modes and remote backend import
    "numpy<=2.2.6", "numba", "sortedcontainers", "cachetools", "pyyaml", "msgspec", "psutil",
    "py-cpuinfo", "prometheus_client<=0.24.1", "pyzmq", "aiofiles", "aiofile", "blake3",
    "aiohttp", "requests", "redis", "cryptography", "transformers>=5.4",
    # the tests
    "pytest>=8",
]  # fmt: skip


def _torch_cpu_version(session: nox.Session) -> str:
    """The torch version pip would install, without installing it; must end in +cpu."""
    import json
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        session.run(
            "python", "-m", "pip", "install", "--dry-run", "--no-deps", "--ignore-installed",
            "--quiet", "--report", str(report), LMCACHE_TORCH, silent=True,
        )  # fmt: skip
        items = json.loads(report.read_text())["install"]
    version = str(items[0]["metadata"]["version"]) if items else "?"
    if not version.endswith("+cpu"):
        session.error(f"{LMCACHE_TORCH} resolves to {version}, not a +cpu build: refusing")
    return version


@nox.session
def lmcache(session: nox.Session) -> None:
    """respkv inside the real LMCache (lmcache 0.5.6, CPU torch), both backends, side by
    side with LMCache's own `resp` adapter: its test_l2_adapter and test_remote checks,
    200 x 4 MiB through NativeConnectorL2Adapter, its L2EvictionController, the non-MP
    plugin, GET of deleted keys and server restarts (tests/lmcache_integration)."""
    session.install("--upgrade", "pip")
    version = _torch_cpu_version(session)
    session.install("--no-deps", LMCACHE_TORCH, LMCACHE)
    session.install(*LMCACHE_DEPS)
    installed = session.run(
        "python", "-c", "import torch; print(torch.__version__)", silent=True
    )  # fmt: skip
    if str(installed).strip().splitlines()[-1] != version:
        session.error(f"installed torch is {installed!r}, expected {version}")
    _install(session)
    session.run(
        "pytest", "-p", "no:cacheprovider", "tests/lmcache_integration", *session.posargs,
        env={"RESPKV_REQUIRE_NATIVE": "1"},
    )  # fmt: skip


# -- reliability ---------------------------------------------------------------------------


@nox.session
def soak(session: nox.Session) -> None:
    """About a minute of soak (tests/test_soak.py, 30 s per backend): 16 threads and an
    asyncio loop doing mixed SET/GET/EXISTS/DEL of 1 KiB-8 MiB values through a proxy
    that injects random faults; no wrong hit or lost write, and descriptors, threads,
    server connections and RSS back within the bounds stated in the test."""
    session.install(*TEST_DEPS)
    _install(session)
    session.run(
        "pytest", "-p", "no:xdist", "-s", "tests/test_soak.py", *session.posargs,
        env={"RESPKV_REQUIRE_NATIVE": "1", "RESPKV_SOAK_SECONDS": "30"},
    )  # fmt: skip


@nox.session
def fuzz(session: nox.Session) -> None:
    """Both RESP2 readers fuzzed: the hypothesis mutation properties with 5,000 examples
    each (tests/test_fuzz_parsers.py), then the atheris (libFuzzer) harness for 60 s
    (tests/test_fuzz_atheris.py; ``nox -s fuzz -- -max_total_time=600`` runs longer)."""
    session.install(*TEST_DEPS, "atheris")
    _install(session)
    env = {"RESPKV_REQUIRE_NATIVE": "1", "RESPKV_FUZZ_EXAMPLES": "5000"}
    session.run("pytest", "-p", "no:xdist", "tests/test_fuzz_parsers.py", env=env)
    # libFuzzer writes crash-* reproducers into the current directory: keep them apart.
    workdir = Path(session.create_tmp()).resolve()
    harness = str(Path("tests/test_fuzz_atheris.py").resolve())
    session.chdir(str(workdir))
    session.run(
        "python", harness, "-max_total_time=60", "-rss_limit_mb=2048", *session.posargs,
        env=env,
    )  # fmt: skip
