"""The native engine's batch deadline keeps the buffer promise (issue 9, defect 2).

The defect: ``Client.batch_get(keys, bufs, timeout=0.5)`` against a stalled server
raised ``TimeoutError``, but the batch went on running, and when the server woke up
the rest of the value was received straight into ``bufs``, after the call had
returned. Now the deadline lives in the engine: when it passes, a connection with keys
of the batch in flight is dropped *before* the completion is queued, so no reply can
land afterwards.

The regression drives the exact path: a large GET whose payload is being received
into the caller's buffer (zero-copy) when the server stalls. The fault proxy trickles
the reply one byte per segment, then holds the rest. After the completion the buffer is
poisoned again, the connection is seen gone, the held bytes are released and a round
trip proves the connector recovered: the buffer must still hold the poison.
"""

from __future__ import annotations

import os
import time
from typing import Any, Final

import pytest

from respkv import ConnectionOptions, ErrorKind, KeyStatus
from respkv.testing import wait_for
from respkv.testing.faultproxy import FaultProxy

SIZE: Final = 8 * 1024 * 1024
#: Payload bytes that trickle in before the stall: they land in the buffer.
TRICKLED: Final = 512
DEADLINE: Final = 0.5
#: Bound on every wait (sanitizer builds run several times slower).
PROMPT: Final = 30.0
POISON, POISON_AGAIN = 0xEE, 0x55


@pytest.fixture(scope="module", autouse=True)
def _native_built() -> None:
    try:
        import respkv_native._core  # noqa: F401
    except ImportError as exc:
        if os.environ.get("RESPKV_REQUIRE_NATIVE") == "1":
            pytest.fail(f"native backend required (RESPKV_REQUIRE_NATIVE=1) but: {exc}")
        pytest.skip(f"native backend not built: {exc}")


def _connector(options: ConnectionOptions) -> Any:
    from respkv._native import NativeConnector

    return NativeConnector(options)


def test_get_deadline_leaves_no_late_write(
    redis_options: ConnectionOptions, fault_proxy: FaultProxy
) -> None:
    opts = redis_options.replace(
        host=fault_proxy.host, port=fault_proxy.port, num_workers=1, op_timeout=30.0
    )
    conn = _connector(opts)
    try:
        value = os.urandom(SIZE)
        assert wait_for(conn, conn.submit_batch_set(["dl:big"], [value]), PROMPT).ok
        fault_proxy.trickle("replies")
        fault_proxy.stall_after(len(b"$%d\r\n" % SIZE) + TRICKLED)
        buf = bytearray([POISON]) * SIZE
        start = time.monotonic()
        c = wait_for(conn, conn.submit_batch_get(["dl:big"], [buf], timeout=DEADLINE), PROMPT)
        elapsed = time.monotonic() - start
        assert DEADLINE <= elapsed < DEADLINE + 5, f"completed after {elapsed:.2f} s"
        assert c.statuses == (KeyStatus.TIMEOUT,)
        f = c.failures[0]
        assert f is not None
        assert (f.kind, f.timeout, f.in_flight) == (ErrorKind.DEADLINE, DEADLINE, True)
        # The trickled bytes went straight into the buffer: the payload was streaming.
        assert buf[:TRICKLED] == value[:TRICKLED]
        buf[:] = bytes([POISON_AGAIN]) * SIZE
        # The connection with the abandoned GET on it is gone (bounded wait on the
        # proxy's count; there is no event to wait on for a peer's close).
        gone_by = time.monotonic() + PROMPT
        while fault_proxy.open_connections and time.monotonic() < gone_by:
            time.sleep(0.01)
        assert fault_proxy.open_connections == 0, "the connection was not dropped"
        fault_proxy.trickle("replies", on=False)
        fault_proxy.unstall()
        # A round trip on the same connector (a new connection) after the release.
        assert wait_for(conn, conn.submit_batch_set(["dl:small"], [b"s" * 100]), PROMPT).ok
        small = bytearray(100)
        assert wait_for(conn, conn.submit_batch_get(["dl:small"], [small]), PROMPT).ok
        assert small == b"s" * 100
        assert buf == bytes([POISON_AGAIN]) * SIZE, "bytes were written after the completion"
    finally:
        conn.close()
