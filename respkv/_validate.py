"""Submit-time validation shared by both backends.

Every check runs before any I/O, so a bad batch raises at once and leaves nothing half
done. Messages name the offending index and the limit, and are the same whichever
backend is in use because both call these functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, cast

from respkv._compat import BufferLike
from respkv._contract import Op
from respkv._options import MAX_TIMEOUT

__all__ = [
    "MAX_KEY_BYTES",
    "MAX_TTL",
    "MAX_VALUE_BYTES",
    "CheckedKeys",
    "check_buffers",
    "check_keys",
    "Submission",
    "check_submission",
    "check_timeout",
    "check_ttl",
]

#: Longest key accepted. Redis allows up to 512 MiB, but a KV-cache key is a short
#: hash; anything this long is a bug in the caller, caught before it costs bandwidth.
MAX_KEY_BYTES: Final = 64 * 1024
#: Largest value: Redis's ``proto-max-bulk-len`` default (512 MiB).
MAX_VALUE_BYTES: Final = 512 * 1024 * 1024
#: Longest ``ttl=`` (expiry of a SET, seconds): 365 days. A chunk meant to live longer
#: is persistent in practice (store it without a ttl); the bound also catches
#: milliseconds passed as seconds (ten hours in ms, 36,000,000, is over a year).
MAX_TTL: Final = 365 * 86_400.0


class CheckedKeys(list[bytes]):
    """Keys that :func:`check_keys` has already validated and encoded.

    The clients validate once and hand this list to the connector, whose own call of
    :func:`check_keys` then returns it as is instead of checking every key again.
    """

    __slots__ = ()


def check_keys(keys: Sequence[object]) -> list[bytes]:
    """Keys as bytes (``str`` is UTF-8 encoded). Raises on a bad or empty batch."""
    if type(keys) is CheckedKeys:
        return keys
    if isinstance(keys, (str, bytes, bytearray, memoryview)):
        raise TypeError("keys must be a sequence of str or bytes, not a single key")
    try:
        n = len(keys)
    except TypeError:
        raise TypeError(f"keys must be a sequence, not {type(keys).__name__}") from None
    if n == 0:
        raise ValueError("empty batch: keys must contain at least one key")
    # Fast path: all bytes, or all str with plain UTF-8, and every length in range.
    # Checked with builtins over the whole list (the common case, thousands of keys per
    # EXISTS batch); anything unusual falls through to the loop that names the index.
    kinds = set(map(type, keys))
    if kinds in ({bytes}, {str}):
        fast: CheckedKeys | None
        if str in kinds:
            try:
                fast = CheckedKeys(map(str.encode, cast("Sequence[str]", keys)))
            except UnicodeEncodeError:
                fast = None
        else:
            fast = CheckedKeys(cast("Sequence[bytes]", keys))
        if fast is not None:
            lengths = list(map(len, fast))
            if min(lengths) > 0 and max(lengths) <= MAX_KEY_BYTES:
                return fast
    return _check_keys_slowly(keys)


def _check_keys_slowly(keys: Sequence[object]) -> list[bytes]:
    out = CheckedKeys()
    append = out.append
    for i, key in enumerate(keys):
        if type(key) is bytes:
            data = key
        elif isinstance(key, str):
            try:
                data = key.encode()
            except UnicodeEncodeError as exc:
                raise ValueError(f"key {i}: not encodable as UTF-8 ({exc.reason})") from None
        elif isinstance(key, bytes):
            data = bytes(key)
        else:
            raise TypeError(f"key {i}: expected str or bytes, got {type(key).__name__}")
        if not data:
            raise ValueError(f"key {i}: empty key")
        if len(data) > MAX_KEY_BYTES:
            raise ValueError(f"key {i}: {len(data)} bytes exceeds MAX_KEY_BYTES ({MAX_KEY_BYTES})")
        append(data)
    return out


def check_buffers(buffers: Sequence[BufferLike], nkeys: int, *, writable: bool) -> list[memoryview]:
    """Buffers as flat byte memoryviews (size in bytes, not elements).

    ``writable`` is set for GET: read-only buffers are rejected there.
    """
    if isinstance(buffers, (bytes, bytearray, memoryview)):
        raise TypeError("buffers must be a sequence of buffers, not a single buffer")
    try:
        n = len(buffers)
    except TypeError:
        raise TypeError(f"buffers must be a sequence, not {type(buffers).__name__}") from None
    if n != nkeys:
        raise ValueError(f"length mismatch: {nkeys} keys but {n} buffers")
    return [_flat_view(i, buf, writable) for i, buf in enumerate(buffers)]


def _flat_view(i: int, buf: BufferLike, writable: bool) -> memoryview:
    """Buffer ``i`` as a flat byte memoryview, or a clear error naming ``i``."""
    try:
        view = memoryview(buf)
    except TypeError:
        raise TypeError(
            f"buffer {i}: expected a buffer-protocol object, got {type(buf).__name__}"
        ) from None
    if not view.c_contiguous:
        raise ValueError(f"buffer {i}: not C-contiguous")
    if writable and view.readonly:
        raise ValueError(f"buffer {i}: read-only; GET needs a writable buffer")
    if view.nbytes > MAX_VALUE_BYTES:
        raise ValueError(
            f"buffer {i}: {view.nbytes} bytes exceeds MAX_VALUE_BYTES ({MAX_VALUE_BYTES})"
        )
    if view.nbytes == 0:
        # memoryview cannot cast a shape with a zero in it, such as (0, 3); an
        # empty value needs no memory of its own, so any empty view stands in.
        return memoryview(bytearray())
    if view.ndim != 1 or view.format != "B":
        return view.cast("B") if view.ndim else view.cast("B", (view.nbytes,))
    return view


def check_timeout(timeout: object) -> float | None:
    """A batch's ``timeout=`` as seconds, or ``None`` (no batch deadline).

    Finite, > 0 and at most :data:`~respkv._options.MAX_TIMEOUT`; ``bool`` is refused
    (``timeout=True`` is a bug, not one second)."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(
            f"timeout must be a number of seconds or None, not {type(timeout).__name__}"
        )
    value = float(timeout)
    if not 0 < value <= MAX_TIMEOUT:  # also False for nan
        raise ValueError(
            f"timeout must be > 0 and at most MAX_TIMEOUT ({MAX_TIMEOUT:g} s), got {timeout}"
        )
    return value


