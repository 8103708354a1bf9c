"""How the router settles each key: results from the masters' connectors and the ASK path.

:class:`RouterCore` is the half of :class:`~respkv._cluster.router.ClusterConnector` that
turns one inner completion into per-key outcomes, every method called with the router's
lock held:

* an OK or MISS is written at the caller's index (a whole-batch part that is all OK
  becomes the caller's completion as it is);
* ``MOVED``: the slot map is patched at once (the next batch goes to the new owner even
  if this key has used up its redirects), a refresh is asked for, and the key is
  re-routed with the other keys of the same completion;
* ``ASK``: the key goes to the ASK path (:mod:`respkv._cluster.slowpath`);
* ``TRYAGAIN`` / ``CLUSTERDOWN``: the key waits for a retry timer (one timer per pause
  for all keys of a completion), then takes the route of that moment;
* past ``max_redirects`` / ``cluster_retries`` the key ends with the last reply as its
  failure (SERVER_ERROR, the server's text verbatim): a bound, never a loop;
* a batch ended early (``cancel``, deadline, ``close``) redirects nothing: its keys end
  with the batch's own failure kind; an inner CANCELLED caused by the router's deadline
  becomes ``DEADLINE`` with the batch's timeout;
* a connection failure marks the node suspect (refreshes start) and is final.

The batch completes when its last key is settled (see :mod:`respkv._cluster.batch`).
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import Final

from respkv._cluster.batch import (
    DONE,
    HELD,
    REDIRECT_CODES,
    RETRY_CODES,
    Parent,
    Part,
    parse_redirect,
)
from respkv._cluster.options import ClusterOptions
from respkv._cluster.slowpath import AskJob, SlowPaths
from respkv._contract import Completion, Connector, KeyStatus, make_completion
from respkv._failure import ErrorKind, Failure
from respkv._pyengine.notifier import Notifier

__all__ = ["RETRY_BACKOFF_MAX", "RETRY_BACKOFF_MIN", "SUSPECT_KINDS", "Next", "Node", "RouterCore"]

#: First and longest pause before retrying a key answered TRYAGAIN/CLUSTERDOWN.
RETRY_BACKOFF_MIN: Final = 0.05
RETRY_BACKOFF_MAX: Final = 1.0
#: Failure kinds that make a node suspect (its connection could not be used).
SUSPECT_KINDS: Final = frozenset(
    {ErrorKind.CONNECT_FAILED, ErrorKind.CONNECTION_LOST, ErrorKind.TIMED_OUT}
)
TIMER_RETRY: Final = 0
TIMER_DEADLINE: Final = 1


class Next:
    """What one completion's keys need next: re-routing (MOVED), or a retry after a pause."""

    __slots__ = ("moved", "retry")

    def __init__(self) -> None:
        self.moved: list[int] = []
        self.retry: dict[float, list[int]] = {}


class Node:
    """One master's connector and what the router tracks about it."""

    __slots__ = ("address", "conn", "keys_sent", "parts")

    def __init__(self, address: str, conn: Connector) -> None:
        self.address = address
        self.conn = conn
        self.parts = 0
        self.keys_sent = 0


