"""The public test kit (``respkv.testing``) as a connector author meets it: connector
specs and their errors, declared capabilities and the skips they cause, ``-k custom``
without a custom connector, ``backend_name`` for a custom connector, and ``wait_for``
keeping unclaimed completions per connector object.

The pytest-level behaviour runs in a subprocess pytest, in a directory of its own with an
empty ``pytest.ini`` (so respkv's own configuration plays no part), on tests that take
``connector_factory`` but never open a connection.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap
import weakref
from pathlib import Path
from typing import Final, cast

import pytest

from respkv import Completion, Connector, Op
from respkv._contract import make_completion
from respkv._status import KeyStatus
from respkv.testing import (
    BUILTIN_CONNECTORS,
    ConnectorSpecError,
    load_factory,
    wait_for,
)

#: The plugin module a subprocess pytest loads.
PLUGIN: Final = "respkv.testing.plugin"
#: A connector module for the subprocess runs: factories that are never called.
FACTORIES: Final = textwrap.dedent(
    """
    from respkv._pyengine import PyConnector

    def plain(options):
        return PyConnector(options)

    def limited(options):
        return PyConnector(options)

    limited.conformance_limits = {"reply_types": "this stand-in cannot tell them apart"}

    def unknown(options):
        return PyConnector(options)

    unknown.conformance_limits = {"telepathy": "no"}

    class Maker:
        @staticmethod
        def create(options):
            return PyConnector(options)

    NOT_CALLABLE = 42
    """
)
SUITE: Final = textwrap.dedent(
    """
    import pytest

    def test_plain(connector_factory):
        assert callable(connector_factory)

    @pytest.mark.connector_needs("reply_types")
    def test_needs_reply_types(connector_factory):
        assert callable(connector_factory)

    def test_client(backend_name):
        assert backend_name in ("python", "native")
    """
)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A directory with an empty pytest.ini, the stand-in factories and a tiny suite."""
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "factories.py").write_text(FACTORIES)
    (tmp_path / "test_suite.py").write_text(SUITE)
    return tmp_path


def run_pytest(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RESPKV_", "PYTEST_"))}
    env["PYTHONPATH"] = str(project)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", PLUGIN, "-rs", "-q", "-p", "no:cacheprovider",
         "-p", "no:benchmark", *args],
        cwd=project, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


# -- specs -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("factories", "must be 'package.module:factory'"),
        ("factories:", "must be 'package.module:factory'"),
        (":plain", "must be 'package.module:factory'"),
        ("factories:not-an-identifier", "must be 'package.module:factory'"),
        ("no_such_module_xyz:plain", "cannot import module 'no_such_module_xyz'"),
        ("factories:missing", "'factories' has no attribute 'missing'"),
        ("factories:NOT_CALLABLE", "NOT_CALLABLE is a int, not a factory"),
        ("factories:unknown", "unknown capabilities ['telepathy']"),
        ("missing_dir/missing.py:plain", "no such file"),
    ],
)
def test_a_bad_spec_says_what_is_wrong(
    project: Path, monkeypatch: pytest.MonkeyPatch, spec: str, says: str
) -> None:
    monkeypatch.syspath_prepend(str(project))
    monkeypatch.chdir(project)
    monkeypatch.delitem(sys.modules, "factories", raising=False)
    with pytest.raises(ConnectorSpecError, match=r"connector spec .*") as info:
        load_factory(spec)
    assert says in str(info.value)


def test_specs_that_name_a_factory(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(project))
    monkeypatch.delitem(sys.modules, "factories", raising=False)
    assert load_factory("factories:plain").__name__ == "plain"
    assert load_factory("factories:Maker.create").__qualname__ == "Maker.create"
    by_path = load_factory(f"{project / 'factories.py'}:limited")
    assert by_path.__name__ == "limited"
    assert by_path.conformance_limits == {  # type: ignore[attr-defined]
        "reply_types": "this stand-in cannot tell them apart"
    }
    for kind, spec in BUILTIN_CONNECTORS.items():
        if kind != "native":  # the native one needs the build: test_native_engine.py
            module, _, attr = spec.partition(":")
            assert load_factory(kind) is getattr(sys.modules[module], attr)


def test_a_bad_connector_option_is_a_usage_error(project: Path) -> None:
    proc = run_pytest(project, "--connector", "factories")
    assert proc.returncode == 4, proc.stdout + proc.stderr  # pytest's usage error
    assert "must be 'package.module:factory'" in proc.stderr


# -- which connectors run, and what is skipped -------------------------------------------


