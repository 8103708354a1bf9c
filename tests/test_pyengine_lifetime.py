"""Pure engine: nothing outlives a connector (issue 9, defects 6 and 7).

Before the fix ``close()`` left the connector's event fd open (500 connectors: 500
descriptors), and a connector dropped without ``close()`` kept its worker threads,
their sockets and the server connections forever (50 connectors of 4 workers: 200
threads, 650 descriptors, 201 server connections). Now ``close()`` closes every
descriptor it owns, and a connector that is garbage collected unclosed is shut down by
a ``weakref.finalize`` with a ``ResourceWarning`` (as an unclosed socket is).

Counts come from the process itself (``/proc/self/fd``, ``threading``) and from the
server (``INFO clients``); every wait is bounded: threads are joined with a timeout, the
server's count is read in a bounded loop.
"""

from __future__ import annotations

import gc
import os
import threading
import time
from typing import Final

import pytest

from respkv import ConnectionOptions, KeyStatus
from respkv._admin import AdminConnection
from respkv._pyengine import PyConnector
from respkv.testing import wait_for

#: Descriptors other threads of the test process (pytest-xdist's channel) may open or
#: close meanwhile; a leak here is one per connector or more, far above this.
FD_SLACK: Final = 5
#: Bound on every wait of these tests.
WAIT: Final = 20.0
#: The server's count of clients is polled this often while it catches up with closes.
SERVER_POLL: Final = 0.02


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def server_clients(options: ConnectionOptions) -> int:
    """Clients connected to the server, not counting the connection asking."""
    with AdminConnection(options) as admin:
        info = admin.command("INFO", "clients").decode()
    for line in info.splitlines():
        if line.startswith("connected_clients:"):
            return int(line.split(":", 1)[1]) - 1
    raise AssertionError("INFO clients has no connected_clients")


def wait_for_server_clients(options: ConnectionOptions, expected: int) -> int:
    """The server's client count once it is ``expected``, or the last one read."""
    deadline = time.monotonic() + WAIT
    count = server_clients(options)
    while count != expected and time.monotonic() < deadline:
        threading.Event().wait(SERVER_POLL)  # a bounded poll of the server's state
        count = server_clients(options)
    return count


def drop_and_collect(conns: list[PyConnector]) -> None:
    """Drop the only references to ``conns`` (no close()) and collect."""
    conns.clear()
    gc.collect()


def used(options: ConnectionOptions) -> PyConnector:
    """A connector whose workers have all connected (one batch over every worker)."""
    conn = PyConnector(options)
    keys = [f"life:{i}" for i in range(options.num_workers)]
    c = wait_for(conn, conn.submit_batch_exists(keys), WAIT)
    assert c.statuses == (KeyStatus.MISS,) * len(keys)
    return conn


def test_close_releases_every_descriptor(redis_options: ConnectionOptions) -> None:
    """500 connectors opened, used and closed leave the descriptor count flat."""
    options = redis_options.replace(num_workers=1)
    used(options).close()  # warm up lazy imports and caches
    before = open_fds()
    for _ in range(500):
        conn = used(options)
        conn.close()
        assert conn.event_fd() == -1, "a closed connector has no event fd"
    assert open_fds() - before <= FD_SLACK


def test_unclosed_connectors_are_released_when_collected(
    redis_options: ConnectionOptions,
) -> None:
    options = redis_options.replace(num_workers=4)
    used(options).close()
    fds_before = open_fds()
    clients_before = server_clients(redis_options)
    existing = set(threading.enumerate())
    conns = [used(options) for _ in range(50)]
    workers = [t for t in threading.enumerate() if t not in existing]
    assert len(workers) == 200
    assert server_clients(redis_options) == clients_before + 200
    with pytest.warns(ResourceWarning) as record:
        drop_and_collect(conns)
    unclosed = [w for w in record if "unclosed PyConnector" in str(w.message)]
    assert len(unclosed) == 50, [str(w.message) for w in record]
    for t in workers:
        t.join(WAIT)
    assert not [t for t in workers if t.is_alive()], "worker threads outlived their connector"
    assert open_fds() - fds_before <= FD_SLACK
    assert wait_for_server_clients(redis_options, clients_before) == clients_before


def test_collected_on_its_own_worker_thread(redis_options: ConnectionOptions) -> None:
    """The last reference to a connector dropped on one of its own workers: the
    finalizer cannot join that thread, so a helper thread shuts the connector down."""
    holder = [used(redis_options.replace(num_workers=2))]
    workers = list(holder[0]._workers)
    target = workers[0]
    take_inbox = target._take_inbox
    dropped = threading.Event()

    def take_inbox_then_drop() -> None:
        take_inbox()
        if holder:
            holder.clear()  # the connector is collected here, on its worker
            gc.collect()
            dropped.set()

    def wake_and_wait() -> None:
        target._wake.set()
        assert dropped.wait(WAIT)
        for t in workers:
            t.join(WAIT)

    target._take_inbox = take_inbox_then_drop  # type: ignore[method-assign]
    with pytest.warns(ResourceWarning, match="unclosed PyConnector"):
        wake_and_wait()
    assert not any(t.is_alive() for t in workers), "the workers outlived their connector"


def test_close_completes_the_batches_it_races_with(redis_options: ConnectionOptions) -> None:
    """Batches submitted just before close() complete exactly once, CANCELLED (kind
    CLOSED) where they had not finished, even those a worker had not taken from its
    inbox when it saw the stop (a race: repeated, bounded)."""
    value = b"v" * (64 * 1024)
    for round_ in range(30):
        conn = PyConnector(redis_options.replace(num_workers=2))
        ids = [
            conn.submit_batch_set([f"race:{round_}:{j}:{i}" for i in range(4)], [value] * 4)
            for j in range(4)
        ]
        conn.close()
        done = conn.drain_completions()
        assert sorted(c.batch_id for c in done) == ids, f"round {round_}: lost completions"
        for c in done:
            for s, f in zip(c.statuses, c.failures):
                assert s is KeyStatus.OK or (f is not None and f.kind.name == "CLOSED")
