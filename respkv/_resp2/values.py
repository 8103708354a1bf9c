"""The values a RESP2 reply can be besides plain Python ones, and how an unexpected
reply is described.

Part of the codec (:mod:`respkv.resp2` is the public import; this package holds its
parts so each stays small). :data:`NEED_DATA` is the reader's "not enough data yet":
``None``, ``0`` and ``b""`` are legitimate RESP values, so it needs a value of its own.
:data:`FILLED` and :class:`SizeMismatch` are what a GET's reply becomes when it was
delivered into (or drained instead of) a caller's buffer.
"""

from __future__ import annotations

from typing import Any, Final

from respkv.errors import ReplyError

__all__ = ["DESCRIBE_CHARS", "FILLED", "NEED_DATA", "SizeMismatch", "describe_reply"]

#: Longest description of an unexpected reply (``Failure.reply``): the contract's 80.
DESCRIBE_CHARS: Final = 80
_DOLLAR: Final = 0x24  # '$' bulk string
_STAR: Final = 0x2A  # '*' array


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


def describe_reply(value: Any, type_byte: int) -> str:
    """A reply as ``Failure.reply`` shows an unexpected one: its RESP type byte and
    first line (``+QUEUED``, ``:5``, ``$3``, ``*2``, ``$-1``), at most
    :data:`DESCRIBE_CHARS` characters."""
    if value is FILLED or isinstance(value, SizeMismatch):
        text = f"${value.length}" if isinstance(value, SizeMismatch) else "$"
    elif isinstance(value, ReplyError):
        text = f"-{value}"
    elif isinstance(value, int):
        text = f":{value}"
    elif value is None:
        text = "*-1" if type_byte == _STAR else "$-1"
    elif isinstance(value, list):
        text = f"*{len(value)}"
    elif type_byte == _DOLLAR:
        text = f"${len(value)}"
    else:
        text = "+" + bytes(value).decode("utf-8", "replace")
    return text[:DESCRIBE_CHARS]
