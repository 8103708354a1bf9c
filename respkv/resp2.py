"""Sans-I/O RESP2: packing commands into buffer lists, and an incremental reply reader.

Nothing here touches a socket, a thread or a clock. The packer turns arguments into a
list of buffers ready for ``socket.sendmsg`` (large payloads are referenced, never
copied); the :class:`Reader` takes bytes and hands back whole replies or the
:data:`NEED_DATA` sentinel (``None``, ``0`` and ``b""`` are legitimate RESP values, so
"not enough data yet" needs a value of its own).

Zero-copy GET. Before the reply of a GET is parsed, the engine calls
:meth:`Reader.set_target` with the caller's writable buffer. When that reply turns out
to be a bulk string of exactly ``len(target)`` bytes, the payload is delivered straight
into the target: :meth:`Reader.get_buffer` returns the part of the target still to be
filled, the engine does ``sock.recv_into(view)`` and reports the count with
:meth:`Reader.buffer_updated`. Only the few bytes that arrived together with the
``$<len>\\r\\n`` header (at most one receive chunk) are copied. The reply value is then
:data:`FILLED`. A bulk of another length is *drained* (read and dropped, never written
to the target) and reported as :class:`SizeMismatch`, so the stream stays in sync and
the next reply parses normally. A nil bulk is ``None``; an error reply is a
:class:`~respkv.errors.ReplyError` value, as for any reply.

Value types follow ``hiredis.Reader`` so the two can be compared in tests: simple
strings and bulk strings are ``bytes``, integers ``int``, errors ``ReplyError``
instances (values, not raised), nil bulk and nil array ``None``, arrays ``list``.

Malformed input raises :class:`~respkv.errors.ProtocolError` and leaves the reader
unusable (the connection must be dropped). Every limit is a named constant below.
"""

from __future__ import annotations

from collections.abc import Iterable
from types import ModuleType
from typing import Any, Final, NoReturn

from respkv._compat import Buffer
from respkv.errors import ProtocolError, ReplyError

__all__ = [
    "FILLED",
    "MAX_BULK_BYTES",
    "MAX_DEPTH",
    "MAX_LINE_BYTES",
    "MAX_MULTIBULK_LEN",
    "NEED_DATA",
    "HiredisReader",
    "Reader",
    "SizeMismatch",
    "encode_arg",
    "hiredis_available",
    "pack_command",
    "pack_commands",
    "pack_key_command",
    "pack_set_header",
]

#: Largest bulk string accepted from the server: Redis's own ``proto-max-bulk-len``
#: default. A longer length header means a corrupt stream, not a real value.
MAX_BULK_BYTES: Final = 512 * 1024 * 1024
#: Largest array length accepted (Redis's ``proto-max-multibulk-len`` is 1024*1024 for
#: requests; replies can be longer, e.g. KEYS, so the limit is generous).
MAX_MULTIBULK_LEN: Final = 1 << 32
#: Deepest nesting of arrays accepted. Redis replies nest a few levels at most
#: (CLUSTER SLOTS: 3); this bounds recursion on hostile input.
MAX_DEPTH: Final = 32
#: Longest simple string, error or length line accepted without its CRLF. Error texts
#: from Redis are short; an unterminated line this long is a desynchronised stream.
MAX_LINE_BYTES: Final = 64 * 1024
#: Arguments at least this large are referenced in the packed output instead of being
#: copied into the header (fewer bytes copied for big values, fewer iovecs for small).
REFERENCE_THRESHOLD: Final = 16 * 1024


class _Sentinel:
    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name

    def __reduce__(self) -> str:
        return self._name


#: Returned by :meth:`Reader.gets` when no whole reply is buffered yet.
NEED_DATA: Final[Any] = _Sentinel("NEED_DATA")
#: The reply value when a bulk string was written whole into the target buffer.
FILLED: Final[Any] = _Sentinel("FILLED")


