"""Redis Cluster: aggregate throughput on 3 masters against one server, and the router's cost.

Contenders, alternating in one run (rotated order every round, medians reported):

* ``single/<backend>``: :class:`respkv.client.Client` on one throwaway server;
* ``cluster/<backend>``: the same client on a throwaway 3-master cluster (no replicas)
  of the same binary on the same machine, through :class:`respkv.cluster.ClusterConnector`
  (one connector per master, each with ``--workers`` workers);

for each backend that loads (native, python), with one batch SET and one batch GET of
4 MiB x 300 and 1 MiB x 900 keys (every GET verified byte for byte outside the timing;
FLUSHALL before every SET, so each SET writes fresh keys). The cluster rows add the
keys and GiB/s each master served during the same batch.

The router's own cost: batches of 1,000 tiny keys (EXISTS, and SET of 16-byte values),
repeated, in keys/s, for a plain connector on the single server, the router over that
*same* server as a one-node map (``allow_standalone``: same engine, same server, only
the router added, so the difference is the router), and the router over 3 masters.

On 2 cores every contender is CPU-bound (server and client share them), so the cluster
cannot show the scaling it has on separate machines; the run reports what it measures.

Run: ``python -m benchmarks.bench_cluster`` (``--help`` for the knobs).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import respkv
from benchmarks._common import (
    GIB,
    MIB,
    Table,
    check_equal,
    machine,
    make_values,
    median,
    respkv_backends,
    rotated,
    server_version,
    timed,
    write_json,
)
from respkv._admin import AdminConnection
from respkv._backend import open_connector
from respkv._contract import Connector
from respkv._options import ConnectionOptions
from respkv.client import Client
from respkv.cluster import ClusterConnector, ClusterOptions
from respkv.testing import wait_for
from respkv.testing.clusters import LocalCluster
from respkv.testing.servers import LocalServer, recommended_args

#: (chunk MiB, keys): the shapes issue 12 asks for.
CONFIGS: Final = ((4.0, 300), (1.0, 900))
#: Keys per batch and batches per round for the router's cost (tiny values).
TINY_KEYS: Final = 1000
TINY_BATCHES: Final = 50
TINY_VALUE: Final = b"0123456789abcdef"
MASTERS: Final = 3


@dataclass
class Bulk:
    """One contender's figures for one shape (bytes per second per round)."""

    name: str
    set_bps: list[float] = field(default_factory=list)
    get_bps: list[float] = field(default_factory=list)
    per_node: dict[str, list[float]] = field(default_factory=dict)


def _flush(options: Sequence[ConnectionOptions]) -> None:
    for opts in options:
        with AdminConnection(opts, timeout=60) as admin:
            admin.command("FLUSHALL", "SYNC")


