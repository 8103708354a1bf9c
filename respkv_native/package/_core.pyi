"""Type stub of the compiled ``respkv_native._core`` (see respkv_native/src/bindings.cpp).

Use :class:`respkv._native.NativeConnector`, which validates input, builds the engine's
configuration from Python's numbers (:func:`respkv._native.engine_config`), keeps
buffers alive and turns failure tuples into :class:`respkv.Failure` records; ``Engine``
trusts its caller.
"""

from typing import Any, Final

#: The contract this build implements (respkv._contract.CONTRACT_VERSION).
CONTRACT_VERSION: Final[int]
#: Whether this build has TLS (OpenSSL).
SUPPORTS_TLS: Final[bool]
#: Native tuning: the receive buffer's size (no Python counterpart).
READ_CHUNK: Final[int]

#: One failed key: (index, kind, errno, expected, actual, timeout, reply, detail, in_flight).
FailureTuple = tuple[int, int, int, int, int, float, str, str, bool]

class Engine:
    def __init__(self, config: dict[str, Any]) -> None:
        """``config``: every key of :func:`respkv._native.engine_config`."""
    def event_fd(self) -> int: ...
    def config(self) -> dict[str, Any]:
        """The numbers the engine runs with, read back from C++."""
    def submit(
        self,
        op: int,
        keys: list[bytes],
        buffers: list[memoryview] | None,
        timeout: float | None = None,
        ttl_ms: int = 0,
    ) -> int:
        """Queue a batch (``timeout``: its deadline in seconds; ``ttl_ms``: SET only, the
        keys' expiry, 0 for none); its id (from 1), or 0 when the engine is closed."""
    def counters(self) -> dict[str, int]:
        """Connection counters of the workers, summed: connections_opened, reconnects,
        connect_failures, connections_dropped."""
    def cancel(self, batch_id: int) -> bool:
        """Start ending a running batch; False when it is unknown or complete."""
    def drain(self) -> list[tuple[int, int, bytes, list[FailureTuple] | None]]:
        """(batch_id, op, answer bytes, failures or None) of every batch done since the
        last call. Answer bytes: 0 OK, 1 MISS, 255 failed (see the failures)."""
    def close(self) -> None: ...

def tile(n: int, workers: int, weights: list[int] | None = None) -> list[tuple[int, int]]:
    """The C++ tiling (for tests): [start, stop) pairs."""

def parse_replies(
    chunks: list[bytes], target_size: int | None = None, *, limits: dict[str, int]
) -> list[tuple[str, object]]:
    """Run the C++ reader over ``chunks`` (for tests); a protocol error ends the list
    with ("protocol_error", the fault's name)."""
