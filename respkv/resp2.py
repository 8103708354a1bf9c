"""Sans-I/O RESP2: packing commands into buffer lists, and an incremental reply reader.

This is the codec's public module; its parts live in :mod:`respkv._resp2` (``values``,
``pack``, ``reader``), each small, and are imported from here.

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

Incremental. A reply cut into pieces is never parsed again from its start: the reader
keeps the arrays it is building, a bulk's length once its header is read, and how far it
has searched a line for its CRLF, so every byte is examined a bounded number of times
however the stream is cut (measured: a 20,000-element array fed in 4 KiB pieces went
from 440 ms to 15 ms; benchmarks/bench_codec.py for the per-reply figures).

Malformed input raises :class:`~respkv.errors.ProtocolError` and leaves the reader
unusable (the connection must be dropped). Every limit is a named constant, exported
here and defined in :mod:`respkv._limits` (which the native engine's configuration
reads too), and :meth:`Reader.gets_many` (the EXISTS/UNLINK fast path) applies the same
ones as :meth:`Reader.gets`.

No hiredis. An adapter over ``hiredis.Reader`` was measured against this reader
(``benchmarks/bench_codec.py`` and the engine's shapes): it parses single small replies
faster, but the engine reads EXISTS/UNLINK runs with :meth:`Reader.gets_many` (as fast
as a loop over hiredis), SET replies are one per value, and GET values land in the
caller's buffer with no copy (hiredis copies each one: 8x slower for 64 KiB values).
hiredis also lacks the limits above and cannot tell ``+OK`` from ``$2 OK``. So respkv
parses with this reader alone; hiredis is only a test reference.
"""

from __future__ import annotations

from respkv._limits import MAX_BULK_BYTES, MAX_DEPTH, MAX_LINE_BYTES, MAX_MULTIBULK_LEN
from respkv._resp2.pack import (
    REFERENCE_THRESHOLD,
    encode_arg,
    pack_command,
    pack_commands,
    pack_key_command,
    pack_set_header,
    pack_set_tail,
)
from respkv._resp2.reader import Reader
from respkv._resp2.values import FILLED, NEED_DATA, SizeMismatch, describe_reply
from respkv.errors import ProtocolError, ReplyError  # the reader's exception and error values

__all__ = [
    "FILLED",
    "MAX_BULK_BYTES",
    "MAX_DEPTH",
    "MAX_LINE_BYTES",
    "MAX_MULTIBULK_LEN",
    "NEED_DATA",
    "REFERENCE_THRESHOLD",
    "ProtocolError",
    "Reader",
    "ReplyError",
    "SizeMismatch",
    "describe_reply",
    "encode_arg",
    "pack_command",
    "pack_commands",
    "pack_key_command",
    "pack_set_header",
    "pack_set_tail",
]
