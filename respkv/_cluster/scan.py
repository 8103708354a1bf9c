"""Every key of a cluster, with its size: ``SCAN`` on each master, ``STRLEN`` pipelined.

On one server, a usage scan is one ``SCAN`` loop plus one ``EVAL`` of ``STRLEN`` per page
(:mod:`respkv.kvstore`). Neither carries over to a cluster: ``SCAN`` only walks the keys
of the node it is sent to, and ``EVAL`` refuses keys of different slots (``CROSSSLOT``),
which one page always has. So here each master is scanned on its own link, and the sizes
of a page are asked with one pipelined ``STRLEN`` per key on that same link (the keys of
a master's page are that master's), a key holding something other than a string
counting as -1.

A master is only scanned if it serves slots in the current map; a replica is never
scanned (it holds copies). A key moved by a resharding while the scan runs may be seen
twice or not at all, as with ``SCAN`` on one server during writes: a usage recovery
counts what it sees and lets later misses correct it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Final

from respkv._cluster.link import LinkError, NodeLink
from respkv._cluster.options import ClusterOptions
from respkv.errors import ReplyError

__all__ = ["SCAN_TIMEOUT", "scan_key_sizes"]

#: Deadline of one SCAN page or one page of STRLEN replies, in seconds.
SCAN_TIMEOUT: Final = 30.0


def _scan_master(
    options: ClusterOptions, address: str, match: bytes, count: int
) -> Iterator[tuple[bytes, int]]:
    try:
        link = NodeLink(options.node_options(address), SCAN_TIMEOUT)
    except LinkError as exc:
        raise ConnectionError(exc.failure.message) from None
    try:
        cursor: bytes = b"0"
        while True:
            (reply,) = link.call(
                [(b"SCAN", cursor, b"MATCH", match, b"COUNT", count)], SCAN_TIMEOUT
            )
            if isinstance(reply, ReplyError):
                raise reply
            cursor, page = reply[0], list(reply[1])
            if page:
                sizes = link.call([(b"STRLEN", k) for k in page], SCAN_TIMEOUT)
                for key, size in zip(page, sizes, strict=True):
                    yield key, size if isinstance(size, int) else -1
            if cursor == b"0":
                return
    except LinkError as exc:
        raise ConnectionError(exc.failure.message) from None
    finally:
        link.close()


def scan_key_sizes(
    options: ClusterOptions, masters: Iterable[str], match: bytes, count: int
) -> Iterator[tuple[bytes, int]]:
    """``(key, STRLEN)`` for every key matching ``match`` on every master in ``masters``.

    Raises ConnectionError when a master cannot be reached or read (recovery must not
    silently count only part of the cluster), ReplyError for an error reply to SCAN."""
    for address in masters:
        yield from _scan_master(options, address, match, count)
