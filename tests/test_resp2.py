"""The sans-I/O RESP2 codec: fixed vectors, every split, hiredis as the reference.

The reader is attacked at its I/O boundary on purpose: whole streams, one byte at a
time, cut at every position, and generated streams (hypothesis) cut at random places,
each checked against the expected values and against ``hiredis.Reader``, an
independent implementation (a test reference only: respkv does not use hiredis). The
into-target mode (zero-copy GET) is driven the way the engine drives it:
``get_buffer`` / ``buffer_updated`` while a payload streams into the caller's buffer,
``feed`` otherwise. ``gets_many`` (the EXISTS/UNLINK fast path) must equal repeated
``gets()``, limits and errors included, and a reply cut into pieces must not be
parsed again from its start (counted, not timed). Malformed input must end in ``ProtocolError``:
never ``IndexError``/``ValueError``, never a hang, and the reader stays broken after.
The packer is compared with redis-py's own encoder and checked for zero copies.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable, Sequence
from itertools import cycle
from typing import Any, Final

import hiredis
import numpy as np
import pytest
import redis.connection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from respkv.errors import ProtocolError, ReplyError
from respkv.resp2 import (
    FILLED,
    MAX_BULK_BYTES,
    MAX_DEPTH,
    MAX_LINE_BYTES,
    MAX_MULTIBULK_LEN,
    NEED_DATA,
    REFERENCE_THRESHOLD,
    Reader,
    SizeMismatch,
    describe_reply,
    encode_arg,
    pack_command,
    pack_commands,
    pack_key_command,
    pack_set_header,
)

#: Hypothesis budget per property: enough to find the classic cut-point bugs, small
#: enough that the whole suite stays fast on two cores.
EXAMPLES: Final = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def case_id(value: object) -> str:
    """A test id that is the same in every xdist worker (no memory addresses)."""
    text = repr(value)
    return type(value).__name__ if " at 0x" in text else text


def norm(value: Any) -> Any:
    """A comparable form: exceptions do not compare equal, so errors become tuples."""
    if isinstance(value, BaseException):
        return ("error", type(value).__name__, str(value))
    if isinstance(value, list):
        return [norm(v) for v in value]
    return value


def err(message: str) -> tuple[str, str, str]:
    """The normalized form of an error reply with ``message``."""
    return ("error", "ReplyError", message)


def drain(reader: Reader, limit: int = 100_000) -> list[Any]:
    """Every whole reply the reader holds now (bounded: a reader must not loop)."""
    out: list[Any] = []
    for _ in range(limit):
        value = reader.gets()
        if value is NEED_DATA:
            return out
        out.append(value)
    raise AssertionError(f"gets() returned {limit} replies without NEED_DATA")


def parse_chunks(reader: Reader, chunks: Iterable[bytes]) -> list[Any]:
    out: list[Any] = []
    for chunk in chunks:
        reader.feed(chunk)
        out += drain(reader)
    return out


def joined(parts: Iterable[Any]) -> bytes:
    """Packed parts (bytes and memoryviews) as one bytes object."""
    return b"".join(bytes(memoryview(p)) for p in parts)


def cut(data: bytes, points: Iterable[int]) -> list[bytes]:
    """``data`` cut at the given positions (any order, duplicates allowed)."""
    bounds = [0, *sorted(set(points)), len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:])]


# --------------------------------------------------------------------------- vectors

BIG: Final = bytes(range(256)) * 300  # 76,800 bytes: crosses the 64 KiB compaction point

#: (id, wire bytes, expected value in norm() form).
VECTORS: Final[list[tuple[str, bytes, Any]]] = [
    ("simple", b"+OK\r\n", b"OK"),
    ("simple-empty", b"+\r\n", b""),
    ("simple-utf8", "+héllo\r\n".encode(), "héllo".encode()),
    ("error", b"-ERR unknown command 'FOO'\r\n", err("ERR unknown command 'FOO'")),
    ("error-oom", b"-OOM command not allowed\r\n", err("OOM command not allowed")),
    ("error-empty", b"-\r\n", err("")),
    ("integer", b":1000\r\n", 1000),
    ("integer-zero", b":0\r\n", 0),
    ("integer-negative", b":-42\r\n", -42),
    ("integer-int64-max", b":9223372036854775807\r\n", 2**63 - 1),
    ("integer-int64-min", b":-9223372036854775808\r\n", -(2**63)),
    ("bulk", b"$5\r\nhello\r\n", b"hello"),
    ("bulk-binary-with-crlf", b"$6\r\n\r\n\x00\xff\r\n\r\n", b"\r\n\x00\xff\r\n"),
    ("bulk-empty", b"$0\r\n\r\n", b""),
    ("bulk-nil", b"$-1\r\n", None),
    ("bulk-big", b"$%d\r\n%b\r\n" % (len(BIG), BIG), BIG),
    ("array", b"*3\r\n$3\r\nfoo\r\n:7\r\n+bar\r\n", [b"foo", 7, b"bar"]),
    ("array-empty", b"*0\r\n", []),
    ("array-nil", b"*-1\r\n", None),
    (
        "array-nested",
        b"*3\r\n*2\r\n:1\r\n$-1\r\n*0\r\n*1\r\n*1\r\n-ERR deep\r\n",
        [[1, None], [], [[err("ERR deep")]]],
    ),
    (
        "array-all-types",
        b"*7\r\n+s\r\n-E e\r\n:-1\r\n$1\r\nb\r\n$-1\r\n*-1\r\n*1\r\n$0\r\n\r\n",
        [b"s", err("E e"), -1, b"b", None, None, [b""]],
    ),
]
VECTOR_IDS: Final = [v[0] for v in VECTORS]
STREAM: Final = b"".join(v[1] for v in VECTORS)
STREAM_VALUES: Final = [v[2] for v in VECTORS]


@pytest.mark.parametrize(("wire", "expected"), [v[1:] for v in VECTORS], ids=VECTOR_IDS)
def test_vector_whole(wire: bytes, expected: Any) -> None:
    reader = Reader()
    assert reader.gets() is NEED_DATA
    reader.feed(wire)
    assert norm(reader.gets()) == expected
    assert reader.gets() is NEED_DATA
    assert reader.buffered == 0


@pytest.mark.parametrize(("wire", "expected"), [v[1:] for v in VECTORS], ids=VECTOR_IDS)
def test_vector_byte_at_a_time(wire: bytes, expected: Any) -> None:
    reader = Reader()
    for i in range(len(wire) - 1):
        reader.feed(wire[i : i + 1])
        assert reader.gets() is NEED_DATA, f"a reply after {i + 1} of {len(wire)} bytes"
    reader.feed(wire[-1:])
    assert norm(reader.gets()) == expected
    assert reader.gets() is NEED_DATA


def test_stream_split_at_every_point() -> None:
    # The big vector is left out so that the number of splits stays small; it has its
    # own byte-at-a-time test above.
    small = [v for v in VECTORS if v[0] != "bulk-big"]
    stream = b"".join(v[1] for v in small)
    expected = [v[2] for v in small]
    for i in range(len(stream) + 1):
        got = parse_chunks(Reader(), [stream[:i], stream[i:]])
        assert [norm(v) for v in got] == expected, f"split at {i}"


def test_whole_stream_in_one_feed_and_mixed_buffer_types() -> None:
    reader = Reader()
    half = len(STREAM) // 2
    reader.feed(bytearray(STREAM[:half]))
    reader.feed(memoryview(STREAM[half:]))
    assert [norm(v) for v in drain(reader)] == STREAM_VALUES


def test_need_data_is_a_distinct_sentinel() -> None:
    assert NEED_DATA is not None and NEED_DATA is not False and NEED_DATA != b""
    assert repr(NEED_DATA) == "NEED_DATA" and repr(FILLED) == "FILLED"
    assert pickle.loads(pickle.dumps(NEED_DATA)) is NEED_DATA
    assert pickle.loads(pickle.dumps(FILLED)) is FILLED
    # A nil bulk is a real value, not "no data".
    reader = Reader()
    reader.feed(b"$-1\r\n")
    assert reader.gets() is None
    assert reader.gets() is NEED_DATA


def test_size_mismatch_value() -> None:
    assert SizeMismatch(3) == SizeMismatch(3)
    assert SizeMismatch(3) != SizeMismatch(4)
    assert SizeMismatch(3) != 3
    assert hash(SizeMismatch(3)) == hash(SizeMismatch(3))
    assert repr(SizeMismatch(7)) == "SizeMismatch(length=7)"


def test_reply_error_prefix() -> None:
    reader = Reader()
    reader.feed(b"-WRONGTYPE Operation against a key\r\n")
    value = reader.gets()
    assert isinstance(value, ReplyError)
    assert value.prefix == "WRONGTYPE"
    assert str(value) == "WRONGTYPE Operation against a key"


# ------------------------------------------------------------ generated vs hiredis

#: How deep generated arrays nest (hiredis and our MAX_DEPTH both allow more).
GEN_DEPTH: Final = 4
_LINE: Final = st.binary(max_size=24).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
_PAYLOAD: Final = st.one_of(
    st.binary(max_size=48),
    st.integers(200, 70_000).map(lambda n: (bytes(range(256)) * (n // 256 + 1))[:n]),
)


@st.composite
def replies(draw: st.DrawFn, depth: int = 0) -> tuple[bytes, Any]:
    """One RESP2 reply: its wire bytes and its expected value in norm() form."""
    kinds = ["simple", "error", "integer", "bulk", "nil", "nil-array"]
    if depth < GEN_DEPTH:
        kinds.append("array")
    kind = draw(st.sampled_from(kinds))
    if kind == "simple":
        line = draw(_LINE)
        return b"+" + line + b"\r\n", line
    if kind == "error":
        line = draw(_LINE)
        return b"-" + line + b"\r\n", err(line.decode("utf-8", "replace"))
    if kind == "integer":
        n = draw(st.integers(-(2**63), 2**63 - 1))
        return b":%d\r\n" % n, n
    if kind == "bulk":
        data = draw(_PAYLOAD)
        return b"$%d\r\n%b\r\n" % (len(data), data), data
    if kind == "nil":
        return b"$-1\r\n", None
    if kind == "nil-array":
        return b"*-1\r\n", None
    items = draw(st.lists(replies(depth + 1), max_size=4))
    wire = b"*%d\r\n" % len(items) + b"".join(w for w, _ in items)
    return wire, [v for _, v in items]


def redis_py_packer() -> Any:
    """redis-py's own encoder, the reference for packing (its packers are unannotated)."""
    module: Any = redis.connection
    return module.Connection()


