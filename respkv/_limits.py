"""The numbers every layer shares, defined once.

Sizes and limits that more than one layer reads live here, in a module that imports
nothing, so dependencies point one way: the codec (:mod:`respkv.resp2`, which re-exports
the parser limits as part of its public API), the pure engine (:mod:`respkv._pyengine`),
the native engine's configuration (:func:`respkv._native.engine_config` passes each one
to the C++ side at construction: it has no copy of any) and the tests and benchmarks all
import them from here, never from one another.

Per-connection tuning that users choose (windows, timeouts, backoff) is not here: it is
:class:`~respkv.ConnectionOptions`, with its defaults in :mod:`respkv._options`.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "HEADER_RECV",
    "INLINE_VALUE_BYTES",
    "LARGE_VALUE_BYTES",
    "MAX_BULK_BYTES",
    "MAX_DEPTH",
    "MAX_IOV",
    "MAX_LINE_BYTES",
    "MAX_MULTIBULK_LEN",
    "RECV_CHUNK",
]

# -- requests ---------------------------------------------------------------------------

#: Values at least this large count against ``window_values`` (a "large" value: see the
#: windows in :mod:`respkv._pyengine.worker`; measured: benchmarks/bench_windows.py).
LARGE_VALUE_BYTES: Final = 256 * 1024
#: Values (and packed arguments) below this are copied into the request bytes; larger
#: ones are referenced (one iovec beats three below it; both engines and
#: :func:`respkv.resp2.pack_command` use it).
INLINE_VALUE_BYTES: Final = 16 * 1024
#: Most buffers handed to one ``sendmsg`` (Linux's IOV_MAX is 1024).
MAX_IOV: Final = 512

# -- replies ----------------------------------------------------------------------------

#: Bytes the pure engine asks for per receive when not receiving into a caller's buffer
#: (the size of each connection's receive buffer, made once).
RECV_CHUNK: Final = 256 * 1024
#: Bytes asked for when the next reply is a large GET value: enough for its
#: ``$<len>\r\n`` header (and the CRLF of the value before), so that at most this many
#: payload bytes are copied instead of a whole :data:`RECV_CHUNK`.
HEADER_RECV: Final = 64

# -- parser limits (both readers; respkv.resp2 re-exports them) --------------------------

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
