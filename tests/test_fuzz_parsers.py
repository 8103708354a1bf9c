"""Mutation fuzzing of reply streams into both RESP2 parsers (hypothesis).

Well-formed streams of replies are generated, then damaged the way a broken server, a
proxy or a bit flip would damage them: a byte flipped, bytes inserted (drawn mostly from
RESP's own alphabet, so that lengths and type bytes get hit), a range deleted or
duplicated, a digit of a length changed, the end cut off. Each stream is split at random
places and fed to :class:`respkv.resp2.Reader` (by ``feed``, and by the zero-copy
``get_buffer``/``buffer_updated`` path a socket uses) and to the C++ reader
(``respkv_native._core.parse_replies``), with and without a GET target. Whatever the
bytes, the readers must

* never crash: a malformed stream is a ``ProtocolError`` (pure) or a ``protocol_error``
  entry (native), nothing else;
* never hang: each call consumes input, so the number of replies is bounded by the
  stream's length;
* never give a wrong value: every reply that lies wholly before the first damaged byte
  comes out exactly as generated (a GET target filled with exactly its payload);
* agree with each other: the same replies, and a protocol error at the same place; the
  two pure paths give the same values and targets, and ``gets_many`` the same as
  repeated ``gets``.

``RESPKV_FUZZ_EXAMPLES`` sets the examples per property (``nox -s fuzz`` raises it).
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import Any, Final

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from respkv.errors import ProtocolError, ReplyError
from respkv.resp2 import FILLED, NEED_DATA, Reader, SizeMismatch
from respkv.testing.fuzzing import native_parse

#: Examples per property in the default run (about 10 s for the file on 2 cores).
EXAMPLES: Final = int(os.environ.get("RESPKV_FUZZ_EXAMPLES", "300"))
#: Every reply consumes at least 3 bytes (``+\r\n``); more replies than this is a hang.
MIN_REPLY_BYTES: Final = 3
#: Bytes inserted by a mutation are drawn from here most of the time.
RESP_ALPHABET: Final = b"$*:+-\r\n0123456789"


FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(scope="module")
def core() -> ModuleType:
    """The native codec (its contract version does not matter for the codec)."""
    try:
        return importlib.import_module("respkv_native._core")
    except ImportError as exc:
        if os.environ.get("RESPKV_REQUIRE_NATIVE") == "1":
            pytest.fail(f"native backend required (RESPKV_REQUIRE_NATIVE=1) but: {exc}")
        pytest.skip(f"native backend not built: {exc}")


# -- generated streams -----------------------------------------------------------------

_line = st.binary(max_size=12).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
_leaf = st.one_of(
    st.tuples(st.just("simple"), _line),
    st.tuples(st.just("error"), _line),
    st.tuples(st.just("int"), st.integers(-(2**63), 2**63 - 1)),
    st.tuples(st.just("int"), st.integers(-3, 3)),
    st.tuples(st.just("bulk"), st.binary(max_size=24)),
    st.tuples(st.just("nil"), st.none()),
    st.tuples(st.just("nil_array"), st.none()),
)
_value = st.recursive(
    _leaf, lambda inner: st.tuples(st.just("array"), st.lists(inner, max_size=3)), max_leaves=8
)


def encode(value: tuple[str, Any]) -> bytes:
    kind, v = value
    if kind in ("simple", "error"):
        return (b"+" if kind == "simple" else b"-") + bytes(v) + b"\r\n"
    if kind == "int":
        return b":%d\r\n" % v
    if kind == "bulk":
        return b"$%d\r\n" % len(v) + bytes(v) + b"\r\n"
    if kind == "nil":
        return b"$-1\r\n"
    if kind == "nil_array":
        return b"*-1\r\n"
    return b"*%d\r\n" % len(v) + b"".join(encode(x) for x in v)


def expected(value: tuple[str, Any], target: int | None, top: bool = True) -> Any:
    """What a reader reports for ``value`` (normalized form; see :func:`_norm`)."""
    kind, v = value
    if kind == "bulk":
        if top and target is not None:
            return ("filled", v) if len(v) == target else ("size_mismatch", len(v))
        return ("bytes", v)
    if kind == "simple":
        return ("bytes", v)
    if kind == "error":
        return ("error", v.decode("utf-8", "replace"))
    if kind == "int":
        return ("int", v)
    if kind in ("nil", "nil_array"):
        return ("nil", None)
    return ("array", [expected(x, target, top=False) for x in v])


@st.composite
def damaged(draw: st.DrawFn) -> tuple[list[tuple[str, Any]], bytes, int]:
    """(values, damaged stream, offset of the first damaged byte)."""
    values = draw(st.lists(_value, min_size=1, max_size=5))
    data = bytearray(b"".join(encode(v) for v in values))
    first = len(data)
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "duplicate", "digit", "truncate"]))
        p = draw(st.integers(0, len(data)))
        if op == "flip" and p < len(data):
            data[p] ^= draw(st.integers(1, 255))
        elif op == "insert":
            alphabet = st.sampled_from(list(RESP_ALPHABET)) | st.integers(0, 255)
            data[p:p] = bytes(draw(st.lists(alphabet, min_size=1, max_size=6)))
        elif op == "delete":
            del data[p : p + draw(st.integers(1, 6))]
        elif op == "duplicate":
            data[p:p] = data[p : p + draw(st.integers(1, 8))]
        elif op == "digit":
            digits = [i for i, b in enumerate(data) if 0x30 <= b <= 0x39]
            if not digits:
                continue
            p = draw(st.sampled_from(digits))
            data[p] = draw(st.sampled_from(list(b"0123456789-x ")))
        elif op == "truncate":
            del data[p:]
        else:
            continue
        first = min(first, p)
    return values, bytes(data), first


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    chunks, start = [], 0
    for p in points:
        chunks.append(data[start:p])
        start = p
    chunks.append(data[start:])
    return chunks


# -- the readers, in one normalized form -----------------------------------------------


def _norm(value: Any, target: bytearray | None) -> Any:
    if value is FILLED:
        assert target is not None
        return ("filled", bytes(target))
    if isinstance(value, SizeMismatch):
        return ("size_mismatch", value.length)
    if isinstance(value, ReplyError):
        return ("error", str(value))
    if isinstance(value, list):
        return ("array", [_norm(v, None) for v in value])
    if value is None:
        return ("nil", None)
    if isinstance(value, int):
        return ("int", value)
    assert isinstance(value, bytes), f"unexpected reply value {value!r}"
    return ("bytes", value)


def _pure(chunks: list[bytes], target: int | None, zero_copy: bool) -> list[Any]:
    """Replies from the pure Reader; a ProtocolError ends the list as ``("protocol_error",)``.

    ``zero_copy`` delivers payload bytes the way an engine's ``recv_into`` does."""
    reader = Reader()
    limit = sum(map(len, chunks)) // MIN_REPLY_BYTES + 1
    out: list[Any] = []
    # The target in force: a fresh one for each reply (set_target is ignored while a
    # reply is under way, so the one set when it started is the one it fills).
    buf = bytearray(target) if target is not None else None
    try:
        for chunk in chunks:
            view = memoryview(chunk)
            while True:
                into = reader.get_buffer() if zero_copy else None
                if into is not None and view:
                    n = min(len(into), len(view))
                    into[:n] = view[:n]
                    reader.buffer_updated(n)
                    view = view[n:]
                elif len(view):
                    # Feed what is left (a real engine feeds a whole recv at once).
                    reader.feed(view)
                    view = view[len(view) :]
                if buf is not None:
                    reader.set_target(memoryview(buf))
                value = reader.gets()
                if value is NEED_DATA:
                    if not len(view):
                        break
                    continue
                out.append(_norm(value, buf))
                buf = bytearray(target) if target is not None else None
                assert len(out) <= limit, "more replies than bytes: the reader loops"
    except ProtocolError:
        out.append(("protocol_error",))
    return out