class SizeMismatch:
    """A bulk reply whose length differed from the target buffer; it was drained."""

    __slots__ = ("length",)

    def __init__(self, length: int) -> None:
        self.length = length

    def __repr__(self) -> str:
        return f"SizeMismatch(length={self.length})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SizeMismatch) and other.length == self.length

    def __hash__(self) -> int:
        return hash(("SizeMismatch", self.length))


# --------------------------------------------------------------------------- packing


def encode_arg(arg: object) -> bytes | memoryview:
    """One command argument as bytes (str is UTF-8; int is its decimal text)."""
    if isinstance(arg, bytes):
        return arg
    if isinstance(arg, str):
        return arg.encode()
    if isinstance(arg, bool):
        raise TypeError("bool is not a valid RESP argument; pass 0/1 or b'0'/b'1'")
    if isinstance(arg, int):
        return str(arg).encode()
    try:
        view = memoryview(arg)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(
            f"RESP arguments must be str, bytes, int or a buffer, not {type(arg).__name__}"
        ) from None
    if not view.c_contiguous:
        raise ValueError("buffer arguments must be C-contiguous")
    return view.cast("B") if view.format != "B" or view.ndim != 1 else view


def pack_command(*args: object) -> list[Buffer]:
    """Pack one command into a list of buffers for ``sendmsg``/``writev``.

    Small arguments are copied into header chunks; arguments of at least
    :data:`REFERENCE_THRESHOLD` bytes are referenced as memoryviews, never copied.
    """
    if not args:
        raise ValueError("a command needs at least one argument")
    out: list[Buffer] = []
    head = bytearray(b"*%d\r\n" % len(args))
    for arg in args:
        data = encode_arg(arg)
        n = len(data) if isinstance(data, bytes) else data.nbytes
        head += b"$%d\r\n" % n
        if n >= REFERENCE_THRESHOLD:
            out.append(bytes(head))
            out.append(data)
            head = bytearray(b"\r\n")
        else:
            head += data
            head += b"\r\n"
    out.append(bytes(head))
    return out


def pack_commands(commands: Iterable[Iterable[object]]) -> list[Buffer]:
    """Pack several commands for one pipelined write, merging adjacent small chunks."""
    out: list[Buffer] = []
    pending = bytearray()
    for cmd in commands:
        for part in pack_command(*cmd):
            if isinstance(part, bytes):
                pending += part
            else:
                if pending:
                    out.append(bytes(pending))
                    pending = bytearray()
                out.append(part)
    if pending:
        out.append(bytes(pending))
    return out


def pack_key_command(name: bytes, key: bytes) -> bytes:
    """``NAME key`` as one bytes object: the fast path for GET, EXISTS and UNLINK."""
    return b"*2\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n" % (len(name), name, len(key), key)


def pack_set_header(key: bytes, nbytes: int) -> bytes:
    """Everything of ``SET key <value>`` before the value; the value and CRLF follow."""
    return b"*3\r\n$3\r\nSET\r\n$%d\r\n%b\r\n$%d\r\n" % (len(key), key, nbytes)


# --------------------------------------------------------------------------- reading

_CRLF: Final = b"\r\n"
#: The replies of EXISTS and UNLINK on one key, for the fast path of Reader.gets_many.
_BOOLEAN_INTEGERS: Final = {b":0": 0, b":1": 1}
# RESP integers are signed 64-bit (hiredis rejects anything outside, so do we).
_INT64_MIN: Final = -(1 << 63)
_INT64_MAX: Final = (1 << 63) - 1

# Reader modes.
_PARSE: Final = 0  # parsing replies from the internal buffer
_INTO: Final = 1  # delivering a bulk payload into the target buffer
_DRAIN: Final = 2  # dropping a bulk payload that did not fit the target
_BROKEN: Final = 3  # a ProtocolError was raised; nothing more is parsed


class _Incomplete(Exception):
    """Internal: the buffered bytes end inside the reply being parsed."""


_INCOMPLETE: Final = _Incomplete()


