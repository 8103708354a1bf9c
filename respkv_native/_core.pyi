"""Type stub of the compiled ``respkv_native._core`` (see respkv_native/src/bindings.cpp).

Use :class:`respkv._native.NativeConnector`, which validates input and keeps buffers
alive; ``Engine`` trusts its caller.
"""

from typing import Final

CONTRACT_VERSION: Final[int]
LARGE_VALUE_BYTES: Final[int]
SUPPORTS_TLS: Final[bool]

class Engine:
    def __init__(
        self,
        *,
        host: str,
        port: int,
        unix_path: str | None,
        username: str,
        password: str,
        db: int,
        num_workers: int,
        connect_timeout: float,
        op_timeout: float,
        client_name: str,
        window_values: int,
        window_bytes: int,
        window_small: int,
        reconnect_backoff_min: float,
        reconnect_backoff_max: float,
        tls: bool = False,
        tls_ca_file: str | None = None,
        tls_cert_file: str | None = None,
        tls_key_file: str | None = None,
        tls_server_hostname: str | None = None,
        tls_verify: bool = True,
    ) -> None: ...
    def event_fd(self) -> int: ...
    def submit(self, op: int, keys: list[bytes], buffers: list[memoryview] | None) -> int:
        """Queue a batch; its id (from 1), or 0 when the engine is closed."""
    def drain(self) -> list[tuple[int, int, bytes, list[str | None]]]:
        """(batch_id, op, statuses as bytes, errors) of every batch done since the last call."""
    def close(self) -> None: ...

def tile(n: int, workers: int, weights: list[int] | None = None) -> list[tuple[int, int]]:
    """The C++ tiling (for tests): [start, stop) pairs."""

def parse_replies(chunks: list[bytes], target_size: int | None = None) -> list[tuple[str, object]]:
    """Run the C++ reader over ``chunks`` (for tests); a protocol error ends the list."""
