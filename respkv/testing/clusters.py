"""Start and stop a throwaway local Redis Cluster / Valkey Cluster.

Used by the cluster test fixtures, ``respkv server --cluster N`` and ``respkv bench
--cluster``. Each node is a :class:`~respkv.testing.servers.LocalServer` (loopback only, free
port, persistence off, its own temporary directory, stopped by pid) started with
``--cluster-enabled yes``. Two more ports per node are chosen here, since Redis's
default cluster bus port (``port + 10000``) may be taken or above 65535: the bus port is
given explicitly with ``--cluster-port`` (Redis >= 7, Valkey). ``--repl-diskless-sync-delay
0``: by default a master waits 5 s before the first full sync of a replica (for more
replicas to join), which would be most of the start time here.

The cluster is formed with the server's own tool, ``redis-cli --cluster create ...
--cluster-replicas R --cluster-yes`` (``valkey-cli`` next to ``valkey-server``), which
assigns the 16384 slots evenly over the masters, sets distinct config epochs, makes the
nodes meet and attaches the replicas. Where no such tool is found the same is done
with plain ``CLUSTER ADDSLOTSRANGE`` / ``MEET`` / ``REPLICATE`` commands (also for fewer
than three masters, which the tool refuses).

Readiness is an observed state, never a fixed sleep: :meth:`LocalCluster.wait_healthy`
reads ``CLUSTER INFO`` of every node (``cluster_state:ok``, all slots assigned, every
node known) and ``INFO replication`` of every replica (``master_link_status:up``) in a
loop bounded by a deadline, pausing :data:`POLL_INTERVAL` between rounds.

Tests use :meth:`LocalCluster.kill` (SIGKILL a node) and the admin helpers to drive
failover and resharding; see ``docs/cluster.md``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Final

from respkv._admin import AdminConnection
from respkv._options import ConnectionOptions, TLSOptions
from respkv.testing.servers import (
    LocalServer,
    TlsFiles,
    find_server_binary,
    free_port,
    tls_url_query,
)

__all__ = [
    "DEFAULT_NODE_TIMEOUT_MS",
    "ClusterNode",
    "LocalCluster",
]

#: ``cluster-node-timeout`` of a local cluster, in ms. Redis's default is 15000; a
#: throwaway cluster on a shared machine wants failover within seconds, yet not so
#: short that a node busy for a moment (2 shared cores) is declared failed.
DEFAULT_NODE_TIMEOUT_MS: Final = 3000
#: Seconds ``start`` may take to form the cluster and see it healthy.
FORM_TIMEOUT: Final = 60.0
#: Seconds between two rounds of health checks (a bounded poll of CLUSTER INFO).
POLL_INTERVAL: Final = 0.02
#: Attempts at starting one node when its cluster bus port turns out to be taken.
NODE_START_ATTEMPTS: Final = 5
#: Number of hash slots in a Redis Cluster (fixed by the protocol).
SLOT_COUNT: Final = 16384
#: ``redis-cli --cluster create`` refuses fewer masters than this; smaller clusters
#: (one master for a quick try, two for a benchmark) are formed with plain commands.
CLI_MIN_MASTERS: Final = 3
#: Seconds one admin command of the helpers may take.
ADMIN_TIMEOUT: Final = 10.0


def _cli_for(server_binary: str) -> str | None:
    """The cluster-creation tool matching ``server_binary`` (same directory first)."""
    path = Path(server_binary)
    name = "valkey-cli" if "valkey" in path.name else "redis-cli"
    sibling = path.with_name(name)
    if sibling.exists():
        return str(sibling)
    return shutil.which(name) or shutil.which("redis-cli")


def parse_info(text: bytes | str) -> dict[str, str]:
    """``INFO`` / ``CLUSTER INFO`` text as a mapping of its ``key:value`` lines."""
    if isinstance(text, bytes):
        text = text.decode()
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and not line.startswith("#"):
            out[key.strip()] = value.strip()
    return out


@dataclass
class ClusterNode:
    """One node of a :class:`LocalCluster` (its server, and its id once the cluster knows it)."""

    server: LocalServer
    bus_port: int
    node_id: str = ""

    @property
    def address(self) -> str:
        return f"{self.server.host}:{self.server.port}"

    @property
    def alive(self) -> bool:
        proc = self.server.process
        return proc is not None and proc.poll() is None


@dataclass
class LocalCluster:
    """A local cluster of ``masters`` masters with ``replicas`` replicas each."""

    masters: int = 3
    replicas: int = 1
    binary: str | None = None
    host: str = "127.0.0.1"
    node_timeout_ms: int = DEFAULT_NODE_TIMEOUT_MS
    args: Sequence[str] = ()
    password: str = field(default="", repr=False)
    #: Serve TLS only (``tls-cluster`` and ``tls-replication`` too); formed by commands.
    tls: TlsFiles | None = None
    nodes: list[ClusterNode] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        if self.masters < 1:
            raise ValueError(f"a cluster needs at least one master, got {self.masters}")
        if self.replicas < 0:
            raise ValueError(f"replicas must be >= 0, got {self.replicas}")

    # -- addresses -----------------------------------------------------------------

    @property
    def seeds(self) -> list[str]:
        """Every node's ``host:port`` (masters and replicas)."""
        return [n.address for n in self.nodes]

    @property
    def url(self) -> str:
        """A ``resp+cluster://`` (``resps+cluster://``) URL naming every node as a seed."""
        auth = ":" + self.password + "@" if self.password else ""
        if self.tls is None:
            return f"resp+cluster://{auth}{','.join(self.seeds)}"
        return f"resps+cluster://{auth}{','.join(self.seeds)}?{tls_url_query(self.tls)}"

    def tls_options(self) -> TLSOptions | None:
        """Client TLS settings for this cluster's nodes (CA-verified, client certificate)."""
        if self.tls is None:
            return None
        return TLSOptions(
            ca_file=self.tls.ca_file,
            cert_file=self.tls.client_cert_file,
            key_file=self.tls.client_key_file,
        )

    def options(self, node: ClusterNode | str | None = None, **kw: Any) -> ConnectionOptions:
        """Single-server options for ``node`` (default: the first live node)."""
        if node is None:
            node = next(n for n in self.nodes if n.alive)
        address = node if isinstance(node, str) else node.address
        host, _, port = address.rpartition(":")
        kw.setdefault("tls", self.tls_options())
        return ConnectionOptions(host=host, port=int(port), password=self.password, **kw)

    def admin(self, node: ClusterNode | str, timeout: float = ADMIN_TIMEOUT) -> AdminConnection:
        """A blocking admin connection to ``node``."""
        return AdminConnection(self.options(node, client_name=""), timeout=timeout)

    def command(self, node: ClusterNode | str, *args: object) -> Any:
        """One admin command on ``node`` (error replies raise ReplyError)."""
        with self.admin(node) as conn:
            return conn.command(*args)

    def node(self, address: str) -> ClusterNode:
        """The node listening on ``address`` (``host:port``)."""
        for n in self.nodes:
            if n.address == address:
                return n
        raise KeyError(address)

    # -- lifecycle -----------------------------------------------------------------

    def start(self, timeout: float = FORM_TIMEOUT) -> LocalCluster:
        binary = find_server_binary(self.binary)
        try:
            for _ in range(self.masters * (1 + self.replicas)):
                self.nodes.append(self._start_node(binary))
            self._form(binary)
            self.wait_healthy(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _node_args(self, bus_port: int) -> list[str]:
        args = [
            "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
            "--cluster-port", str(bus_port), "--cluster-node-timeout", str(self.node_timeout_ms),
            "--repl-diskless-sync-delay", "0",
        ]  # fmt: skip
        if self.password:
            args += ["--masterauth", self.password]
        if self.tls is not None:
            args += ["--tls-cluster", "yes", "--tls-replication", "yes"]
            if self.tls.client_cert_file:  # nodes are clients of each other's bus
                args += ["--tls-client-cert-file", self.tls.client_cert_file,
                         "--tls-client-key-file", self.tls.client_key_file or ""]  # fmt: skip
        return args + list(self.args)

    def _start_node(self, binary: str) -> ClusterNode:
        last: BaseException | None = None
        for _ in range(NODE_START_ATTEMPTS):
            bus_port = free_port(self.host)
            server = LocalServer(
                binary=binary,
                host=self.host,
                args=self._node_args(bus_port),
                password=self.password,
                tls=self.tls,
            )
            try:
                server.start()
            except RuntimeError as exc:  # the bus port was taken meanwhile: another one
                last = exc
                continue
            return ClusterNode(server, bus_port)
        raise RuntimeError(f"could not start a cluster node: {last}")

    def _form(self, binary: str) -> None:
        cli = _cli_for(binary)
        if cli is None or self.masters < CLI_MIN_MASTERS or self.tls is not None:
            self._form_by_commands()
        else:
            cmd = [cli, "--cluster", "create", *self.seeds, "--cluster-replicas",
                   str(self.replicas), "--cluster-yes"]  # fmt: skip
            env = dict(os.environ)
            if self.password:
                env["REDISCLI_AUTH"] = self.password
            done = subprocess.run(
                cmd, check=False, capture_output=True, timeout=FORM_TIMEOUT, env=env
            )
            if done.returncode != 0:
                raise RuntimeError(
                    f"{' '.join(cmd)} failed ({done.returncode}):\n"
                    f"{done.stdout.decode(errors='replace')}{done.stderr.decode(errors='replace')}"
                )
        for n in self.nodes:
            n.node_id = self.command(n, "CLUSTER", "MYID").decode()

    def _form_by_commands(self) -> None:
        masters = self.nodes[: self.masters]
        for i, n in enumerate(self.nodes):
            self.command(n, "CLUSTER", "SET-CONFIG-EPOCH", i + 1)
        for i, n in enumerate(masters):
            lo = i * SLOT_COUNT // self.masters
            hi = (i + 1) * SLOT_COUNT // self.masters - 1
            self.command(n, "CLUSTER", "ADDSLOTSRANGE", lo, hi)
        first = self.nodes[0]
        for n in self.nodes[1:]:
            self.command(n, "CLUSTER", "MEET", first.server.host, first.server.port, first.bus_port)
        ids = [self.command(m, "CLUSTER", "MYID").decode() for m in masters]
        deadline = time.monotonic() + FORM_TIMEOUT
        for i, n in enumerate(self.nodes[self.masters :]):
            master_id = ids[i % self.masters]
            while True:  # a replica can only follow a master it already knows
                try:
                    self.command(n, "CLUSTER", "REPLICATE", master_id)
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(POLL_INTERVAL)

    def stop(self) -> None:
        for n in self.nodes:
            n.server.stop()
        self.nodes.clear()

    def __enter__(self) -> LocalCluster:
        return self.start() if not self.nodes else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- state ---------------------------------------------------------------------

    def live_nodes(self) -> list[ClusterNode]:
        return [n for n in self.nodes if n.alive]

    def roles(self) -> dict[str, str]:
        """``address -> "master" | "slave"`` as each live node sees itself."""
        out: dict[str, str] = {}
        for n in self.live_nodes():
            info = parse_info(self.command(n, "INFO", "replication"))
            out[n.address] = info.get("role", "?")
        return out

    def master_nodes(self) -> list[ClusterNode]:
        """Live nodes that are masters owning slots, as the first live node sees them."""
        shards = self.slot_owners()
        owners = {addr for _, _, addr in shards}
        return [n for n in self.live_nodes() if n.address in owners]

    def slot_owners(self, via: ClusterNode | None = None) -> list[tuple[int, int, str]]:
        """``(first, last, master address)`` for each slot range (CLUSTER SLOTS)."""
        node = via or self.live_nodes()[0]
        out = []
        for entry in self.command(node, "CLUSTER", "SLOTS"):
            ip = entry[2][0].decode() or node.server.host
            out.append((int(entry[0]), int(entry[1]), f"{ip}:{int(entry[2][1])}"))
        return sorted(out)

    def owner_of(self, slot: int, via: ClusterNode | None = None) -> str:
        for lo, hi, addr in self.slot_owners(via):
            if lo <= slot <= hi:
                return addr
        raise KeyError(f"slot {slot} has no owner")

    def _health_problem(self) -> str | None:
        """Why the cluster is not healthy yet, or None when it is."""
        live = self.live_nodes()
        for n in live:
            try:
                info = parse_info(self.command(n, "CLUSTER", "INFO"))
            except (OSError, Exception) as exc:
                return f"{n.address}: {exc}"
            if info.get("cluster_state") != "ok":
                return f"{n.address}: cluster_state {info.get('cluster_state')}"
            if info.get("cluster_slots_assigned") != str(SLOT_COUNT):
                return f"{n.address}: {info.get('cluster_slots_assigned')} slots assigned"
            if info.get("cluster_slots_fail", "0") != "0":
                return f"{n.address}: {info.get('cluster_slots_fail')} slots in fail state"
            repl = parse_info(self.command(n, "INFO", "replication"))
            if repl.get("role") == "slave" and repl.get("master_link_status") != "up":
                return f"{n.address}: replica link {repl.get('master_link_status')}"
        views = {tuple(self.slot_owners(n)) for n in live}
        if len(views) != 1:
            return "nodes disagree about the slot owners"
        return self._roles_problem(live)

    def _roles_problem(self, live: list[ClusterNode]) -> str | None:
        """Whether every live node sees every other live node in its true role, with no
        failure flag (gossip takes a moment to spread a new replica or a promotion)."""
        roles = {a: ("master" if r == "master" else "slave") for a, r in self.roles().items()}
        for n in live:
            seen: dict[str, set[str]] = {}
            for line in self.command(n, "CLUSTER", "NODES").decode().splitlines():
                fields = line.split()
                address = fields[1].split("@")[0]
                seen[address] = set(fields[2].split(","))
            for address, role in roles.items():
                flags = seen.get(address, set())
                if role not in flags or flags & {"fail", "fail?", "handshake", "noaddr"}:
                    return f"{n.address} sees {address} as {','.join(sorted(flags)) or 'unknown'}"
        return None

    def wait_healthy(self, timeout: float = FORM_TIMEOUT) -> float:
        """Block until every live node reports a healthy, agreed cluster; return the
        seconds it took. Raises TimeoutError naming what was still wrong."""
        start = time.monotonic()
        deadline = start + timeout
        while True:
            problem = self._health_problem()
            if problem is None:
                return time.monotonic() - start
            if time.monotonic() > deadline:
                raise TimeoutError(f"cluster not healthy within {timeout} s: {problem}")
            time.sleep(POLL_INTERVAL)

    def wait_for(self, predicate: Any, timeout: float, what: str) -> float:
        """Poll ``predicate()`` (bounded) until it is true; return the seconds it took."""
        start = time.monotonic()
        while True:
            with contextlib.suppress(OSError, ConnectionError):
                if predicate():
                    return time.monotonic() - start
            if time.monotonic() - start > timeout:
                raise TimeoutError(f"{what} did not happen within {timeout} s")
            time.sleep(POLL_INTERVAL)

    def wait_replicated(self, master: ClusterNode, timeout: float = FORM_TIMEOUT) -> float:
        """Block until every replica of ``master`` has its whole replication stream
        (``slave_repl_offset`` of each replica reaches the master's
        ``master_repl_offset``). ``WAIT`` would not do: it only covers the writes of the
        connection that calls it."""

        def caught_up() -> bool:
            info = parse_info(self.command(master, "INFO", "replication"))
            target = int(info["master_repl_offset"])
            offsets = [
                int(v.split("offset=")[1].split(",")[0])
                for k, v in info.items()
                if k.startswith("slave") and k[5:].isdigit()
            ]
            return bool(offsets) and min(offsets) >= target

        return self.wait_for(caught_up, timeout, f"replication from {master.address}")

    # -- faults --------------------------------------------------------------------

    def kill(self, node: ClusterNode) -> None:
        """SIGKILL ``node`` (a crash: no goodbye to the cluster) and wait for it to die."""
        proc = node.server.process
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=ADMIN_TIMEOUT)

    # -- resharding (CLUSTER SETSLOT + MIGRATE, what redis-cli --cluster reshard does) --

    def begin_migration(self, slot: int, source: ClusterNode, target: ClusterNode) -> None:
        """Mark ``slot`` IMPORTING on ``target`` and MIGRATING on ``source`` (that order,
        as the specification asks, so no key can be orphaned in between)."""
        self.command(target, "CLUSTER", "SETSLOT", slot, "IMPORTING", source.node_id)
        self.command(source, "CLUSTER", "SETSLOT", slot, "MIGRATING", target.node_id)

    def migrate_keys(
        self, slot: int, source: ClusterNode, target: ClusterNode, count: int = 100
    ) -> int:
        """Move up to ``count`` keys of ``slot`` from ``source`` to ``target`` (MIGRATE);
        return how many were moved."""
        keys = self.command(source, "CLUSTER", "GETKEYSINSLOT", slot, count)
        if not keys:
            return 0
        auth: list[object] = ["AUTH", self.password] if self.password else []
        self.command(source, "MIGRATE", target.server.host, target.server.port, "", 0,
                     int(ADMIN_TIMEOUT * 1000), "REPLACE", *auth, "KEYS", *keys)  # fmt: skip
        return len(keys)

    def finish_migration(self, slot: int, target: ClusterNode) -> None:
        """Assign ``slot`` to ``target`` on the target first, then on every other master
        (the specification's order for ending a migration)."""
        masters = self.master_nodes()
        self.command(target, "CLUSTER", "SETSLOT", slot, "NODE", target.node_id)
        for n in masters:
            if n is not target:
                self.command(n, "CLUSTER", "SETSLOT", slot, "NODE", target.node_id)

    def move_slot(self, slot: int, source: ClusterNode, target: ClusterNode) -> None:
        """Move ``slot`` with all its keys from ``source`` to ``target``."""
        self.begin_migration(slot, source, target)
        while self.migrate_keys(slot, source, target):
            pass
        self.finish_migration(slot, target)

    def flushall(self) -> None:
        """FLUSHALL on every live master."""
        for n in self.master_nodes():
            self.command(n, "FLUSHALL")

    def iter_keys(self) -> Iterator[bytes]:
        """Every key on every live master (SCAN), for checks in tests."""
        for n in self.master_nodes():
            cursor: bytes = b"0"
            while True:
                cursor, page = self.command(n, "SCAN", cursor, "COUNT", 1000)
                yield from page
                if cursor == b"0":
                    break