class RouterCore:
    """The router's state and its result handling (the lock is held in every method)."""

    options: ClusterOptions
    stats: dict[str, int]
    _lock: threading.Lock
    _closed: bool
    _parents: dict[int, Parent]
    _parts: dict[tuple[Node, int], Part]
    _nodes: dict[str, Node]
    _retired: list[Node]
    _owners: list[str | None] | None
    _single: str | None
    _suspects: set[str]
    _timers: list[tuple[float, int, int, Parent, list[int]]]
    _seq: itertools.count[int]
    _done: deque[Completion]
    _flag: Notifier
    _wake: Notifier
    _fds_dirty: bool
    _slow: SlowPaths

    def _route(self, parent: Parent, indices: list[int] | range) -> None:
        raise NotImplementedError  # ClusterConnector routes

    def _on_inner(self, node: Node, c: Completion) -> None:
        part = self._parts.pop((node, c.batch_id), None)
        if part is None:
            return  # not ours (cannot happen: every inner batch is registered)
        node.parts -= 1
        if node.parts == 0 and node in self._retired:
            self._fds_dirty = True
        parent = part.parent
        parent.parts.discard(part)
        if c.ok and parent.ended is None:
            if node.address in self._suspects:
                self._suspects.discard(node.address)
            indices = part.indices
            if len(indices) == parent.open == len(parent.keys):
                self._complete(parent, c.statuses, c.failures)
                return
            # Every key of the part is OK or MISS: statuses in place, no failures.
            statuses, state = parent.statuses, parent.state
            for i, s in zip(indices, c.statuses):
                statuses[i] = s
                state[i] = DONE
            parent.open -= len(indices)
            if parent.open == 0:
                self._complete(parent, statuses, parent.failures)
            return
        nxt = Next()
        for j, i in enumerate(part.indices):
            self._on_key(parent, i, c.statuses[j], c.failures[j], address=node.address, nxt=nxt)
        self._follow(parent, nxt)

    def _follow(self, parent: Parent, nxt: Next) -> None:
        """Re-route the keys a result moved, and schedule its retries (one timer per pause)."""
        if nxt.moved and parent.ended is None:
            self._route(parent, nxt.moved)
        for delay, indices in nxt.retry.items():
            self._add_timer(time.monotonic() + delay, TIMER_RETRY, parent, indices)

    def _on_key(
        self,
        parent: Parent,
        i: int,
        status: KeyStatus,
        f: Failure | None,
        *,
        address: str,
        nxt: Next,
    ) -> None:
        """One key's result from a node (or the ASK path): final, or redirected."""
        if f is None:
            self._finish(parent, i, status, None)
            return
        kind = f.kind
        if kind is ErrorKind.SERVER_ERROR:
            code = f.code
            if code in REDIRECT_CODES or code in RETRY_CODES:
                if parent.ended is not None:
                    self._finish(parent, i, KeyStatus.CANCELLED, parent.ended_failure(address))
                elif code in REDIRECT_CODES:
                    self._redirect(parent, i, f, code=code, address=address, moved=nxt.moved)
                else:
                    self._retry(parent, i, f, code, nxt)
                return
        elif kind is ErrorKind.DEADLINE or (
            kind is ErrorKind.CANCELLED and parent.ended is ErrorKind.DEADLINE
        ):
            f = Failure(
                ErrorKind.DEADLINE, f.address, timeout=parent.timeout or 0.0, in_flight=f.in_flight
            )
        elif kind in SUSPECT_KINDS:
            self._suspect(f.address or address)
        self._finish(parent, i, status, f)

    def _redirect(
        self, parent: Parent, i: int, f: Failure, *, code: str, address: str, moved: list[int]
    ) -> None:
        target = parse_redirect(f.reply, f.address or address)
        if target is None:  # a malformed redirect is just a server error
            self._finish(parent, i, KeyStatus.SERVER_ERROR, f)
            return
        slot, to = target
        self.stats["moved" if code == "MOVED" else "ask"] += 1
        if code == "MOVED" and self._owners is not None and self._owners[slot] != to:
            self._owners[slot] = to  # the next batch goes there at once, limit or not
            self._single = None
            self._slow.request_refresh(0.0)
        if parent.count_hop(i) > self.options.max_redirects:
            self.stats["redirect_limit"] += 1
            self._finish(parent, i, KeyStatus.SERVER_ERROR, f)
            return
        parent.state[i] = HELD
        if code == "ASK":
            self._slow.ask(AskJob(parent, i, to))
        else:
            moved.append(i)

    def _retry(self, parent: Parent, i: int, f: Failure, code: str, nxt: Next) -> None:
        self.stats[code.lower()] += 1
        n = parent.count_retry(i)
        if n > self.options.cluster_retries:
            self.stats["retry_limit"] += 1
            self._finish(parent, i, KeyStatus.SERVER_ERROR, f)
            return
        if code == "CLUSTERDOWN":
            self._slow.request_refresh(0.0)
        parent.state[i] = HELD
        delay = min(RETRY_BACKOFF_MIN * (2 ** (n - 1)), RETRY_BACKOFF_MAX)
        nxt.retry.setdefault(delay, []).append(i)

    def _suspect(self, address: str) -> None:
        if address not in self._suspects:
            self._suspects.add(address)
            self._slow.request_refresh(0.0)

    def _finish(self, parent: Parent, i: int, status: KeyStatus, f: Failure | None) -> None:
        if parent.state[i] == DONE:
            return
        parent.state[i] = DONE
        parent.statuses[i] = status if f is None else f.status
        parent.failures[i] = f
        parent.open -= 1
        if parent.open == 0:
            self._complete(parent, parent.statuses, parent.failures)

    def _finish_rest(self, parent: Parent, f: Failure) -> None:
        for i, state in enumerate(parent.state):
            if state != DONE:
                self._finish(parent, i, f.status, f)

    def _complete(
        self,
        parent: Parent,
        statuses: Sequence[KeyStatus],
        failures: Sequence[Failure | None],
    ) -> None:
        parent.open = 0
        self._parents.pop(parent.batch_id, None)
        self._done.append(make_completion(parent.batch_id, parent.op, statuses, failures))
        self._flag.set()

    def _end(self, parent: Parent, kind: ErrorKind, *, cancel_parts: bool = True) -> None:
        """End ``parent`` early: held keys now, keys in flight through their connector."""
        parent.ended = kind
        for i, state in enumerate(parent.state):
            if state == HELD:
                self._finish(parent, i, KeyStatus.CANCELLED, parent.ended_failure())
        if cancel_parts:
            for part in list(parent.parts):
                part.node.conn.cancel(part.inner_id)  # type: ignore[attr-defined]

    def _add_timer(self, when: float, kind: int, parent: Parent, indices: list[int]) -> None:
        first = not self._timers or when < self._timers[0][0]
        heapq.heappush(self._timers, (when, next(self._seq), kind, parent, indices))
        if first:
            self._wake.set()
