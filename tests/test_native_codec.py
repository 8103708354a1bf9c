"""The C++ codec and tiling against the pure modules, as independent implementations.

``respkv_native._core.parse_replies`` runs the C++ :cpp:class:`Reader` over chunks of
bytes; every stream (well-formed or not, split anywhere, with or without a GET target)
must give the same replies as :class:`respkv.resp2.Reader`, and reject a malformed
stream at the same point. The readers name a fault each in their own words (the C++
one by a short fault name, reported as ``Failure.detail``), so the comparison is on
*where* the stream is rejected; which fault the C++ reader reports for each kind of
malformed stream is pinned by ``_BAD_STREAMS``. ``_core.tile`` must cut every batch
exactly where :func:`respkv._tiling.tile` does, since both backends must send each key
to the same worker. The C++ reader runs with the pure reader's limits, passed in.
"""

from __future__ import annotations

import os
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from respkv import resp2
from respkv._backend import load_native
from respkv._tiling import tile
from respkv.errors import ProtocolError, ReplyError
from respkv.resp2 import FILLED, NEED_DATA, Reader, SizeMismatch

#: The pure reader's limits, which the C++ reader is given (it has none of its own).
LIMITS = {
    "max_bulk_bytes": resp2.MAX_BULK_BYTES,
    "max_multibulk_len": resp2.MAX_MULTIBULK_LEN,
    "max_depth": resp2.MAX_DEPTH,
    "max_line_bytes": resp2.MAX_LINE_BYTES,
}
#: Both readers' lists end with this where the stream was rejected.
REJECTED = ("protocol_error",)


@pytest.fixture(scope="module")
def core() -> ModuleType:
    try:
        return load_native()
    except ImportError as exc:
        if os.environ.get("RESPKV_REQUIRE_NATIVE") == "1":
            pytest.fail(f"native backend required (RESPKV_REQUIRE_NATIVE=1) but: {exc}")
        pytest.skip(f"native backend not built: {exc}")


def _python_replies(chunks: list[bytes], target_size: int | None) -> list[Any]:
    """What the pure Reader makes of ``chunks``, in the native helper's tuple form."""
    reader = Reader()
    target = bytearray(target_size or 0)
    out: list[Any] = []
    try:
        for chunk in chunks:
            reader.feed(chunk)
            while True:
                if target_size is not None:
                    reader.set_target(memoryview(target))
                value = reader.gets()
                if value is NEED_DATA:
                    break
                out.append(_normalize(value))
    except ProtocolError:
        out.append(REJECTED)
    return out


def _normalize(value: Any) -> Any:
    if value is FILLED:
        return ("filled", None)
    if isinstance(value, SizeMismatch):
        return ("size_mismatch", value.length)
    if isinstance(value, ReplyError):
        return ("error", str(value))
    if isinstance(value, list):
        return ("array", [_normalize(v) for v in value])
    if value is None:
        return ("nil", None)
    if isinstance(value, int):
        return ("int", value)
    return ("bytes", value)


def _native_replies(core: ModuleType, chunks: list[bytes], target_size: int | None) -> list[Any]:
    out = []
    for kind, value in core.parse_replies(chunks, target_size, limits=LIMITS):
        out.append(REJECTED if kind == "protocol_error" else _native_normalize(kind, value))
    return out


def _native_fault(core: ModuleType, chunks: list[bytes]) -> str | None:
    """The C++ reader's fault name for ``chunks`` (None when it accepted them)."""
    replies = core.parse_replies(chunks, None, limits=LIMITS)
    if replies and replies[-1][0] == "protocol_error":
        fault: str = replies[-1][1]
        return fault
    return None


def _native_normalize(kind: str, value: Any) -> Any:
    if kind in ("simple", "bulk"):
        return ("bytes", value)
    if kind == "error":
        return ("error", value.decode("utf-8", "replace"))
    if kind == "array":
        return ("array", [_native_normalize(k, v) for k, v in value])
    return (kind, value)


def _encode(value: tuple[str, Any]) -> bytes:
    kind, v = value
    out: bytes
    if kind == "simple":
        out = b"+" + v + b"\r\n"
    elif kind == "error":
        out = b"-" + v + b"\r\n"
    elif kind == "int":
        out = b":%d\r\n" % v
    elif kind == "bulk":
        out = b"$%d\r\n" % len(v) + v + b"\r\n"
    elif kind == "nil":
        out = b"$-1\r\n"
    elif kind == "nil_array":
        out = b"*-1\r\n"
    else:
        out = b"*%d\r\n" % len(v) + b"".join(_encode(x) for x in v)
    return out


