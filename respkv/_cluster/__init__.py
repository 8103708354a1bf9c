"""Redis Cluster / Valkey Cluster support: the router and its parts.

The public names are re-exported by :mod:`respkv.cluster`; see ``docs/cluster.md``.

* :mod:`~respkv._cluster.slots`: key to hash slot (CRC16, hash tags), keys to owners;
* :mod:`~respkv._cluster.options`: :class:`ClusterOptions` (seeds, redirect bounds);
* :mod:`~respkv._cluster.topology`: the slot map from ``CLUSTER SHARDS`` / ``SLOTS``;
* :mod:`~respkv._cluster.link`: a blocking node link whose failures are data;
* :mod:`~respkv._cluster.batch`: the router's per-batch records, redirect parsing;
* :mod:`~respkv._cluster.router`: :class:`ClusterConnector`, the Connector itself:
  routing, the router thread, the lifecycle;
* :mod:`~respkv._cluster.results`: how each key's result is settled (redirects,
  retries, bounds, early ends);
* :mod:`~respkv._cluster.slowpath`: the map-refresh and ASK threads;
* :mod:`~respkv._cluster.scan`: every master's keys and sizes (usage recovery);
* :mod:`~respkv._cluster.admin`: the clients' admin calls on a cluster.
"""
