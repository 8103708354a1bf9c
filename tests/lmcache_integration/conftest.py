# mypy: disable-error-code="import-not-found,import-untyped"
"""respkv inside the real LMCache: fixtures for the tests ``nox -s lmcache`` runs.

This folder is collected only when it is named on pytest's command line (``pytest
tests/lmcache_integration``, which the ``lmcache`` nox session does): the default run
has no ``lmcache`` package, so there these tests are not part of the run at all rather
than skipped one by one. Named, a missing ``lmcache`` is an error, never a skip.

What runs here is LMCache's own code (``lmcache==0.5.6``, CPU torch): its adapter
factories, ``NativeConnectorL2Adapter``, ``L2EvictionController``, its check modes and
its non-MP ``RemoteBackend``, against a real ``redis-server``, on both respkv backends
and side by side with LMCache's own ``resp`` adapter. Cases where LMCache's own client
is known to hang run in a child process with a deadline, so a hang is reported as that
client's failure and never stops the run.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import pytest

HERE: Final = Path(__file__).resolve().parent
# The tests and child scripts import their helpers (_lmhelpers) from this folder.
sys.path.insert(0, str(HERE))
#: Backends of respkv the tests run on.
BACKENDS: Final = ("python", "native")


def _named(config: pytest.Config) -> bool:
    """Whether this folder (or something inside it) was named on the command line."""
    for arg in config.args:
        path = Path(str(arg).split("::", 1)[0]).resolve()
        if path == HERE or HERE in path.parents:
            return True
    return False


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if collection_path == HERE or HERE in collection_path.parents:
        return None if _named(config) else True
    return None


def pytest_configure(config: pytest.Config) -> None:
    if not _named(config):
        return
    # LMCache and torch warn about things that are theirs (deprecated APIs they use);
    # the suite's warnings-as-errors is for respkv's code.
    for line in (
        "ignore::DeprecationWarning",
        "ignore::PendingDeprecationWarning",
        "ignore::FutureWarning",
        "ignore::UserWarning:torch.*",
    ):
        config.addinivalue_line("filterwarnings", line)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """A respkv backend; RESPKV_BACKEND is set too, for LMCache-built clients."""
    from _lmhelpers import use_backend

    name: str = request.param
    use_backend(monkeypatch, name)
    return name


@pytest.fixture(scope="session")
def server() -> Iterator[Any]:
    from respkv.testing.servers import LocalServer

    with LocalServer() as s:
        yield s


@pytest.fixture
def flushed(server: Any) -> Any:
    """The session server, emptied."""
    from _lmhelpers import redis_command

    redis_command(server, "FLUSHALL")
    return server
