"""What every case of the fault matrix asserts, in one place (used by ``respkv.conformance``).

A KV cache that reports a wrong value as a hit corrupts a model's output silently, so
the matrix checks data before anything else:

* **Values encode their key.** :func:`keyed_value` derives every byte of a value from
  its key and length (printable bytes, so no CR LF pair can appear inside a value and
  make a wrong length look well terminated). A GET buffer is **poisoned** first
  (:data:`POISON`, a byte no value contains); after the batch, a key reported ``OK``
  must hold exactly its own value (:func:`check_hits`). A value of another key, a
  shifted reply, a partial payload or an untouched buffer all fail the check.
* **Precise outcomes.** :func:`expect` compares each key's status and
  :class:`~respkv.ErrorKind` with what the case predicts, and checks the contract's
  bookkeeping: every failed key carries a :class:`~respkv.Failure` whose kind maps to
  its status, ``address`` is filled, no key that did not fail carries one.
* **Bounded time.** :func:`finish` waits for one batch on the event fd (``poll``:
  no limit on descriptor numbers) and fails the case as a hang past its bound.
* **Recovery.** :func:`recover` runs a fresh SET and GET round trip on the *same*
  connector object after the fault is gone.

The :func:`matrix_server` fixture is one server per test module (and xdist worker) for
the cases that do not need one of their own: the proxy's faults do not depend on the
server's binary, so the matrix does not multiply them by the session's binaries. A
module uses it by importing it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final

import pytest

from respkv._contract import STATUS_OF_KIND, Completion, Connector, ErrorKind, KeyStatus
from respkv._options import ConnectionOptions
from respkv.testing.servers import LocalServer
from respkv.testing.waiting import wait_for

__all__ = [
    "MATRIX_OPTIONS",
    "MISS",
    "OK",
    "Open",
    "POISON",
    "Outcome",
    "check_hits",
    "expect",
    "finish",
    "fork_verdict",
    "keyed_value",
    "matrix_server",
    "opener",
    "server_error",
    "poisoned",
    "recover",
]

#: Fills GET buffers before a batch: outside the printable range every value uses.
POISON: Final = 0xEE
#: Bytes a keyed value is made of: printable ASCII (0x20..0x7E), never CR or LF.
_LOW, _HIGH = 0x20, 0x7F
#: Bound on a recovery round trip: generous, since a reconnect may wait a backoff.
RECOVER_WITHIN: Final = 15.0

#: Maps any byte onto the printable range.
_PRINTABLE: Final = bytes(_LOW + b % (_HIGH - _LOW) for b in range(256))


@functools.lru_cache(maxsize=256)
def _keyed(key: bytes, size: int) -> bytes:
    stream = hashlib.shake_256(b"%d:%b" % (size, key)).digest(size)
    return stream.translate(_PRINTABLE)


def keyed_value(key: str | bytes, size: int) -> bytes:
    """The value of ``key`` at ``size`` bytes: every byte derived from both."""
    return _keyed(key.encode() if isinstance(key, str) else key, size)


def poisoned(size: int) -> bytearray:
    """A GET buffer filled with :data:`POISON`."""
    return bytearray([POISON]) * size


def finish(conn: Connector, batch_id: int, within: float) -> Completion:
    """Wait (on the event fd) for ``batch_id``; fail as a hang after ``within`` seconds.

    Completions of other batches are kept for their own call (per connector object:
    :func:`respkv.testing.wait_for`), and a batch reported twice fails the case.
    """
    try:
        c: Completion = wait_for(conn, batch_id, within)
    except TimeoutError:
        raise AssertionError(
            f"batch {batch_id} did not complete within {within} s (hang)"
        ) from None
    return c


def fork_verdict(script: str, args: Sequence[str], timeout: float) -> dict[str, Any]:
    """Run a fork case in a fresh interpreter (``python -c script *args``): it must exit
    0 and end its output with a JSON verdict whose ``child`` is ``{"exit": 0}`` and whose
    ``parent`` is ``"OK"``. The verdict, for the case's own further checks."""
    proc = subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONFAULTHANDLER": "1"},
        check=False,
    )
    assert proc.returncode == 0, f"parent process failed:\n{proc.stderr[-3000:]}"
    verdict: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    assert verdict["child"] == {"exit": 0}, f"child: {verdict['child']}\n{proc.stderr[-3000:]}"
    assert verdict["parent"] == "OK"
    return verdict


def check_hits(c: Completion, keys: Sequence[str | bytes], buffers: Sequence[Any]) -> int:
    """Every key reported ``OK`` holds exactly its own value; returns how many did."""
    assert len(c.statuses) == len(keys) == len(buffers)
    hits = 0
    for i, (status, key, buf) in enumerate(zip(c.statuses, keys, buffers)):
        if status is KeyStatus.OK:
            got = bytes(memoryview(buf).cast("B"))
            want = keyed_value(key, len(got))
            if got != want:
                poison = got.count(POISON)
                raise AssertionError(
                    f"WRONG DATA: key {i} ({key!r}) reported OK but its buffer does not hold "
                    f"its value ({poison} of {len(got)} bytes still poison)"
                )
            hits += 1
    return hits


