"""The router's slow paths: reading the slot map, and keys redirected with ASK.

Two threads, so that nothing blocking ever runs on the router thread or under its lock:

``respkv-cluster-map``
    Refreshes the slot map when asked (first at start, then on MOVED, CLUSTERDOWN and
    connection failures), at most once per :data:`MIN_REFRESH_INTERVAL`. It asks the
    known nodes first, masters before replicas, then the configured seeds, with
    suspect nodes (recent connection failures) last, and takes the first map it gets
    (:func:`~respkv._cluster.topology.fetch_topology`), so a failed master's slots are
    re-resolved from the nodes that remain. Suspect masters still in the map are
    probed (a connect and handshake); while one stays unreachable, refreshes go on
    every ``DEGRADED_REFRESH_INTERVAL``, so the router follows the promoted replica
    within that interval of the promotion. It also closes the connectors of nodes
    that left the map, once their last batch is drained.

``respkv-cluster-ask``
    Serves ASK redirects one key at a time on a blocking :class:`NodeLink` per target
    node (kept for the next ASK): ``ASKING`` and the key's command in one write, the
    replies read back (a GET straight into the caller's buffer). The ASKING flag of a
    connection applies to its next command only, so two pipelined commands on one
    connection are exactly what the redirection rule asks for. ASK is rare (a slot in
    migration, for the keys already moved), so one thread is enough; its calls are
    bounded by ``op_timeout`` and the batch's deadline.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from respkv._cluster.batch import Parent
from respkv._cluster.link import LinkError, NodeLink
from respkv._cluster.topology import fetch_topology
from respkv._contract import Connector, KeyStatus, Op
from respkv._failure import ErrorKind, Failure
from respkv._validate import check_ttl
from respkv.errors import ReplyError
from respkv.resp2 import FILLED, SizeMismatch, describe_reply

if TYPE_CHECKING:
    from respkv._cluster.router import ClusterConnector

__all__ = ["AskJob", "SlowPaths"]

#: Least time between two slot-map reads (a burst of MOVED replies costs one read).
MIN_REFRESH_INTERVAL: Final = 0.1
#: Deadline of one slot-map read from one node (connect, handshake, CLUSTER SHARDS).
#: Short, so that a dead candidate costs little before the next one is asked.
TOPOLOGY_TIMEOUT: Final = 2.0
#: Seconds between refreshes while a node that owns slots is unreachable. A failover
#: takes ``cluster-node-timeout`` plus an election; this keeps the router at most this
#: far behind the cluster once the replica is promoted, at five map reads a second.
DEGRADED_REFRESH_INTERVAL: Final = 0.2
#: The command each operation becomes on the ASK path (the engines' commands).
_COMMAND: Final = {Op.SET: b"SET", Op.GET: b"GET", Op.EXISTS: b"EXISTS", Op.DELETE: b"UNLINK"}


@dataclass(frozen=True)
class AskJob:
    """Key ``index`` of ``parent``, to be sent to ``address`` after ASKING."""

    parent: Parent
    index: int
    address: str


def interpret(
    op: Op, reply: Any, type_byte: int, view: memoryview | None, address: str
) -> tuple[KeyStatus, Failure | None]:
    """A reply on the ASK path as the key's status and failure."""
    if isinstance(reply, ReplyError):
        return KeyStatus.SERVER_ERROR, Failure(ErrorKind.SERVER_ERROR, address, reply=str(reply))
    if op is Op.GET:
        assert view is not None
        if reply is FILLED or (isinstance(reply, bytes) and len(reply) == view.nbytes == 0):
            return KeyStatus.OK, None
        if reply is None:
            return KeyStatus.MISS, None
        if isinstance(reply, SizeMismatch | bytes):
            actual = reply.length if isinstance(reply, SizeMismatch) else len(reply)
            f = Failure(ErrorKind.SIZE_MISMATCH, address, expected=view.nbytes, actual=actual)
            return KeyStatus.SIZE_MISMATCH, f
    elif op is Op.SET:
        if reply == b"OK":
            return KeyStatus.OK, None
    elif reply in (0, 1) and isinstance(reply, int):
        return (KeyStatus.OK if reply else KeyStatus.MISS), None
    f = Failure(ErrorKind.UNEXPECTED_REPLY, address, reply=describe_reply(reply, type_byte))
    return KeyStatus.SERVER_ERROR, f