def hiredis_parse(chunks: Iterable[bytes]) -> list[Any]:
    reader = hiredis.Reader(
        protocolError=ProtocolError, replyError=ReplyError, notEnoughData=NEED_DATA
    )
    out = []
    for chunk in chunks:
        reader.feed(chunk)
        while (value := reader.gets()) is not NEED_DATA:
            out.append(norm(value))
    return out


@EXAMPLES
@given(data=st.data(), stream=st.lists(replies(), min_size=1, max_size=6))
def test_generated_streams_match_hiredis(
    data: st.DataObject, stream: list[tuple[bytes, Any]]
) -> None:
    wire = b"".join(w for w, _ in stream)
    expected = [v for _, v in stream]
    points = data.draw(st.lists(st.integers(0, len(wire)), max_size=8), label="cuts")
    chunks = cut(wire, points)
    got = [norm(v) for v in parse_chunks(Reader(), chunks)]
    assert got == expected
    assert hiredis_parse(chunks) == expected


@EXAMPLES
@given(
    args=st.lists(
        st.one_of(st.binary(max_size=40), st.text(max_size=20), st.integers(-(2**70), 2**70)),
        min_size=1,
        max_size=6,
    )
)
def test_packed_commands_parse_back_and_match_redis_py(args: list[Any]) -> None:
    parts = pack_command(*args)
    wire = b"".join(bytes(p) for p in parts)
    reader = Reader()
    reader.feed(wire)
    assert reader.gets() == [bytes(encode_arg(a)) for a in args]
    assert reader.gets() is NEED_DATA
    # redis-py splits a first argument containing spaces; ours are arbitrary, so it
    # gets a fixed command name in front.
    ours = b"".join(bytes(p) for p in pack_command("CMD", *args))
    theirs = joined(redis_py_packer().pack_command("CMD", *args))
    assert ours == theirs


