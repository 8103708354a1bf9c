"""Many threads, many small batches, on the native engine; run under ThreadSanitizer by
``nox -s native-tsan`` (and AddressSanitizer by ``native-asan``), plainly otherwise.

16 submitting threads share one connector with 8 workers and push 10,000 small batches
through it (SET, GET, EXISTS, DELETE on keys of their own, each checked); a drainer
thread files completions as the event fd signals them. Then submitters race ``close``,
and ``cancel`` races the workers finishing the very batches it cancels. Every wait is
bounded; nothing sleeps to synchronise.
"""

from __future__ import annotations

import os
import select
import threading
from types import ModuleType

import pytest

from respkv import Completion, ConnectionOptions, ErrorKind, KeyStatus
from respkv._backend import load_native
from respkv.errors import ConnectionClosedError

THREADS = 16
WORKERS = 8
BATCHES = 10_000
KEYS_PER_BATCH = 3
#: Bound on any single wait (sanitizer builds run several times slower).
WAIT_S = 120.0


@pytest.fixture(scope="module")
def core() -> ModuleType:
    try:
        return load_native()
    except ImportError as exc:
        if os.environ.get("RESPKV_REQUIRE_NATIVE") == "1":
            pytest.fail(f"native backend required (RESPKV_REQUIRE_NATIVE=1) but: {exc}")
        pytest.skip(f"native backend not built: {exc}")


class _Completions:
    """A drainer thread filing completions by batch id; waiters block on a condition."""

    def __init__(self, conn: object) -> None:
        from respkv._native import NativeConnector

        assert isinstance(conn, NativeConnector)
        self._conn = conn
        self._cond = threading.Condition()
        self._done: dict[int, Completion] = {}
        self.total = 0
        self.duplicates: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="drainer")
        self._thread.start()

    def _run(self) -> None:
        fd = self._conn.event_fd()
        while not self._stop.is_set():
            select.select([fd], [], [], 0.2)  # bounded wait; stop is re-checked
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
        self._stop.set()
        self._thread.join(WAIT_S)
        assert not self._thread.is_alive()
        self._file(self._conn.drain_completions())

    def take_all(self) -> dict[int, Completion]:
        with self._cond:
            done, self._done = self._done, {}
            return done


def _run_threads(target: object, n: int) -> list[BaseException]:
    errors: list[BaseException] = []

    def guarded(t: int) -> None:
        try:
            target(t)  # type: ignore[operator]
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
    core: ModuleType, redis_options: ConnectionOptions
) -> None:
    from respkv._native import NativeConnector

    conn = NativeConnector(redis_options.replace(num_workers=WORKERS))
    done = _Completions(conn)
    rounds = -(-BATCHES // (THREADS * 4))  # four batches per round, at least BATCHES in all

    def submitter(t: int) -> None:
        for r in range(rounds):
            keys = [f"st:{t}:{r % 5}:{k}" for k in range(KEYS_PER_BATCH)]
            vals = [b"%d-%d-%d" % (t, r, k) * (k + 1) for k in range(KEYS_PER_BATCH)]
            s = done.wait(conn.submit_batch_set(keys, vals))
            assert s.ok, s.error
            out = [bytearray(len(v)) for v in vals]
            g = done.wait(conn.submit_batch_get(keys, out))
            assert g.ok and [bytes(b) for b in out] == vals, g.error
            e = done.wait(conn.submit_batch_exists([*keys, f"st:{t}:none"]))
            assert e.statuses == (KeyStatus.OK,) * KEYS_PER_BATCH + (KeyStatus.MISS,)
            d = done.wait(conn.submit_batch_delete(keys))
            assert d.statuses == (KeyStatus.OK,) * KEYS_PER_BATCH

    try:
        errors = _run_threads(submitter, THREADS)
    finally:
        conn.close()
        done.stop()
    assert not errors, errors[:3]
    assert done.duplicates == []
    assert done.total == rounds * 4 * THREADS >= BATCHES


def test_submitters_race_close(core: ModuleType, redis_options: ConnectionOptions) -> None:
    from respkv._native import NativeConnector

    conn = NativeConnector(redis_options.replace(num_workers=WORKERS))
    done = _Completions(conn)
    submitted: list[int] = []
    lock = threading.Lock()
    first_done = threading.Event()
    max_batches = 2000  # per thread; close normally comes long before

    def submitter(t: int) -> None:
        for j in range(max_batches):
            try:
                bid = conn.submit_batch_exists([f"rc:{t}:{j}", f"rc:{t}"])
            except ConnectionClosedError:
                return
            with lock:
                submitted.append(bid)
            if j == 50:
                first_done.set()

    def closer() -> None:
        first_done.wait(WAIT_S)
        conn.close()

    closing = threading.Thread(target=closer)
    closing.start()
    try:
        errors = _run_threads(submitter, THREADS)
    finally:
        closing.join(WAIT_S)
        conn.close()
        done.stop()
    assert not errors, errors[:3]
    assert not closing.is_alive()
    seen = done.take_all()
    assert done.duplicates == []
    assert sorted(seen) == sorted(submitted), "every accepted batch completes exactly once"
    allowed = {KeyStatus.MISS, KeyStatus.CANCELLED}
    assert all(set(c.statuses) <= allowed for c in seen.values())


def test_cancel_races_completion(core: ModuleType, redis_options: ConnectionOptions) -> None:
    """Each thread submits GETs and cancels every other one at once. A cancel that wins
    ends keys CANCELLED (dropping the connection, so other threads' keys in flight there
    end ABORTED); one that loses returns False; either way every batch completes exactly
    once, and every key reported OK holds its own value."""
    from respkv._native import NativeConnector

    conn = NativeConnector(redis_options.replace(num_workers=4))
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
                if status is KeyStatus.OK:
                    assert bytes(buf) == values[key]
                elif status is KeyStatus.CANCELLED:
                    assert f is not None and f.kind is ErrorKind.CANCELLED
                else:
                    assert status is KeyStatus.IO_ERROR, (status, f)
                    assert f is not None and f.kind is ErrorKind.ABORTED, f
            assert conn.cancel(bid) is False, "a drained batch cannot be cancelled"

    try:
        errors = _run_threads(submitter, 8)
    finally:
        conn.close()
        done.stop()
    assert not errors, errors[:3]
    assert done.duplicates == []
    assert cancelled[0] > 0, "no cancel ever won the race"
