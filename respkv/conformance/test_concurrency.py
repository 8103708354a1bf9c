"""Contract properties under concurrency, for every connector: many threads submitting
many small batches, ``cancel`` racing the workers finishing the very batches it cancels,
``close`` waking a thread blocked on the event fd, and connections over a unix socket.
(``close`` racing submitters: ``test_fault_matrix_misuse.py``.)

16 submitting threads share one connector with 8 workers and push at least
:data:`BATCHES` small batches through it (SET, GET, EXISTS, DELETE on keys of their own,
each checked); a drainer thread files completions as the event fd signals them. Every
wait is bounded; nothing sleeps to synchronise. ``nox -s native-tsan`` runs these under
ThreadSanitizer (``-k native``).
"""

from __future__ import annotations

import errno
import select
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Final

import pytest

from respkv import Completion, ConnectionOptions, Connector, ErrorKind, KeyStatus
from respkv.testing import ConnectorFactory, wait_for

THREADS: Final = 16
WORKERS: Final = 8
#: Batches in the stress case: enough for races to show, a few seconds on 2 cores.
BATCHES: Final = 10_000
KEYS_PER_BATCH: Final = 3
#: Bound on any single wait (sanitizer builds run several times slower).
WAIT_S: Final = 120.0


class _Completions:
    """A drainer thread filing completions by batch id; waiters block on a condition."""

    def __init__(self, conn: Connector) -> None:
        self._conn = conn
        self._cond = threading.Condition()
        self._done: dict[int, Completion] = {}
        self.total = 0
        self.duplicates: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="drainer")
        self._thread.start()

    def _run(self) -> None:
        poller = select.poll()
        poller.register(self._conn.event_fd(), select.POLLIN)
        while not self._stop.is_set():
            poller.poll(200)  # bounded wait: stop is re-checked
            self._file(self._conn.drain_completions())

    def _file(self, completions: list[Completion]) -> None:
        if not completions:
            return
        with self._cond:
            for c in completions:
                if c.batch_id in self._done:
                    self.duplicates.append(c.batch_id)
                self._done[c.batch_id] = c
                self.total += 1
            self._cond.notify_all()

    def wait(self, batch_id: int) -> Completion:
        with self._cond:
            ok = self._cond.wait_for(lambda: batch_id in self._done, WAIT_S)
            assert ok, f"batch {batch_id} did not complete within {WAIT_S} s"
            return self._done.pop(batch_id)

    def stop(self) -> None:
        """Stop the drainer (before ``close()``: it polls the event fd)."""
        self._stop.set()
        self._thread.join(WAIT_S)
        assert not self._thread.is_alive(), "the drainer thread did not stop"
        self._file(self._conn.drain_completions())


