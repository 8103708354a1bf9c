"""The clients' administrative helpers on a cluster: keyed commands go to the key's master.

On one server a client keeps one plain connection for everything that is not a bulk
batch (``command``, ``get`` of a value of unknown size, pipelined ``GET`` / ``STRLEN``).
On a cluster that connection would reach one node only, and every key another master
owns would come back ``MOVED``. :class:`ClusterAdminLink` offers the same calls:

* ``get_bytes(keys)`` / ``strlen(keys)`` group the keys by master (the slot map, read
  once and again after a MOVED) and pipeline each group on a link to its master;
* ``command(*args)`` goes to the first master of the map; a ``MOVED`` or ``ASK`` reply
  is followed (``ASKING`` first for ASK), at most ``max_redirects`` times, so a keyed
  command such as ``GET key`` or ``STRLEN key`` reaches its master. Cluster-wide
  commands (``FLUSHALL``, ``INFO``, ``SCAN``) act on that one node, as on one server;
  ``ClusterConnector.scan_key_sizes`` walks every master.

Failures of a link raise ``ConnectionError`` (as the single-server helper's ``OSError``),
error replies raise :class:`~respkv.errors.ReplyError`, and a failed key of a pipelined
call raises :class:`~respkv.errors.ResultError` naming its index.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from respkv._cluster.batch import parse_redirect
from respkv._cluster.link import LinkError, NodeLink
from respkv._cluster.options import ClusterOptions
from respkv._cluster.slots import owners_of
from respkv._cluster.topology import Topology, fetch_topology
from respkv.errors import ReplyError, ResultError

__all__ = ["ClusterAdminLink"]


class ClusterAdminLink:
    """``AdminLink``'s calls on a cluster (thread-safe: one call at a time)."""

    def __init__(self, options: ClusterOptions) -> None:
        self._options = options
        self._timeout = options.op_timeout
        self._lock = threading.Lock()
        self._links: dict[str, NodeLink] = {}
        self._topology: Topology | None = None

    # -- links and the map (lock held) -----------------------------------------------

    def _link(self, address: str) -> NodeLink:
        link = self._links.get(address)
        if link is None:
            try:
                link = NodeLink(self._options.node_options(address), self._timeout)
            except LinkError as exc:
                raise ConnectionError(exc.failure.message) from None
            self._links[address] = link
        return link

    def _call(self, address: str, commands: Sequence[Sequence[object]]) -> list[Any]:
        try:
            return self._link(address).call(commands, self._timeout)
        except LinkError as exc:
            dropped = self._links.pop(address, None)
            if dropped is not None:
                dropped.close()
            raise ConnectionError(exc.failure.message) from None

    def _map(self) -> Topology:
        if self._topology is None:
            first: Exception | None = None
            for seed in self._options.seeds:
                try:
                    self._topology = fetch_topology(
                        self._options.node_options(seed),
                        self._timeout,
                        allow_standalone=self._options.allow_standalone,
                    )
                    break
                except LinkError as exc:
                    first = first or ConnectionError(exc.failure.message)
            if self._topology is None:
                assert first is not None
                raise first
        return self._topology

    def _follow(self, reply: Any, cmd: Sequence[object], source: str) -> Any:
        """``reply``, or the reply at the node a MOVED/ASK names (bounded)."""
        for _ in range(self._options.max_redirects):
            if not isinstance(reply, ReplyError) or reply.prefix not in ("MOVED", "ASK"):
                return reply
            target = parse_redirect(str(reply), source)
            if target is None:
                return reply
            source = target[1]
            if reply.prefix == "MOVED":
                self._topology = None  # read the map again on the next pipelined call
                (reply,) = self._call(source, [cmd])
            else:
                _, reply = self._call(source, [(b"ASKING",), cmd])
        return reply

    # -- AdminLink's interface -------------------------------------------------------

    def command(self, *args: object) -> Any:
        """One command; a MOVED/ASK is followed; an error reply raises ReplyError."""
        with self._lock:
            address = self._map().masters[0]
            (reply,) = self._call(address, [args])
            reply = self._follow(reply, args, address)
        if isinstance(reply, ReplyError):
            raise reply
        return reply

    def _pipelined(self, name: str, keys: list[bytes]) -> list[Any]:
        with self._lock:
            topo = self._map()
            fallback = topo.masters[0]
            owners = [a or fallback for a in owners_of(keys, topo.owners)]
            replies: list[Any] = [None] * len(keys)
            for address in dict.fromkeys(owners):
                idxs = [i for i, a in enumerate(owners) if a == address]
                got = self._call(address, [(name, keys[i]) for i in idxs])
                for i, reply in zip(idxs, got, strict=True):
                    replies[i] = self._follow(reply, (name, keys[i]), address)
        for i, reply in enumerate(replies):
            if isinstance(reply, ReplyError):
                raise ResultError(f"key {i}: {name}: {reply}") from reply
        return replies

    def get_bytes(self, keys: list[bytes]) -> list[bytes | None]:
        """Pipelined GETs per master: ``bytes`` or ``None`` per key, in order."""
        return [v if v is None else bytes(v) for v in self._pipelined("GET", keys)]

    def strlen(self, keys: list[bytes]) -> list[int]:
        """Pipelined STRLENs per master: each value's size (0 when missing)."""
        return [int(n) for n in self._pipelined("STRLEN", keys)]

    def close(self, *, forked: bool = False) -> None:
        """Close every link. ``forked``: in a child, without taking the lock."""
        if forked:
            links, self._links = self._links, {}
        else:
            with self._lock:
                links, self._links = self._links, {}
        for link in links.values():
            link.close()