def check_ttl(ttl: object) -> int | None:
    """A SET batch's ``ttl=`` (seconds) as the milliseconds of ``SET ... PX``, or
    ``None`` (no expiry).

    Finite, > 0 and at most :data:`MAX_TTL`; ``bool`` is refused. Rounded to the
    nearest millisecond, at least 1 (``PX 0`` is an error reply)."""
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)):
        raise TypeError(f"ttl must be a number of seconds or None, not {type(ttl).__name__}")
    value = float(ttl)
    if not 0 < value <= MAX_TTL:  # also False for nan
        raise ValueError(f"ttl must be > 0 and at most MAX_TTL ({MAX_TTL:g} s), got {ttl}")
    return max(1, round(value * 1000.0))


@dataclass(frozen=True, slots=True)
class Submission:
    """One batch's submit arguments, checked: what every connector's ``submit_batch_*``
    works from. ``views`` is ``None`` for EXISTS/DELETE; ``ttl`` (seconds) and ``ttl_ms``
    (for ``SET ... PX``) only ever for SET."""

    op: Op
    keys: list[bytes]
    views: list[memoryview] | None
    timeout: float | None
    ttl: float | None = None
    ttl_ms: int | None = None


def check_submission(
    op: Op,
    keys: Sequence[object],
    buffers: Sequence[BufferLike] | None = None,
    *,
    timeout: object = None,
    ttl: object = None,
) -> Submission:
    """The contract's one submit-time check, in one order for every connector: timeout,
    ttl, keys, then buffers (writable for GET). Raises before any I/O."""
    seconds = check_timeout(timeout)
    ttl_ms = check_ttl(ttl)
    k = check_keys(keys)
    views = None
    if buffers is not None:
        views = check_buffers(buffers, len(k), writable=op is Op.GET)
    ttl_seconds = None if ttl_ms is None else float(cast("float", ttl))
    return Submission(op, k, views, seconds, ttl_seconds, ttl_ms)