def test_connector_option_runs_only_that_connector(project: Path) -> None:
    proc = run_pytest(project, "--connector", "factories:plain", "--collect-only")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "test_plain[custom]" in proc.stdout
    assert "[py]" not in proc.stdout and "[native]" not in proc.stdout


def test_a_declared_limit_skips_with_its_reason(project: Path) -> None:
    proc = run_pytest(project, "--connector", "factories:limited", "-k", "needs")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 skipped" in proc.stdout
    assert "custom connector cannot tell the RESP type of a reply" in proc.stdout
    assert "this stand-in cannot tell them apart" in proc.stdout


def test_backend_name_skips_a_custom_connector_with_why(project: Path) -> None:
    proc = run_pytest(project, "--connector", "factories:plain", "-k", "client")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 skipped" in proc.stdout
    assert "opens a high-level client by backend name" in proc.stdout


def test_k_custom_without_a_custom_connector_is_a_usage_error(project: Path) -> None:
    proc = run_pytest(project, "-k", "custom")
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert "selects the custom connector, but none is configured" in proc.stderr
    assert "--connector" in proc.stderr and "RESPKV_CONFORMANCE_CONNECTOR" in proc.stderr


def test_the_environment_variable_adds_custom_to_the_built_in_kinds(project: Path) -> None:
    env_spec = "factories:plain"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", PLUGIN, "-q", "-p", "no:cacheprovider",
         "-p", "no:benchmark", "--collect-only", "-k", "plain"],
        cwd=project, capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "PYTHONPATH": str(project), "RESPKV_CONFORMANCE_CONNECTOR": env_spec},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for kind in ("py", "native", "custom"):
        assert f"test_plain[{kind}]" in proc.stdout
    # The cluster kind runs the conformance suite only (respkv.testing.cluster).
    assert "test_plain[cluster]" not in proc.stdout


# -- wait_for ----------------------------------------------------------------------------


class _Scripted:
    """Not a connector of Redis: a scripted source of completions with a real event fd,
    to test wait_for's bookkeeping alone. Batch ids restart at 1, as a new connector's do."""

    __slots__ = ("_fd", "_pending")  # no __weakref__: subclasses choose

    def __init__(self, ops: list[Op]) -> None:
        self._fd = os.eventfd(1, os.EFD_NONBLOCK)
        self._pending = [make_completion(i + 1, op, [KeyStatus.OK]) for i, op in enumerate(ops)]

    def event_fd(self) -> int:
        return self._fd

    def drain_completions(self) -> list[Completion]:
        done, self._pending = self._pending, []
        return done

    def close(self) -> None:
        os.close(self._fd)


def _connector(x: _Scripted) -> Connector:
    """wait_for needs only ``event_fd`` and ``drain_completions``."""
    return cast("Connector", x)


class _StandIn(_Scripted):
    # Padded past pymalloc's small-object sizes (512 bytes) to an unusual size, so that
    # the allocator hands a freed one's memory (and id) to the next one at once.
    __slots__ = ("__weakref__", *(f"_pad{i}" for i in range(500)))


class _Unreferenceable(_Scripted):
    """No ``__weakref__`` slot: ``weakref.ref`` refuses it."""

    __slots__ = ()


def test_wait_for_keeps_unclaimed_completions_per_connector_object() -> None:
    """Completions another wait_for drained are kept for the connector *object*: a new
    connector that gets a collected one's id() (CPython reuses the memory at once) and
    restarts its batch ids at 1 never receives the old connector's leftovers."""
    first = _StandIn([Op.SET, Op.GET])
    assert wait_for(_connector(first), 2, timeout=5).op is Op.GET  # batch 1 is kept, unclaimed
    first.close()
    old_id = id(first)
    del first
    gc.collect()
    keep: list[_StandIn] = []
    second = _StandIn([Op.DELETE])
    for _ in range(1000):
        if id(second) == old_id:
            break
        keep.append(second)
        second = _StandIn([Op.DELETE])
    for other in keep:
        other.close()
    if id(second) != old_id:
        pytest.skip("the interpreter never reused the collected connector's id()")
    try:
        assert wait_for(_connector(second), 1, timeout=5).op is Op.DELETE, (
            "another connector's batch 1"
        )
    finally:
        second.close()


def test_wait_for_works_for_a_connector_without_weak_references() -> None:
    conn = _Unreferenceable([Op.EXISTS, Op.SET])
    with pytest.raises(TypeError):
        weakref.ref(conn)
    try:
        assert wait_for(_connector(conn), 2, timeout=5).op is Op.SET
        assert wait_for(_connector(conn), 1, timeout=5).op is Op.EXISTS
    finally:
        conn.close()