def _run_threads(target: Callable[[int], None], n: int) -> list[BaseException]:
    errors: list[BaseException] = []

    def guarded(t: int) -> None:
        try:
            target(t)
        except BaseException as exc:  # reported by the caller
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(t,)) for t in range(n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(WAIT_S * 4)
        assert not th.is_alive(), "a submitting thread did not finish"
    return errors


def test_many_submitters_many_small_batches(
    connector_factory: ConnectorFactory, redis_options: ConnectionOptions
) -> None:
    conn = connector_factory(redis_options.replace(num_workers=WORKERS))
    done = _Completions(conn)
    rounds = -(-BATCHES // (THREADS * 4))  # four batches per round, at least BATCHES in all

    def submitter(t: int) -> None:
        for r in range(rounds):
            keys = [f"st:{t}:{r % 5}:{k}" for k in range(KEYS_PER_BATCH)]
            vals = [b"%d-%d-%d" % (t, r, k) * (k + 1) for k in range(KEYS_PER_BATCH)]
            s = done.wait(conn.submit_batch_set(keys, vals))
            assert s.ok, f"thread {t} round {r}: SET {s.error}"
            out = [bytearray(len(v)) for v in vals]
            g = done.wait(conn.submit_batch_get(keys, out))
            assert g.ok, f"thread {t} round {r}: GET {g.error}"
            for key, buf, val in zip(keys, out, vals):
                assert bytes(buf) == val, f"thread {t} round {r}: {key} holds {bytes(buf)!r}"
            e = done.wait(conn.submit_batch_exists([*keys, f"st:{t}:none"]))
            assert e.statuses == (KeyStatus.OK,) * KEYS_PER_BATCH + (KeyStatus.MISS,), (t, r)
            d = done.wait(conn.submit_batch_delete(keys))
            assert d.statuses == (KeyStatus.OK,) * KEYS_PER_BATCH, (t, r, d.failures)

    try:
        errors = _run_threads(submitter, THREADS)
    finally:
        done.stop()
        conn.close()
    assert not errors, errors[:3]
    assert done.duplicates == [], "a batch completed twice"
    assert done.total == rounds * 4 * THREADS >= BATCHES


def test_cancel_races_completion(
    connector_factory: ConnectorFactory, redis_options: ConnectionOptions
) -> None:
    """Each thread submits GETs and cancels every other one at once. A cancel that wins
    ends keys CANCELLED (dropping the connection, so other threads' keys in flight there
    end ABORTED); one that loses returns False; either way every batch completes exactly
    once, and every key reported OK holds its own value."""
    conn = connector_factory(redis_options.replace(num_workers=4))
    done = _Completions(conn)
    rounds = 60
    values = {f"cr:{k}": b"%d" % k * 50 for k in range(40)}
    assert done.wait(conn.submit_batch_set(list(values), list(values.values()))).ok
    cancelled = [0]
    lock = threading.Lock()

    def submitter(t: int) -> None:
        for r in range(rounds):
            keys = [f"cr:{(t * 7 + r + k) % 40}" for k in range(5)]
            out = [bytearray(len(values[k])) for k in keys]
            bid = conn.submit_batch_get(keys, out)
            if r % 2 and conn.cancel(bid):
                with lock:
                    cancelled[0] += 1
            c = done.wait(bid)
            for key, buf, status, f in zip(keys, out, c.statuses, c.failures):
                where = f"thread {t} round {r} {key}"
                if status is KeyStatus.OK:
                    assert bytes(buf) == values[key], f"{where}: OK but holds {bytes(buf)!r}"
                elif status is KeyStatus.CANCELLED:
                    assert f is not None and f.kind is ErrorKind.CANCELLED, f"{where}: {f}"
                else:
                    assert status is KeyStatus.IO_ERROR, f"{where}: {status.name} {f}"
                    assert f is not None and f.kind is ErrorKind.ABORTED, f"{where}: {f}"
            assert conn.cancel(bid) is False, "a drained batch cannot be cancelled"

    try:
        errors = _run_threads(submitter, 8)
    finally:
        done.stop()
        conn.close()
    assert not errors, errors[:3]
    assert done.duplicates == [], "a batch completed twice"
    assert cancelled[0] > 0, "no cancel ever won the race"


def test_cancel_races_close(
    connector_factory: ConnectorFactory, redis_options: ConnectionOptions
) -> None:
    """Threads cancelling batches while another thread closes the connector: every
    cancel returns a bool, and every batch submitted completes exactly once (drained
    after ``close``), however the race went. A connector that releases its descriptors
    in ``close`` must not let a late cancel signal a descriptor it has closed (the
    number may already belong to another open): ``nox -s native-tsan`` runs this."""
    conn = connector_factory(redis_options.replace(num_workers=4))
    keys = [f"cc:{k}" for k in range(8)]
    assert wait_for(conn, conn.submit_batch_set(keys, [b"v" * 64] * len(keys))).ok
    ids = [conn.submit_batch_get(keys, [bytearray(64) for _ in keys]) for _ in range(200)]
    started = threading.Barrier(3)
    answers: list[bool] = []

    def canceller(t: int) -> None:
        started.wait(WAIT_S)
        for bid in ids[t::2]:
            answers.append(conn.cancel(bid))

    threads = [threading.Thread(target=canceller, args=(t,)) for t in range(2)]
    for th in threads:
        th.start()
    started.wait(WAIT_S)
    conn.close()
    for th in threads:
        th.join(WAIT_S)
    assert not any(th.is_alive() for th in threads), "a cancel hung after close"
    assert all(isinstance(a, bool) for a in answers) and len(answers) == len(ids)
    got = [c.batch_id for c in conn.drain_completions()]
    assert sorted(got) == sorted(ids), "a batch was lost or completed twice"


def test_close_wakes_a_thread_waiting_on_the_event_fd(
    connector_factory: ConnectorFactory, redis_options: ConnectionOptions
) -> None:
    """A thread blocked in ``poll`` on the event fd with nothing to drain wakes up when
    another thread closes the connector (the fd is set once at the end of close)."""
    conn = connector_factory(redis_options.replace(num_workers=2))
    assert wait_for(conn, conn.submit_batch_exists(["wake"])).statuses == (KeyStatus.MISS,)
    poller = select.poll()
    poller.register(conn.event_fd(), select.POLLIN)
    assert poller.poll(0) == [], "nothing to drain, yet the event fd is readable"
    waiting = threading.Event()
    woke: list[list[tuple[int, int]]] = []

    def waiter() -> None:
        waiting.set()
        woke.append(poller.poll(WAIT_S * 1000))

    thread = threading.Thread(target=waiter)
    thread.start()
    assert waiting.wait(WAIT_S)
    conn.close()
    thread.join(WAIT_S)
    assert not thread.is_alive(), "close() left a thread blocked on the event fd"
    assert woke and woke[0], f"the waiter timed out instead of waking: {woke}"
    assert conn.drain_completions() == []


@pytest.mark.connector_needs("unix_socket")
def test_unix_socket_round_trip(
    connector_factory: ConnectorFactory, make_server: Callable[..., object], tmp_path: Path
) -> None:
    path = str(tmp_path / "redis.sock")
    make_server("--unixsocket", path, "--unixsocketperm", "700")
    conn = connector_factory(ConnectionOptions(unix_path=path, num_workers=2))
    try:
        vals = [b"x" * 100, b"y" * (1 << 20), b""]
        keys = ["u:1", "u:2", "u:3"]
        assert wait_for(conn, conn.submit_batch_set(keys, vals)).ok
        out = [bytearray(len(v)) for v in vals]
        g = wait_for(conn, conn.submit_batch_get(keys, out))
        assert g.statuses == (KeyStatus.OK,) * 3, g.failures
        for key, buf, val in zip(keys, out, vals):
            assert bytes(buf) == val, f"{key}: {len(buf)} bytes read back differ"
        e = wait_for(conn, conn.submit_batch_exists([*keys, "u:none"]))
        assert e.statuses == (KeyStatus.OK,) * 3 + (KeyStatus.MISS,)
    finally:
        conn.close()


@pytest.mark.connector_needs("unix_socket")
def test_unix_socket_missing_path_fails_keys(
    connector_factory: ConnectorFactory, tmp_path: Path
) -> None:
    path = str(tmp_path / "absent.sock")
    conn = connector_factory(ConnectionOptions(unix_path=path, num_workers=1, connect_timeout=2))
    try:
        c = wait_for(conn, conn.submit_batch_exists(["k", "k2"]))
        assert c.statuses == (KeyStatus.IO_ERROR,) * 2
        for i, f in enumerate(c.failures):
            assert f is not None, f"key {i}: a failed key carries a Failure"
            assert (f.kind, f.errno, f.address, f.in_flight) == (
                ErrorKind.CONNECT_FAILED, errno.ENOENT, path, False,
            ), f"key {i}: {f}"  # fmt: skip
    finally:
        conn.close()
