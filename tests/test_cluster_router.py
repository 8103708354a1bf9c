"""The cluster router on a real 3-master cluster (Redis 7, and Valkey 8 when on PATH), both
backends: round trips checked by redis-py's RedisCluster, per-key statuses in the
caller's order, hash tags, deadlines and cancel with a stopped master, close, fork, the
clients on a cluster, and what a single-server URL gets."""

from __future__ import annotations

import asyncio
import os
import select
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import pytest
import redis

import respkv
import respkv.aio
from respkv import ErrorKind, KeyStatus, Op
from respkv._backend import open_connector
from respkv.cluster import ClusterConnector, ClusterOptions, key_slot
from respkv.errors import ConnectionClosedError, ForkedError
from respkv.testing import CertificateSet, wait_for
from respkv.testing.cluster import open_cluster_connector
from respkv.testing.clusters import ClusterNode, LocalCluster
from respkv.testing.servers import free_port

OK, MISS = KeyStatus.OK, KeyStatus.MISS


def _values(n: int, seed: int, max_size: int = 4096) -> list[bytes]:
    rng = np.random.default_rng(seed)
    sizes = rng.integers(0, max_size, n)
    return [rng.integers(0, 256, int(s), dtype=np.uint8).tobytes() for s in sizes]


def _redis_cluster(cluster: LocalCluster) -> redis.RedisCluster:
    host, _, port = cluster.seeds[0].rpartition(":")
    return redis.RedisCluster(host=host, port=int(port), password=cluster.password or None)


@contextmanager
def _stopped(node: ClusterNode) -> Iterator[None]:
    """A master frozen with SIGSTOP (keys sent to it hang) for less than the node timeout."""
    proc = node.server.process
    assert proc is not None
    proc.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        proc.send_signal(signal.SIGCONT)


@pytest.mark.parametrize("n", [1, 2, 3, 17, 100, 1000])
def test_batches_land_on_all_masters_and_read_back_through_redis_py(
    cluster_connector: ClusterConnector, local_cluster: LocalCluster, n: int
) -> None:
    conn = cluster_connector
    keys = [f"rt{n}:{i}".encode() for i in range(n)]
    vals = _values(n, seed=n)
    c = wait_for(conn, conn.submit_batch_set(keys, vals))
    assert c.op is Op.SET and c.ok and c.statuses == (OK,) * n
    rc = _redis_cluster(local_cluster)
    try:
        assert rc.mget_nonatomic(keys) == vals
        owners = {local_cluster.owner_of(key_slot(k)) for k in keys}
        if n == 1000:
            assert len(owners) == len(local_cluster.master_nodes()) == 3
        # The reverse: redis-py writes, the router reads.
        again = _values(n, seed=n + 1000)
        rc.mset_nonatomic(dict(zip(keys, again)))
    finally:
        rc.close()
    out = [bytearray(len(v)) for v in again]
    g = wait_for(conn, conn.submit_batch_get(keys, out))
    assert g.statuses == (OK,) * n
    assert [bytes(b) for b in out] == again
    sent = conn.node_keys()
    assert sum(sent.values()) == 2 * n
    assert {a for a, k in sent.items() if k} == owners


