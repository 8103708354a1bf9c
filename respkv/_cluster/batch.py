"""The router's records: a caller's batch, the parts sent to masters, and redirect replies.

A caller's batch (:class:`Parent`) keeps one state per key:

* ``SENT``: inside a :class:`Part`, a sub-batch submitted to one master's connector;
* ``HELD``: kept by the router itself: waiting for a slot map, for a retry after
  TRYAGAIN/CLUSTERDOWN, or queued for the ASK path;
* ``ASKING``: on the ASK path right now (a blocking call on another thread that may
  be writing into the key's buffer);
* ``DONE``: its status and failure are final.

The batch completes when its last key is ``DONE``. That is also the buffer rule: every
part's completion has been drained from its connector (whose workers have then let go
of the buffers) and no ASK call is running, so nothing touches the caller's buffers
after the router queues the completion.

Redirect replies are parsed here: ``MOVED <slot> <host>:<port>`` and ``ASK <slot>
<host>:<port>``, where an empty host (Redis 7 with an unknown preferred endpoint) means
the host of the node that sent the reply.
"""

from __future__ import annotations

import time
from typing import Final

from respkv._cluster.options import format_address, parse_address
from respkv._contract import KeyStatus, Op
from respkv._failure import ErrorKind, Failure
from respkv.errors import ConfigError

__all__ = [
    "ASKING",
    "DONE",
    "HELD",
    "REDIRECT_CODES",
    "RETRY_CODES",
    "SENT",
    "Parent",
    "Part",
    "parse_redirect",
]

SENT: Final = 0
HELD: Final = 1
ASKING: Final = 2
DONE: Final = 3

#: Server error codes that move a key to another node.
REDIRECT_CODES: Final = frozenset({"MOVED", "ASK"})
#: Server error codes that are retried on the same route after a pause.
RETRY_CODES: Final = frozenset({"TRYAGAIN", "CLUSTERDOWN"})


class Parent:
    """One batch as the caller submitted it, with its per-key results so far."""

    __slots__ = (
        "batch_id", "deadline", "ended", "failures", "hops", "keys", "op", "open",
        "parts", "retries", "state", "statuses", "timeout", "ttl", "views",
    )  # fmt: skip

    def __init__(
        self,
        batch_id: int,
        op: Op,
        keys: list[bytes],
        views: list[memoryview] | None,
        timeout: float | None,
        *,
        ttl: float | None = None,
    ) -> None:
        n = len(keys)
        self.batch_id = batch_id
        self.op = op
        self.keys = keys
        self.views = views
        self.timeout = timeout
        #: SET: the keys' expiry in seconds (validated), handed to every inner submit.
        self.ttl = ttl
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.statuses: list[KeyStatus] = [KeyStatus.CANCELLED] * n
        self.failures: list[Failure | None] = [None] * n
        self.state = [SENT] * n
        self.open = n
        self.parts: set[Part] = set()
        #: How the batch was ended early (CANCELLED, DEADLINE or CLOSED), if it was.
        self.ended: ErrorKind | None = None
        #: Redirects and retries per key, made on first use (most batches never need them).
        self.hops: bytearray | None = None
        self.retries: bytearray | None = None

    def remaining(self) -> float | None:
        """Seconds left before the batch's deadline (``None``: no deadline)."""
        return None if self.deadline is None else self.deadline - time.monotonic()

    def ended_failure(self, address: str = "", in_flight: bool = False) -> Failure:
        """The failure of a key that did not finish because the batch ended early."""
        kind = self.ended or ErrorKind.CLOSED
        timeout = (self.timeout or 0.0) if kind is ErrorKind.DEADLINE else 0.0
        return Failure(kind, address, timeout=timeout, in_flight=in_flight)

    def count_hop(self, i: int) -> int:
        if self.hops is None:
            self.hops = bytearray(len(self.keys))
        self.hops[i] = min(self.hops[i] + 1, 255)
        return self.hops[i]

    def count_retry(self, i: int) -> int:
        if self.retries is None:
            self.retries = bytearray(len(self.keys))
        self.retries[i] = min(self.retries[i] + 1, 255)
        return self.retries[i]


class Part:
    """The keys of one parent sent to one master's connector as one inner batch."""

    __slots__ = ("indices", "inner_id", "node", "parent")

    def __init__(self, parent: Parent, node: object, indices: list[int] | range) -> None:
        self.parent = parent
        self.node = node
        self.indices = indices
        self.inner_id = 0


def parse_redirect(reply: str, from_address: str) -> tuple[int, str] | None:
    """``(slot, "host:port")`` from a MOVED/ASK reply, or ``None`` if it is malformed."""
    parts = reply.split()
    if len(parts) != 3 or not parts[1].isdigit():
        return None
    target = parts[2]
    try:
        if target.startswith(":"):
            host = parse_address(from_address)[0]
            _, port = parse_address("h" + target)
        else:
            host, port = parse_address(target)
    except ConfigError:
        return None
    return int(parts[1]), format_address(host, port)
