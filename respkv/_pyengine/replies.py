"""What the replies to a run of keys mean: statuses and failure records, per op.

The hot loops of the pure engine, kept apart from the scheduling around them
(:mod:`respkv._pyengine.worker`): they pull replies from a connection's
:class:`~respkv.resp2.Reader` for the keys of one :class:`~respkv._pyengine.batch.Run`,
in order, and write each key's status into its batch, with a
:class:`~respkv._failure.Failure` record only for a key that failed.

* EXISTS / UNLINK: a run's replies come from :meth:`Reader.gets_many` and become
  statuses through one ``map`` over ``{1: OK, 0: MISS}``; only a reply outside that
  map (an error reply, another integer, a reply of the wrong type) costs more.
* SET / GET: one reply per value. GET sets the caller's buffer as the reader's target
  first, so a value of the right size lands in it with no copy (``FILLED``), one of
  another size is drained (``SIZE_MISMATCH``), and nil (``$-1``) is a MISS. SET is OK
  only for the simple string ``+OK`` (a bulk ``$2 OK`` is an unexpected reply).

A reply the op does not expect is UNEXPECTED_REPLY with its type byte and first line
(:func:`~respkv.resp2.describe_reply`). A malformed stream raises :class:`Broken` with
how far the run got, so the keys answered before keep their answers.
"""

from __future__ import annotations

from typing import Any, Final, cast

from respkv._contract import KeyStatus, Op
from respkv._failure import ErrorKind, Failure
from respkv._pyengine.batch import Batch, Run
from respkv.errors import ProtocolError, ReplyError
from respkv.resp2 import FILLED, NEED_DATA, Reader, SizeMismatch, describe_reply

__all__ = ["Broken", "key_replies", "value_replies"]

_OK: Final = KeyStatus.OK
_MISS: Final = KeyStatus.MISS
#: EXISTS / UNLINK replies that are answers, not failures.
_INT_STATUS: Final[dict[Any, KeyStatus]] = {1: _OK, 0: _MISS}
_PLUS: Final = ord("+")
_DOLLAR: Final = ord("$")
_COLON: Final = ord(":")


class Broken(Exception):
    """The reply stream is malformed; keys before ``pos`` were answered."""

    def __init__(self, pos: int, error: ProtocolError) -> None:
        super().__init__(str(error))
        self.pos = pos


def key_replies(run: Run, reader: Reader, address: str) -> int:
    """EXISTS / UNLINK replies for ``run`` from ``run.pos``: the position reached."""
    batch = run.tile.batch
    statuses = batch.statuses
    pos = run.pos
    stop = run.stop
    try:
        while pos < stop:
            replies = reader.gets_many(stop - pos)
            if not replies:
                break
            count = len(replies)
            try:
                mapped = list(map(_INT_STATUS.get, replies))
            except TypeError:  # an array reply (unhashable): never an answer here
                mapped = [_INT_STATUS.get(r) if type(r) is int else None for r in replies]
            if None in mapped:
                last = reader.last_type
                for i, status in enumerate(mapped):
                    if status is None:
                        # Only the last reply of a gets_many list can be of another type.
                        kind = last if i == count - 1 else _COLON
                        mapped[i] = _failed(batch, pos + i, replies[i], kind, 0, address=address)
            statuses[pos : pos + count] = cast("list[KeyStatus]", mapped)
            pos += count
    except ProtocolError as exc:
        raise Broken(pos, exc) from None
    return pos


def value_replies(run: Run, reader: Reader, address: str) -> int:
    """SET / GET replies for ``run`` from ``run.pos``: the position reached."""
    batch = run.tile.batch
    statuses = batch.statuses
    views = batch.views
    assert views is not None
    is_get = batch.op is Op.GET
    pos = run.pos
    stop = run.stop
    try:
        while pos < stop:
            view = views[pos]
            if is_get:
                reader.set_target(view)
            reply = reader.gets()
            if reply is NEED_DATA:
                break
            if reply is FILLED or (not is_get and reply == b"OK" and reader.last_type == _PLUS):
                statuses[pos] = _OK
            elif is_get and reply is None and reader.last_type == _DOLLAR:
                statuses[pos] = _MISS
            else:
                statuses[pos] = _failed(
                    batch, pos, reply, reader.last_type, view.nbytes, address=address
                )
            pos += 1
    except ProtocolError as exc:
        raise Broken(pos, exc) from None
    return pos


def _failed(
    batch: Batch, index: int, reply: Any, type_byte: int, nbytes: int, *, address: str
) -> KeyStatus:
    """Record why key ``index`` failed from its reply; its status."""
    if isinstance(reply, ReplyError):
        failure = Failure(ErrorKind.SERVER_ERROR, address, reply=str(reply))
    elif isinstance(reply, SizeMismatch):
        failure = Failure(ErrorKind.SIZE_MISMATCH, address, expected=nbytes, actual=reply.length)
    else:
        failure = Failure(
            ErrorKind.UNEXPECTED_REPLY, address, reply=describe_reply(reply, type_byte)
        )
    batch.failures[index] = failure
    batch.failed = True
    return failure.status
