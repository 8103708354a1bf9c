"""Bad input raises at submit time, before any I/O, with the offending index named."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from respkv import ConnectionClosedError, Connector, KeyStatus
from respkv._validate import MAX_KEY_BYTES
from respkv.testing import wait_for

BAD_KEYS: list[tuple[Any, type[Exception], str]] = [
    ([], ValueError, "empty batch"),
    (["ok", ""], ValueError, "key 1: empty key"),
    (["ok", 5], TypeError, "key 1: expected str or bytes, got int"),
    ([None], TypeError, "key 0: expected str or bytes, got NoneType"),
    ("abc", TypeError, "not a single key"),
    (b"abc", TypeError, "not a single key"),
    ([b"k", b"x" * (MAX_KEY_BYTES + 1)], ValueError, "key 1: 65537 bytes exceeds MAX_KEY_BYTES"),
    (42, TypeError, "keys must be a sequence"),
]


@pytest.mark.parametrize(("keys", "exc", "text"), BAD_KEYS)
def test_bad_keys(connector: Connector, keys: Any, exc: type[Exception], text: str) -> None:
    for submit in (connector.submit_batch_exists, connector.submit_batch_delete):
        with pytest.raises(exc, match=text):
            submit(keys)
    n = len(keys) if isinstance(keys, list) else 1
    with pytest.raises(exc, match=text):
        connector.submit_batch_set(keys, [b"v"] * n)
    with pytest.raises(exc, match=text):
        connector.submit_batch_get(keys, [bytearray(1)] * n)


def test_bad_buffers(connector: Connector) -> None:
    keys = ["a", "b"]
    with pytest.raises(ValueError, match="length mismatch: 2 keys but 1 buffers"):
        connector.submit_batch_set(keys, [b"x"])
    with pytest.raises(ValueError, match="length mismatch: 2 keys but 3 buffers"):
        connector.submit_batch_get(keys, [bytearray(1)] * 3)
    with pytest.raises(TypeError, match="buffer 1: expected a buffer-protocol object, got str"):
        connector.submit_batch_set(keys, [b"x", "text"])
    with pytest.raises(TypeError, match="buffer 0: expected a buffer-protocol object, got int"):
        connector.submit_batch_get(keys, [3, bytearray(1)])
    with pytest.raises(ValueError, match="buffer 1: read-only; GET needs a writable buffer"):
        connector.submit_batch_get(keys, [bytearray(1), b"read-only"])
    strided = np.zeros((8, 8), dtype=np.uint8)[:, ::2]
    with pytest.raises(ValueError, match="buffer 0: not C-contiguous"):
        connector.submit_batch_set(["a"], [strided])
    with pytest.raises(ValueError, match="buffer 0: not C-contiguous"):
        connector.submit_batch_get(["a"], [strided])
    with pytest.raises(TypeError, match="not a single buffer"):
        connector.submit_batch_set(["a"], b"x")
    # Nothing was sent: the keys do not exist.
    c = wait_for(connector, connector.submit_batch_exists(keys))
    assert c.statuses == (KeyStatus.MISS, KeyStatus.MISS)


def test_readonly_buffer_fine_for_set(connector: Connector) -> None:
    ro = np.frombuffer(b"readonly-bytes", dtype=np.uint8)
    assert wait_for(connector, connector.submit_batch_set(["ro"], [ro])).ok


def test_submit_after_close_raises(connector: Connector) -> None:
    connector.close()
    connector.close()  # idempotent
    with pytest.raises(ConnectionClosedError):
        connector.submit_batch_exists(["k"])
    with pytest.raises(ConnectionClosedError):
        connector.submit_batch_set(["k"], [b"v"])
