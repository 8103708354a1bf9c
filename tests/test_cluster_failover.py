"""Failover on dedicated 3+3 clusters: a master SIGKILLed with keys in flight (precise
per-key failures, then recovery by itself once the replica is promoted) and a manual
``CLUSTER FAILOVER`` under load (nothing lost, nothing failed)."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from typing import Final

import numpy as np

from respkv import ErrorKind, KeyStatus
from respkv.cluster import ClusterConnector, ClusterOptions, key_slot
from respkv.testing import wait_for
from respkv.testing.cluster import open_cluster_connector
from respkv.testing.clusters import ClusterNode, LocalCluster, parse_info

OK = KeyStatus.OK
#: cluster-node-timeout of these clusters (ms): failover in a few seconds, yet not so
#: short that a node busy for a moment on 2 shared cores is declared failed.
NODE_TIMEOUT_MS: Final = 2000
#: How long the cluster may take to promote a replica (node timeout, election, slack).
PROMOTION_BOUND: Final = 30.0
#: The router's stated bound (docs/cluster.md): it sends to the promoted replica within
#: this many seconds of the cluster reporting it healthy (refreshes every 0.2 s while a
#: master is unreachable; the rest is slack for a loaded machine).
RECOVERY_BOUND: Final = 5.0
VALUE_BYTES: Final = 256 * 1024


def _bytes_queued_to(port: int, skip_peers: set[int]) -> int:
    """Bytes the kernel holds, unread, on established IPv4 connections to ``port`` on
    this host (``/proc/net/tcp``'s rx_queue), leaving out those from ``skip_peers``
    ports (its replicas, whose acks arrive every second): what a frozen server has
    been sent by clients."""
    total = 0
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            local, remote, state, queues = fields[1], fields[2], fields[3], fields[4]
            if state != "01" or int(local.rsplit(":", 1)[1], 16) != port:  # ESTABLISHED
                continue
            if int(remote.rsplit(":", 1)[1], 16) not in skip_peers:
                total += int(queues.split(":")[1], 16)
    return total


def _wait_until_requests_reach(
    cluster: LocalCluster, node: ClusterNode, submit: Callable[[], object]
) -> None:
    """Freeze ``node`` (SIGSTOP), call ``submit()``, and wait (bounded) until
    client requests sit unread in the frozen server's socket: then they are surely in
    flight (an engine writes them on its own thread)."""
    replicas = cluster.command(node, "CLIENT", "LIST", "TYPE", "replica")
    text = replicas.decode() if isinstance(replicas, bytes) else str(replicas)
    peers = {int(f.split(":")[-1]) for f in text.split() if f.startswith("addr=")}
    assert node.server.process is not None
    node.server.process.send_signal(signal.SIGSTOP)
    submit()
    deadline = time.monotonic() + 5
    while _bytes_queued_to(node.server.port, peers) == 0:
        assert time.monotonic() < deadline, "no request reached the frozen master"
        time.sleep(0.01)  # polling the kernel's counters: there is no event to await


def _replica_of(cluster: LocalCluster, master: ClusterNode) -> ClusterNode:
    for n in cluster.live_nodes():
        info = parse_info(cluster.command(n, "INFO", "replication"))
        if info.get("role") == "slave" and int(info["master_port"]) == master.server.port:
            return n
    raise AssertionError(f"no replica follows {master.address}")


def _keys_by_owner(cluster: LocalCluster, n: int, prefix: str) -> dict[str, list[bytes]]:
    out: dict[str, list[bytes]] = {}
    for i in range(n):
        k = f"{prefix}:{i}".encode()
        out.setdefault(cluster.owner_of(key_slot(k)), []).append(k)
    return out


def test_master_killed_with_keys_in_flight(
    make_cluster: Callable[..., LocalCluster], cluster_backend: str
) -> None:
    cluster = make_cluster(node_timeout_ms=NODE_TIMEOUT_MS)
    options = ClusterOptions.from_seeds(cluster.seeds, num_workers=2, connect_timeout=1)
    conn = open_cluster_connector(options, cluster_backend)
    try:
        by_owner = _keys_by_owner(cluster, 60, "fo")
        keys = [k for ks in by_owner.values() for k in ks]
        vals = [np.full(VALUE_BYTES, i % 251, dtype=np.uint8) for i in range(len(keys))]
        assert wait_for(conn, conn.submit_batch_set(keys, vals)).ok
        victim = cluster.node(next(iter(by_owner)))
        replica = _replica_of(cluster, victim)
        cluster.wait_replicated(victim)  # the replica has every write
        # Frozen first, so the victim's keys are surely in flight when it dies.
        out = [np.zeros(VALUE_BYTES, dtype=np.uint8) for _ in keys]
        bids: list[int] = []
        _wait_until_requests_reach(
            cluster, victim, lambda: bids.append(conn.submit_batch_get(keys, out))
        )
        bid = bids[0]
        cluster.kill(victim)
        c = wait_for(conn, bid, timeout=30)
        victims = set(by_owner[victim.address])
        lost_in_flight = 0
        for k, s, f, buf, v in zip(keys, c.statuses, c.failures, out, vals):
            if k in victims:
                assert s is KeyStatus.IO_ERROR, (k, s, f)
                assert f is not None and f.address == victim.address
                assert f.kind in (ErrorKind.CONNECTION_LOST, ErrorKind.CONNECT_FAILED), f
                assert not (f.kind is ErrorKind.CONNECT_FAILED and f.in_flight), f
                lost_in_flight += f.kind is ErrorKind.CONNECTION_LOST and f.in_flight
            else:
                assert s is OK and f is None and np.array_equal(buf, v)
        assert lost_in_flight, "the requests written to the frozen master were in flight"
        # The cluster promotes the replica; the router follows by itself.
        promoted = cluster.wait_for(
            lambda: parse_info(cluster.command(replica, "INFO", "replication"))["role"] == "master",
            PROMOTION_BOUND,
            "promotion of the replica",
        )
        cluster.wait_healthy(PROMOTION_BOUND)
        healthy_at = time.monotonic()
        recovered = None
        while time.monotonic() - healthy_at < RECOVERY_BOUND:
            again = [np.zeros(VALUE_BYTES, dtype=np.uint8) for _ in keys]
            g = wait_for(conn, conn.submit_batch_get(keys, again), timeout=30)
            if g.statuses == (OK,) * len(keys):
                recovered = time.monotonic() - healthy_at
                assert all(np.array_equal(a, b) for a, b in zip(again, vals))
                break
        assert recovered is not None, f"not recovered within {RECOVERY_BOUND} s of promotion"
        assert replica.address in conn.masters() and victim.address not in conn.masters()
        assert wait_for(conn, conn.submit_batch_set(keys, vals)).ok, "writes go to the new master"
        print(f"promotion after {promoted:.2f} s; router recovered {recovered:.2f} s after")
    finally:
        conn.close()


def _manual_failover(cluster: LocalCluster, replica: ClusterNode) -> None:
    cluster.command(replica, "CLUSTER", "FAILOVER")
    cluster.wait_for(
        lambda: parse_info(cluster.command(replica, "INFO", "replication"))["role"] == "master",
        PROMOTION_BOUND,
        "manual failover",
    )
    cluster.wait_healthy(PROMOTION_BOUND)


def test_manual_failover_under_load(
    make_cluster: Callable[..., LocalCluster], cluster_backend: str
) -> None:
    cluster = make_cluster(node_timeout_ms=NODE_TIMEOUT_MS)
    conn = open_cluster_connector(ClusterOptions.from_seeds(cluster.seeds, num_workers=2),
                                  cluster_backend)  # fmt: skip
    keys = [f"mf:{i}".encode() for i in range(300)]
    vals = [bytes([i % 256]) * 1000 for i in range(300)]
    errors: list[str] = []
    rounds = [0]
    stop = threading.Event()

    def load(c: ClusterConnector) -> None:
        deadline = time.monotonic() + 60
        while not stop.is_set() and time.monotonic() < deadline:
            s = wait_for(c, c.submit_batch_set(keys, vals), 30)
            out = [bytearray(1000) for _ in keys]
            g = wait_for(c, c.submit_batch_get(keys, out), 30)
            if not (s.ok and g.ok and [bytes(b) for b in out] == vals):
                errors.append(f"{s.error or g.error or 'wrong bytes'}")
            rounds[0] += 1

    try:
        assert wait_for(conn, conn.submit_batch_set(keys, vals)).ok
        worker = threading.Thread(target=load, args=(conn,), daemon=True)
        worker.start()
        old = cluster.node(cluster.owner_of(key_slot(keys[0])))
        new = _replica_of(cluster, old)
        before = rounds[0]
        _manual_failover(cluster, new)
        after = rounds[0]
        while rounds[0] < after + 2 and worker.is_alive():
            time.sleep(0.01)
        stop.set()
        worker.join(60)
        assert not errors, errors[:3]
        assert rounds[0] > before, "the load ran across the failover"
        assert new.address in conn.masters()
        assert conn.stats["moved"] > 0, "the old master redirects to the new one"
    finally:
        stop.set()
        conn.close()
