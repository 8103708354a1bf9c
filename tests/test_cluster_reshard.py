"""Redirects on real clusters: resharding under load (MOVED and ASK both seen, no GET ever
OK with wrong bytes, every key where the cluster says), the redirect bound, CLUSTERDOWN
while a slot has no owner; and, on a scripted fake node (replies a real server sends
only in rare states), TRYAGAIN retries and redirect loops that must end."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from respkv import ErrorKind, KeyStatus
from respkv.cluster import ClusterConnector, ClusterOptions, key_slot
from respkv.testing import wait_for
from respkv.testing.cluster import open_cluster_connector
from respkv.testing.clusters import LocalCluster
from respkv.testing.fakeserver import FakeServer

OK, MISS = KeyStatus.OK, KeyStatus.MISS
#: Bytes of each workload value (small: MIGRATE copies them on the server's main thread).
VALUE_BYTES = 512
#: Slots moved by the resharding test, and keys in each.
MOVED_TAGS = ("mv0", "mv1", "mv2")
KEYS_PER_TAG = 40


def _value(key: bytes, gen: int) -> bytes:
    """A self-describing value: whose it is and which write made it."""
    head = hashlib.sha256(key).digest()[:16] + gen.to_bytes(8, "little")
    return (head * (VALUE_BYTES // len(head) + 1))[:VALUE_BYTES]


class _Workload:
    """SET/GET/EXISTS batches over ``keys`` in a loop (bounded), checking every hit."""

    def __init__(self, conn: ClusterConnector, keys: list[bytes]) -> None:
        self.conn = conn
        self.keys = keys
        self.acked: dict[bytes, int] = {}  # last generation acknowledged per key
        self.tried: dict[bytes, int] = {}  # last generation attempted per key
        self.errors: list[str] = []
        self.batches = 0
        self.failed_keys = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="workload", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)
        assert not self._thread.is_alive(), "workload did not stop"

    def _run(self) -> None:
        gen = 0
        deadline = time.monotonic() + 60  # bound: the test stops it long before
        while not self._stop.is_set() and time.monotonic() < deadline:
            gen += 1
            try:
                self._round(gen)
            except Exception as exc:  # pragma: no cover - reported by the test
                self.errors.append(repr(exc))
                return

    def _round(self, gen: int) -> None:
        keys, conn = self.keys, self.conn
        half = keys[gen % 2 :: 2]
        for k in half:
            self.tried[k] = gen
        c = wait_for(conn, conn.submit_batch_set(half, [_value(k, gen) for k in half]), 30)
        for k, s in zip(half, c.statuses):
            if s is OK:
                self.acked[k] = gen
            else:
                self.failed_keys += 1
        out = [bytearray(VALUE_BYTES) for _ in keys]
        g = wait_for(conn, conn.submit_batch_get(keys, out), 30)
        for k, s, buf in zip(keys, g.statuses, out):
            if s is OK:
                got = int.from_bytes(buf[16:24], "little")
                if bytes(buf) != _value(k, got) or not self.acked.get(k, 0) <= got <= self.tried[k]:
                    self.errors.append(f"wrong bytes for {k!r}: generation {got}")
            elif s is MISS and k in self.acked:
                self.errors.append(f"{k!r} acknowledged at {self.acked[k]} but missing")
            elif s is not MISS:
                self.failed_keys += 1
        e = wait_for(conn, conn.submit_batch_exists(keys), 30)
        self.failed_keys += sum(1 for s in e.statuses if s not in (OK, MISS))
        self.batches += 3


def test_resharding_under_load(
    local_cluster: LocalCluster, cluster_options: ClusterOptions, cluster_backend: str
) -> None:
    cluster = local_cluster
    conn = open_cluster_connector(cluster_options, cluster_backend)
    keys = [f"{{{t}}}:k{i}".encode() for t in MOVED_TAGS for i in range(KEYS_PER_TAG)]
    keys += [f"other:{i}".encode() for i in range(120)]
    load = _Workload(conn, keys)
    try:
        load._round(0)  # every key written once before anything moves
        load.start()
        for tag in MOVED_TAGS:
            slot = key_slot(f"{{{tag}}}")
            source = cluster.node(cluster.owner_of(slot))
            target = next(n for n in cluster.master_nodes() if n is not source)
            cluster.begin_migration(slot, source, target)
            cluster.migrate_keys(slot, source, target, count=KEYS_PER_TAG // 2)
            # Half the slot has moved: a key already on the target gets ASK from the source.
            tagged = [k for k in keys if k.startswith(f"{{{tag}}}".encode())]
            out = [bytearray(VALUE_BYTES) for _ in tagged]
            assert wait_for(conn, conn.submit_batch_get(tagged, out)).ok
            while cluster.migrate_keys(slot, source, target, count=7):
                pass
            cluster.finish_migration(slot, target)
            # The router still has the old owner: the first request now gets MOVED.
            assert wait_for(conn, conn.submit_batch_exists(tagged)).statuses == (OK,) * len(tagged)
        load.stop()
        assert not load.errors, load.errors[:5]
        assert load.batches >= 3
        assert conn.stats["ask"] > 0 and conn.stats["moved"] > 0, conn.stats
        assert load.failed_keys == 0, "a redirect is followed, never reported"
        # Every key ends where the cluster says it is, and only there.
        for k in keys:
            owner = cluster.node(cluster.owner_of(key_slot(k)))
            assert cluster.command(owner, "EXISTS", k) == 1
        for tag in MOVED_TAGS:
            slot = key_slot(f"{{{tag}}}")
            for m in cluster.master_nodes():
                want = KEYS_PER_TAG if m.address == cluster.owner_of(slot) else 0
                assert cluster.command(m, "CLUSTER", "COUNTKEYSINSLOT", slot) == want
    finally:
        load._stop.set()
        conn.close()
    cluster.wait_healthy()


def test_redirect_bound_reports_moved(
    local_cluster: LocalCluster, cluster_options: ClusterOptions, cluster_backend: str
) -> None:
    cluster = local_cluster
    conn = open_cluster_connector(cluster_options.replace(max_redirects=0), cluster_backend)
    try:
        key = b"{bound}:k"
        assert wait_for(conn, conn.submit_batch_set([key], [b"v"])).ok
        slot = key_slot(key)
        source = cluster.node(cluster.owner_of(slot))
        target = next(n for n in cluster.master_nodes() if n is not source)
        cluster.move_slot(slot, source, target)
        c = wait_for(conn, conn.submit_batch_exists([key]))
        f = c.failures[0]
        assert c.statuses == (KeyStatus.SERVER_ERROR,)
        assert f is not None and f.code == "MOVED" and f.address == source.address
        assert f.reply == f"MOVED {slot} {target.address}"
        assert conn.stats["redirect_limit"] == 1
        # The MOVED patched the map: the next batch goes straight to the new owner.
        assert wait_for(conn, conn.submit_batch_exists([key])).statuses == (OK,)
    finally:
        conn.close()
    cluster.wait_healthy()


def _unowned(cluster: LocalCluster, slot: int) -> None:
    for m in cluster.master_nodes():
        cluster.command(m, "CLUSTER", "DELSLOTS", slot)


def test_clusterdown_while_a_slot_has_no_owner(
    make_cluster: Callable[..., LocalCluster], cluster_backend: str
) -> None:
    cluster = make_cluster(masters=3, replicas=0, args=("--cluster-require-full-coverage", "no"))
    options = ClusterOptions.from_seeds(cluster.seeds, num_workers=1, cluster_retries=3)
    conn = open_cluster_connector(options, cluster_backend)
    try:
        down, up = b"{down}:k", b"{up}:k"
        slot = key_slot(down)
        owner = cluster.node(cluster.owner_of(slot))
        _unowned(cluster, slot)
        start = time.monotonic()
        c = wait_for(conn, conn.submit_batch_set([down, up], [b"1", b"2"]))
        took = time.monotonic() - start
        assert c.statuses == (KeyStatus.SERVER_ERROR, OK)
        f = c.failures[0]
        assert f is not None and f.code == "CLUSTERDOWN" and "not served" in f.reply
        assert conn.stats["clusterdown"] == 4 and conn.stats["retry_limit"] == 1
        assert took >= 0.05 + 0.1 + 0.2, "three retries, with backoff"
        # Retries outlast a short outage: the slot is served again while the key waits.
        bid = conn.submit_batch_set([down], [b"3"])
        deadline = time.monotonic() + 10
        while conn.stats["clusterdown"] < 5 and time.monotonic() < deadline:
            time.sleep(0.005)
        cluster.command(owner, "CLUSTER", "ADDSLOTS", slot)
        for m in cluster.master_nodes():  # tell the others now rather than by gossip
            if m is not owner:
                cluster.command(m, "CLUSTER", "SETSLOT", slot, "NODE", owner.node_id)
        assert wait_for(conn, bid).statuses == (OK,)
    finally:
        conn.close()


# -- a scripted fake node --------------------------------------------------------------


def _resp(value: Any) -> bytes:
    if isinstance(value, int):
        return b":%d\r\n" % value
    if isinstance(value, bytes):
        return b"$%d\r\n%b\r\n" % (len(value), value)
    return b"*%d\r\n" % len(value) + b"".join(_resp(v) for v in value)


def _shards_reply(port: int) -> bytes:
    node = [b"id", b"f" * 40, b"port", port, b"ip", b"127.0.0.1", b"endpoint", b"127.0.0.1",
            b"role", b"master", b"health", b"online"]  # fmt: skip
    return _resp([[b"slots", [0, 16383], b"nodes", [node]]])


class _Node(FakeServer):
    """A fake one-node cluster answering CLUSTER SHARDS, with a per-command script."""

    def __init__(self, on_key: Callable[[list[bytes]], bytes | None]) -> None:
        self.on_key = on_key
        super().__init__(self._script)

    def _script(self, args: list[bytes]) -> bytes | None:
        if args[0] == b"CLUSTER":
            return _shards_reply(self.port)
        if args[0] == b"ASKING":
            return b"+OK\r\n"
        return self.on_key(args)


def _fake_options(node: _Node, **kw: Any) -> ClusterOptions:
    return ClusterOptions.from_seeds([f"127.0.0.1:{node.port}"], num_workers=1, **kw)


def test_tryagain_is_retried_with_backoff(cluster_backend: str) -> None:
    answers = {"left": 2}

    def on_key(args: list[bytes]) -> bytes | None:
        if args[0] == b"SET" and answers["left"]:
            answers["left"] -= 1
            return b"-TRYAGAIN Multiple keys request during rehashing of slot\r\n"
        return None

    node = _Node(on_key)
    with node:
        conn = open_cluster_connector(_fake_options(node), cluster_backend)
        try:
            assert wait_for(conn, conn.submit_batch_set([b"t"], [b"v"])).statuses == (OK,)
            assert conn.stats["tryagain"] == 2 and node.count(b"SET") == 3
            answers["left"] = 99
            c = wait_for(conn, conn.submit_batch_set([b"t"], [b"v"]))
            f = c.failures[0]
            assert (
                f is not None and f.code == "TRYAGAIN" and c.statuses == (KeyStatus.SERVER_ERROR,)
            )
            assert node.count(b"SET") == 3 + 1 + conn.options.cluster_retries
        finally:
            conn.close()


@pytest.mark.parametrize("code", ["MOVED", "ASK"])
def test_a_redirect_loop_ends(cluster_backend: str, code: str) -> None:
    def on_key(args: list[bytes]) -> bytes | None:
        return b"-%b 5 127.0.0.1:%d\r\n" % (code.encode(), node.port)

    node = _Node(on_key)
    with node:
        conn = open_cluster_connector(_fake_options(node, max_redirects=3), cluster_backend)
        try:
            c = wait_for(conn, conn.submit_batch_exists([b"loop"]), timeout=10)
            f = c.failures[0]
            assert c.statuses == (KeyStatus.SERVER_ERROR,)
            assert f is not None and f.kind is ErrorKind.SERVER_ERROR and f.code == code
            assert node.count(b"EXISTS") == 4, "the first try and three redirects"
            assert conn.stats["redirect_limit"] == 1
            if code == "ASK":
                assert node.count(b"ASKING") == 3
        finally:
            conn.close()


def test_ask_path_get_into_the_buffer_and_size_mismatch(cluster_backend: str) -> None:
    asked: set[bytes] = set()

    def on_key(args: list[bytes]) -> bytes | None:
        name, key = args[0], args[1]
        if key not in asked:
            asked.add(key)
            return b"-ASK 7 127.0.0.1:%d\r\n" % node.port
        if name == b"GET":
            return _resp(b"abcdef")
        return None

    node = _Node(on_key)
    with node:
        conn = open_cluster_connector(_fake_options(node), cluster_backend)
        try:
            out = [bytearray(6), bytearray(4)]
            c = wait_for(conn, conn.submit_batch_get([b"a", b"b"], out))
            assert c.statuses == (OK, KeyStatus.SIZE_MISMATCH)
            assert out[0] == b"abcdef" and out[1] == bytes(4)
            f = c.failures[1]
            assert f is not None and (f.expected, f.actual) == (4, 6)
            assert conn.stats["ask"] == 2
        finally:
            conn.close()


@pytest.mark.parametrize("code", ["MOVED", "ASK"])
def test_redirected_set_keeps_its_ttl(cluster_backend: str, code: str) -> None:
    """A SET with ``ttl`` that is redirected is sent again with its ``PX`` (issue 11 §3):
    MOVED through the node's connector, ASK through the router's own link."""
    redirected: set[bytes] = set()

    def on_key(args: list[bytes]) -> bytes | None:
        if args[0] != b"SET":
            return None
        if args[1] not in redirected:
            redirected.add(args[1])
            return b"-%b 7 127.0.0.1:%d\r\n" % (code.encode(), node.port)
        return b"+OK\r\n"  # the fake's own SET takes no options

    node = _Node(on_key)
    with node:
        conn = open_cluster_connector(_fake_options(node), cluster_backend)
        try:
            big = b"v" * (300 * 1024)  # sent from the caller's buffer on both paths
            c = wait_for(conn, conn.submit_batch_set([b"a", b"b"], [b"1", big], ttl=2.5))
            assert c.statuses == (OK, OK)
            sets = [cmd for cmd in node.commands if cmd[0] == b"SET"]
            assert len(sets) == 4  # each key: the first try and its resend
            assert all(cmd[3:] == [b"PX", b"2500"] for cmd in sets), [cmd[3:] for cmd in sets]
            assert [bytes(cmd[2]) for cmd in sets if cmd[1] == b"b"] == [big, big]
            assert conn.stats["moved" if code == "MOVED" else "ask"] == 2
        finally:
            conn.close()
