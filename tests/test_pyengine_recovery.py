"""Pure engine: an unexpected exception in a worker fails what it holds and the worker
goes on (issue 9, defect 5).

Before the fix a worker thread that met an exception it did not expect (the report:
``OverflowError`` from an infinite timeout inside ``selectors``) died, and every batch
with a key on it stayed pending forever. The timeouts are now bounded at configuration
(``MAX_TIMEOUT``); these tests make sure that *any* other surprise ends the same way:
the keys in flight and pending end ``IO_ERROR`` with kind INTERNAL and the exception's
text in ``detail``, the batch completes, and the same connector serves the next batch.

The fault is injected by making one method of the engine raise once (fault injection;
the server is real).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Final

import pytest

from respkv import ConnectionOptions, ErrorKind, KeyStatus
from respkv._pyengine import PyConnector
from respkv._pyengine.connection import Connection
from respkv._pyengine.worker import Worker
from respkv.testing import wait_for

#: Bound on every wait (a hang fails instead of blocking the suite).
WAIT: Final = 15.0
INJECTED: Final = "injected fault for the test"


def raise_once(cls: type, name: str, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Make ``cls.name`` raise RuntimeError(INJECTED) on its first call, then behave.
    The returned list counts the calls that raised."""
    original: Callable[..., Any] = getattr(cls, name)
    raised: list[int] = []

    def patched(self: object, *args: Any, **kwargs: Any) -> Any:
        if not raised:
            raised.append(1)
            raise RuntimeError(INJECTED)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(cls, name, patched)
    return raised


@pytest.fixture
def conn(redis_options: ConnectionOptions) -> Iterator[PyConnector]:
    c = PyConnector(redis_options.replace(num_workers=1))
    try:
        keys = [f"rec:{i}" for i in range(4)]
        assert wait_for(c, c.submit_batch_set(keys, [b"v%d" % i for i in range(4)]), WAIT).ok
        yield c
    finally:
        c.close()


def assert_internal(statuses: tuple[KeyStatus, ...], failures: tuple[Any, ...]) -> None:
    assert statuses == (KeyStatus.IO_ERROR,) * len(statuses)
    for f in failures:
        assert f is not None and f.kind is ErrorKind.INTERNAL
        assert "RuntimeError" in f.detail and INJECTED in f.detail


def assert_serves(conn: PyConnector) -> None:
    """The same connector answers the next batches correctly."""
    out = [bytearray(2) for _ in range(4)]
    c = wait_for(conn, conn.submit_batch_get([f"rec:{i}" for i in range(4)], out), WAIT)
    assert c.ok and [bytes(o) for o in out] == [b"v%d" % i for i in range(4)]
    c = wait_for(conn, conn.submit_batch_exists(["rec:0", "rec:none"]), WAIT)
    assert c.statuses == (KeyStatus.OK, KeyStatus.MISS)


def test_exception_while_taking_replies_fails_the_keys_in_flight(
    conn: PyConnector, monkeypatch: pytest.MonkeyPatch
) -> None:
    raised = raise_once(Worker, "_take_replies", monkeypatch)
    out = [bytearray(2) for _ in range(4)]
    c = wait_for(conn, conn.submit_batch_get([f"rec:{i}" for i in range(4)], out), WAIT)
    assert raised == [1]
    assert_internal(c.statuses, c.failures)
    assert all(f.in_flight for f in c.failures), "their requests had been written"
    assert_serves(conn)


def test_exception_in_the_connection_fails_the_keys_in_flight(
    conn: PyConnector, monkeypatch: pytest.MonkeyPatch
) -> None:
    raised = raise_once(Connection, "receive", monkeypatch)
    c = wait_for(conn, conn.submit_batch_exists([f"rec:{i}" for i in range(4)]), WAIT)
    assert raised == [1]
    assert_internal(c.statuses, c.failures)
    assert_serves(conn)


def test_exception_while_admitting_fails_the_pending_keys(
    conn: PyConnector, monkeypatch: pytest.MonkeyPatch
) -> None:
    raised = raise_once(Worker, "_admit", monkeypatch)
    c = wait_for(conn, conn.submit_batch_exists([f"rec:{i}" for i in range(4)]), WAIT)
    assert raised == [1]
    assert_internal(c.statuses, c.failures)
    assert not any(f.in_flight for f in c.failures), "nothing had been written"
    assert_serves(conn)


def test_a_fault_on_every_connect_never_leaves_a_batch_pending(
    redis_options: ConnectionOptions, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fault that repeats (each connect raises): every batch still completes."""

    def always(self: Connection, now: float) -> None:
        raise RuntimeError(INJECTED)

    original = Connection.begin
    monkeypatch.setattr(Connection, "begin", always)
    conn = PyConnector(redis_options.replace(num_workers=2))
    try:
        for _ in range(3):
            c = wait_for(conn, conn.submit_batch_exists(["a", "b", "c"]), WAIT)
            assert_internal(c.statuses, c.failures)
        monkeypatch.setattr(Connection, "begin", original)
        c = wait_for(conn, conn.submit_batch_exists(["a"]), WAIT)
        assert c.statuses == (KeyStatus.MISS,)
    finally:
        conn.close()