# ------------------------------------------------------------------ into a target


def target_of(size: int, fill: int = 0xEE) -> tuple[bytearray, memoryview]:
    backing = bytearray([fill]) * size
    return backing, memoryview(backing)


def test_into_exact_size_whole_feed() -> None:
    reader = Reader()
    backing, target = target_of(5)
    reader.set_target(target)
    reader.feed(b"$5\r\nhello\r\n:1\r\n")
    assert reader.gets() is FILLED
    assert backing == b"hello"
    assert reader.gets() == 1  # the next reply parses normally
    assert reader.gets() is NEED_DATA


def test_into_exact_size_byte_at_a_time() -> None:
    reader = Reader()
    payload = bytes(range(40))
    backing, target = target_of(len(payload))
    wire = b"$40\r\n" + payload + b"\r\n"
    for i, byte in enumerate(wire):
        reader.set_target(target)  # what the engine does before every gets()
        reader.feed(bytes([byte]))
        value = reader.gets()
        if i < len(wire) - 1:
            assert value is NEED_DATA
    assert value is FILLED
    assert backing == payload


def test_into_via_get_buffer_is_zero_copy() -> None:
    reader = Reader()
    payload = bytes(range(256)) * 40
    backing, target = target_of(len(payload))
    reader.set_target(target)
    assert reader.get_buffer() is None  # no payload under way: use feed()
    reader.feed(b"$%d\r\n" % len(payload) + payload[:100])  # header + a little payload
    assert reader.gets() is NEED_DATA
    pos = 100
    steps = 0
    while (view := reader.get_buffer()) is not None:
        assert view.obj is backing, "the view must point into the caller's buffer"
        n = min(777, len(view))
        view[:n] = payload[pos : pos + n]  # stands in for sock.recv_into(view)
        reader.buffer_updated(n)
        pos += n
        steps += 1
        assert reader.gets() is NEED_DATA or pos == len(payload)
    assert pos == len(payload) and steps > 1
    assert reader.gets() is NEED_DATA  # the payload is in, its CRLF is not
    reader.feed(b"\r\n+next\r\n")
    assert reader.gets() is FILLED
    assert backing == payload
    assert reader.gets() == b"next"
    assert reader.buffered == 0


def test_buffer_updated_must_match_get_buffer() -> None:
    reader = Reader()
    with pytest.raises(ValueError, match="buffer_updated"):
        reader.buffer_updated(1)  # no view was handed out
    _, target = target_of(4)
    reader.set_target(target)
    reader.feed(b"$4\r\n")
    assert reader.gets() is NEED_DATA
    view = reader.get_buffer()
    assert view is not None and len(view) == 4
    with pytest.raises(ValueError, match="buffer_updated"):
        reader.buffer_updated(5)