def _native(core: ModuleType, chunks: list[bytes], target: int | None) -> list[Any]:
    def norm(kind: str, value: Any) -> Any:
        if kind in ("simple", "bulk"):
            return ("bytes", value)
        if kind == "error":
            return ("error", value.decode("utf-8", "replace"))
        if kind == "array":
            return ("array", [norm(k, v) for k, v in value])
        if kind == "protocol_error":
            return ("protocol_error",)
        return (kind, value)

    return [norm(k, v) for k, v in native_parse(core, chunks, target)]


def _filled_unknown(replies: list[Any]) -> list[Any]:
    """The native helper does not return the target's bytes: compare without them."""
    return [("filled", None) if r[0] == "filled" else r for r in replies]


def _untouched(values: list[tuple[str, Any]], first: int, target: int | None) -> list[Any]:
    """The expected replies that lie wholly before the first damaged byte."""
    out, end = [], 0
    for v in values:
        end += len(encode(v))
        if end > first:
            break
        out.append(expected(v, target))
    return out


# -- properties ------------------------------------------------------------------------


@FUZZ
@given(
    case=damaged(),
    cuts=st.lists(st.integers(0, 10_000), max_size=6),
    target=st.none() | st.integers(0, 24),
)
def test_damaged_streams(
    core: ModuleType, case: tuple[list[Any], bytes, int], cuts: list[int], target: int | None
) -> None:
    values, data, first = case
    chunks = _split(data, cuts)
    fed = _pure(chunks, target, zero_copy=False)
    good = _untouched(values, first, target)
    assert fed[: len(good)] == good, "a reply before the damage came out wrong"
    assert _pure(chunks, target, zero_copy=True) == fed, "recv_into path differs from feed"
    assert _native(core, chunks, target) == _filled_unknown(fed), "native and pure disagree"


