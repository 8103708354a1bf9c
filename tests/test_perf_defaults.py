"""The measured defaults of issue 13: the worker count rule and one large value in flight.

``default_num_workers`` picks the worker count from the cores (clamped to
``MIN_DEFAULT_WORKERS..MAX_DEFAULT_WORKERS``); a count given explicitly always wins.
``window_values=1``: a connection holds one large SET/GET in flight, because a second
large SET queued behind the first makes Redis copy the value out of its query buffer
(docs/performance.md, "Workers and windows"). The window is checked on the wire on both
backends: a scripted server that never answers the first large SET must not see a
second one. The control (``window_values=2`` given explicitly) sees it within the same
bounded wait, so the check can fail. Nothing here measures speed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Final

import pytest

import respkv.config
from respkv._options import (
    MAX_DEFAULT_WORKERS,
    MIN_DEFAULT_WORKERS,
    ConnectionOptions,
    default_num_workers,
)
from respkv.testing import ConnectorFactory
from respkv.testing.fakeserver import SILENT, FakeServer

#: Two values above LARGE_VALUE_BYTES (256 KiB), so each counts against window_values.
VALUE_BYTES: Final = 512 * 1024
#: How long the server waits for a second SET that must not come (and the control's
#: second SET arrives in milliseconds): a bound, not a synchronisation.
QUIET_S: Final = 1.0


def test_default_workers_follow_the_cores_within_bounds() -> None:
    assert default_num_workers(1) == MIN_DEFAULT_WORKERS
    assert default_num_workers(2) == MIN_DEFAULT_WORKERS
    assert default_num_workers(6) == 6
    assert default_num_workers(16) == MAX_DEFAULT_WORKERS
    assert default_num_workers(256) == MAX_DEFAULT_WORKERS
    assert MIN_DEFAULT_WORKERS <= default_num_workers() <= MAX_DEFAULT_WORKERS


def test_options_take_the_default_unless_given() -> None:
    assert ConnectionOptions().num_workers == default_num_workers()
    assert ConnectionOptions().window_values == 1
    assert ConnectionOptions(num_workers=2).num_workers == 2
    assert ConnectionOptions().replace(num_workers=16).num_workers == 16
    assert respkv.config.resolve("resp://127.0.0.1:6379?num_workers=3").num_workers == 3
    assert respkv.config.resolve("resp://127.0.0.1:6379").num_workers == default_num_workers()


def _hold_first_set(args: list[bytes]) -> bytes | None:
    """Never answer a SET: the client's window alone decides what it sends next."""
    return SILENT if args[0] == b"SET" else None


@pytest.fixture
def silent_server() -> Iterator[FakeServer]:
    with FakeServer(_hold_first_set) as server:
        yield server


def _sets_seen(server: FakeServer, want: int, within: float) -> int:
    """SETs the server received, polled until ``want`` arrived or ``within`` passed."""
    deadline = time.monotonic() + within
    while server.count(b"SET") < want and time.monotonic() < deadline:
        time.sleep(0.01)  # polling a counter another thread fills: no event to wait on
    return server.count(b"SET")


@pytest.mark.parametrize("window", [None, 2], ids=["default", "window2"])
def test_one_large_set_in_flight_by_default(
    connector_factory: ConnectorFactory, silent_server: FakeServer, window: int | None
) -> None:
    options = ConnectionOptions(host=silent_server.host, port=silent_server.port, num_workers=1)
    if window is not None:
        options = options.replace(window_values=window)
    conn = connector_factory(options)
    try:
        values = [bytearray(VALUE_BYTES), bytearray(VALUE_BYTES)]
        conn.submit_batch_set(["w:0", "w:1"], values)
        if window is None:
            assert _sets_seen(silent_server, 1, 10.0) == 1
            assert _sets_seen(silent_server, 2, QUIET_S) == 1  # the second waits its turn
        else:
            assert _sets_seen(silent_server, 2, 10.0) == 2  # the control: pipelined
    finally:
        conn.close()
