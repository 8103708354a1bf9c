"""The cluster router: one :class:`~respkv.Connector` over one connector per master.

The plan. A submitted batch is validated once (the very checks the engines run), its
keys are mapped to hash slots (:mod:`respkv._cluster.slots`) and slots to masters (the
slot map, :mod:`respkv._cluster.topology`), and each master's share goes to that
master's own connector (native or pure, chosen as for a single server) as one inner
batch, all submitted at once from the caller's thread. Tiling over workers, windows,
reconnects and op deadlines stay inside those connectors. A router thread
(``respkv-cluster``) waits on every inner event fd, drains inner completions, writes
each key's result into the caller's batch at the caller's index, and queues exactly
one :class:`~respkv.Completion` per batch on its own event fd when the last key is in.

Redirects come back as data: a key failed with ``Failure(kind=SERVER_ERROR)`` whose
code (the reply's first word) is ``MOVED`` (the map is patched and the key re-routed),
``ASK`` (the key is being migrated: ``ASKING`` plus the command on a dedicated link, see
:mod:`respkv._cluster.slowpath`, since the connectors have no per-key pre-command and
ASK only happens while a slot migrates), or ``TRYAGAIN`` / ``CLUSTERDOWN`` (retried
after a backoff). Each is bounded per key (``max_redirects``, ``cluster_retries``) and
reported as the last reply once the bound is passed; every other failure is final and
passed through unchanged. A connection failure is not retried (a write in flight has an
unknown outcome, and a failover takes seconds); it starts slot-map refreshes, so the
batches after a failover go to the promoted replica. The per-key rules are in
:mod:`respkv._cluster.results`; this module routes, runs the thread and the lifecycle.

Deadlines and cancel. A batch's ``timeout=`` is handed to each inner submit as the
time left, and a router timer ends the keys the router itself holds (waiting for a map,
a retry or the ASK path) when it passes; keys in flight then end through their
connector's own deadline, or through ``cancel`` of their inner batch. ``cancel()`` does
the same at once. Either way the completion waits for every inner completion (the
buffer rule), which the connectors deliver promptly.

Locking. One lock guards the router's state; inner submits and cancels (non-blocking)
run under it, so an inner completion is never drained before its part is registered.
Blocking work (reading the slot map, ASK calls, closing retired connectors) runs on the
slow-path threads, never under the lock.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import selectors
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from typing import Final

from respkv._backend import select_backend
from respkv._cluster.batch import (
    ASKING,
    HELD,
    SENT,
    Parent,
    Part,
)
from respkv._cluster.options import ClusterOptions
from respkv._cluster.results import TIMER_DEADLINE, Next, Node, RouterCore
from respkv._cluster.scan import scan_key_sizes
from respkv._cluster.slots import owners_of
from respkv._cluster.slowpath import AskJob, SlowPaths
from respkv._cluster.topology import Topology
from respkv._compat import BufferLike
from respkv._contract import Completion, Connector, KeyLike, KeyStatus, Op
from respkv._failure import ErrorKind, Failure
from respkv._options import ConnectionOptions
from respkv._pyengine.notifier import Notifier
from respkv._validate import CheckedKeys, Submission, check_submission
from respkv.errors import ConnectionClosedError, ForkedError

__all__ = ["ClusterConnector", "NodeFactory", "node_factory_for"]

NodeFactory = Callable[[ConnectionOptions], Connector]
log = logging.getLogger("respkv.cluster")

_FORKED: Final = (
    "cluster connector used in a process forked from the one that opened it; "
    "a child process must connect anew (respkv.connect after the fork)"
)
#: Up to this many masters in one batch, each master's keys are picked by one list
#: comprehension over the batch (C-speed passes); beyond it, one dict pass is cheaper.
SPLIT_SCAN_MAX: Final = 8


def node_factory_for(backend: str) -> NodeFactory:
    """The connector class for one master on ``backend`` (``native`` or ``python``)."""
    if backend == "native":
        from respkv._native import NativeConnector

        return NativeConnector
    from respkv._pyengine import PyConnector

    return PyConnector


class ClusterConnector(RouterCore):
    """The Connector contract over a Redis/Valkey Cluster. Thread-safe."""

    def __init__(
        self,
        options: ClusterOptions,
        *,
        backend: str | None = None,
        node_factory: NodeFactory | None = None,
    ) -> None:
        if not isinstance(options, ClusterOptions):
            raise TypeError(f"ClusterConnector needs ClusterOptions, not {type(options).__name__}")
        self.options = options
        if node_factory is None:
            self.backend = select_backend(backend, tls=options.tls is not None).name
            node_factory = node_factory_for(self.backend)
        else:
            self.backend = getattr(node_factory, "__name__", "custom")
        self._factory = node_factory
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._next_id = 1
        self._closed = False
        self._parents: dict[int, Parent] = {}
        self._parts: dict[tuple[Node, int], Part] = {}
        self._nodes: dict[str, Node] = {}
        self._retired: list[Node] = []
        self._owners: list[str | None] | None = None
        #: The one master serving all 16384 slots, if the map says so (no hashing then).
        self._single: str | None = None
        self._topology: Topology | None = None
        self._waiting: list[tuple[Parent, list[int]]] = []
        self._timers: list[tuple[float, int, int, Parent, list[int]]] = []
        self._seq = itertools.count()
        self._suspects: set[str] = set()
        self._done: deque[Completion] = deque()
        self._flag = Notifier()
        self._wake = Notifier()
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._wake.fileno(), selectors.EVENT_READ, None)
        self._registered: dict[Node, int] = {}
        self._fds_dirty = False
        self._stopping = False
        #: Counters for tests and ``respkv bench``: redirects seen, retries, refreshes.
        self.stats: dict[str, int] = dict.fromkeys(
            ("moved", "ask", "tryagain", "clusterdown", "redirect_limit", "retry_limit",
             "refreshes", "refresh_failures", "batches", "split_batches"), 0,
        )  # fmt: skip
        self._slow = SlowPaths(self)
        self._thread = threading.Thread(target=self._run, name="respkv-cluster", daemon=True)
        self._thread.start()
        self._slow.start()
        self._slow.request_refresh(0.0)

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._nodes)} masters"
        return f"ClusterConnector({','.join(self.options.seeds)}, {self.backend}, {state})"

    # -- the contract --------------------------------------------------------------

    def event_fd(self) -> int:
        self._check_pid()
        return self._flag.fileno()

    def submit_batch_set(
        self,
        keys: Sequence[KeyLike],
        buffers: Sequence[BufferLike],
        *,
        timeout: float | None = None,
        ttl: float | None = None,
    ) -> int:
        self._check_open()
        return self._submit_checked(
            check_submission(Op.SET, keys, buffers, timeout=timeout, ttl=ttl)
        )

    def submit_batch_get(
        self,
        keys: Sequence[KeyLike],
        buffers: Sequence[BufferLike],
        *,
        timeout: float | None = None,
    ) -> int:
        self._check_open()
        return self._submit_checked(check_submission(Op.GET, keys, buffers, timeout=timeout))

    def submit_batch_exists(self, keys: Sequence[KeyLike], *, timeout: float | None = None) -> int:
        self._check_open()
        return self._submit_checked(check_submission(Op.EXISTS, keys, timeout=timeout))

    def submit_batch_delete(self, keys: Sequence[KeyLike], *, timeout: float | None = None) -> int:
        self._check_open()
        return self._submit_checked(check_submission(Op.DELETE, keys, timeout=timeout))

    def _submit_checked(self, s: Submission) -> int:
        # ttl in seconds: each node's connector checks it again when a part is submitted.
        return self._submit(s.op, s.keys, s.views, s.timeout, s.ttl)

    def cancel(self, batch_id: int) -> bool:
        self._check_pid()
        with self._lock:
            parent = self._parents.get(batch_id)
            if parent is None:
                return False
            if parent.ended is None:
                self._end(parent, ErrorKind.CANCELLED)
            return True

    def drain_completions(self) -> list[Completion]:
        self._check_pid()
        self._flag.clear()
        done = self._done
        out: list[Completion] = []
        while done:
            out.append(done.popleft())
        return out

    def engine_stats(self) -> dict[str, int]:
        """The connection counters of the current masters' connectors, summed (the
        optional ``engine_stats`` of the engines; connectors without it count 0)."""
        self._check_pid()
        with self._lock:
            conns = [node.conn for node in self._nodes.values()]
        total: Counter[str] = Counter()
        for conn in conns:
            stats = getattr(conn, "engine_stats", None)
            if stats is not None:
                total.update(stats())
        return dict(total)

    def close(self) -> None:
        if os.getpid() != self._pid:
            self._close_in_child()
            return
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for parent in list(self._parents.values()):
                if parent.ended is None:
                    self._end(parent, ErrorKind.CLOSED, cancel_parts=False)
        self._slow.stop()
        for node in self._all_nodes():
            node.conn.close()
        self._stopping = True
        self._wake.set()
        self._thread.join()
        self._slow.close_pending()  # retired by the router thread after the slow paths stopped
        with self._lock:
            for node in self._all_nodes():
                for c in node.conn.drain_completions():
                    self._on_inner(node, c)
            for parent in list(self._parents.values()):  # defensive: nothing may stay open
                self._finish_rest(parent, parent.ended_failure())
        self._selector.close()
        self._wake.close()
        self._flag.set()  # wake a thread waiting on the event fd (the contract's close rule)
        self._flag.close()

    # -- information -----------------------------------------------------------------

    @property
    def topology(self) -> Topology | None:
        """The last slot map read from the cluster (``None`` before the first)."""
        return self._topology

    def masters(self) -> list[str]:
        """Addresses of the masters the router sends to now."""
        with self._lock:
            return list(self._nodes)

    def node_keys(self) -> dict[str, int]:
        """Keys sent to each master's connector so far (per-node figures for benchmarks)."""
        with self._lock:
            return {n.address: n.keys_sent for n in self._all_nodes()}

    def scan_key_sizes(self, match: bytes, count: int = 1000) -> Iterator[tuple[bytes, int]]:
        """``(key, size)`` for every key matching the glob ``match`` on every master (SCAN
        on each, STRLEN pipelined; -1 for a key that is not a string). For usage
        recovery (:mod:`respkv._cluster.scan`); raises ConnectionError for a master that
        cannot be read."""
        self._check_open()
        if self._topology is None:
            self.wait_ready()
        masters = self.masters()
        if not masters:
            raise ConnectionError("no slot map: no cluster node could be reached")
        return scan_key_sizes(self.options, masters, match, count)

    def wait_ready(self, timeout: float = 10.0) -> bool:
        """Block until a slot map has been read (``True``) or ``timeout`` passes."""
        return self._slow.wait_topology(timeout)

    # -- submit and route (lock held from _submit on) ----------------------------------

    def _check_pid(self) -> None:
        if os.getpid() != self._pid:
            raise ForkedError(_FORKED)

    def _check_open(self) -> None:
        self._check_pid()
        if self._closed:
            raise ConnectionClosedError("connector is closed")

    def _submit(
        self,
        op: Op,
        keys: list[bytes],
        views: list[memoryview] | None,
        timeout: float | None,
        ttl: float | None = None,
    ) -> int:
        with self._lock:
            if self._closed:
                raise ConnectionClosedError("connector is closed")
            parent = Parent(self._next_id, op, keys, views, timeout, ttl=ttl)
            self._next_id += 1
            self._parents[parent.batch_id] = parent
            self.stats["batches"] += 1
            if parent.deadline is not None:
                self._add_timer(parent.deadline, TIMER_DEADLINE, parent, [])
            self._route(parent, range(len(keys)))
            return parent.batch_id

    def _route(self, parent: Parent, indices: list[int] | range) -> None:
        """Send ``parent``'s keys at ``indices`` to their masters (or hold them)."""
        owners = self._owners
        if owners is None or not self._nodes:
            for i in indices:
                parent.state[i] = HELD
            self._waiting.append((parent, list(indices)))
            self._slow.request_refresh(0.0)
            return
        if self._single is not None:  # one master serves every slot: nothing to split
            self._send(parent, self._single, indices)
            return
        keys = parent.keys
        whole = isinstance(indices, range) and len(indices) == len(keys)
        addrs = owners_of(keys if whole else [keys[i] for i in indices], owners)
        if None in addrs:  # unowned slots go to any master, which answers CLUSTERDOWN
            fallback = next(iter(self._nodes))
            addrs = [a or fallback for a in addrs]
        targets: set[str] = set(addrs)  # type: ignore[arg-type]  # no None left
        if len(targets) == 1:
            self._send(parent, next(iter(targets)), indices)
            return
        self.stats["split_batches"] += 1
        if len(targets) <= SPLIT_SCAN_MAX:
            for addr in targets:
                self._send(parent, addr, [indices[j] for j, a in enumerate(addrs) if a == addr])
            return
        groups: dict[str, list[int]] = {}
        for j, a in enumerate(addrs):
            groups.setdefault(a, []).append(indices[j])  # type: ignore[arg-type]
        for addr, idxs in groups.items():
            self._send(parent, addr, idxs)

    def _send(self, parent: Parent, address: str, indices: list[int] | range) -> None:
        node = self._nodes.get(address) or self._add_node(address)
        remaining = parent.remaining()
        if remaining is not None and remaining <= 0:
            self._end(parent, ErrorKind.DEADLINE)
            for i in indices:
                self._finish(parent, i, KeyStatus.TIMEOUT, parent.ended_failure(address))
            return
        whole = isinstance(indices, range) and len(indices) == len(parent.keys)
        keys = parent.keys if whole else CheckedKeys(map(parent.keys.__getitem__, indices))
        views = parent.views
        if views is not None and not whole:
            views = list(map(views.__getitem__, indices))
        part = Part(parent, node, indices)
        try:
            part.inner_id = self._inner_submit(
                node.conn, parent.op, keys, views, remaining, ttl=parent.ttl
            )
        except ConnectionClosedError:
            failure = (
                parent.ended_failure(address)
                if self._closed
                else Failure(ErrorKind.INTERNAL, address, detail="the node's connector was closed")
            )
            for i in indices:
                self._finish(parent, i, failure.status, failure)
            return
        for i in indices:
            parent.state[i] = SENT
        self._parts[(node, part.inner_id)] = part
        parent.parts.add(part)
        node.parts += 1
        node.keys_sent += len(indices)

    @staticmethod
    def _inner_submit(
        conn: Connector,
        op: Op,
        keys: list[bytes],
        views: list[memoryview] | None,
        timeout: float | None,
        *,
        ttl: float | None = None,
    ) -> int:
        if op is Op.SET:
            assert views is not None
            if ttl is not None:  # a redirected key's expiry runs from its resend
                return conn.submit_batch_set(keys, views, timeout=timeout, ttl=ttl)
            return conn.submit_batch_set(keys, views, timeout=timeout)
        if op is Op.GET:
            assert views is not None
            return conn.submit_batch_get(keys, views, timeout=timeout)
        if op is Op.EXISTS:
            return conn.submit_batch_exists(keys, timeout=timeout)
        return conn.submit_batch_delete(keys, timeout=timeout)

    def _add_node(self, address: str) -> Node:
        node = Node(address, self._factory(self.options.node_options(address)))
        self._nodes[address] = node
        self._fds_dirty = True
        self._wake.set()
        return node

    # -- the router thread -----------------------------------------------------------

    def _run(self) -> None:
        select = self._selector.select
        while not self._stopping:
            if self._fds_dirty:
                self._sync_selector()
            timers = self._timers
            timeout = None if not timers else max(0.0, timers[0][0] - time.monotonic())
            events = select(timeout)
            with self._lock:
                try:
                    for key, _ in events:
                        node = key.data
                        if node is None:
                            self._wake.clear()
                            continue
                        for c in node.conn.drain_completions():
                            self._on_inner(node, c)
                    self._run_timers()
                except Exception:  # a bug must not stop the thread every batch depends on
                    log.exception("respkv cluster router: error while handling completions")

    def _run_timers(self) -> None:
        timers = self._timers
        now = time.monotonic()
        while timers and timers[0][0] <= now:
            _, _, kind, parent, indices = heapq.heappop(timers)
            if parent.open == 0:
                continue
            if kind == TIMER_DEADLINE:
                if parent.ended is None:
                    self._end(parent, ErrorKind.DEADLINE)
                continue
            ready = [i for i in indices if parent.state[i] == HELD]
            if ready and parent.ended is None:
                self._route(parent, ready)

    def _sync_selector(self) -> None:
        with self._lock:
            self._fds_dirty = False
            wanted = set(self._nodes.values())
            closing: list[Node] = []
            for n in list(self._retired):
                if n.parts:
                    wanted.add(n)
                else:
                    self._retired.remove(n)
                    closing.append(n)
            for n in list(self._registered):
                if n not in wanted:
                    self._selector.unregister(self._registered.pop(n))
            for n in wanted:
                if n not in self._registered:
                    fd = n.conn.event_fd()
                    self._selector.register(fd, selectors.EVENT_READ, n)
                    self._registered[n] = fd
        for n in closing:
            self._slow.close_later(n.conn)

    def _all_nodes(self) -> list[Node]:
        return [*self._nodes.values(), *self._retired]

    # -- called by the slow paths ------------------------------------------------------

    def refresh_candidates(self) -> tuple[list[str], set[str]]:
        """Where to read the slot map from, in order, and the suspect addresses."""
        with self._lock:
            known = list(self._topology.nodes) if self._topology else []
            suspects = set(self._suspects)
        order = list(dict.fromkeys([*known, *self.options.seeds]))
        order.sort(key=lambda a: a in suspects)  # stable: suspects last
        return order, suspects

    def apply_topology(self, topo: Topology, alive: set[str]) -> bool:
        """Adopt a new slot map; route held keys. True if refreshes should go on."""
        with self._lock:
            if self._closed:
                return False
            self.stats["refreshes"] += 1
            self._topology = topo
            self._owners = list(topo.owners)
            self._single = topo.masters[0] if len(topo.masters) == 1 and not topo.unowned else None
            self._suspects -= alive
            masters = set(topo.masters)
            for address in topo.masters:
                if address not in self._nodes:
                    self._add_node(address)
            for address in [a for a in self._nodes if a not in masters]:
                self._retired.append(self._nodes.pop(address))
                self._fds_dirty = True
            if self._fds_dirty:
                self._wake.set()
            waiting, self._waiting = self._waiting, []
            for parent, indices in waiting:
                ready = [i for i in indices if parent.state[i] == HELD]
                if ready and parent.ended is None:
                    self._route(parent, ready)
            return bool(self._suspects & masters)

    def topology_failed(self, failure: Failure) -> None:
        """No candidate answered: keys waiting for a first slot map fail with why."""
        with self._lock:
            self.stats["refresh_failures"] += 1
            waiting, self._waiting = self._waiting, []
            for parent, indices in waiting:
                for i in indices:
                    if parent.state[i] == HELD:
                        self._finish(parent, i, failure.status, failure)

    def ask_begin(self, job: AskJob) -> tuple[memoryview | None, float | None] | None:
        """The ASK path takes a key: its buffer and time left, or None to skip it."""
        with self._lock:
            parent, i = job.parent, job.index
            if parent.state[i] != HELD:
                return None
            if parent.ended is not None:
                self._finish(parent, i, KeyStatus.CANCELLED, parent.ended_failure(job.address))
                return None
            parent.state[i] = ASKING
            view = parent.views[i] if parent.views is not None else None
            return view, parent.remaining()

    def ask_end(self, job: AskJob, status: KeyStatus, f: Failure | None) -> None:
        """The ASK path's result for a key it took with :meth:`ask_begin`."""
        with self._lock:
            parent, i = job.parent, job.index
            parent.state[i] = HELD
            nxt = Next()
            if f is not None and f.kind is ErrorKind.DEADLINE and parent.ended is None:
                self._end(parent, ErrorKind.DEADLINE)
            self._on_key(parent, i, status, f, address=job.address, nxt=nxt)
            self._follow(parent, nxt)

    def _close_in_child(self) -> None:
        """``close()`` after fork: release the descriptors, join nothing."""
        if self._closed:
            return
        self._closed = True
        for node in self._all_nodes():
            node.conn.close()
        self._slow.close_in_child()
        self._selector.close()
        self._wake.close_in_child()
        self._flag.close_in_child()
