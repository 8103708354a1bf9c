"""``respkv-conformance SPEC [pytest arguments]``: run the shipped suite against a connector.

SPEC is ``package.module:factory``, ``path/to/file.py:factory`` or a built-in kind (``py``,
``native``, ``cluster``); the rest goes to pytest as is (``-k``, ``-x``, ``-n 4`` with
pytest-xdist, ...). The run depends on nothing of the caller's pytest set-up:

* ``-c conformance.ini`` (next to this file): the suite's own options, markers and
  warning filters; no ``pytest.ini`` / ``pyproject.toml`` / ``tox.ini`` / ``setup.cfg`` of
  the current directory is read, and ``PYTEST_ADDOPTS`` is ignored;
* ``--rootdir`` is the suite's directory, so no ``conftest.py`` outside it is loaded;
* ``-p respkv.testing.plugin``: the fixtures, whatever the plugin autoloading;
* ``-p no:cacheprovider``: nothing is written next to the installed suite.

The spec is checked before pytest starts: a bad one is one clear message and exit
status 2 (pytest's usage errors are 4).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final

__all__ = ["main", "pytest_args"]

USAGE: Final = """\
usage: respkv-conformance SPEC [pytest arguments]

Run respkv's conformance suite against the connector factory SPEC:
  package.module:factory | path/to/file.py:factory | py | native | cluster
where factory(options: respkv.ConnectionOptions) -> respkv.Connector. A factory may
declare what it cannot show in factory.conformance_limits ({capability: why}); those
cases are skipped with that reason. Known capabilities: {capabilities}.

Examples:
  respkv-conformance mypkg.connector:open_connector
  respkv-conformance ./my_connector.py:MyConnector -x -k "basic or errors"
  respkv-conformance mypkg.connector:open_connector -n 4     (with pytest-xdist)
"""
#: The suite's directory (the installed respkv/conformance).
SUITE: Final = Path(__file__).resolve().parent


def pytest_args(spec: str, extra: Sequence[str]) -> list[str]:
    """The arguments ``respkv-conformance`` runs pytest with."""
    return [
        "-c", str(SUITE / "conformance.ini"),
        "--rootdir", str(SUITE),
        "-p", "respkv.testing.plugin",
        "-p", "no:cacheprovider",
        "--connector", spec,
        str(SUITE),
        *extra,
    ]  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    from respkv.testing.connectors import CAPABILITIES, ConnectorSpecError, load_factory

    if not args or args[0] in ("-h", "--help"):
        print(USAGE.replace("{capabilities}", ", ".join(CAPABILITIES)))
        return 0 if args else 2
    spec, extra = args[0], args[1:]
    if spec.startswith("-"):
        print(f"respkv-conformance: the first argument is the connector SPEC, not {spec!r}")
        return 2
    try:
        import pytest
    except ImportError:
        print("respkv-conformance needs pytest: pip install 'respkv[conformance]'")
        return 2
    try:
        load_factory(spec)
    except ConnectorSpecError as exc:
        print(f"respkv-conformance: {exc}")
        return 2
    os.environ.pop("PYTEST_ADDOPTS", None)  # the caller's pytest options: not ours
    return int(pytest.main(pytest_args(spec, extra)))