def test_statuses_in_the_callers_order(cluster_connector: ClusterConnector) -> None:
    conn = cluster_connector
    keys = [f"ord:{i}" for i in range(60)]
    present = keys[::3]
    assert wait_for(conn, conn.submit_batch_set(present, [b"%d" % i for i in range(20)])).ok
    want = [OK if k in present else MISS for k in keys]
    assert wait_for(conn, conn.submit_batch_exists(keys)).statuses == tuple(want)
    # GET: hits, misses and a size mismatch interleaved over the three masters.
    out = [bytearray(len(b"%d" % (i // 3))) for i in range(60)]
    out[3] = bytearray(9)  # keys[3] holds b"1"
    g = wait_for(conn, conn.submit_batch_get(keys, out))
    expect = list(want)
    expect[3] = KeyStatus.SIZE_MISMATCH
    assert g.statuses == tuple(expect)
    f = g.failures[3]
    assert f is not None and (f.kind, f.expected, f.actual) == (ErrorKind.SIZE_MISMATCH, 9, 1)
    assert all(bytes(out[i]) == b"%d" % (i // 3) for i in range(0, 60, 3) if i != 3)
    d = wait_for(conn, conn.submit_batch_delete(keys))
    assert d.statuses == tuple(want)
    assert wait_for(conn, conn.submit_batch_exists(keys)).statuses == (MISS,) * 60


def test_hash_tags_keep_keys_together(
    cluster_connector: ClusterConnector, local_cluster: LocalCluster
) -> None:
    conn = cluster_connector
    keys = [f"{{model-7}}:chunk:{i}" for i in range(200)]
    slot = key_slot(keys[0])
    assert {key_slot(k) for k in keys} == {slot}
    split_before = conn.stats["split_batches"]
    assert wait_for(conn, conn.submit_batch_set(keys, [b"v"] * 200)).ok
    assert conn.stats["split_batches"] == split_before, "one slot: one part, no split"
    owner = local_cluster.node(local_cluster.owner_of(slot))
    assert local_cluster.command(owner, "CLUSTER", "COUNTKEYSINSLOT", slot) == 200
    assert conn.node_keys()[owner.address] == 200
    # Keys on one node only, and single-key batches, still work.
    for k in keys[:5]:
        assert wait_for(conn, conn.submit_batch_exists([k])).statuses == (OK,)


def test_server_errors_pass_through_with_the_nodes_address(
    cluster_connector: ClusterConnector, local_cluster: LocalCluster
) -> None:
    rc = _redis_cluster(local_cluster)
    try:
        rc.hset("a-hash", "f", "v")
    finally:
        rc.close()
    conn = cluster_connector
    keys = ["x:1", "a-hash", "x:2"]
    assert wait_for(conn, conn.submit_batch_set(["x:1", "x:2"], [b"1", b"2"])).ok
    c = wait_for(conn, conn.submit_batch_get(keys, [bytearray(1) for _ in keys]))
    assert c.statuses == (OK, KeyStatus.SERVER_ERROR, OK)
    f = c.failures[1]
    assert f is not None and f.kind is ErrorKind.SERVER_ERROR and f.code == "WRONGTYPE"
    assert f.address == local_cluster.owner_of(key_slot("a-hash"))


def test_deadline_with_a_stopped_master(
    cluster_connector: ClusterConnector, local_cluster: LocalCluster
) -> None:
    conn = cluster_connector
    keys = [f"dl:{i}" for i in range(90)]
    assert wait_for(conn, conn.submit_batch_set(keys, [b"x"] * 90)).ok
    frozen = local_cluster.master_nodes()[0]
    on_frozen = [local_cluster.owner_of(key_slot(k)) == frozen.address for k in keys]
    assert any(on_frozen) and not all(on_frozen)
    with _stopped(frozen):
        start = time.monotonic()
        c = wait_for(conn, conn.submit_batch_exists(keys, timeout=0.3), timeout=5)
        took = time.monotonic() - start
    assert took < 2.0, "the batch completes at its deadline, not at op_timeout"
    for frozen_key, status, f in zip(on_frozen, c.statuses, c.failures):
        if frozen_key:
            assert status is KeyStatus.TIMEOUT
            assert f is not None and f.kind is ErrorKind.DEADLINE and f.timeout == 0.3
        else:
            assert status is OK and f is None
    assert wait_for(conn, conn.submit_batch_exists(keys)).statuses == (OK,) * 90


def test_cancel_with_a_stopped_master(
    cluster_connector: ClusterConnector, local_cluster: LocalCluster
) -> None:
    conn = cluster_connector
    keys = [f"cx:{i}" for i in range(90)]
    frozen = local_cluster.master_nodes()[1]
    on_frozen = [local_cluster.owner_of(key_slot(k)) == frozen.address for k in keys]
    with _stopped(frozen):
        bid = conn.submit_batch_set(keys, [b"v"] * 90)
        deadline = time.monotonic() + 5
        while conn.node_keys().get(frozen.address, 0) == 0 and time.monotonic() < deadline:
            time.sleep(0.001)  # pragma: no cover - the submit registers its parts at once
        # The keys on live masters finish; the frozen master's cannot.
        assert conn.cancel(bid) is True
        c = wait_for(conn, bid, timeout=5)
    assert conn.cancel(bid) is False, "already complete"
    assert conn.cancel(10**9) is False, "unknown"
    for frozen_key, status, f in zip(on_frozen, c.statuses, c.failures):
        if frozen_key:
            assert status is KeyStatus.CANCELLED
            assert f is not None and f.kind is ErrorKind.CANCELLED
        else:
            assert status in (OK, KeyStatus.CANCELLED)
    assert conn.drain_completions() == []


def test_event_fd_and_exactly_once_from_many_threads(cluster_connector: ClusterConnector) -> None:
    conn = cluster_connector
    ids: list[int] = []
    lock = threading.Lock()

    def submit(t: int) -> None:
        for j in range(25):
            bid = conn.submit_batch_set([f"t{t}:{j}:{i}" for i in range(7)], [b"v"] * 7)
            with lock:
                ids.append(bid)

    threads = [threading.Thread(target=submit, args=(t,)) for t in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    assert len(set(ids)) == 150
    seen: list[int] = []
    fd = conn.event_fd()
    deadline = time.monotonic() + 30
    while len(seen) < 150 and time.monotonic() < deadline:
        select.select([fd], [], [], 1)
        for c in conn.drain_completions():
            assert c.ok
            seen.append(c.batch_id)
    assert sorted(seen) == sorted(ids)
    r, _, _ = select.select([fd], [], [], 0)
    assert not r and conn.drain_completions() == []


def test_close_with_work_in_flight(cluster_options: ClusterOptions, cluster_backend: str) -> None:
    conn = open_cluster_connector(cluster_options, cluster_backend)
    size = 256 * 1024
    vals = [np.full(size, i, dtype=np.uint8) for i in range(40)]
    ids = [conn.submit_batch_set([f"cl:{j}:{i}" for i in range(10)], vals[j * 10 : j * 10 + 10])
           for j in range(4)]  # fmt: skip
    conn.close()
    conn.close()
    seen = {c.batch_id: c for c in conn.drain_completions()}
    assert sorted(seen) == ids
    for c in seen.values():
        assert set(c.statuses) <= {OK, KeyStatus.CANCELLED}
        for s, f in zip(c.statuses, c.failures):
            assert (s is OK) == (f is None)
            if f is not None:
                assert f.kind is ErrorKind.CLOSED
    with pytest.raises(ConnectionClosedError):
        conn.submit_batch_exists(["k"])
    assert not any(t.name.startswith("respkv-cluster") and t.is_alive()
                   for t in threading.enumerate()), "router threads joined"  # fmt: skip


def test_fork_rule(cluster_connector: ClusterConnector) -> None:
    conn = cluster_connector
    assert wait_for(conn, conn.submit_batch_set(["fk"], [b"1"])).ok
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit code
        code = 0
        try:
            for call in (
                lambda: conn.submit_batch_exists(["fk"]),
                conn.drain_completions,
                conn.event_fd,
                lambda: conn.cancel(1),
            ):
                try:
                    call()
                    code |= 1
                except ForkedError:
                    pass
            conn.close()
        except BaseException:
            code |= 2
        os.write(w, bytes([code]))
        os._exit(0)
    os.close(w)
    status = os.read(r, 1)
    os.close(r)
    os.waitpid(pid, 0)
    assert status == b"\x00", f"child: {status!r} (1: a method did not raise, 2: close failed)"
    assert wait_for(conn, conn.submit_batch_exists(["fk"])).statuses == (OK,)


def test_clients_run_on_a_cluster_unchanged(
    local_cluster: LocalCluster, cluster_backend: str
) -> None:
    local_cluster.flushall()
    url = local_cluster.url + "?num_workers=2"
    keys = [f"cli:{i}" for i in range(300)]
    vals = _values(300, seed=3)
    with respkv.connect(url, backend=cluster_backend) as client:
        assert isinstance(client.connector, ClusterConnector)
        assert client.batch_set(keys, vals).ok
        out = [bytearray(len(v)) for v in vals]
        assert client.batch_get(keys, out).ok
        assert [bytes(b) for b in out] == vals
        assert client.exists(keys[0]) and client.delete(keys[0]) and not client.exists(keys[0])

    async def run() -> None:
        client = await respkv.aio.connect(url, backend=cluster_backend)
        try:
            out = [bytearray(len(v)) for v in vals]
            r = await client.batch_get(keys, out)
            assert r.statuses == (MISS,) + (OK,) * 299
            assert [bytes(b) for b in out[1:]] == vals[1:]
        finally:
            await client.close()

    asyncio.run(run())


def test_a_single_server_url_gets_no_router(redis_options: respkv.ConnectionOptions) -> None:
    conn = open_connector(redis_options)
    try:
        assert not isinstance(conn, ClusterConnector)
        assert type(respkv.config.resolve(f"resp://{redis_options.address}")) is (
            respkv.ConnectionOptions
        )
    finally:
        conn.close()


def test_unreachable_seed_fails_keys_with_connect_failed(cluster_backend: str) -> None:
    port = free_port()
    options = ClusterOptions.from_seeds([f"127.0.0.1:{port}"], connect_timeout=2)
    conn = ClusterConnector(options, backend=cluster_backend)
    try:
        c = wait_for(conn, conn.submit_batch_set(["a", "b"], [b"1", b"2"]), timeout=10)
        assert c.statuses == (KeyStatus.IO_ERROR,) * 2
        for f in c.failures:
            assert f is not None and f.kind is ErrorKind.CONNECT_FAILED
            assert f.address == f"127.0.0.1:{port}" and f.errno != 0
        assert conn.topology is None
    finally:
        conn.close()


def test_password_cluster(make_cluster: Callable[..., LocalCluster], cluster_backend: str) -> None:
    cluster = make_cluster(masters=3, replicas=0, password="cl-pw-1")
    good = ClusterOptions.from_seeds(cluster.seeds[:1], password="cl-pw-1", num_workers=1)
    conn = open_cluster_connector(good, cluster_backend)
    try:
        keys = [f"pw:{i}" for i in range(50)]
        assert wait_for(conn, conn.submit_batch_set(keys, [b"v"] * 50)).ok
        assert len(conn.masters()) == 3
    finally:
        conn.close()
    bad = good.replace(password="wrong-pw-9")
    conn = ClusterConnector(bad, backend=cluster_backend)
    try:
        c = wait_for(conn, conn.submit_batch_exists(["pw:1"]), timeout=10)
        f = c.failures[0]
        assert c.statuses == (KeyStatus.SERVER_ERROR,)
        assert f is not None and f.kind is ErrorKind.HANDSHAKE_FAILED and f.detail == "AUTH"
        assert "wrong-pw-9" not in (c.error or "")
    finally:
        conn.close()


def test_tls_cluster(
    make_cluster: Callable[..., LocalCluster], tls_certs: CertificateSet, cluster_backend: str
) -> None:
    cluster = make_cluster(masters=3, replicas=0, tls=tls_certs.server_files())
    options = respkv.config.resolve(cluster.url, num_workers=1)
    assert isinstance(options, ClusterOptions) and options.tls is not None
    conn = open_cluster_connector(options, cluster_backend)
    try:
        keys = [f"tls:{i}" for i in range(120)]
        vals = _values(120, seed=9)
        assert wait_for(conn, conn.submit_batch_set(keys, vals)).ok
        out = [bytearray(len(v)) for v in vals]
        assert wait_for(conn, conn.submit_batch_get(keys, out)).ok
        assert [bytes(b) for b in out] == vals
        # The map names the nodes' TLS ports (the only ones they listen on).
        assert set(conn.masters()) == {n.address for n in cluster.master_nodes()}
        assert len({a for a, k in conn.node_keys().items() if k}) == 3
    finally:
        conn.close()
