"""The measured defaults of issue 13: the worker count rule and the values in flight.

``default_num_workers`` picks the worker count from the cores (clamped to
``MIN_DEFAULT_WORKERS..MAX_DEFAULT_WORKERS``); a count given explicitly always wins.
``window_values=0`` (the default) is ``default_window_values(num_workers)``: a
connection holds one large SET/GET in flight, because a second large SET queued behind
the first makes Redis copy the value out of its query buffer, except with a single
worker, whose server would idle between values, where it holds two (docs/performance.md,
"The fix, and the defaults chosen from measurement"). The window is checked on the wire
on both backends: a scripted server that never answers a large SET sees exactly as many
as the window lets each connection send, within a bounded wait for one more that must
not come; the explicit settings are the controls. Nothing here measures speed.
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
    default_window_values,
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
    assert ConnectionOptions().window_values == 1  # derived from num_workers (>= 4)
    assert [default_window_values(n) for n in (1, 2, 4, 256)] == [2, 1, 1, 1]
    assert ConnectionOptions(num_workers=1).window_values == 2
    assert ConnectionOptions(num_workers=2, window_values=0).window_values == 1
    assert ConnectionOptions(num_workers=1, window_values=1).window_values == 1
    assert ConnectionOptions(num_workers=8, window_values=3).window_values == 3
    # replace() derives it again for the new worker count, unless it was given.
    assert ConnectionOptions(num_workers=4).replace(num_workers=1).window_values == 2
    assert ConnectionOptions(num_workers=1).replace(num_workers=4).window_values == 1
    given = ConnectionOptions(num_workers=4, window_values=1)
    assert given.replace(num_workers=1).window_values == 1
    assert given.replace(num_workers=1, window_values=0).window_values == 2
    assert respkv.config.resolve("resp://h?num_workers=1").window_values == 2
    assert respkv.config.resolve(ConnectionOptions(), num_workers=1).window_values == 2
    assert respkv.config.resolve(given, num_workers=1).window_values == 1
    assert respkv.config.resolve("resp://h?num_workers=1&window_values=1").window_values == 1
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


@pytest.mark.parametrize(
    ("workers", "window", "in_flight"),
    [(1, None, 2), (1, 1, 1), (2, None, 1), (2, 2, 2)],
    ids=["1-worker-default", "1-worker-window1", "2-workers-default", "2-workers-window2"],
)
def test_large_sets_in_flight_per_connection(
    connector_factory: ConnectorFactory,
    silent_server: FakeServer,
    workers: int,
    window: int | None,
    in_flight: int,
) -> None:
    options = ConnectionOptions(
        host=silent_server.host, port=silent_server.port, num_workers=workers
    )
    if window is not None:
        options = options.replace(window_values=window)
    conn = connector_factory(options)
    try:
        # Three values per connection (the tiles are contiguous and balanced), so one
        # more than either window could be sent if the window were not kept.
        values = [bytearray(VALUE_BYTES) for _ in range(3 * workers)]
        conn.submit_batch_set([f"w:{i}" for i in range(len(values))], values)
        allowed = in_flight * workers
        assert _sets_seen(silent_server, allowed, 10.0) == allowed
        assert _sets_seen(silent_server, allowed + 1, QUIET_S) == allowed  # the rest wait
    finally:
        conn.close()
