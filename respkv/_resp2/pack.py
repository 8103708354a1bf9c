"""Packing RESP2 commands into buffer lists for ``sendmsg``.

Part of the codec (:mod:`respkv.resp2` is the public import). Large arguments are
referenced, never copied: :func:`pack_command` returns a list of buffers in which every
argument of at least :data:`REFERENCE_THRESHOLD` bytes is the caller's own memoryview.
The one-key fast paths (:func:`pack_key_command`, :func:`pack_set_header`,
:func:`pack_set_tail`) are what the pure engine sends per key.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from respkv._compat import Buffer
from respkv._limits import INLINE_VALUE_BYTES

__all__ = [
    "REFERENCE_THRESHOLD",
    "encode_arg",
    "pack_command",
    "pack_commands",
    "pack_key_command",
    "pack_set_header",
    "pack_set_tail",
]

#: Arguments at least this large are referenced in the packed output instead of being
#: copied into the header (fewer bytes copied for big values, fewer iovecs for small):
#: the engines' inline threshold, one number (respkv._limits).
REFERENCE_THRESHOLD: Final = INLINE_VALUE_BYTES


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


def pack_set_header(key: bytes, nbytes: int, px: bool = False) -> bytes:
    """Everything of ``SET key <value>`` (``px``: ``SET key <value> PX <ms>``) before
    the value; the value and :func:`pack_set_tail` follow."""
    argc = 5 if px else 3
    return b"*%d\r\n$3\r\nSET\r\n$%d\r\n%b\r\n$%d\r\n" % (argc, len(key), key, nbytes)


def pack_set_tail(ttl_ms: int | None) -> bytes:
    """What follows a SET's value: its CRLF, then ``PX <ms>`` when it has an expiry.

    The expiry goes after the payload so that a large value is still sent from the
    caller's buffer: header, buffer, tail."""
    if ttl_ms is None:
        return b"\r\n"
    ms = b"%d" % ttl_ms
    return b"\r\n$2\r\nPX\r\n$%d\r\n%b\r\n" % (len(ms), ms)
