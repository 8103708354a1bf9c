"""Developer sessions: ``nox -l`` lists them; ``nox -s lint typecheck tests`` is the gate."""

from __future__ import annotations

from pathlib import Path

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["lint", "typecheck", "tests"]

PYTHON_PATHS = ["respkv", "tests", "conformance", "benchmarks", "noxfile.py"]
TEST_DEPS = ["pytest>=8", "pytest-xdist>=3", "hypothesis>=6", "hiredis>=2.0", "redis>=5", "numpy"]
BUILD_DEPS = ["scikit-build-core>=0.10", "pybind11>=2.12", "cmake", "ninja"]


def _install(session: nox.Session, *, env: dict[str, str] | None = None) -> None:
    session.install(*BUILD_DEPS)
    session.install("--no-build-isolation", "-v", ".", env=env or {})


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check over all Python sources."""
    session.install("ruff>=0.5")
    session.run("ruff", "check", *PYTHON_PATHS)
    session.run("ruff", "format", "--check", *PYTHON_PATHS)


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict over respkv, tests, conformance, benchmarks and this file."""
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
    tmp = Path(session.create_tmp())
    link = tmp / "path" / "benchmarks"
    link.parent.mkdir(exist_ok=True)
    if not link.is_symlink():
        link.symlink_to(Path.cwd() / "benchmarks")
    session.chdir(str(tmp))
    session.run(
        "python", "-m", "benchmarks", *session.posargs, env={"PYTHONPATH": str(link.parent)}
    )
