"""What a run's requests are: the bytes of its keys' commands, per op.

The twin of :mod:`respkv._pyengine.replies` on the sending side, kept apart from the
scheduling that decides which keys go (:mod:`respkv._pyengine.worker`: windows,
deadlines). Both functions run once per key of every batch, so they are written for
speed over the generic :func:`respkv.resp2.pack_command`:

* EXISTS / UNLINK (:func:`key_requests`): a run's commands are one ``join`` of one
  ``%``-format per key into one bytes object.
* SET / GET (:func:`value_requests`): a GET, and a SET of a value below
  :data:`~respkv._limits.INLINE_VALUE_BYTES`, is copied into the run's small bytes; a
  larger SET value is never copied: its header, the caller's buffer and its tail (the
  CRLF, then ``PX <ms>`` for a batch with a ``ttl``) go to the connection's output
  queue as three buffers for ``sendmsg``.
"""

from __future__ import annotations

from collections import deque
from typing import Final

from respkv._contract import Op
from respkv._limits import INLINE_VALUE_BYTES
from respkv._pyengine.batch import Batch
from respkv.resp2 import pack_key_command as _pack_key_command
from respkv.resp2 import pack_set_header as _pack_set_header
from respkv.resp2 import pack_set_tail as _pack_set_tail

__all__ = ["key_requests", "value_requests"]

_CRLF: Final = b"\r\n"
_OP_COMMANDS: Final = {Op.GET: b"GET", Op.EXISTS: b"EXISTS", Op.DELETE: b"UNLINK"}
#: ``*2\r\n$<n>\r\n<NAME>\r\n``: what every one-key command of an op starts with.
_OP_HEADS: Final = {op: b"*2\r\n$%d\r\n%b\r\n" % (len(n), n) for op, n in _OP_COMMANDS.items()}


def key_requests(batch: Batch, start: int, end: int) -> bytes:
    """The commands of keys ``start .. end`` of an EXISTS / UNLINK batch, as one bytes."""
    head = _OP_HEADS[batch.op]
    # pack_key_command inlined: this line runs once per EXISTS/UNLINK key.
    return b"".join([b"%b$%d\r\n%b\r\n" % (head, len(k), k) for k in batch.keys[start:end]])


def value_requests(
    batch: Batch, start: int, end: int, out: deque[memoryview | bytes], small: list[bytes]
) -> tuple[int, list[bytes]]:
    """Queue the commands of keys ``start .. end`` of a SET / GET batch: small ones
    appended to ``small`` (joined into one buffer by the caller), a large SET value's
    three buffers to ``out`` (after ``small``'s bytes, which go first). The bytes
    queued, and the small requests not yet in ``out``."""
    views = batch.views
    assert views is not None
    keys = batch.keys
    queued = 0
    if batch.op is not Op.SET:
        for key in keys[start:end]:
            data = _pack_key_command(b"GET", key)
            small.append(data)
            queued += len(data)
        return queued, small
    px = batch.ttl_ms is not None
    tail = _pack_set_tail(batch.ttl_ms) if px else _CRLF  # CRLF [+ PX <ms>]
    for index in range(start, end):
        view = views[index]
        nbytes = view.nbytes
        header = _pack_set_header(keys[index], nbytes, px)
        if nbytes < INLINE_VALUE_BYTES:
            data = header + view.tobytes() + tail
            small.append(data)
            queued += len(data)
        else:
            if small:
                out.append(b"".join(small))
                small = []
            out.append(header)
            out.append(view)
            out.append(tail)
            queued += len(header) + nbytes + len(tail)
    return queued, small