def _one_bulk(
    client: Client, flush_targets: Sequence[ConnectionOptions], keys: list[str], values: Any
) -> tuple[float, float, dict[str, int]]:
    """Seconds of one SET and one GET batch, and the keys each master got (cluster)."""
    _flush(flush_targets)
    conn = client.connector
    before = conn.node_keys() if isinstance(conn, ClusterConnector) else {}
    t_set, r = timed(lambda: client.batch_set(keys, values))
    if not r.ok:
        raise SystemExit(f"SET failed: {r.error}")
    out = [bytearray(len(v)) for v in values]
    t_get, g = timed(lambda: client.batch_get(keys, out))
    if not g.ok:
        raise SystemExit(f"GET failed: {g.error}")
    check_equal(values, out, "GET")
    after = conn.node_keys() if isinstance(conn, ClusterConnector) else {}
    per_node = {a: (n - before.get(a, 0)) // 2 for a, n in after.items()}
    return t_set, t_get, per_node


def run_bulk(
    contenders: dict[str, tuple[Client, list[ConnectionOptions]]], rounds: int
) -> dict[str, list[Bulk]]:
    out: dict[str, list[Bulk]] = {}
    for mib, count in CONFIGS:
        size = int(mib * MIB)
        keys = [f"bench:cluster:{i}" for i in range(count)]
        values = make_values(count, size)
        results = {name: Bulk(name) for name in contenders}
        for r in range(rounds):
            for name in rotated(list(contenders), r):
                client, targets = contenders[name]
                t_set, t_get, per_node = _one_bulk(client, targets, keys, values)
                res = results[name]
                res.set_bps.append(count * size / t_set)
                res.get_bps.append(count * size / t_get)
                for addr, n in per_node.items():
                    res.per_node.setdefault(addr, []).append(n * size / t_get)
        _flush([t for _, ts in contenders.values() for t in ts])
        del values
        out[f"{mib:g} MiB x {count}"] = list(results.values())
    return out


def _tiny_rate(conn: Connector, op: str) -> float:
    """Keys per second through ``conn``: TINY_BATCHES batches of TINY_KEYS tiny keys."""
    keys = [f"tiny:{i}".encode() for i in range(TINY_KEYS)]
    values = [TINY_VALUE] * TINY_KEYS

    def submit() -> int:
        if op == "SET":
            return conn.submit_batch_set(keys, values)
        return conn.submit_batch_exists(keys)

    assert wait_for(conn, conn.submit_batch_set(keys, values)).ok

    def loop() -> None:
        for _ in range(TINY_BATCHES):
            c = wait_for(conn, submit())
            if not c.ok:
                raise SystemExit(f"{op} failed: {c.error}")

    seconds, _ = timed(loop)
    return TINY_KEYS * TINY_BATCHES / seconds


def run_router_cost(
    single: ConnectionOptions, cluster_seeds: list[str], backend: str, workers: int, rounds: int
) -> dict[str, dict[str, float]]:
    """keys/s: plain connector, router over the same server, router over 3 masters."""
    makers: dict[str, Callable[[], Connector]] = {
        "plain connector, 1 server": lambda: open_connector(
            single.replace(num_workers=workers), backend
        ),
        "router, same server": lambda: ClusterConnector(
            ClusterOptions.from_options(single, num_workers=workers, allow_standalone=True),
            backend=backend,
        ),
        f"router, {MASTERS} masters": lambda: ClusterConnector(
            ClusterOptions.from_seeds(cluster_seeds, num_workers=workers), backend=backend
        ),
    }
    conns = {name: make() for name, make in makers.items()}
    try:
        for c in conns.values():
            if isinstance(c, ClusterConnector):
                c.wait_ready(30)
        rates: dict[str, dict[str, list[float]]] = {n: {"EXISTS": [], "SET": []} for n in conns}
        for r in range(rounds):
            for name in rotated(list(conns), r):
                for op in ("EXISTS", "SET"):
                    rates[name][op].append(_tiny_rate(conns[name], op))
        return {n: {op: median(v) for op, v in ops.items()} for n, ops in rates.items()}
    finally:
        for c in conns.values():
            c.close()


def _bulk_tables(bulk: dict[str, list[Bulk]]) -> str:
    out = []
    for shape, results in bulk.items():
        rows = []
        for res in results:
            nodes = ", ".join(f"{median(v) / GIB:.2f}" for _, v in sorted(res.per_node.items()))
            rows.append([res.name, f"{median(res.set_bps) / GIB:.2f}",
                         f"{median(res.get_bps) / GIB:.2f}", nodes or "-"])  # fmt: skip
        table = Table([shape, "SET GiB/s", "GET GiB/s", "GET GiB/s per master"], rows)
        out.append(table.render())
    return "\n\n".join(out)


def _cost_table(cost: dict[str, dict[str, dict[str, float]]]) -> str:
    rows = []
    for backend, by_name in cost.items():
        base = by_name["plain connector, 1 server"]
        for name, ops in by_name.items():
            extra = [
                f"{(1 / ops[op] - 1 / base[op]) * 1e6:+.2f}" if ops is not base else "-"
                for op in ("EXISTS", "SET")
            ]
            rows.append([f"{backend}: {name}", f"{ops['EXISTS']:,.0f}", f"{ops['SET']:,.0f}",
                         *extra])  # fmt: skip
    headers = ["tiny keys, 1,000 per batch", "EXISTS keys/s", "SET keys/s",
               "EXISTS us/key vs plain", "SET us/key vs plain"]  # fmt: skip
    return Table(headers, rows).render()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (medians)")
    parser.add_argument("--workers", type=int, default=4, help="workers per connector (node)")
    parser.add_argument("--server-binary", help="redis-server (default) or valkey-server")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)
    backends = respkv_backends()
    server_args = recommended_args()
    with LocalServer(binary=args.server_binary, args=server_args) as server, LocalCluster(
        masters=MASTERS, replicas=0, binary=args.server_binary, args=server_args
    ) as cluster:  # fmt: skip
        single = ConnectionOptions(host=server.host, port=server.port)
        masters = [cluster.options(n) for n in cluster.master_nodes()]
        version = server_version(single)
        print(f"{version}; single server vs {MASTERS}-master cluster; {args.workers} workers "
              f"per connector; backends {', '.join(backends)}; {args.rounds} rounds")  # fmt: skip
        contenders: dict[str, tuple[Client, list[ConnectionOptions]]] = {}
        try:
            for b in backends:
                contenders[f"single/{b}"] = (
                    respkv.connect(single, backend=b, num_workers=args.workers),
                    [single],
                )
                cluster_opts = ClusterOptions.from_seeds(cluster.seeds, num_workers=args.workers)
                contenders[f"cluster/{b}"] = (Client(cluster_opts, backend=b), masters)
            bulk = run_bulk(contenders, args.rounds)
        finally:
            for client, _ in contenders.values():
                client.close()
        print(_bulk_tables(bulk))
        cost = {b: run_router_cost(single, cluster.seeds, b, args.workers, args.rounds)
                for b in backends}  # fmt: skip
        print()
        print(_cost_table(cost))
    doc = {
        "machine": machine(),
        "server": version,
        "workers": args.workers,
        "bulk": {
            shape: {
                r.name: {
                    "set_gib_s": median(r.set_bps) / GIB,
                    "get_gib_s": median(r.get_bps) / GIB,
                    "get_gib_s_per_master": {a: median(v) / GIB for a, v in r.per_node.items()},
                }
                for r in results
            }
            for shape, results in bulk.items()
        },
        "router_cost_keys_per_s": cost,
    }
    write_json(args.json, doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
