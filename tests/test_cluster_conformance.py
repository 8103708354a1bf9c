"""The conformance suite's connector-only tests, run on a real 3-master cluster.

The suite itself runs the router as its ``cluster`` connector kind over its own plain
servers (``connector_factory``; see :mod:`respkv.testing.cluster`), which checks every
contract rule with the router in the path. Here the tests that need nothing but a
``connector`` (round trips, per-key results, batch shapes, event fd, validation, close)
are collected again from ``respkv.conformance`` and given a router on ``local_cluster``, both
backends: the same rules with batches really split over three masters.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

from respkv._cluster.options import ClusterOptions
from respkv._contract import Connector
from respkv.testing.cluster import open_cluster_connector

#: The suite's modules whose connector-only tests are taken.
_MODULES = ("respkv.conformance.test_basic", "respkv.conformance.test_validation")


def _params(fn: Any) -> set[str]:
    names: set[str] = set()
    for mark in getattr(fn, "pytestmark", []):
        if mark.name == "parametrize":
            argnames = mark.args[0]
            names |= set(argnames.replace(" ", "").split(",") if isinstance(argnames, str)
                         else argnames)  # fmt: skip
    return names


def _connector_only(module: ModuleType) -> dict[str, Any]:
    out = {}
    for name, fn in vars(module).items():
        if name.startswith("test_") and inspect.isfunction(fn):
            wanted = set(inspect.signature(fn).parameters) - _params(fn)
            if wanted <= {"connector"}:
                out[name] = fn
    return out


for _name in _MODULES:
    globals().update(_connector_only(importlib.import_module(_name)))


@pytest.fixture
def connector(cluster_options: ClusterOptions, cluster_backend: str) -> Iterator[Connector]:
    """Overrides the plugin's ``connector``: a router on the shared 3-master cluster."""
    conn = open_cluster_connector(cluster_options.replace(num_workers=4), cluster_backend)
    try:
        yield conn
    finally:
        conn.close()
