"""The slot map: which master serves each hash slot, read from the cluster itself.

A :class:`Topology` is an immutable snapshot: ``owners[slot]`` is the ``host:port`` of
the master serving ``slot`` (``None`` where no node claims it), plus each master's
replicas for reporting. The router keeps its own mutable copy of ``owners`` that MOVED
replies patch between two snapshots.

Where it comes from (:func:`fetch_topology`):

* ``CLUSTER SHARDS`` (Redis >= 7.0, Valkey): per shard its slot ranges and its nodes,
  each with ``role``, ``health``, ``ip``, ``endpoint``, ``port`` and/or ``tls-port``.
  A node's address is its ``endpoint`` (the one the cluster says clients should use,
  ``cluster-preferred-endpoint-type``), else its ``ip``; ``?`` or empty means "the host
  this reply came from". The port is ``tls-port`` for TLS connections, else ``port``.
* ``CLUSTER SLOTS`` (any cluster version) when SHARDS is unknown: ``[first, last,
  [ip, port, id, ...], replicas...]`` per range, the same rule for an empty ip.
* With ``allow_standalone``, a server that answers "cluster support disabled" (or knows
  no CLUSTER command at all) becomes a one-node map that owns every slot.

The map is read from one node: the first of the candidates that answers. Right after a
failover or a resharding that node's view may lag by a gossip round; a MOVED reply then
corrects the router, and the next refresh catches up.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from respkv._cluster.link import LinkError, NodeLink
from respkv._cluster.options import format_address
from respkv._cluster.slots import SLOT_COUNT
from respkv._failure import ErrorKind, Failure
from respkv._options import ConnectionOptions
from respkv.errors import ReplyError

__all__ = ["Shard", "Topology", "fetch_topology", "parse_shards", "parse_slots"]

#: The error texts that mean "this command does not exist here" (older servers).
_UNKNOWN_COMMAND: Final = ("unknown subcommand", "unknown command")
#: What a server with ``cluster-enabled no`` answers to CLUSTER commands.
_CLUSTER_DISABLED: Final = "cluster support disabled"


@dataclass(frozen=True)
class Shard:
    """One master, the slot ranges it serves and its replicas."""

    master: str
    ranges: tuple[tuple[int, int], ...]
    replicas: tuple[str, ...] = ()


@dataclass(frozen=True)
class Topology:
    """An immutable slot map read from ``source``."""

    shards: tuple[Shard, ...]
    source: str
    standalone: bool = False
    owners: tuple[str | None, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        owners: list[str | None] = [None] * SLOT_COUNT
        for shard in self.shards:
            for lo, hi in shard.ranges:
                owners[lo : hi + 1] = [shard.master] * (hi - lo + 1)
        object.__setattr__(self, "owners", tuple(owners))

    @property
    def masters(self) -> tuple[str, ...]:
        """Masters that serve at least one slot, in the order the cluster listed them."""
        return tuple(dict.fromkeys(s.master for s in self.shards if s.ranges))

    @property
    def nodes(self) -> tuple[str, ...]:
        """Every node named in the map, masters first."""
        reps = [r for s in self.shards for r in s.replicas]
        return tuple(dict.fromkeys([*self.masters, *reps]))

    @property
    def unowned(self) -> int:
        """How many slots no master serves."""
        return sum(1 for o in self.owners if o is None)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _pairs(flat: Sequence[Any]) -> dict[str, Any]:
    """A RESP2 flat ``[key, value, key, value...]`` list as a dict with str keys."""
    return {_text(flat[i]): flat[i + 1] for i in range(0, len(flat) - 1, 2)}


def _host(endpoint: str, ip: str, default_host: str) -> str:
    for h in (endpoint, ip):
        if h and h != "?":
            return h
    return default_host


def _node_address(node: Mapping[str, Any], default_host: str, tls: bool) -> str | None:
    host = _host(_text(node.get("endpoint", "")), _text(node.get("ip", "")), default_host)
    first, second = ("tls-port", "port") if tls else ("port", "tls-port")
    port = node.get(first) or node.get(second)
    if not port:
        return None
    return format_address(host, int(port))


def parse_shards(reply: Sequence[Any], default_host: str, tls: bool) -> list[Shard]:
    """The reply of ``CLUSTER SHARDS`` as shards (masters without slots included)."""
    shards: list[Shard] = []
    for entry in reply:
        info = _pairs(entry)
        flat = [int(x) for x in info.get("slots", [])]
        ranges = tuple((flat[i], flat[i + 1]) for i in range(0, len(flat) - 1, 2))
        master: str | None = None
        replicas: list[str] = []
        for raw in info.get("nodes", []):
            node = _pairs(raw)
            address = _node_address(node, default_host, tls)
            if address is None:
                continue
            if _text(node.get("role", "")) == "master":
                master = address
            else:
                replicas.append(address)
        if master is not None:
            shards.append(Shard(master, ranges, tuple(replicas)))
    return shards


def parse_slots(reply: Sequence[Any], default_host: str, tls: bool) -> list[Shard]:
    """The reply of ``CLUSTER SLOTS`` as shards (one per master, ranges merged)."""
    ranges: dict[str, list[tuple[int, int]]] = {}
    replicas: dict[str, list[str]] = {}
    for entry in reply:
        lo, hi = int(entry[0]), int(entry[1])
        addrs = [
            format_address(_host("", _text(n[0]), default_host), int(n[1]))
            for n in entry[2:]
            if len(n) >= 2 and int(n[1])
        ]
        if not addrs:
            continue
        ranges.setdefault(addrs[0], []).append((lo, hi))
        known = replicas.setdefault(addrs[0], [])
        known.extend(a for a in addrs[1:] if a not in known)
    return [Shard(m, tuple(sorted(r)), tuple(replicas[m])) for m, r in ranges.items()]


def _is(reply: object, texts: Sequence[str]) -> bool:
    return isinstance(reply, ReplyError) and any(t in str(reply).lower() for t in texts)


def fetch_topology(
    options: ConnectionOptions, timeout: float, *, allow_standalone: bool = False
) -> Topology:
    """Read the slot map from the node ``options`` point at; raises LinkError."""
    address = options.address
    tls = options.tls is not None
    link = NodeLink(options, timeout)
    try:
        (reply,) = link.call([("CLUSTER", "SHARDS")], timeout)
        if _is(reply, _UNKNOWN_COMMAND):
            (reply,) = link.call([("CLUSTER", "SLOTS")], timeout)
            shards = (
                None if isinstance(reply, ReplyError) else parse_slots(reply, options.host, tls)
            )
        else:
            shards = (
                None if isinstance(reply, ReplyError) else parse_shards(reply, options.host, tls)
            )
    finally:
        link.close()
    if shards is not None:
        return Topology(tuple(shards), address)
    if allow_standalone and _is(reply, (_CLUSTER_DISABLED, *_UNKNOWN_COMMAND)):
        return Topology((Shard(address, ((0, SLOT_COUNT - 1),)),), address, standalone=True)
    raise LinkError(Failure(ErrorKind.SERVER_ERROR, address, reply=str(reply)))