@dataclass(frozen=True)
class Outcome:
    """What a case predicts for one key: a status, and for a failure its kind and the
    fields that must hold (``in_flight``, ``errno`` in a set, the server's ``code``...)."""

    status: KeyStatus
    kind: ErrorKind | None = None
    in_flight: bool | None = None
    errnos: frozenset[int] | None = None
    code: str | None = None
    timeout: float | None = None

    def check(self, i: int, c: Completion, address: str | None) -> None:
        status, f = c.statuses[i], c.failures[i]
        where = f"key {i}: {status.name} {f!r}"
        assert status is self.status, f"{where}: expected {self.status.name}"
        if self.kind is None:
            assert f is None, f"{where}: a key that did not fail carries a Failure"
            return
        assert f is not None, f"{where}: a failed key must carry a Failure"
        assert f.kind is self.kind, f"{where}: expected kind {self.kind.name}"
        assert STATUS_OF_KIND[f.kind] is status, f"{where}: status does not follow from kind"
        if address is not None:
            assert f.address == address, f"{where}: address {f.address!r} != {address!r}"
        if self.in_flight is not None:
            assert f.in_flight is self.in_flight, f"{where}: expected in_flight={self.in_flight}"
        if self.errnos is not None:
            assert f.errno in self.errnos, f"{where}: errno {f.errno} not in {set(self.errnos)}"
        if self.code is not None:
            assert f.code == self.code, f"{where}: expected server code {self.code}"
        if self.timeout is not None:
            assert f.timeout == self.timeout, f"{where}: expected timeout {self.timeout}"


OK: Final = Outcome(KeyStatus.OK)
MISS: Final = Outcome(KeyStatus.MISS)


def server_error(code: str) -> Outcome:
    """A server's error reply whose first word is ``code`` (``OOM``, ``READONLY``...)."""
    return Outcome(KeyStatus.SERVER_ERROR, ErrorKind.SERVER_ERROR, code=code)


def expect(c: Completion, outcomes: Iterable[Outcome], address: str | None = None) -> None:
    """Each key's status and failure as predicted, in order; ``ok`` consistent."""
    predicted = list(outcomes)
    assert len(predicted) == len(c.statuses), (
        f"{len(c.statuses)} statuses, {len(predicted)} predicted"
    )
    for i, outcome in enumerate(predicted):
        outcome.check(i, c, address)
    assert c.ok is all(o.status in (KeyStatus.OK, KeyStatus.MISS) for o in predicted)


def recover(conn: Connector, tag: str, size: int = 4096, within: float = RECOVER_WITHIN) -> None:
    """A SET then GET round trip of fresh keys on the same connector, exact data."""
    keys = [f"recover:{tag}:{i}" for i in range(3)]
    values = [keyed_value(k, size + i) for i, k in enumerate(keys)]
    s = finish(conn, conn.submit_batch_set(keys, values), within)
    assert s.statuses == (KeyStatus.OK,) * 3, f"no recovery: SET gave {s.statuses} {s.failures}"
    out = [poisoned(size + i) for i in range(3)]
    g = finish(conn, conn.submit_batch_get(keys, out), within)
    assert g.statuses == (KeyStatus.OK,) * 3, f"no recovery: GET gave {g.statuses} {g.failures}"
    assert check_hits(g, keys, out) == 3


@pytest.fixture(scope="module")
def matrix_server() -> Iterator[LocalServer]:
    """A server for one test module's cases (the default binary, persistence off)."""
    with LocalServer() as server:
        yield server


#: ``opener(host, port, **options)``: a connector on that server, closed after the test.
Open = Callable[..., tuple[Connector, ConnectionOptions]]

#: The defaults of a matrix connector: one worker (exact phases), short timeouts and
#: reconnect backoff (a case lasts seconds, not op_timeout's 30 s default).
MATRIX_OPTIONS: Final[dict[str, Any]] = {
    "num_workers": 1,
    "op_timeout": 2.0,
    "connect_timeout": 2.0,
    "reconnect_backoff_max": 0.2,
}


@pytest.fixture
def opener(connector_factory: Callable[[ConnectionOptions], Connector]) -> Iterator[Open]:
    """Open connectors of the backend under test on any server; closed at the end."""
    opened: list[Connector] = []

    def open_(host: str, port: int, **kw: Any) -> tuple[Connector, ConnectionOptions]:
        opts = ConnectionOptions(host=host, port=port, **(MATRIX_OPTIONS | kw))
        conn = connector_factory(opts)
        opened.append(conn)
        return conn, opts

    yield open_
    for conn in opened:
        conn.close()