_line = st.binary(max_size=20).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
_leaf = st.one_of(
    st.tuples(st.just("simple"), _line),
    st.tuples(st.just("error"), _line),
    st.tuples(st.just("int"), st.integers(-(2**63), 2**63 - 1)),
    st.tuples(st.just("bulk"), st.binary(max_size=40)),
    st.tuples(st.just("nil"), st.none()),
    st.tuples(st.just("nil_array"), st.none()),
)
_value = st.recursive(
    _leaf, lambda inner: st.tuples(st.just("array"), st.lists(inner, max_size=4)), max_leaves=10
)


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    chunks, start = [], 0
    for p in points:
        chunks.append(data[start:p])
        start = p
    chunks.append(data[start:])
    return chunks


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    values=st.lists(_value, min_size=1, max_size=6),
    cuts=st.lists(st.integers(0, 10_000), max_size=8),
    target=st.one_of(st.none(), st.integers(0, 12)),
)
def test_well_formed_streams_agree(
    core: ModuleType, values: list[Any], cuts: list[int], target: int | None
) -> None:
    chunks = _split(b"".join(_encode(v) for v in values), cuts)
    expected = _python_replies(chunks, target)
    assert _native_replies(core, chunks, target) == expected
    assert len(expected) == len(values)


@settings(max_examples=400, deadline=None)
@given(
    data=st.binary(max_size=60),
    prefix=st.sampled_from([b"", b"+OK\r\n", b"$3\r\nabc\r\n", b"*2\r\n"]),
    cuts=st.lists(st.integers(0, 200), max_size=4),
    target=st.one_of(st.none(), st.integers(0, 5)),
)
def test_arbitrary_bytes_agree_including_where_rejected(
    core: ModuleType, data: bytes, prefix: bytes, cuts: list[int], target: int | None
) -> None:
    chunks = _split(prefix + data, cuts)
    assert _native_replies(core, chunks, target) == _python_replies(chunks, target)


#: Malformed streams, and the fault the C++ reader names for each (Failure.detail).
_BAD_STREAMS = {
    "bulk-length-letters": (b"$abc\r\n", "malformed length"),
    "bulk-length-minus-zero": (b"$-0\r\n", "malformed length"),
    "negative-array": (b"*-2\r\n", "negative length"),
    "integer-letters": (b":12x\r\n", "malformed integer"),
    "integer-over-int64": (b":9223372036854775808\r\n", "integer outside the signed 64-bit range"),
    "integer-under-int64": (
        b":-9223372036854775809\r\n",
        "integer outside the signed 64-bit range",
    ),
    "integer-20-digits": (b":99999999999999999999\r\n", "integer outside the signed 64-bit range"),
    "bulk-over-limit": (b"$99999999999999999999\r\n", "bulk length over MAX_BULK_BYTES"),
    "array-over-limit": (b"*4294967297\r\n", "array length over MAX_MULTIBULK_LEN"),
    "bulk-bad-terminator": (b"$3\r\nabcd\r\n", "bulk string not terminated by CRLF"),
    "unknown-type": (b"!oops\r\n", "unknown reply type byte"),
    "endless-line": (b"+" + b"a" * (64 * 1024 + 5), "line over MAX_LINE_BYTES"),
    "endless-integer": (b":" + b"1" * (10 * 1024 * 1024), "line over MAX_LINE_BYTES"),
    "long-line-in-array": (
        b"*1\r\n-" + b"e" * (64 * 1024 + 1) + b"\r\n",
        "line over MAX_LINE_BYTES",
    ),
    "too-deep": (b"*1\r\n" * 33 + b":1\r\n", "arrays nested deeper than MAX_DEPTH"),
}


@pytest.mark.parametrize("case", list(_BAD_STREAMS.values()), ids=list(_BAD_STREAMS))
def test_malformed_streams_are_rejected_by_both_with_a_named_fault(
    core: ModuleType, case: tuple[bytes, str]
) -> None:
    stream, fault = case
    expected = _python_replies([stream], None)
    assert expected[-1] == REJECTED
    assert _native_replies(core, [stream], None) == expected
    assert _native_fault(core, [stream]) == fault
    # Fed in pieces, the same fault (the reader keeps no partial state that hides it).
    pieces = [stream[i : i + 4096] for i in range(0, len(stream), 4096)]
    assert _native_fault(core, pieces) == fault


def test_limits_come_from_the_caller(core: ModuleType) -> None:
    """The C++ reader has no limits of its own: a smaller max_line_bytes is obeyed."""
    small = dict(LIMITS, max_line_bytes=8)
    assert core.parse_replies([b"+12345678\r\n"], None, limits=small) == [("simple", b"12345678")]
    assert core.parse_replies([b"+123456789\r\n"], None, limits=small) == [
        ("protocol_error", "line over MAX_LINE_BYTES")
    ]
    shallow = dict(LIMITS, max_depth=1)
    assert core.parse_replies([b"*1\r\n*1\r\n:1\r\n"], None, limits=shallow)[-1] == (
        "protocol_error",
        "arrays nested deeper than MAX_DEPTH",
    )


@settings(max_examples=500, deadline=None)
@given(
    n=st.integers(0, 300),
    workers=st.integers(1, 40),
    data=st.data(),
)
def test_tiling_matches_the_pure_module(core: ModuleType, n: int, workers: int, data: Any) -> None:
    weighted = data.draw(st.booleans())
    weights = (
        data.draw(st.lists(st.integers(0, 64 << 20), min_size=n, max_size=n)) if weighted else None
    )
    expected = [(r.start, r.stop) for r in tile(n, workers, weights)]
    assert core.tile(n, workers, weights) == expected


def test_tiling_rejects_zero_workers(core: ModuleType) -> None:
    with pytest.raises(ValueError, match="workers must be >= 1"):
        core.tile(3, 0)
