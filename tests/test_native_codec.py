"""The C++ codec and tiling against the pure modules, as independent implementations.

``respkv_native._core.parse_replies`` runs the C++ :cpp:class:`Reader` over chunks of
bytes; every stream (well-formed or not, split anywhere, with or without a GET target)
must give the same replies as :class:`respkv.resp2.Reader`, and the same protocol error
text. ``_core.tile`` must cut every batch exactly where :func:`respkv._tiling.tile` does,
since both backends must send each key to the same worker.
"""

from __future__ import annotations

import os
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from respkv._backend import load_native
from respkv._tiling import tile
from respkv.errors import ProtocolError, ReplyError
from respkv.resp2 import FILLED, NEED_DATA, Reader, SizeMismatch


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
    except ProtocolError as exc:
        out.append(("protocol_error", str(exc)))
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
    for kind, value in core.parse_replies(chunks, target_size):
        out.append(_native_normalize(kind, value))
    return out


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
def test_arbitrary_bytes_agree_including_error_texts(
    core: ModuleType, data: bytes, prefix: bytes, cuts: list[int], target: int | None
) -> None:
    chunks = _split(prefix + data, cuts)
    assert _native_replies(core, chunks, target) == _python_replies(chunks, target)


_BAD_STREAMS = {
    "bulk-length-letters": b"$abc\r\n",
    "bulk-length-minus-zero": b"$-0\r\n",
    "negative-array": b"*-2\r\n",
    "integer-letters": b":12x\r\n",
    "integer-over-int64": b":9223372036854775808\r\n",
    "bulk-over-limit": b"$99999999999999999999\r\n",
    "array-over-limit": b"*4294967297\r\n",
    "bulk-bad-terminator": b"$3\r\nabcd\r\n",
    "unknown-type": b"!oops\r\n",
    "endless-line": b"+" + b"a" * (64 * 1024 + 5),
    "long-line-in-array": b"*1\r\n-" + b"e" * (64 * 1024 + 1) + b"\r\n",
    "too-deep": b"*1\r\n" * 33 + b":1\r\n",
}


@pytest.mark.parametrize("stream", list(_BAD_STREAMS.values()), ids=list(_BAD_STREAMS))
def test_protocol_error_texts_are_identical(core: ModuleType, stream: bytes) -> None:
    expected = _python_replies([stream], None)
    assert expected[-1][0] == "protocol_error"
    assert _native_replies(core, [stream], None) == expected


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
