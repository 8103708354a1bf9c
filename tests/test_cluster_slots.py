"""Slot arithmetic, slot-map parsing and cluster configuration, checked against the
specification's vectors and against real cluster nodes (CLUSTER KEYSLOT, SHARDS, SLOTS)."""

from __future__ import annotations

import random
from typing import Any

import pytest

from respkv._cluster.batch import parse_redirect
from respkv._cluster.link import LinkError
from respkv._cluster.topology import Shard, Topology, fetch_topology, parse_shards, parse_slots
from respkv._options import ConnectionOptions
from respkv.cluster import SLOT_COUNT, ClusterOptions, hash_tag, key_slot, slots_of
from respkv.config import load, redact_url, resolve
from respkv.errors import ConfigError
from respkv.testing import AUTH_PASSWORD
from respkv.testing.clusters import LocalCluster
from respkv.testing.servers import LocalServer, free_port


def test_crc16_vectors() -> None:
    # The Redis Cluster specification: CRC16("123456789") = 0x31C3; "foo" is in 12182.
    assert key_slot(b"123456789") == 0x31C3
    assert key_slot("foo") == 12182
    assert key_slot(b"") == 0


@pytest.mark.parametrize(
    ("key", "tag"),
    [
        (b"user:{42}:a", b"42"),
        (b"{42}", b"42"),
        (b"a{}b", b"a{}b"),  # an empty tag does not count
        (b"{}{x}", b"{}{x}"),  # the first '{' decides, and its tag is empty
        (b"{{x}}", b"{x"),
        (b"x{y", b"x{y"),  # no closing brace
        (b"x}y{z}", b"z"),
        (b"\xff{\x00\r\n}", b"\x00\r\n"),
    ],
)
def test_hash_tags(key: bytes, tag: bytes) -> None:
    assert hash_tag(key) == tag
    assert key_slot(key) == key_slot(tag) if tag != key else True
    assert slots_of([key]) == [key_slot(key)]


def test_slots_match_the_server(local_cluster: LocalCluster) -> None:
    rng = random.Random(5)
    keys = [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40))) for _ in range(300)]
    keys += [b"{%d}:x" % i for i in range(50)] + [b"a{}b", b"{{x}}", b"x}{y}"]
    node = local_cluster.nodes[0]
    with local_cluster.admin(node) as admin:
        expected = [int(admin.command("CLUSTER", "KEYSLOT", k)) for k in keys]
    assert slots_of(keys) == expected
    assert all(0 <= s < SLOT_COUNT for s in expected)


def test_topology_from_real_shards_and_slots(local_cluster: LocalCluster) -> None:
    local_cluster.wait_healthy()
    node = local_cluster.nodes[0]
    options = local_cluster.options(node)
    with local_cluster.admin(node) as admin:
        shards = parse_shards(admin.command("CLUSTER", "SHARDS"), options.host, tls=False)
        slots = parse_slots(admin.command("CLUSTER", "SLOTS"), options.host, tls=False)
    by_shards = Topology(tuple(shards), node.address)
    by_slots = Topology(tuple(slots), node.address)
    assert by_shards.owners == by_slots.owners
    assert by_shards.unowned == 0
    expected = local_cluster.slot_owners()
    for lo, hi, addr in expected:
        assert by_shards.owners[lo] == by_shards.owners[hi] == addr
    assert set(by_shards.masters) == {addr for _, _, addr in expected}
    assert len(by_shards.nodes) == len(local_cluster.nodes)
    fetched = fetch_topology(options, timeout=5)
    assert fetched.owners == by_shards.owners and not fetched.standalone


def test_parse_slots_empty_ip_means_the_node_asked() -> None:
    reply = [
        [0, 100, [b"", 7000, b"id1"], [b"10.0.0.2", 7001, b"id2"]],
        [101, 16383, [b"10.0.0.3", 7002, b"id3", {}]],
        [200, 300, [b"10.0.0.3", 7002, b"id3"]],
    ]
    shards = parse_slots(reply, "10.0.0.1", tls=False)
    assert shards[0] == Shard("10.0.0.1:7000", ((0, 100),), ("10.0.0.2:7001",))
    assert shards[1].master == "10.0.0.3:7002" and shards[1].ranges == ((101, 16383), (200, 300))


def test_parse_shards_endpoints_and_tls_ports() -> None:
    node = [b"id", b"x", b"port", 7000, b"tls-port", 7100, b"ip", b"10.0.0.9",
            b"endpoint", b"?", b"role", b"master", b"health", b"online"]  # fmt: skip
    reply = [[b"slots", [0, 16383], b"nodes", [node]]]
    assert parse_shards(reply, "h", tls=False)[0].master == "10.0.0.9:7000"
    assert parse_shards(reply, "h", tls=True)[0].master == "10.0.0.9:7100"
    v6 = [b"port", 7000, b"ip", b"::1", b"endpoint", b"", b"role", b"master"]
    assert parse_shards([[b"slots", [5, 9], b"nodes", [v6]]], "h", tls=False)[0].master == (
        "[::1]:7000"
    )


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("MOVED 3999 127.0.0.1:7002", (3999, "127.0.0.1:7002")),
        ("ASK 1 ::1:7002", None),  # an unbracketed IPv6 address cannot be told apart
        ("ASK 1 [::1]:7002", (1, "[::1]:7002")),
        ("MOVED 12 :7005", (12, "10.1.1.1:7005")),  # empty host: the node that replied
        ("MOVED x 127.0.0.1:1", None),
        ("MOVED 1", None),
    ],
)
def test_parse_redirect(reply: str, expected: tuple[int, str] | None) -> None:
    assert parse_redirect(reply, "10.1.1.1:6379") == expected