class Reader:
    """Incremental RESP2 reply parser with zero-copy delivery into target buffers.

    Use either :meth:`feed` with any chunks of bytes, or, on a socket, the
    :meth:`get_buffer` / :meth:`buffer_updated` pair while :meth:`get_buffer` returns a
    view (and :meth:`feed` when it returns ``None``). Then call :meth:`gets` until it
    returns :data:`NEED_DATA`.
    """

    __slots__ = ("_buf", "_mode", "_pos", "_remaining", "_target", "_total", "_view")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._pos = 0
        self._mode = _PARSE
        self._target: memoryview | None = None
        self._view: memoryview | None = None  # unfilled part of the target (INTO)
        self._remaining = 0  # payload bytes still to come (INTO / DRAIN)
        self._total = 0  # full payload length (INTO / DRAIN)

    # -- input ---------------------------------------------------------------------

    def feed(self, data: Buffer) -> None:
        """Add received bytes. In the middle of a payload they go to its target."""
        if self._mode == _BROKEN:
            raise ProtocolError("reader is unusable after a protocol error")
        view = memoryview(data).cast("B")
        if self._mode != _PARSE and self._remaining:
            take = min(self._remaining, len(view))
            if self._mode == _INTO:
                assert self._view is not None
                self._view[:take] = view[:take]
                self._view = self._view[take:]
            self._remaining -= take
            view = view[take:]
        if len(view):
            self._buf += view

    def get_buffer(self) -> memoryview | None:
        """Where the next ``recv_into`` should write, or ``None`` to use :meth:`feed`.

        A view is returned only while a payload is being delivered into a target, so
        the bytes land in the caller's buffer with no copy.
        """
        if self._mode == _INTO and self._remaining:
            return self._view
        return None

    def buffer_updated(self, nbytes: int) -> None:
        """Report that ``nbytes`` were written into the view from :meth:`get_buffer`."""
        if self._mode != _INTO or not 0 <= nbytes <= self._remaining:
            raise ValueError("buffer_updated does not match the last get_buffer")
        assert self._view is not None
        self._view = self._view[nbytes:]
        self._remaining -= nbytes

    def set_target(self, target: memoryview | None) -> None:
        """Deliver the *next* reply, if it is a bulk string, into ``target``.

        ``target`` must be a writable, one-dimensional byte memoryview. The target
        applies to the next reply to start; it is cleared when that reply completes.
        Setting it again while that reply is in progress has no effect.
        """
        if self._mode == _PARSE:
            self._target = target

    @property
    def buffered(self) -> int:
        """Bytes received but not yet consumed (for tests and diagnostics)."""
        return len(self._buf) - self._pos

    # -- output --------------------------------------------------------------------

    def gets(self) -> Any:
        """The next whole reply, or :data:`NEED_DATA`."""
        mode = self._mode
        if mode != _PARSE:
            if mode == _BROKEN:
                raise ProtocolError("reader is unusable after a protocol error")
            return self._finish_payload()
        buf = self._buf
        pos = self._pos
        if pos >= len(buf):
            if pos:
                buf.clear()
                self._pos = 0
            return NEED_DATA
        try:
            if self._target is not None and buf[pos] == 0x24:  # '$' with a target
                return self._start_bulk_into(pos)
            value, end = self._parse(pos, 0)
        except _Incomplete:
            return NEED_DATA
        self._advance(end)
        self._target = None
        return value

    def gets_many(self, limit: int) -> list[Any]:
        """Up to ``limit`` whole replies (fewer when the buffer runs out); no targets.

        The same values as calling :meth:`gets` repeatedly, in one call: integer
        replies (EXISTS, UNLINK) take a fast path, everything else the general parser.
        """
        if self._mode != _PARSE or self._target is not None:
            value = self.gets()
            return [] if value is NEED_DATA else [value]
        buf = self._buf
        pos = self._pos
        end_all = len(buf)
        # Fast path: a run of ':0' / ':1' replies (EXISTS, UNLINK), four bytes each,
        # split in C and mapped with one dict lookup per reply. The window holds at most
        # ``limit`` such replies; its last piece (empty or a partial line) is dropped.
        lines = bytes(buf[pos : min(end_all, pos + 4 * limit)]).split(_CRLF)
        lines.pop()
        out: list[Any] = list(map(_BOOLEAN_INTEGERS.get, lines))
        if None in out:
            del out[out.index(None) :]
        pos += 4 * len(out)
        append = out.append
        find = buf.find
        try:
            while len(out) < limit and pos < end_all:
                if buf[pos] == 0x3A:  # ':' integer, the common case here
                    eol = find(_CRLF, pos + 1)
                    if eol < 0:
                        break
                    line = buf[pos + 1 : eol]
                    if line == b"1":
                        append(1)
                    elif line == b"0":
                        append(0)
                    else:
                        body = line[1:] if line[:1] == b"-" else line
                        if not body.isdigit() or len(line) > 20:
                            self._fail(f"malformed integer {bytes(line[:32])!r}")
                        append(int(line))
                    pos = eol + 2
                else:
                    value, pos = self._parse(pos, 0)
                    append(value)
        except _Incomplete:
            if end_all - pos > MAX_LINE_BYTES and buf.find(_CRLF, pos) < 0:
                self._fail("line longer than MAX_LINE_BYTES without CRLF")
        self._advance(pos)
        return out

    # -- internals -----------------------------------------------------------------

    def _fail(self, message: str) -> NoReturn:
        self._mode = _BROKEN
        raise ProtocolError(message)

    def _advance(self, end: int) -> None:
        buf = self._buf
        if end >= len(buf):
            buf.clear()
            self._pos = 0
        elif end > 65536:
            del buf[:end]
            self._pos = 0
        else:
            self._pos = end

    def _line(self, pos: int) -> tuple[bytes, int]:
        """The line starting after the type byte at ``pos`` and the index after CRLF."""
        buf = self._buf
        eol = buf.find(_CRLF, pos + 1)
        if eol < 0:
            # Checked here, not only at the top level, so that an unterminated line
            # inside an array cannot grow the buffer without bound. One byte more than
            # the limit may be a line of exactly MAX_LINE_BYTES and the CR of its CRLF.
            if len(buf) - pos - 1 > MAX_LINE_BYTES + 1:
                self._fail(f"line longer than MAX_LINE_BYTES ({MAX_LINE_BYTES}) without CRLF")
            raise _INCOMPLETE
        if eol - pos - 1 > MAX_LINE_BYTES:
            self._fail(f"line longer than MAX_LINE_BYTES ({MAX_LINE_BYTES})")
        return bytes(buf[pos + 1 : eol]), eol + 2

    def _length(self, line: bytes, what: str, limit: int) -> int:
        # int() accepts '+5', ' 5', '5_0'; RESP allows only an optional '-' and digits.
        # '-0' is malformed too: the only negative length is -1 (nil).
        body = line[1:] if line[:1] == b"-" else line
        if not body.isdigit() or len(line) > 20 or line == b"-0":
            self._fail(f"malformed {what} length {line[:32]!r}")
        n = int(line)
        if n < -1:
            self._fail(f"negative {what} length {n}")
        if n > limit:
            limit_name = "MAX_BULK_BYTES" if what == "bulk" else "MAX_MULTIBULK_LEN"
            self._fail(f"{what} length {n} exceeds {limit_name} ({limit})")
        return n

    def _parse(self, pos: int, depth: int) -> tuple[Any, int]:
        buf = self._buf
        if pos >= len(buf):
            raise _INCOMPLETE
        kind = buf[pos]
        if kind == 0x3A:  # ':' integer
            line, end = self._line(pos)
            body = line[1:] if line[:1] == b"-" else line
            if not body.isdigit() or len(line) > 20:
                self._fail(f"malformed integer {line[:32]!r}")
            value = int(line)
            if not _INT64_MIN <= value <= _INT64_MAX:
                self._fail(f"integer {value} outside the signed 64-bit range")
            return value, end
        if kind == 0x24:  # '$' bulk string
            line, end = self._line(pos)
            n = self._length(line, "bulk", MAX_BULK_BYTES)
            if n == -1:
                return None, end
            stop = end + n
            if len(buf) < stop + 2:
                raise _INCOMPLETE
            if buf[stop : stop + 2] != _CRLF:
                self._fail("bulk string not terminated by CRLF")
            return bytes(buf[end:stop]), stop + 2
        if kind == 0x2B:  # '+' simple string
            line, end = self._line(pos)
            return line, end
        if kind == 0x2D:  # '-' error
            line, end = self._line(pos)
            return ReplyError(line.decode("utf-8", "replace")), end
        if kind == 0x2A:  # '*' array
            line, end = self._line(pos)
            n = self._length(line, "array", MAX_MULTIBULK_LEN)
            if n == -1:
                return None, end
            if depth >= MAX_DEPTH:
                self._fail(f"arrays nested deeper than MAX_DEPTH ({MAX_DEPTH})")
            items = []
            for _ in range(n):
                item, end = self._parse(end, depth + 1)
                items.append(item)
            return items, end
        self._fail(f"unknown reply type byte {bytes([kind])!r}")

    def _start_bulk_into(self, pos: int) -> Any:
        line, end = self._line(pos)
        n = self._length(line, "bulk", MAX_BULK_BYTES)
        if n == -1:
            self._advance(end)
            self._target = None
            return None
        target = self._target
        assert target is not None
        self._total = n
        avail = len(self._buf) - end
        take = min(avail, n)
        if n == target.nbytes:
            if take:
                target[:take] = self._buf[end : end + take]
            self._mode = _INTO
            self._view = target[take:]
        else:
            self._mode = _DRAIN
        self._remaining = n - take
        self._advance(end + take)
        return self._finish_payload()

    def _finish_payload(self) -> Any:
        if self._remaining:
            return NEED_DATA
        buf = self._buf
        pos = self._pos
        if len(buf) - pos < 2:
            return NEED_DATA
        if buf[pos : pos + 2] != _CRLF:
            self._fail("bulk string not terminated by CRLF")
        self._advance(pos + 2)
        value = FILLED if self._mode == _INTO else SizeMismatch(self._total)
        self._mode = _PARSE
        self._target = None
        self._view = None
        return value


