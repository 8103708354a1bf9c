"""Pure engine across ``fork()``: a child gets a clear error, never a silent hang
(issue 9, defect 4).

Before the fix a connector inherited by a forked child accepted batches there and never
completed them (its worker threads exist only in the parent). Now every method but
``close()`` raises :class:`~respkv.errors.ForkedError` in the child, and ``close()``
there only closes the child's copies of the descriptors, whatever locks the parent's
threads held at the moment of the fork, while the parent's connector goes on working.

Children report through their exit status: 0 is success, any other value names the
check that failed (see ``CHECKS``). Every wait on a child is bounded (a pidfd polled
with a timeout, or ``Process.join(timeout)``).
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import select
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Final

import pytest

from respkv import ConnectionOptions, ForkedError, KeyStatus
from respkv._pyengine import PyConnector
from respkv.testing import wait_for

#: Bound on a child's whole life and on the waits of the parent.
CHILD_SECONDS: Final = 20.0
#: Longest close() in a child may take: it only closes descriptors.
CHILD_CLOSE_SECONDS: Final = 2.0
#: Exit statuses of a child, one per check.
CHECKS: Final = {
    0: "ok",
    2: "a method other than close() did not raise ForkedError",
    3: "ForkedError does not say that a child must connect anew",
    4: "close() in the child was slow",
    5: "a descriptor of the connector is still open in the child after close()",
    6: "dropping the connector in the child left a descriptor open",
    98: "the child raised",
    99: "the child did not report",
}


def run_in_child(fn: Callable[[], int]) -> int:
    """Fork, run ``fn`` in the child, return its exit status (bounded wait)."""
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 99
        try:
            code = fn()
        except BaseException:
            traceback.print_exc(file=sys.stderr)
            code = 98
        finally:
            os._exit(code)
    pidfd = os.pidfd_open(pid)
    try:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        if not poller.poll(CHILD_SECONDS * 1000):
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            raise AssertionError(f"the child did not exit within {CHILD_SECONDS} s")
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(pidfd)
    return os.waitstatus_to_exitcode(status)


def connector_fds(conn: PyConnector) -> list[int]:
    """The descriptors the connector holds now (event fd, wake fds, selectors, sockets)."""
    fds = [conn.event_fd()]
    for w in conn._workers:
        fds.append(w._wake.fileno())
        fds.append(w._poller._sel.fileno())
        if w._conn is not None and w._conn.sock is not None:
            fds.append(w._conn.sock.fileno())
    return fds


def all_closed(fds: list[int]) -> bool:
    for fd in fds:
        try:
            os.fstat(fd)
        except OSError:
            continue
        return False
    return True


@pytest.fixture
def busy_connector(redis_options: ConnectionOptions) -> Iterator[PyConnector]:
    """A connector with open connections (one batch done on each worker)."""
    conn = PyConnector(redis_options.replace(num_workers=3))
    try:
        keys = [f"fork:{i}" for i in range(30)]
        assert wait_for(conn, conn.submit_batch_set(keys, [b"v" * 100] * 30)).ok
        yield conn
    finally:
        conn.close()


def uses_fail_then_close(conn: PyConnector, fds: list[int]) -> int:
    """In the child: every method but close() raises ForkedError; close() is quick and
    closes the child's copies of the connector's descriptors."""
    calls: list[Callable[[], object]] = [
        lambda: conn.submit_batch_exists(["k"]),
        lambda: conn.submit_batch_delete(["k"]),
        lambda: conn.submit_batch_set(["k"], [b"v"]),
        lambda: conn.submit_batch_get(["k"], [bytearray(1)]),
        lambda: conn.submit_batch_exists(["k"], timeout=1.0),
        lambda: conn.cancel(1),
        conn.drain_completions,
        conn.event_fd,
    ]
    for call in calls:
        try:
            call()
        except ForkedError as exc:
            if "connect anew" not in str(exc):
                return 3
        else:
            return 2
    start = time.monotonic()
    conn.close()
    conn.close()  # idempotent in the child too
    if time.monotonic() - start > CHILD_CLOSE_SECONDS:
        return 4
    return 0 if all_closed(fds) else 5


def test_child_gets_forked_error_and_close_releases_its_copies(
    busy_connector: PyConnector,
) -> None:
    conn = busy_connector
    fds = connector_fds(conn)
    assert run_in_child(lambda: uses_fail_then_close(conn, fds)) == 0
    # The parent's connector is untouched by the child's close.
    c = wait_for(conn, conn.submit_batch_exists(["fork:0", "fork:missing"]))
    assert c.statuses == (KeyStatus.OK, KeyStatus.MISS)


def test_child_dropping_the_connector_only_closes_descriptors(
    busy_connector: PyConnector,
) -> None:
    """The finalizer of a connector collected in the child must not try to stop or
    join threads that are not there (nor warn about the parent's connector)."""
    conn = busy_connector
    fds = connector_fds(conn)

    def child() -> int:
        # The fixture's frame keeps ``conn`` alive: run what its collection would run.
        conn._finalizer()
        gc.collect()
        return 0 if all_closed(fds) else 6

    assert run_in_child(child) == 0
    assert wait_for(conn, conn.submit_batch_exists(["fork:1"])).statuses == (KeyStatus.OK,)


def test_fork_while_batches_are_in_flight(busy_connector: PyConnector) -> None:
    """Forked while workers hold their locks (mid-batch): close() in the child never
    waits on a lock a parent thread held at the fork."""
    conn = busy_connector
    fds = connector_fds(conn)
    value = b"x" * (256 * 1024)
    for round_ in range(5):
        keys = [f"fork:busy:{round_}:{i}" for i in range(40)]
        bid = conn.submit_batch_set(keys, [value] * len(keys))
        assert run_in_child(lambda: uses_fail_then_close(conn, fds)) == 0
        assert wait_for(conn, bid).ok


# -- multiprocessing's fork start method ----------------------------------------------


def _mp_untouched(conn: PyConnector) -> None:
    """A child that never touches the inherited connector."""


def _mp_close(conn: PyConnector) -> None:
    conn.close()


def _mp_use(conn: PyConnector) -> None:
    try:
        conn.submit_batch_exists(["k"])
    except ForkedError:
        return
    sys.exit(2)


@pytest.mark.parametrize("target", [_mp_untouched, _mp_close, _mp_use], ids=lambda f: f.__name__)
def test_multiprocessing_fork_children_exit_cleanly(
    busy_connector: PyConnector, target: Callable[[PyConnector], None]
) -> None:
    ctx = multiprocessing.get_context("fork")
    child = ctx.Process(target=target, args=(busy_connector,))
    child.start()
    child.join(CHILD_SECONDS)
    if child.is_alive():
        child.kill()
        child.join()
        raise AssertionError("the multiprocessing child hung")
    assert child.exitcode == 0, CHECKS.get(child.exitcode or 0, child.exitcode)
    assert wait_for(busy_connector, busy_connector.submit_batch_exists(["fork:2"])).ok
