"""Usage recovery for the KV store: the keys already under a prefix, with their sizes.

Part of :mod:`respkv.kvstore` (:meth:`~respkv.kvstore.KVStore.recover_usage` uses it).
One SCAN over the whole database (``COUNT`` :data:`SCAN_COUNT` keys per round trip:
O(all keys), not just the prefix's) plus one ``EVAL`` of ``STRLEN`` per page, or one
``STRLEN`` per key where scripts are refused. On a cluster the router walks every master
itself (``ClusterConnector.scan_key_sizes``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

from respkv.client import Client
from respkv.errors import ReplyError

__all__ = ["SCAN_COUNT", "glob_escape", "scan_sizes"]

#: Keys asked for per SCAN round trip during recovery. Redis's default is 10, which
#: makes a scan of a large database take tens of thousands of round trips.
SCAN_COUNT: Final = 1000

#: Sizes of many keys in one round trip; -1 for a key that is not a string.
_STRLEN_SCRIPT: Final = """
local out = {}
for i, k in ipairs(KEYS) do
  local n = redis.pcall('STRLEN', k)
  if type(n) ~= 'number' then n = -1 end
  out[i] = n
end
return out
"""
_GLOB_SPECIAL: Final = frozenset(b"*?[]\\")


def scan_sizes(client: Client, pattern: bytes) -> Iterator[tuple[bytes, int]]:
    """``(server key, size)`` for keys matching ``pattern``; -1: not a string. On a
    cluster the router walks every master (``scan_key_sizes``)."""
    on_every_master = getattr(client.connector, "scan_key_sizes", None)
    if on_every_master is not None:
        yield from on_every_master(pattern, SCAN_COUNT)
        return
    cursor: bytes = b"0"
    while True:
        reply = client.command("SCAN", cursor, "MATCH", pattern, "COUNT", SCAN_COUNT)
        cursor, page = reply[0], list(reply[1])
        if page:
            yield from zip(page, string_sizes(client, page), strict=True)
        if cursor == b"0":
            return


def string_sizes(client: Client, keys: list[bytes]) -> list[int]:
    """STRLEN of each key in one round trip (EVAL), or one by one if scripts are not
    allowed; -1 for a key holding something other than a string."""
    try:
        reply = client.command("EVAL", _STRLEN_SCRIPT, len(keys), *keys)
        return [int(n) for n in reply]
    except ReplyError:
        sizes: list[int] = []
        for key in keys:
            try:
                sizes.append(int(client.command("STRLEN", key)))
            except ReplyError:
                sizes.append(-1)
        return sizes


def glob_escape(prefix: bytes) -> bytes:
    """``prefix`` with SCAN MATCH's special characters escaped."""
    out = bytearray()
    for byte in prefix:
        if byte in _GLOB_SPECIAL:
            out.append(0x5C)  # backslash
        out.append(byte)
    return bytes(out)