# --------------------------------------------------------------------------- hiredis

_hiredis: ModuleType | None
try:
    import hiredis as _hiredis
except ImportError:  # pragma: no cover - depends on the environment
    _hiredis = None


def hiredis_available() -> bool:
    """True when the optional ``hiredis`` package imports."""
    return _hiredis is not None


class HiredisReader:
    """The :class:`Reader` interface over ``hiredis.Reader`` (C parser, faster for many
    small replies). Targets are honoured by copying: hiredis always materialises the
    payload, so the zero-copy path stays with :class:`Reader`."""

    __slots__ = ("_broken", "_reader", "_target")

    def __init__(self) -> None:
        if _hiredis is None:
            raise ImportError("hiredis is not installed (pip install 'respkv[hiredis]')")
        self._reader = _hiredis.Reader(
            protocolError=ProtocolError,
            replyError=ReplyError,
            notEnoughData=NEED_DATA,
        )
        self._target: memoryview | None = None
        self._broken = False

    def feed(self, data: Buffer) -> None:
        if self._broken:
            raise ProtocolError("reader is unusable after a protocol error")
        self._reader.feed(memoryview(data).cast("B"))

    def get_buffer(self) -> memoryview | None:
        return None

    def buffer_updated(self, nbytes: int) -> None:
        raise ValueError("buffer_updated does not match the last get_buffer")

    def set_target(self, target: memoryview | None) -> None:
        self._target = target

    @property
    def buffered(self) -> int:
        # hiredis keeps consumed bytes until it compacts, and exposes no position:
        # this is exact when nothing is pending, else an upper bound.
        return int(self._reader.len()) if self._reader.has_data() else 0

    def gets(self) -> Any:
        if self._broken:
            raise ProtocolError("reader is unusable after a protocol error")
        try:
            value = self._reader.gets()
        except ProtocolError:
            self._broken = True
            raise
        if value is NEED_DATA:
            return value
        target, self._target = self._target, None
        if target is not None and isinstance(value, bytes):
            if len(value) != target.nbytes:
                return SizeMismatch(len(value))
            target[:] = value
            return FILLED
        return value
