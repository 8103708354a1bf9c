"""The incremental RESP2 reply reader, with zero-copy delivery into target buffers.

Part of the codec (:mod:`respkv.resp2` is the public import, and its essay describes
the reader: zero-copy GET, value types, the incremental state and the limits). This
module holds the :class:`Reader` alone: bytes in, whole replies or
:data:`~respkv._resp2.values.NEED_DATA` out, no I/O.
"""

from __future__ import annotations

from typing import Any, Final, NoReturn

from respkv._compat import Buffer
from respkv._limits import MAX_BULK_BYTES, MAX_DEPTH, MAX_LINE_BYTES, MAX_MULTIBULK_LEN
from respkv._resp2.values import FILLED, NEED_DATA, SizeMismatch
from respkv.errors import ProtocolError, ReplyError

__all__ = ["COMPACT_BYTES", "Reader"]

_CRLF: Final = b"\r\n"
#: The replies of EXISTS and UNLINK on one key, for the fast path of Reader.gets_many.
_BOOLEAN_INTEGERS: Final = {b":0": 0, b":1": 1}
# RESP integers are signed 64-bit (hiredis and the native reader reject anything
# outside, so do we).
_INT64_MIN: Final = -(1 << 63)
_INT64_MAX: Final = (1 << 63) - 1
#: Longest decimal text of an int64 (``-9223372036854775808``): longer is malformed.
_INT64_DIGITS: Final = 20
#: Consumed bytes are cut from the front of the receive buffer once there are this many
#: and they are at least as many as the bytes still unconsumed (so every byte is moved
#: at most about once: no quadratic memmove behind a large reply still arriving).
COMPACT_BYTES: Final = 64 * 1024

# Reader modes.
_PARSE: Final = 0  # parsing replies from the internal buffer
_INTO: Final = 1  # delivering a bulk payload into the target buffer
_DRAIN: Final = 2  # dropping a bulk payload that did not fit the target
_BROKEN: Final = 3  # a ProtocolError was raised; nothing more is parsed

_COLON: Final = 0x3A  # ':' integer
_DOLLAR: Final = 0x24  # '$' bulk string
_PLUS: Final = 0x2B  # '+' simple string
_MINUS: Final = 0x2D  # '-' error
_STAR: Final = 0x2A  # '*' array