@FUZZ
@given(
    values=st.lists(_value, min_size=1, max_size=6),
    cuts=st.lists(st.integers(0, 10_000), max_size=8),
    target=st.none() | st.integers(0, 24),
)
def test_well_formed_streams_exact(
    core: ModuleType, values: list[Any], cuts: list[int], target: int | None
) -> None:
    chunks = _split(b"".join(encode(v) for v in values), cuts)
    want = [expected(v, target) for v in values]
    assert _pure(chunks, target, zero_copy=True) == want
    assert _native(core, chunks, target) == _filled_unknown(want)


_small_reply = st.one_of(
    st.integers(-(2**64), 2**64).map(lambda n: b":%d\r\n" % n),
    st.sampled_from([b":0\r\n", b":1\r\n", b"-ERR x\r\n", b"+OK\r\n", b"$1\r\na\r\n", b":\r\n"]),
    st.binary(max_size=6),
)


@FUZZ
@given(
    parts=st.lists(_small_reply, min_size=1, max_size=30),
    cuts=st.lists(st.integers(0, 1000), max_size=5),
    limit=st.integers(1, 40),
)
def test_gets_many_is_repeated_gets(parts: list[bytes], cuts: list[int], limit: int) -> None:
    """The EXISTS/UNLINK fast path: the same values, limits and errors as ``gets``."""
    chunks = _split(b"".join(parts), cuts)
    one = _pure(chunks, None, zero_copy=False)
    reader = Reader()
    many: list[Any] = []
    bound = sum(map(len, chunks)) // MIN_REPLY_BYTES + 1
    try:
        for chunk in chunks:
            reader.feed(chunk)
            while batch := reader.gets_many(limit):
                assert len(batch) <= limit
                many.extend(_norm(v, None) for v in batch)
                assert len(many) <= bound, "gets_many loops"
    except ProtocolError:
        many.append(("protocol_error",))
    assert many == one
