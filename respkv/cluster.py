"""Redis Cluster / Valkey Cluster: slot routing over one connector per master.

Use it through the ordinary entry points with a cluster URL or options::

    import respkv
    with respkv.connect("resp+cluster://10.0.0.1:7000,10.0.0.2:7000") as client:
        client.batch_set(keys, buffers)          # split by slot, sent to all masters at once

or build the connector yourself::

    from respkv.cluster import ClusterConnector, ClusterOptions
    conn = ClusterConnector(ClusterOptions.from_seeds(["127.0.0.1:7000"]))

:class:`ClusterConnector` satisfies the :class:`~respkv.Connector` contract, so
``Client``, ``AsyncClient``, the KV store and the CLI run on it unchanged. How it routes,
follows ``MOVED``/``ASK``, retries ``TRYAGAIN``/``CLUSTERDOWN`` and re-reads the slot map
after a failover is explained in :mod:`respkv._cluster.router` and ``docs/cluster.md``.
A single-server URL never reaches any of this.
"""

from __future__ import annotations

from respkv._cluster.admin import ClusterAdminLink
from respkv._cluster.options import ClusterOptions, format_address, parse_address
from respkv._cluster.router import ClusterConnector, NodeFactory, node_factory_for
from respkv._cluster.slots import SLOT_COUNT, hash_tag, key_slot, slots_of
from respkv._cluster.topology import Shard, Topology, fetch_topology

__all__ = [
    "SLOT_COUNT",
    "ClusterAdminLink",
    "ClusterConnector",
    "ClusterOptions",
    "NodeFactory",
    "Shard",
    "Topology",
    "fetch_topology",
    "format_address",
    "hash_tag",
    "key_slot",
    "node_factory_for",
    "parse_address",
    "slots_of",
]