def test_fetch_topology_failures_are_data() -> None:
    port = free_port()
    with pytest.raises(LinkError) as refused:
        fetch_topology(ConnectionOptions(port=port, connect_timeout=2), timeout=2)
    f = refused.value.failure
    assert f.kind.name == "CONNECT_FAILED" and f.errno != 0 and f.address == f"127.0.0.1:{port}"
    with LocalServer() as plain:
        opts = ConnectionOptions(host=plain.host, port=plain.port)
        with pytest.raises(LinkError) as disabled:
            fetch_topology(opts, timeout=2)
        assert disabled.value.failure.code == "ERR"
        assert "cluster support disabled" in disabled.value.failure.reply
        one = fetch_topology(opts, timeout=2, allow_standalone=True)
        assert one.standalone and set(one.owners) == {opts.address}
    with LocalServer(password=AUTH_PASSWORD) as locked:
        opts = ConnectionOptions(host=locked.host, port=locked.port, password="wrong")
        with pytest.raises(LinkError) as denied:
            fetch_topology(opts, timeout=2)
        f = denied.value.failure
        assert f.kind.name == "HANDSHAKE_FAILED" and f.detail == "AUTH"
        assert f.reply.startswith("WRONGPASS") and "wrong" not in f.message.replace("WRONGPASS", "")


# -- configuration -------------------------------------------------------------------


def test_cluster_url_and_redaction() -> None:
    url = "resp+cluster://kv:p%40ss@127.0.0.1:7000,[::1]:7001,node3/?num_workers=2&max_redirects=3"
    config = load(url)
    c = config.connection
    assert isinstance(c, ClusterOptions)
    assert c.seeds == ("127.0.0.1:7000", "[::1]:7001", "node3:6379")
    assert (c.host, c.port, c.username, c.password) == ("127.0.0.1", 7000, "kv", "p@ss")
    assert (c.num_workers, c.max_redirects, c.cluster_retries) == (2, 3, 5)
    assert config.url == "resp+cluster://kv:***@127.0.0.1:7000,[::1]:7001,node3:6379"
    assert "p@ss" not in repr(c) and "p@ss" not in repr(config)
    assert redact_url(url).startswith("resp+cluster://kv:***@127.0.0.1:7000,")


def test_cluster_from_json_keys_and_tls() -> None:
    c = resolve({"cluster": True, "host": "10.0.0.1", "port": 7000})
    assert isinstance(c, ClusterOptions) and c.seeds == ("10.0.0.1:7000",)
    c = resolve('{"seeds": ["a:1", "b:2"], "allow_standalone": true, "cluster_retries": 0}')
    assert isinstance(c, ClusterOptions) and c.seeds == ("a:1", "b:2")
    assert c.allow_standalone and c.cluster_retries == 0
    assert isinstance(resolve({"seeds": "a:1, b:2"}), ClusterOptions)
    tls = resolve("resps+cluster://a:1,b:2?verify=false")
    assert isinstance(tls, ClusterOptions) and tls.tls is not None and not tls.tls.verify
    # Options round-trip through the config code (as KVStore.open does).
    assert resolve(resolve("resp+cluster://a:1,b:2")) == resolve("resp+cluster://a:1,b:2")
    plain = resolve("resp://a:1")
    assert type(plain) is ConnectionOptions


@pytest.mark.parametrize(
    ("source", "text"),
    [
        ("resp+cluster://a:1,b:x", "port must be in 1..65535"),
        ("resp+cluster://a:1/3", "database 0 only"),
        ("resp+cluster://", "empty cluster seed address"),
        ("resp+cluster://a:1?seeds=b:2", "unknown URL query parameter #1"),
        ("resp+cluster://a:1?max_redirects=500", "max_redirects must be in 0..100"),
        ("resp+cluster://::1:7000", "needs brackets"),
        ({"seeds": ["a:1"], "cluster": False}, "contradict"),
        ({"seeds": [1, 2]}, "list of 'host:port' strings"),
        ({"cluster": True, "db": 2}, "database 0"),
        ({"cluster": True, "unix_path": "/tmp/x.sock"}, "unix_path"),
    ],
)
def test_cluster_config_errors(source: Any, text: str) -> None:
    with pytest.raises(ConfigError, match=text):
        resolve(source)


def test_cluster_options_node_options() -> None:
    c = ClusterOptions.from_seeds(["127.0.0.1:7000"], password="pw", num_workers=3)
    node = c.node_options("[::1]:7005")
    assert type(node) is ConnectionOptions
    assert (node.host, node.port, node.password, node.num_workers) == ("::1", 7005, "pw", 3)
    from_plain = ClusterOptions.from_options(ConnectionOptions(port=7001, op_timeout=3))
    assert from_plain.seeds == ("127.0.0.1:7001",) and from_plain.op_timeout == 3
