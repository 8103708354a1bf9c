"""Submit-time validation (``respkv._validate``), the checks both backends share.

Keys become bytes; buffers become flat byte views sized by ``nbytes`` (not elements)
that share memory with the caller's object. Every rejection is a ``TypeError`` or
``ValueError`` whose message names the offending index and, for limits, the limit.
The same checks seen through a connector are in ``conformance/test_validation.py``.
"""

from __future__ import annotations

import array
from typing import Any

import numpy as np
import pytest

from respkv._validate import MAX_KEY_BYTES, MAX_VALUE_BYTES, check_buffers, check_keys


def case_id(value: object) -> str:
    """A test id that is the same in every xdist worker (no memory addresses)."""
    text = repr(value)
    return type(value).__name__ if " at 0x" in text else text


class BytesSubclass(bytes):
    pass


def test_keys_become_bytes() -> None:
    keys = check_keys(["a", b"b", "ключ", BytesSubclass(b"s"), b"\x00\xff"])
    assert keys == [b"a", b"b", "ключ".encode(), b"s", b"\x00\xff"]
    assert all(type(k) is bytes for k in keys)
    assert check_keys(("t",)) == [b"t"]  # any sequence, not only lists


def test_key_length_limit_is_inclusive() -> None:
    assert check_keys([b"k" * MAX_KEY_BYTES]) == [b"k" * MAX_KEY_BYTES]
    with pytest.raises(ValueError, match=r"key 1: 65537 bytes exceeds MAX_KEY_BYTES \(65536\)"):
        check_keys([b"ok", b"k" * (MAX_KEY_BYTES + 1)])
    # The limit is in bytes of the UTF-8 encoding, not characters.
    with pytest.raises(ValueError, match="MAX_KEY_BYTES"):
        check_keys(["é" * (MAX_KEY_BYTES // 2 + 1)])


@pytest.mark.parametrize(
    ("keys", "exc", "message"),
    [
        ([], ValueError, "empty batch"),
        (["a", ""], ValueError, "key 1: empty key"),
        ([b""], ValueError, "key 0: empty key"),
        (["a", 5], TypeError, "key 1: expected str or bytes, got int"),
        ([bytearray(b"k")], TypeError, "key 0: expected str or bytes, got bytearray"),
        ([None], TypeError, "key 0: expected str or bytes, got NoneType"),
        ("abc", TypeError, "not a single key"),
        (b"abc", TypeError, "not a single key"),
        (memoryview(b"abc"), TypeError, "not a single key"),
        (42, TypeError, "keys must be a sequence, not int"),
        ((k for k in ["a"]), TypeError, "keys must be a sequence, not generator"),
        (["ok", "\ud800"], ValueError, "key 1: not encodable as UTF-8"),
    ],
    ids=case_id,
)
def test_bad_keys(keys: Any, exc: type[Exception], message: str) -> None:
    with pytest.raises(exc, match=message):
        check_keys(keys)


def test_buffers_become_flat_byte_views_sized_in_bytes() -> None:
    f32 = np.arange(10, dtype=np.float32)
    matrix = np.zeros((4, 8), dtype=np.float16)
    scalar = np.array(1.5, dtype=np.float64)
    arr = array.array("q", [1, 2, 3])
    views = check_buffers([b"abc", bytearray(5), f32, matrix, scalar, arr], 6, writable=False)
    assert [v.nbytes for v in views] == [3, 5, 40, 64, 8, 24]
    assert all(v.ndim == 1 and v.format == "B" and len(v) == v.nbytes for v in views)


def test_views_share_memory_with_the_callers_objects() -> None:
    backing = bytearray(8)
    matrix = np.zeros((2, 4), dtype=np.uint16)
    views = check_buffers([backing, matrix], 2, writable=True)
    views[0][0] = 7
    views[1][:2] = b"\x01\x02"
    assert backing[0] == 7
    assert matrix[0, 0] == int.from_bytes(b"\x01\x02", "little")
    assert np.shares_memory(np.frombuffer(views[1], dtype=np.uint8), matrix)


@pytest.mark.parametrize(
    "empty",
    [b"", bytearray(), np.zeros(0, np.uint8), np.zeros((0, 3), np.float32), np.zeros((2, 0))],
    ids=["bytes", "bytearray", "np-1d", "np-0x3", "np-2x0"],
)
def test_empty_buffers_are_valid(empty: Any) -> None:
    for writable in (False, True):
        if writable and isinstance(empty, bytes):
            continue
        (view,) = check_buffers([empty], 1, writable=writable)
        assert view.nbytes == 0 and view.format == "B"


def test_get_needs_writable_buffers_set_does_not() -> None:
    assert bytes(check_buffers([b"read-only"], 1, writable=False)[0]) == b"read-only"
    with pytest.raises(ValueError, match="buffer 1: read-only; GET needs a writable buffer"):
        check_buffers([bytearray(1), b"x"], 2, writable=True)
    frozen = np.zeros(4, dtype=np.uint8)
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="buffer 0: read-only"):
        check_buffers([frozen], 1, writable=True)


@pytest.mark.parametrize(
    "strided",
    [
        np.arange(10, dtype=np.uint8)[::2],
        np.zeros((3, 4), dtype=np.float32, order="F"),
        np.zeros((3, 4), dtype=np.float32)[:, :2],
        memoryview(bytearray(b"abcdef"))[::2],
    ],
    ids=["step", "fortran", "columns", "memoryview-step"],
)
def test_non_contiguous_buffers_are_rejected(strided: Any) -> None:
    with pytest.raises(ValueError, match="buffer 1: not C-contiguous"):
        check_buffers([b"fine", strided], 2, writable=False)


@pytest.mark.parametrize(
    ("buffers", "nkeys", "exc", "message"),
    [
        ([b"a"], 2, ValueError, "length mismatch: 2 keys but 1 buffers"),
        ([b"a", b"b"], 1, ValueError, "length mismatch: 1 keys but 2 buffers"),
        (b"abc", 1, TypeError, "not a single buffer"),
        (bytearray(b"abc"), 1, TypeError, "not a single buffer"),
        (memoryview(b"abc"), 1, TypeError, "not a single buffer"),
        (5, 1, TypeError, "buffers must be a sequence, not int"),
        ((b for b in [b"a"]), 1, TypeError, "buffers must be a sequence, not generator"),
        ([b"a", "text"], 2, TypeError, "buffer 1: expected a buffer-protocol object, got str"),
        ([None], 1, TypeError, "buffer 0: expected a buffer-protocol object, got NoneType"),
    ],
    ids=case_id,
)
def test_bad_buffers(buffers: Any, nkeys: int, exc: type[Exception], message: str) -> None:
    with pytest.raises(exc, match=message):
        check_buffers(buffers, nkeys, writable=False)


def test_value_size_limit() -> None:
    # np.zeros maps untouched zero pages: no memory is really used for 512 MiB.
    at_limit = np.zeros(MAX_VALUE_BYTES, dtype=np.uint8)
    assert check_buffers([at_limit], 1, writable=True)[0].nbytes == MAX_VALUE_BYTES
    del at_limit
    over = np.zeros(MAX_VALUE_BYTES // 4 + 1, dtype=np.float32)  # limit in bytes
    with pytest.raises(ValueError, match=r"buffer 0: 536870916 bytes exceeds MAX_VALUE_BYTES"):
        check_buffers([over], 1, writable=True)


def test_rows_of_a_2d_array_are_buffers() -> None:
    # A (keys x chunk) array cut into rows: each row is one value, in place.
    block = np.zeros((3, 16), dtype=np.uint8)
    views = check_buffers(list(block), 3, writable=True)
    assert [v.nbytes for v in views] == [16, 16, 16]
    views[2][0] = 9
    assert block[2, 0] == 9


def test_checked_keys_pass_through_unchanged() -> None:
    from respkv._validate import CheckedKeys

    first = check_keys(["a", "b"])
    assert type(first) is CheckedKeys and first == [b"a", b"b"]
    assert check_keys(first) is first  # the connector does not check again
    slow = check_keys(["a", b"b"])  # mixed types take the slow path: checked all the same
    assert type(slow) is CheckedKeys and slow == [b"a", b"b"]
    assert check_keys(list(first)) is not first