class SlowPaths:
    """The map-refresh and ASK threads of one :class:`ClusterConnector`."""

    def __init__(self, router: ClusterConnector) -> None:
        self._router = router
        self._options = router.options
        self._map_cond = threading.Condition()
        self._refresh_at: float | None = None
        self._last_refresh = -MIN_REFRESH_INTERVAL
        self._closing: list[Connector] = []
        self._ask_cond = threading.Condition()
        self._asks: deque[AskJob] = deque()
        self._links: dict[str, NodeLink] = {}
        self._stop = False
        self._first_map = threading.Event()
        self._threads = [
            threading.Thread(target=self._map_loop, name="respkv-cluster-map", daemon=True),
            threading.Thread(target=self._ask_loop, name="respkv-cluster-ask", daemon=True),
        ]
        opts = self._options
        self._map_timeout = min(TOPOLOGY_TIMEOUT, opts.connect_timeout, opts.op_timeout)

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        """Stop both threads (an ASK call in progress finishes first) and join them."""
        with self._map_cond:
            self._stop = True
            self._map_cond.notify_all()
        with self._ask_cond:
            self._ask_cond.notify_all()
        for t in self._threads:
            t.join()
        self.close_pending()

    def close_pending(self) -> None:
        """Close the retired connectors still waiting here (at the end of ``close``)."""
        with self._map_cond:
            closing, self._closing = self._closing, []
        for conn in closing:
            conn.close()

    def close_in_child(self) -> None:
        """After fork: close the links' sockets; no thread exists here to stop."""
        for link in self._links.values():
            link.close()
        self._links.clear()

    # -- the slot map ----------------------------------------------------------------

    def request_refresh(self, delay: float) -> None:
        """Read the slot map again in ``delay`` seconds (or after the rate limit)."""
        with self._map_cond:
            at = max(time.monotonic() + delay, self._last_refresh + MIN_REFRESH_INTERVAL)
            if self._refresh_at is None or at < self._refresh_at:
                self._refresh_at = at
                self._map_cond.notify()

    def close_later(self, conn: Connector) -> None:
        """Close a retired node's connector on this thread (close joins its workers)."""
        with self._map_cond:
            self._closing.append(conn)
            self._map_cond.notify()

    def wait_topology(self, timeout: float) -> bool:
        self._first_map.wait(timeout)
        return self._router.topology is not None

    def _map_loop(self) -> None:
        cond = self._map_cond
        while True:
            with cond:
                while not self._stop and not self._closing:
                    at = self._refresh_at
                    now = time.monotonic()
                    if at is not None and at <= now:
                        break
                    cond.wait(None if at is None else at - now)
                if self._stop:
                    return
                closing, self._closing = self._closing, []
                due = self._refresh_at is not None and self._refresh_at <= time.monotonic()
                if due:
                    self._refresh_at = None
                    self._last_refresh = time.monotonic()
            for conn in closing:
                conn.close()
            if due:
                self._refresh()

    def _refresh(self) -> None:
        router, options = self._router, self._options
        order, suspects = router.refresh_candidates()
        first: Failure | None = None
        for address in order:
            try:
                topo = fetch_topology(
                    options.node_options(address),
                    self._map_timeout,
                    allow_standalone=options.allow_standalone,
                )
            except LinkError as exc:
                first = first or exc.failure
                continue
            alive = {address} | self._probe(suspects & set(topo.masters) - {address})
            if not topo.masters:
                router.topology_failed(
                    Failure(ErrorKind.CONNECT_FAILED, address, detail="no master serves any slot")
                )
            elif router.apply_topology(topo, alive):
                self.request_refresh(DEGRADED_REFRESH_INTERVAL)
            self._first_map.set()
            return
        assert first is not None
        router.topology_failed(first)
        self._first_map.set()

    def _probe(self, addresses: set[str]) -> set[str]:
        alive = set()
        for address in addresses:
            try:
                NodeLink(self._options.node_options(address), self._map_timeout).close()
            except LinkError:
                continue
            alive.add(address)
        return alive

    # -- ASK -------------------------------------------------------------------------

    def ask(self, job: AskJob) -> None:
        with self._ask_cond:
            self._asks.append(job)
            self._ask_cond.notify()

    def _ask_loop(self) -> None:
        cond = self._ask_cond
        try:
            while True:
                with cond:
                    while not self._stop and not self._asks:
                        cond.wait()
                    if self._stop:
                        return
                    job = self._asks.popleft()
                self._serve(job)
        finally:
            with cond:
                left, self._asks = list(self._asks), deque()
            for job in left:  # the batch has ended (close): this finishes the key
                self._router.ask_begin(job)
            for link in self._links.values():
                link.close()
            self._links.clear()

    def _serve(self, job: AskJob) -> None:
        taken = self._router.ask_begin(job)
        if taken is None:
            return
        view, remaining = taken
        parent = job.parent
        op_timeout = self._options.op_timeout
        if remaining is not None and remaining <= 0:
            f = Failure(ErrorKind.DEADLINE, job.address, timeout=parent.timeout or 0.0)
            self._router.ask_end(job, KeyStatus.TIMEOUT, f)
            return
        timeout = op_timeout if remaining is None else min(op_timeout, remaining)
        status, failure = self._call(job, view, timeout)
        if (
            failure is not None
            and failure.kind is ErrorKind.TIMED_OUT
            and remaining is not None
            and remaining < op_timeout
        ):
            failure = Failure(
                ErrorKind.DEADLINE, job.address, timeout=parent.timeout or 0.0, in_flight=True
            )
        self._router.ask_end(job, status, failure)

    def _call(
        self, job: AskJob, view: memoryview | None, timeout: float
    ) -> tuple[KeyStatus, Failure | None]:
        op = job.parent.op
        key = job.parent.keys[job.index]
        address = job.address
        cmd: tuple[object, ...] = (_COMMAND[op], key)
        if op is Op.SET:
            ttl_ms = check_ttl(job.parent.ttl)
            cmd = (_COMMAND[op], key, view) + (() if ttl_ms is None else (b"PX", ttl_ms))
        target = view if op is Op.GET and view is not None and view.nbytes else None
        link = self._links.get(address)
        try:
            if link is None:
                link = NodeLink(self._options.node_options(address), timeout)
                self._links[address] = link
            asking, reply = link.call([(b"ASKING",), cmd], timeout, target)
        except LinkError as exc:
            dropped = self._links.pop(address, None)
            if dropped is not None:
                dropped.close()
            return exc.failure.status, exc.failure
        if isinstance(asking, ReplyError):
            return KeyStatus.SERVER_ERROR, Failure(
                ErrorKind.SERVER_ERROR, address, reply=str(asking)
            )
        return interpret(op, reply, link.types[-1], view, address)