class Reader:
    """Incremental RESP2 reply parser with zero-copy delivery into target buffers.

    Use either :meth:`feed` with any chunks of bytes, or, on a socket, the
    :meth:`get_buffer` / :meth:`buffer_updated` pair while :meth:`get_buffer` returns a
    view (and :meth:`feed` when it returns ``None``). Then call :meth:`gets` until it
    returns :data:`NEED_DATA`.

    Incremental: a reply that is not complete yet is never parsed again from its start.
    The reader keeps where it stopped: the arrays under construction (a stack of
    ``[items, missing]`` frames, as hiredis's task stack), the length of a bulk whose
    header it has read, and how far it has already searched a line for its CRLF. Each
    received byte is therefore examined a bounded number of times, however the reply
    is cut into pieces.
    """

    __slots__ = (
        "_buf",
        "_bulk",
        "_deferred",
        "_mode",
        "_pos",
        "_remaining",
        "_scan",
        "_stack",
        "_target",
        "_total",
        "_view",
        "last_type",
    )

    def __init__(self) -> None:
        self._buf = bytearray()
        self._pos = 0  # start of the next element to parse
        self._scan = 0  # where the CRLF search of the line at _pos resumes (0: at _pos)
        self._bulk = -1  # a bulk's length once its header is consumed (payload at _pos)
        self._stack: list[list[Any]] = []  # arrays under construction: [items, missing]
        self._mode = _PARSE
        self._target: memoryview | None = None
        self._view: memoryview | None = None  # unfilled part of the target (INTO)
        self._remaining = 0  # payload bytes still to come (INTO / DRAIN)
        self._total = 0  # full payload length (INTO / DRAIN)
        self._deferred: ProtocolError | None = None  # raised by the next call (gets_many)
        #: The RESP type byte (``ord('+')`` ...) of the last reply returned, so that a
        #: caller can describe a reply it did not expect (``+OK`` and ``$2`` both give
        #: ``b"OK"``); 0 before the first.
        self.last_type = 0

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
        if self._mode == _PARSE and not self._stack and self._bulk < 0:
            self._target = target

    @property
    def buffered(self) -> int:
        """Bytes received but not yet consumed (for tests and diagnostics)."""
        return len(self._buf) - self._pos

    @property
    def idle(self) -> bool:
        """True between replies: no byte of a reply is buffered or under way.

        A connection whose reader is not idle after the reply of its last request
        has received bytes nobody asked for (a desynchronised stream)."""
        return (
            self._mode == _PARSE
            and not self._stack
            and self._bulk < 0
            and (self._pos >= len(self._buf))
        )

    # -- output --------------------------------------------------------------------

    # Over ruff's complexity limits on purpose: the fast path below runs once per reply
    # of every SET and GET, inline, so that a whole small reply costs no further call.
    def gets(self) -> Any:  # noqa: C901, PLR0912
        """The next whole reply, or :data:`NEED_DATA`."""
        if self._mode != _PARSE:
            if self._mode == _BROKEN:
                self._raise_broken()
            return self._finish_payload()
        buf = self._buf
        pos = self._pos
        if self._stack or self._bulk >= 0 or self._scan:
            return self._run()  # a reply already under way
        if pos >= len(buf):
            if pos:
                buf.clear()
                self._pos = 0
            return NEED_DATA
        # Fast path: a whole integer, simple string or bulk string at the top level
        # (nothing to keep between calls). Anything else, a line that is not whole, or
        # a bulk whose payload has not all arrived, takes _run, which starts afresh.
        kind = buf[pos]
        if kind in _ONE_LINE:
            eol = buf.find(_CRLF, pos + 1)
            if 0 <= eol <= pos + 1 + MAX_LINE_BYTES:
                line = bytes(buf[pos + 1 : eol])
                end = eol + 2
                if kind == _DOLLAR:
                    if not line.isdigit() or len(line) >= _INT64_DIGITS:
                        return self._run()  # nil, or for _length to judge
                    n = int(line)
                    if n > MAX_BULK_BYTES:
                        return self._run()
                    if self._target is not None:
                        return self._into(n, end)
                    stop = end + n
                    if len(buf) < stop + 2 or buf[stop : stop + 2] != _CRLF:
                        return self._run()
                    value: Any = bytes(buf[end:stop])
                    end = stop + 2
                elif kind == _PLUS:
                    value = line
                elif line.isdigit() and len(line) < _INT64_DIGITS - 1:
                    value = int(line)  # at most 18 digits: always in range
                else:
                    value = self._integer(line)
                self.last_type = kind
                self._target = None
                if end >= len(buf):
                    buf.clear()
                    self._pos = 0
                else:
                    self._advance(end)
                return value
        return self._run()

    def gets_many(self, limit: int) -> list[Any]:
        """Up to ``limit`` whole replies (fewer when the buffer runs out); no targets.

        The same values as calling :meth:`gets` repeatedly, with the same limits and
        the same protocol errors: integer replies (EXISTS, UNLINK) take a fast path,
        everything else the general parser. A reply that is neither an integer nor an
        error ends the list (so :attr:`last_type` describes the last value), and so does
        a reply that was already partly parsed: call again until the list is empty.
        """
        if self._target is not None or not self._between_replies():
            # Under way, broken, or a target set: one reply the general way.
            value = self.gets()
            return [] if value is NEED_DATA else [value]
        buf = self._buf
        out = self._booleans(limit)
        pos = self._pos + 4 * len(out)
        end_all = len(buf)
        append = out.append
        try:
            while len(out) < limit and pos < end_all:
                if buf[pos] == _COLON:
                    eol = buf.find(_CRLF, pos + 1)
                    if 0 <= eol <= pos + 1 + MAX_LINE_BYTES:
                        append(self._integer(bytes(buf[pos + 1 : eol])))
                        self.last_type = _COLON
                        pos = eol + 2
                        continue
                # Anything else, or a line without CRLF (whose length limit, and how far
                # it was searched, the general parser keeps): one reply the general way.
                self._pos = pos
                value = self._run()
                if value is NEED_DATA:
                    return out
                append(value)
                if not isinstance(value, ReplyError):
                    return out
                pos = self._pos
                end_all = len(buf)
        except ProtocolError as exc:
            if not out:
                raise
            self._deferred = exc  # the replies before it are good: they go first
            return out
        self._advance(pos)
        return out

    # -- internals -----------------------------------------------------------------

    def _booleans(self, limit: int) -> list[Any]:
        """The fast path of :meth:`gets_many`: the run of ``:0`` / ``:1`` replies (EXISTS,
        UNLINK) at ``_pos``, four bytes each, split in C and mapped with one dict lookup
        per reply (not consumed: the caller advances past them). The window holds at most
        ``limit`` such replies; its last piece (empty or a partial line) is dropped."""
        pos = self._pos
        lines = bytes(self._buf[pos : pos + 4 * limit]).split(_CRLF)
        lines.pop()
        out: list[Any] = list(map(_BOOLEAN_INTEGERS.get, lines))
        if None in out:
            del out[out.index(None) :]
        if out:
            self.last_type = _COLON
        return out

    def _between_replies(self) -> bool:
        """Parsing, with no part of a reply consumed (bytes of the next may be buffered)."""
        return self._mode == _PARSE and not self._stack and not self._scan and self._bulk < 0

    def _raise_broken(self) -> NoReturn:
        exc, self._deferred = self._deferred, None
        raise exc or ProtocolError("reader is unusable after a protocol error")

    def _fail(self, message: str) -> NoReturn:
        self._mode = _BROKEN
        raise ProtocolError(message)

    def _advance(self, end: int) -> None:
        """Consume up to ``end``; compact the buffer when that moves few bytes."""
        buf = self._buf
        n = len(buf)
        if end >= n:
            buf.clear()
            self._pos = 0
        elif end > COMPACT_BYTES and end >= n - end:
            del buf[:end]
            self._pos = 0
        else:
            self._pos = end

    def _integer(self, line: bytes) -> int:
        # int() accepts '+5', ' 5', '5_0'; RESP allows only an optional '-' and digits.
        body = line[1:] if line[:1] == b"-" else line
        if not body.isdigit() or len(line) > _INT64_DIGITS:
            self._fail(f"malformed integer {line[:32]!r}")
        value = int(line)
        if not _INT64_MIN <= value <= _INT64_MAX:
            self._fail(f"integer {value} outside the signed 64-bit range")
        return value

    def _length(self, line: bytes, what: str, limit: int) -> int:
        # As _integer, and '-0' is malformed too: the only negative length is -1 (nil).
        body = line[1:] if line[:1] == b"-" else line
        if not body.isdigit() or len(line) > _INT64_DIGITS or line == b"-0":
            self._fail(f"malformed {what} length {line[:32]!r}")
        n = int(line)
        if n < -1:
            self._fail(f"negative {what} length {n}")
        if n > limit:
            limit_name = "MAX_BULK_BYTES" if what == "bulk" else "MAX_MULTIBULK_LEN"
            self._fail(f"{what} length {n} exceeds {limit_name} ({limit})")
        return n

    def _need_data(self, pos: int) -> Any:
        """Stop at ``pos`` (the start of an incomplete element) until more bytes come."""
        buf = self._buf
        if pos > COMPACT_BYTES and pos >= len(buf) - pos:
            del buf[:pos]
            if self._scan:
                self._scan -= pos
            pos = 0
        self._pos = pos
        return NEED_DATA

    # Over ruff's complexity limits on purpose: see the docstring.
    def _run(self) -> Any:  # noqa: C901, PLR0912, PLR0915
        """Parse elements from ``_pos`` until the outermost reply completes (its value)
        or the bytes run out (:data:`NEED_DATA`, with the state kept for next time).

        One loop over the five reply types, longer than a function should be: it runs
        once per element of every reply, and splitting it into a call per type costs
        about a tenth of the per-reply time (measured with benchmarks/bench_codec.py).
        """
        buf = self._buf
        stack = self._stack
        pos = self._pos
        resume_bulk = self._bulk >= 0
        while True:
            if resume_bulk:  # a bulk whose header an earlier call consumed
                resume_bulk = False
                stop = pos + self._bulk
                if len(buf) < stop + 2:
                    return self._need_data(pos)
                if buf[stop : stop + 2] != _CRLF:
                    self._fail("bulk string not terminated by CRLF")
                value: Any = bytes(buf[pos:stop])
                kind = _DOLLAR
                self._bulk = -1
                pos = stop + 2
            else:
                if pos >= len(buf):
                    return self._need_data(pos)
                kind = buf[pos]
                if kind not in _TYPES:
                    self._fail(f"unknown reply type byte {bytes([kind])!r}")
                eol = buf.find(_CRLF, self._scan or pos + 1)
                if eol < 0:
                    # Checked here, not only at the top level, so that an unterminated
                    # line inside an array cannot grow the buffer without bound. One byte
                    # more than the limit may be a line of exactly MAX_LINE_BYTES and the
                    # CR of its CRLF.
                    if len(buf) - pos - 1 > MAX_LINE_BYTES + 1:
                        self._fail(
                            f"line longer than MAX_LINE_BYTES ({MAX_LINE_BYTES}) without CRLF"
                        )
                    # Resume the search at the last byte: it may be the CR of the CRLF.
                    self._scan = max(pos + 1, len(buf) - 1)
                    return self._need_data(pos)
                if self._scan:
                    self._scan = 0
                if eol - pos - 1 > MAX_LINE_BYTES:
                    self._fail(f"line longer than MAX_LINE_BYTES ({MAX_LINE_BYTES})")
                line = bytes(buf[pos + 1 : eol])
                pos = eol + 2
                if kind == _DOLLAR:
                    # Digits only is the common case; _length judges everything else.
                    if line.isdigit() and len(line) < _INT64_DIGITS:
                        n = int(line)
                        if n > MAX_BULK_BYTES:
                            n = self._length(line, "bulk", MAX_BULK_BYTES)  # fails
                    else:
                        n = self._length(line, "bulk", MAX_BULK_BYTES)
                    if n < 0:
                        value = None
                    elif self._target is not None and not stack:
                        return self._into(n, pos)
                    else:
                        stop = pos + n
                        if len(buf) < stop + 2:
                            self._bulk = n
                            return self._need_data(pos)
                        if buf[stop : stop + 2] != _CRLF:
                            self._fail("bulk string not terminated by CRLF")
                        value = bytes(buf[pos:stop])
                        pos = stop + 2
                elif kind == _COLON:
                    if line.isdigit() and len(line) < _INT64_DIGITS - 1:
                        value = int(line)  # at most 18 digits: always in range
                    else:
                        value = self._integer(line)
                elif kind == _PLUS:
                    value = line
                elif kind == _MINUS:
                    value = ReplyError(line.decode("utf-8", "replace"))
                else:  # '*' array
                    n = self._length(line, "array", MAX_MULTIBULK_LEN)
                    if n == -1:
                        value = None
                    else:
                        if len(stack) >= MAX_DEPTH:
                            self._fail(f"arrays nested deeper than MAX_DEPTH ({MAX_DEPTH})")
                        if n:
                            stack.append([[], n])
                            continue
                        value = []
            # A whole element: it completes the reply, or joins the array it is in.
            if not stack:
                self.last_type = kind
                break
            while stack:
                top = stack[-1]
                top[0].append(value)
                top[1] -= 1
                if top[1]:
                    break
                value = stack.pop()[0]
            else:
                self.last_type = _STAR
                break
        self._advance(pos)
        self._target = None
        return value

    def _into(self, n: int, end: int) -> Any:
        """A bulk of ``n`` bytes, header consumed up to ``end``, with a target set:
        deliver it into the target when the sizes match, else drain it."""
        target = self._target
        assert target is not None
        buf = self._buf
        self.last_type = _DOLLAR
        self._total = n
        take = min(len(buf) - end, n)
        if n == target.nbytes:
            if take:
                target[:take] = buf[end : end + take]
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


_TYPES: Final = frozenset({_COLON, _DOLLAR, _PLUS, _MINUS, _STAR})
#: Types that gets() may finish in one step without state (see its fast path).
_ONE_LINE: Final = frozenset({_COLON, _DOLLAR, _PLUS})