@pytest.mark.parametrize("size", [0, 3, 7, 100_000])
def test_into_other_size_is_drained(size: int) -> None:
    reader = Reader()
    backing, target = target_of(5)
    payload = bytes(range(256)) * (size // 256 + 1)
    payload = payload[:size]
    wire = b"$%d\r\n%b\r\n" % (size, payload) + b"$2\r\nok\r\n"
    got: list[Any] = []
    for chunk in cut(wire, range(0, len(wire), 4096)):
        reader.feed(chunk)
        while True:
            if not got:
                reader.set_target(target)  # the target is for the first reply only
            value = reader.gets()
            if value is NEED_DATA:
                break
            got.append(value)
    # The stream stayed in sync: the reply after the drained payload parses.
    assert got == [SizeMismatch(size), b"ok"]
    assert backing == b"\xee" * 5, "a mismatched payload must not touch the target"


def test_drain_does_not_buffer_the_payload() -> None:
    reader = Reader()
    _, target = target_of(10)
    reader.set_target(target)
    reader.feed(b"$1000000\r\n")
    assert reader.gets() is NEED_DATA
    chunk = b"x" * 65536
    for _ in range(1_000_000 // len(chunk)):
        assert reader.get_buffer() is None  # a drained payload goes through feed()
        reader.feed(chunk)
        assert reader.buffered == 0
        assert reader.gets() is NEED_DATA
    reader.feed(b"x" * (1_000_000 % len(chunk)) + b"\r\n")
    assert reader.gets() == SizeMismatch(1_000_000)


def test_into_nil_and_error_and_other_types() -> None:
    reader = Reader()
    backing, target = target_of(3)
    reader.feed(b"$-1\r\n-ERR no\r\n:5\r\n*1\r\n$3\r\nabc\r\n$3\r\nxyz\r\n")
    for expected in (None, err("ERR no"), 5, [b"abc"]):
        reader.set_target(target)
        assert norm(reader.gets()) == expected
        assert backing == b"\xee\xee\xee"
    reader.set_target(target)
    assert reader.gets() is FILLED
    assert backing == b"xyz"


def test_target_applies_to_the_next_reply_only() -> None:
    reader = Reader()
    backing, target = target_of(3)
    reader.set_target(target)
    reader.feed(b":1\r\n$3\r\nabc\r\n")
    assert reader.gets() == 1
    assert reader.gets() == b"abc"  # not FILLED: the target went with the integer
    assert backing == b"\xee\xee\xee"
    reader.set_target(target)
    reader.set_target(None)  # clearing before the reply starts cancels it
    reader.feed(b"$3\r\ndef\r\n")
    assert reader.gets() == b"def"


def test_empty_target_and_empty_bulk() -> None:
    reader = Reader()
    _, target = target_of(0)
    reader.set_target(target)
    reader.feed(b"$0\r\n\r\n")
    assert reader.gets() is FILLED


def test_set_target_during_a_payload_has_no_effect() -> None:
    reader = Reader()
    first, t1 = target_of(4)
    second, t2 = target_of(4)
    reader.set_target(t1)
    reader.feed(b"$4\r\nab")
    assert reader.gets() is NEED_DATA
    reader.set_target(t2)
    reader.feed(b"cd\r\n")
    assert reader.gets() is FILLED
    assert first == b"abcd" and second == b"\xee" * 4


def deliver(
    reader: Reader, wire: bytes, targets: Sequence[memoryview | None], sizes: Iterable[int]
) -> list[Any]:
    """Feed ``wire`` the way the engine's socket loop does, chunk sizes from ``sizes``."""
    out: list[Any] = []
    pos = 0
    chunk = cycle(sizes)
    while pos < len(wire):
        n = next(chunk)
        view = reader.get_buffer()
        if view is not None:
            n = min(n, len(view), len(wire) - pos)
            view[:n] = wire[pos : pos + n]
            reader.buffer_updated(n)
        else:
            reader.feed(wire[pos : pos + n])
        pos += n
        while len(out) < len(targets):
            reader.set_target(targets[len(out)])
            value = reader.gets()
            if value is NEED_DATA:
                break
            out.append(value)
    return out


@EXAMPLES
@given(
    items=st.lists(
        st.tuples(
            st.sampled_from(["exact", "other", "none", "nil", "error"]),
            st.integers(0, 3000),
        ),
        min_size=1,
        max_size=8,
    ),
    sizes=st.lists(st.integers(1, 5000), min_size=1, max_size=5),
)
def test_generated_into_streams(items: list[tuple[str, int]], sizes: list[int]) -> None:
    wire = b""
    targets: list[memoryview | None] = []
    backings: list[bytearray] = []
    payloads: list[bytes] = []
    for i, (what, n) in enumerate(items):
        payload = bytes((i + j) % 251 for j in range(n))
        payloads.append(payload)
        if what == "nil":
            wire += b"$-1\r\n"
        elif what == "error":
            wire += b"-ERR e\r\n"
        else:
            wire += b"$%d\r\n%b\r\n" % (n, payload)
        if what == "none":
            targets.append(None)
            backings.append(bytearray())
        else:
            made, target = target_of(n if what != "other" else n + 1, fill=0xFF)
            targets.append(target)
            backings.append(made)
    got = deliver(Reader(), wire, targets, sizes)
    assert len(got) == len(items)
    for (what, n), value, backing, payload in zip(items, got, backings, payloads):
        if what == "exact":
            assert value is FILLED and backing == payload
        elif what == "other":
            assert value == SizeMismatch(n) and backing == b"\xff" * (n + 1)
        elif what == "none":
            assert value == payload
        elif what == "nil":
            assert value is None and backing == b"\xff" * n
        else:
            assert norm(value) == err("ERR e") and backing == b"\xff" * n


# -------------------------------------------------------------------- malformed

MALFORMED: Final[list[tuple[str, bytes, str]]] = [
    ("unknown-type", b"x\r\n", "unknown reply type"),
    ("bulk-negative", b"$-2\r\n", "negative bulk length"),
    ("array-negative", b"*-5\r\n", "negative array length"),
    ("bulk-minus-zero", b"$-0\r\n", "malformed bulk length"),
    ("bulk-plus", b"$+5\r\nhello\r\n", "malformed bulk length"),
    ("bulk-space", b"$ 5\r\nhello\r\n", "malformed bulk length"),
    ("bulk-trailing-space", b"$5 \r\nhello\r\n", "malformed bulk length"),
    ("bulk-underscore", b"$5_0\r\n", "malformed bulk length"),
    ("bulk-hex", b"$0x5\r\n", "malformed bulk length"),
    ("bulk-empty-length", b"$\r\n", "malformed bulk length"),
    ("bulk-unicode-digit", "$\u0665\r\n".encode(), "malformed bulk length"),
    ("bulk-huge-digits", b"$" + b"9" * 5000 + b"\r\n", "malformed bulk length"),
    ("array-plus", b"*+1\r\n:1\r\n", "malformed array length"),
    ("array-underscore", b"*1_0\r\n", "malformed array length"),
    ("integer-empty", b":\r\n", "malformed integer"),
    ("integer-plus", b":+1\r\n", "malformed integer"),
    ("integer-float", b":1.5\r\n", "malformed integer"),
    ("integer-huge-digits", b":" + b"1" * 5000 + b"\r\n", "malformed integer"),
    ("integer-over-int64", b":9223372036854775808\r\n", "64-bit"),
    ("bulk-no-crlf", b"$3\r\nabcXY", "not terminated by CRLF"),
    ("bulk-lf-cr", b"$3\r\nabc\n\r", "not terminated by CRLF"),
    ("bulk-over-limit", b"$%d\r\n" % (MAX_BULK_BYTES + 1), "MAX_BULK_BYTES"),
    ("array-over-limit", b"*%d\r\n" % (MAX_MULTIBULK_LEN + 1), "MAX_MULTIBULK_LEN"),
    ("too-deep", b"*1\r\n" * (MAX_DEPTH + 1) + b":1\r\n", "MAX_DEPTH"),
    ("line-too-long", b"+" + b"a" * (MAX_LINE_BYTES + 1) + b"\r\n", "MAX_LINE_BYTES"),
    ("line-unterminated", b"+" + b"a" * (MAX_LINE_BYTES + 2), "MAX_LINE_BYTES"),
    (
        "line-unterminated-in-array",
        b"*2\r\n:1\r\n-" + b"e" * (MAX_LINE_BYTES + 2),
        "MAX_LINE_BYTES",
    ),
    ("bad-item-in-array", b"*2\r\n:1\r\n?\r\n", "unknown reply type"),
]
MALFORMED_IDS: Final = [m[0] for m in MALFORMED]
#: Vectors hiredis also rejects (it has no bulk/depth/line limits of ours, accepts a
#: bulk without CRLF, and takes '-0'): checked against it as a second opinion.
HIREDIS_REJECTS: Final = {
    "unknown-type", "bulk-negative", "array-negative", "bulk-plus", "bulk-space",
    "bulk-trailing-space", "bulk-underscore", "bulk-hex", "bulk-empty-length",
    "array-plus", "integer-empty", "integer-plus", "integer-float",
    "integer-over-int64", "bad-item-in-array",
}  # fmt: skip


@pytest.mark.parametrize(("wire", "message"), [m[1:] for m in MALFORMED], ids=MALFORMED_IDS)
def test_malformed_raises_protocol_error_naming_the_problem(wire: bytes, message: str) -> None:
    reader = Reader()
    reader.feed(wire)
    with pytest.raises(ProtocolError, match=message):
        reader.gets()


@pytest.mark.parametrize(("wire", "message"), [m[1:] for m in MALFORMED], ids=MALFORMED_IDS)
def test_malformed_byte_at_a_time(wire: bytes, message: str) -> None:
    reader = Reader()
    # One byte at a time; the 64 KiB lines in odd-sized steps (each step is cheap now
    # that a partial line is not rescanned, but 64 Ki calls would still cost time).
    step = 1 if len(wire) < 1000 else 97
    with pytest.raises(ProtocolError) as info:  # noqa: PT012 - the loop is the subject
        for i in range(0, len(wire), step):
            reader.feed(wire[i : i + step])
            assert reader.gets() is NEED_DATA
    assert message in str(info.value)


@pytest.mark.parametrize(
    "wire", [m[1] for m in MALFORMED if m[0] in HIREDIS_REJECTS], ids=sorted(HIREDIS_REJECTS)
)
def test_malformed_unusable_after_protocol_error(wire: bytes) -> None:
    with pytest.raises(ProtocolError):
        hiredis_parse([wire])  # the independent reader agrees that it is malformed
    reader = Reader()
    reader.feed(wire)
    with pytest.raises(ProtocolError):
        drain(reader)
    with pytest.raises(ProtocolError, match="unusable"):
        reader.gets()
    with pytest.raises(ProtocolError, match="unusable"):
        reader.feed(b"+OK\r\n")


def test_malformed_in_into_mode() -> None:
    _, target = target_of(3)
    for wire, message in [
        (b"$%d\r\n" % (MAX_BULK_BYTES + 1), "MAX_BULK_BYTES"),
        (b"$-3\r\n", "negative bulk length"),
        (b"$3\r\nabcde", "not terminated by CRLF"),  # exact size, bad terminator
        (b"$4\r\nabcdXY", "not terminated by CRLF"),  # drained, bad terminator
    ]:
        reader = Reader()
        reader.set_target(target)
        reader.feed(wire)
        with pytest.raises(ProtocolError, match=message):
            reader.gets()
        with pytest.raises(ProtocolError, match="unusable"):
            reader.gets()


def test_limits_accept_the_largest_legal_value() -> None:
    reader = Reader()
    reader.feed(b"*1\r\n" * MAX_DEPTH + b":1\r\n")
    value = reader.gets()
    for _ in range(MAX_DEPTH):
        assert isinstance(value, list) and len(value) == 1
        value = value[0]
    assert value == 1
    line = b"a" * MAX_LINE_BYTES
    reader.feed(b"+" + line)  # exactly at the limit, CRLF still to come
    assert reader.gets() is NEED_DATA
    reader.feed(b"\r")
    assert reader.gets() is NEED_DATA
    reader.feed(b"\n")
    assert reader.gets() == line
    reader.feed(b"$%d\r\n" % MAX_BULK_BYTES)  # a legal header: waits for the payload
    assert reader.gets() is NEED_DATA


_FRAGMENTS: Final = st.sampled_from(
    [b"*", b"$", b"+", b"-", b":", b"\r\n", b"\r", b"\n", b"1", b"-1", b"0", b"3", b"12",
     b"abc", b"99999999999999999999", b" ", b"_", b"*1\r\n", b"$3\r\nabc\r\n", b":-7\r\n"]
)  # fmt: skip
_GARBAGE: Final = st.one_of(
    st.binary(max_size=64), st.lists(st.one_of(_FRAGMENTS, st.binary(max_size=3))).map(b"".join)
)


@EXAMPLES
@given(data=st.data(), garbage=_GARBAGE, target_size=st.none() | st.integers(0, 4))
def test_random_bytes_reply_need_data_or_protocol_error(
    data: st.DataObject, garbage: bytes, target_size: int | None
) -> None:
    reader = Reader()
    target = None if target_size is None else memoryview(bytearray(target_size))
    points = data.draw(st.lists(st.integers(0, len(garbage)), max_size=5), label="cuts")
    ok = (bytes, int, list, ReplyError, SizeMismatch, type(None))
    # Every reply consumes at least three bytes, so this many calls must end it.
    budget = len(garbage) + 2
    try:
        for chunk in cut(garbage, points):
            reader.feed(chunk)
            while True:
                budget -= 1
                assert budget >= 0, "gets() keeps returning replies: a loop"
                reader.set_target(target)
                value = reader.gets()
                if value is NEED_DATA:
                    break
                assert value is FILLED or isinstance(value, ok), value
    except ProtocolError:
        with pytest.raises(ProtocolError):
            reader.gets()


# ---------------------------------------------------------------------- packing


def redis_py(*args: Any) -> bytes:
    return joined(redis_py_packer().pack_command(*args))


@pytest.mark.parametrize(
    "args",
    [
        ("PING",),
        ("SET", "key", "value"),
        ("SET", b"k\x00\xff", b"\r\n"),
        ("SET", "ключ", "значение"),
        ("INCRBY", "n", 0),
        ("INCRBY", "n", -17),
        ("INCRBY", "n", 2**63),
        ("SET", "k", b""),
        ("SET", "k", bytearray(b"abc")),
        ("SET", "k", memoryview(b"abcdef")[1:4]),
    ],
    ids=case_id,
)
def test_pack_command_matches_redis_py(args: tuple[Any, ...]) -> None:
    assert joined(pack_command(*args)) == redis_py(*args)


def test_pack_command_hand_written_encodings() -> None:
    assert joined(pack_command("GET", "k")) == b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
    assert joined(pack_command("INCRBY", "k", -5)) == (
        b"*3\r\n$6\r\nINCRBY\r\n$1\r\nk\r\n$2\r\n-5\r\n"
    )
    arr = np.arange(4, dtype=np.float32)
    assert joined(pack_command("SET", "k", arr)) == (
        b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$16\r\n" + arr.tobytes() + b"\r\n"
    )
    matrix = np.arange(6, dtype=np.int16).reshape(2, 3)  # size in bytes, not elements
    assert joined(pack_command("SET", "k", matrix)) == redis_py("SET", "k", matrix.tobytes())


def test_large_arguments_are_referenced_not_copied() -> None:
    big_bytes = b"b" * REFERENCE_THRESHOLD
    parts = pack_command("SET", "k1", big_bytes)
    assert any(p is big_bytes for p in parts)

    backing = bytearray(b"m" * (REFERENCE_THRESHOLD + 5))
    parts = pack_command("SET", "k2", memoryview(backing))
    views = [p for p in parts if isinstance(p, memoryview)]
    assert len(views) == 1 and views[0].obj is backing

    arr = np.ones((256, 64), dtype=np.float32)  # 64 KiB, two dimensions
    parts = pack_command("SET", "k3", arr)
    views = [p for p in parts if isinstance(p, memoryview)]
    assert len(views) == 1
    assert views[0].nbytes == arr.nbytes and views[0].format == "B"
    assert np.shares_memory(np.frombuffer(views[0], dtype=np.uint8), arr)
    arr[0, 0] = 2.0  # a later write shows through: the bytes were never copied
    assert bytes(views[0][:4]) == np.float32(2.0).tobytes()
    assert joined(parts) == redis_py("SET", "k3", arr.tobytes())


def test_small_arguments_are_inlined() -> None:
    data = bytearray(b"s" * (REFERENCE_THRESHOLD - 1))
    parts = pack_command("SET", "k", data)
    assert len(parts) == 1 and isinstance(parts[0], bytes)


@pytest.mark.parametrize("bad", [True, False])
def test_bool_is_rejected(bad: bool) -> None:
    with pytest.raises(TypeError, match="bool"):
        pack_command("SET", "k", bad)


@pytest.mark.parametrize("bad", [1.5, None, object(), ["a"]], ids=case_id)
def test_other_types_are_rejected(bad: object) -> None:
    with pytest.raises(TypeError, match="str, bytes, int or a buffer"):
        pack_command("SET", "k", bad)


def test_non_contiguous_and_empty_commands_are_rejected() -> None:
    with pytest.raises(ValueError, match="C-contiguous"):
        pack_command("SET", "k", np.arange(10, dtype=np.uint8)[::2])
    with pytest.raises(ValueError, match="at least one argument"):
        pack_command()


def test_pack_commands_merges_small_parts() -> None:
    commands = [("GET", "a"), ("GET", "b"), ("EXISTS", "c")]
    parts = pack_commands(commands)
    assert len(parts) == 1 and isinstance(parts[0], bytes)
    assert parts[0] == joined(redis_py_packer().pack_commands(commands))

    big = bytearray(REFERENCE_THRESHOLD)
    parts = pack_commands([("GET", "a"), ("SET", "k", big), ("GET", "b"), ("GET", "c")])
    kinds = [type(p) for p in parts]
    assert kinds == [bytes, memoryview, bytes]
    assert isinstance(parts[1], memoryview) and parts[1].obj is big
    assert joined(parts) == b"".join(
        redis_py(*c) for c in [("GET", "a"), ("SET", "k", bytes(big)), ("GET", "b"), ("GET", "c")]
    )


def test_fast_path_packers_agree_with_pack_command() -> None:
    for name in (b"GET", b"EXISTS", b"UNLINK"):
        assert pack_key_command(name, b"key:1") == joined(pack_command(name, b"key:1"))
    value = b"v" * 1000
    assert pack_set_header(b"k", len(value)) + value + b"\r\n" == joined(
        pack_command("SET", b"k", value)
    )


# --------------------------------------------------------------------------- gets_many

_INT64: Final = st.integers(-(2**63), 2**63 - 1)
#: Integers just outside int64, far outside it, and digit strings too long for any int64.
_OUT_OF_RANGE: Final = st.one_of(
    st.integers(2**63, 10**20), st.integers(-(10**20), -(2**63) - 1), st.integers(10**25, 10**30)
)
_SMALL_REPLY = st.one_of(
    st.sampled_from([b":0\r\n", b":1\r\n"]),
    _INT64.map(lambda n: b":%d\r\n" % n),
    st.integers(-5, 100).map(lambda n: b":%d\r\n" % n),
    st.sampled_from([b"-NOAUTH Authentication required.\r\n", b"+OK\r\n", b"$-1\r\n"]),
    st.just(b"$4\r\n:1\r\n\r\n"),  # a bulk whose payload looks like a fast-path reply
    st.just(b"*2\r\n:1\r\n:0\r\n"),  # an array of fast-path-looking integers
)
#: Replies gets() refuses: gets_many must refuse them at the same point, same message.
_BAD_REPLY = st.one_of(
    _OUT_OF_RANGE.map(lambda n: b":%d\r\n" % n),
    st.sampled_from([b":\r\n", b":+1\r\n", b":1.5\r\n", b":-\r\n", b": 1\r\n", b":1_0\r\n"]),
)


def reference_gets(chunks: Iterable[bytes]) -> tuple[list[Any], list[int], str | None]:
    """Values, type bytes and the protocol error (if any) of repeated gets()."""
    reader = Reader()
    values: list[Any] = []
    types: list[int] = []
    try:
        for chunk in chunks:
            reader.feed(chunk)
            while (value := reader.gets()) is not NEED_DATA:
                values.append(norm(value))
                types.append(reader.last_type)
    except ProtocolError as exc:
        return values, types, str(exc)
    return values, types, None


@EXAMPLES
@given(
    data=st.data(),
    wire_parts=st.lists(_SMALL_REPLY, min_size=1, max_size=40),
    bad=st.none() | _BAD_REPLY,
)
def test_gets_many_equals_repeated_gets(
    data: st.DataObject, wire_parts: list[bytes], bad: bytes | None
) -> None:
    """gets_many returns exactly what gets() would, whatever the chunking and the limits:
    the same values over the whole int64 range, the same type bytes (``last_type`` after
    each call describes its last value), and for a reply gets() refuses (outside int64,
    malformed) the same replies before it and then the same ProtocolError."""
    if bad is not None:
        wire_parts.insert(data.draw(st.integers(0, len(wire_parts)), label="bad at"), bad)
    wire = b"".join(wire_parts)
    points = data.draw(st.lists(st.integers(0, len(wire)), max_size=10), label="cuts")
    ref_values, ref_types, ref_error = reference_gets(cut(wire, points))
    reader = Reader()
    got: list[Any] = []
    got_types: list[int] = []
    error = None
    try:
        for chunk in cut(wire, points):
            reader.feed(chunk)
            while batch := reader.gets_many(data.draw(st.integers(1, 8), label="limit")):
                got += [norm(v) for v in batch]
                got_types += [_type_of(v) for v in batch[:-1]] + [reader.last_type]
    except ProtocolError as exc:
        error = str(exc)
    assert (got, error) == (ref_values, ref_error)
    assert got_types == ref_types
    if error is None:
        assert reader.gets() is NEED_DATA and reader.buffered == 0
        assert (bad is None) and reader.idle


def _type_of(value: Any) -> int:
    """The type byte a value that does not end a gets_many list must have."""
    assert isinstance(value, (int, ReplyError)), f"{value!r} did not end the list"
    return ord(":") if isinstance(value, int) else ord("-")


@pytest.mark.parametrize(
    "wire",
    [b":99999999999999999999\r\n", b":-9223372036854775809\r\n", b":9223372036854775808\r\n"],
    ids=["20-nines", "int64-min-minus-1", "int64-max-plus-1"],
)
@pytest.mark.parametrize("before", [b"", b":1\r\n:0\r\n:7\r\n"], ids=["alone", "after-replies"])
def test_gets_many_refuses_integers_outside_int64(wire: bytes, before: bytes) -> None:
    reader = Reader()
    reader.feed(before + wire + b":1\r\n")
    if before:
        assert reader.gets_many(100) == [1, 0, 7]  # the good replies first
    with pytest.raises(ProtocolError, match="outside the signed 64-bit range"):
        reader.gets_many(100)
    with pytest.raises(ProtocolError, match="unusable"):
        reader.gets_many(100)


@pytest.mark.parametrize("piece", [None, 1 << 20, 65_000], ids=["whole", "1MiB-pieces", "odd"])
def test_gets_many_applies_the_line_limit(piece: int | None) -> None:
    """10 MB of ':111...' without CRLF: gets_many raises where gets() does, with the
    same message, instead of buffering it all."""
    wire = b":" + b"1" * 10_000_000
    expected = f"line longer than MAX_LINE_BYTES ({MAX_LINE_BYTES}) without CRLF"
    for method in ("gets", "gets_many"):
        reader = Reader()
        step = piece or len(wire)
        fed = 0
        with pytest.raises(ProtocolError) as info:  # noqa: PT012 - the loop is the subject
            for i in range(0, len(wire), step):
                reader.feed(wire[i : i + step])
                fed = i + step
                result = reader.gets() if method == "gets" else reader.gets_many(256)
                assert result in (NEED_DATA, [])
        assert str(info.value) == expected, method
        # Raised as soon as the limit was crossed, not after buffering the whole line.
        assert fed <= MAX_LINE_BYTES + 2 + step, method


def test_gets_many_refuses_a_long_integer_line_with_crlf() -> None:
    reader = Reader()
    reader.feed(b":1\r\n:" + b"1" * (MAX_LINE_BYTES + 1) + b"\r\n")
    assert reader.gets_many(10) == [1]
    with pytest.raises(
        ProtocolError, match=f"line longer than MAX_LINE_BYTES \\({MAX_LINE_BYTES}\\)$"
    ):
        reader.gets_many(10)


# ------------------------------------------------------------------- incremental


class CountingBuffer(bytearray):
    """A receive buffer that counts how many bytes ``find`` examined, to show that a
    reply cut into pieces is not searched again from its start on every call."""

    scanned = 0
    calls = 0

    def find(self, sub: Any, start: Any = 0, end: Any = None) -> int:
        stop = len(self) if end is None else end
        found = super().find(sub, start, stop)
        type(self).calls += 1
        type(self).scanned += (found + len(sub) if found >= 0 else stop) - start
        return found


@pytest.fixture
def counting_reader() -> Reader:
    CountingBuffer.scanned = CountingBuffer.calls = 0
    reader = Reader()
    reader._buf = CountingBuffer()
    return reader


def test_a_long_line_in_pieces_is_scanned_once(counting_reader: Reader) -> None:
    line = b"a" * 60_000
    wire = b"+" + line + b"\r\n"
    values = parse_chunks(counting_reader, cut(wire, range(0, len(wire), 100)))
    assert values == [line]
    # Re-scanning from the line's start would examine about 600 * 30,000 bytes.
    assert CountingBuffer.scanned <= 2 * len(wire)


def test_a_large_array_in_pieces_is_parsed_once(counting_reader: Reader) -> None:
    n = 20_000
    wire = b"*%d\r\n" % n + b"$5\r\nhello\r\n" * n
    pieces = cut(wire, range(0, len(wire), 4096))
    values = parse_chunks(counting_reader, pieces)
    assert values == [[b"hello"] * n]
    # One search per element header (and one per piece that ends inside one); parsing
    # the array again from its start on each piece would take about 60 x 20,000.
    assert CountingBuffer.calls <= n + 1 + len(pieces)
    assert CountingBuffer.scanned <= 2 * len(wire)


def test_state_survives_every_split_of_nested_arrays() -> None:
    wire = b"*3\r\n*2\r\n$3\r\nabc\r\n:12\r\n*0\r\n*1\r\n-ERR x\r\n+after\r\n"
    expected = [[[b"abc", 12], [], [err("ERR x")]], b"after"]
    for i in range(len(wire) + 1):
        for j in range(i, len(wire) + 1):
            got = [norm(v) for v in parse_chunks(Reader(), [wire[:i], wire[i:j], wire[j:]])]
            assert got == expected, (i, j)


def test_a_big_bulk_in_pieces_has_its_header_parsed_once(counting_reader: Reader) -> None:
    payload = bytes(range(256)) * 4096  # 1 MiB
    wire = b"$%d\r\n%b\r\n" % (len(payload), payload)
    assert parse_chunks(counting_reader, cut(wire, range(0, len(wire), 1000))) == [payload]
    # The header is parsed once (twice: the fast path gives up on a partial payload),
    # then the payload is only waited for; parsing it again per piece would be ~1,000.
    assert CountingBuffer.calls <= 2


@pytest.mark.parametrize(
    ("wire", "value", "described"),
    [
        (b"+QUEUED\r\n", b"QUEUED", "+QUEUED"),
        (b":5\r\n", 5, ":5"),
        (b"$3\r\nabc\r\n", b"abc", "$3"),
        (b"$-1\r\n", None, "$-1"),
        (b"*-1\r\n", None, "*-1"),
        (b"*2\r\n:1\r\n:2\r\n", [1, 2], "*2"),
        (b"+" + b"x" * 200 + b"\r\n", b"x" * 200, "+" + "x" * 79),
    ],
    ids=["simple", "integer", "bulk", "nil-bulk", "nil-array", "array", "long"],
)
def test_last_type_describes_the_reply(wire: bytes, value: Any, described: str) -> None:
    reader = Reader()
    reader.feed(wire)
    got = reader.gets()
    assert got == value
    assert describe_reply(got, reader.last_type) == described
    reader.feed(wire)
    assert reader.gets_many(5) == [value]
    assert describe_reply(value, reader.last_type) == described


def test_idle_only_between_replies() -> None:
    reader = Reader()
    states = [reader.idle]
    reader.feed(b"$3\r\nab")
    assert reader.gets() is NEED_DATA
    states.append(reader.idle)
    reader.feed(b"c\r\n")
    assert reader.gets() == b"abc"
    states.append(reader.idle)
    reader.feed(b"+")
    assert reader.gets() is NEED_DATA
    states.append(reader.idle)
    assert states == [True, False, True, False]
