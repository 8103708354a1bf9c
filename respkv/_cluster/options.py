"""Cluster settings: :class:`ClusterOptions`, a :class:`~respkv.ConnectionOptions` with seeds.

Everything a single-server connection takes (credentials, TLS, workers, windows,
timeouts) applies to each master's connector unchanged; this record only adds where the
cluster can be found and how stubborn the router is. It *is* a ``ConnectionOptions``
(a subclass), so the clients, the KV store and the configuration code carry it without
knowing about clusters; ``host``/``port`` are the first seed's, so an administrative
connection made from it (``Client.command``) reaches a cluster node. A plain
``ConnectionOptions`` never reaches the router: :func:`respkv.open_connector` picks the
router only for this type.

Defaults and where they come from:

* ``max_redirects=5``: MOVED/ASK hops one key may take within one batch. A stable
  cluster needs at most two (a MOVED after a resharding, then an ASK while a slot
  migrates); redis-py allows 16 per command, but a KV-cache key that has bounced five
  times is better reported than chased.
* ``cluster_retries=5``: retries of a key answered TRYAGAIN or CLUSTERDOWN, with a
  backoff doubling from 50 ms to 1 s (about 1.5 s in all): a failover on a cluster
  with the default ``cluster-node-timeout`` takes longer, and a cache wants an answer
  sooner; a batch ``timeout=`` ends the wait earlier still.
* ``allow_standalone=False``: a seed that answers "cluster support disabled" is an
  error, not silently used as a one-node cluster. Set it for code that must run on
  both (and in the conformance suite, which runs the router over plain servers).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Final

from respkv._options import ConnectionOptions
from respkv.errors import ConfigError

__all__ = ["MAX_SEEDS", "ClusterOptions", "format_address", "parse_address"]

#: Most seed addresses accepted (a cluster has at most ~1000 nodes; seeds are a few).
MAX_SEEDS: Final = 1024
#: Upper bounds of the router's own settings (a larger value is a typo, not a policy).
MAX_REDIRECTS_LIMIT: Final = 100
MAX_RETRIES_LIMIT: Final = 100


def format_address(host: str, port: int) -> str:
    """``host:port``, with an IPv6 literal in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_address(text: str, default_port: int = 6379) -> tuple[str, int]:
    """``host[:port]`` or ``[v6]:port`` as ``(host, port)``; raises ConfigError."""
    s = text.strip()
    if not s:
        raise ConfigError("empty cluster seed address")
    if s.startswith("["):
        host, sep, rest = s[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ConfigError(f"cluster seed {text!r}: bad IPv6 address (use [addr]:port)")
        port_text = rest[1:]
    elif s.count(":") == 1:
        host, _, port_text = s.partition(":")
    elif ":" in s:
        raise ConfigError(f"cluster seed {text!r}: an IPv6 address needs brackets ([addr]:port)")
    else:
        host, port_text = s, ""
    if not host:
        raise ConfigError(f"cluster seed {text!r}: no host")
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError(f"cluster seed {text!r}: port must be in 1..65535")
    return host, int(port_text)


#: The fields of ConnectionOptions (what each master's connector gets).
_BASE_FIELDS: Final = tuple(f.name for f in dataclasses.fields(ConnectionOptions))


@dataclass(frozen=True)
class ClusterOptions(ConnectionOptions):
    """A cluster: seed nodes (``host:port``) plus the per-node connection settings."""

    seeds: tuple[str, ...] = ()
    max_redirects: int = 5
    cluster_retries: int = 5
    allow_standalone: bool = False

    def __post_init__(self) -> None:
        problems: list[str] = []
        seeds: object = self.seeds  # checked at run time: callers may pass anything
        if isinstance(seeds, str):
            problems.append("seeds must be a sequence of 'host:port' strings, not one string")
        elif not self.seeds:
            problems.append("a cluster needs at least one seed address")
        elif len(self.seeds) > MAX_SEEDS:
            problems.append(f"{len(self.seeds)} seeds exceed MAX_SEEDS ({MAX_SEEDS})")
        if self.unix_path is not None:
            problems.append("a cluster is reached over TCP; unix_path cannot be used")
        if self.db:
            problems.append(f"Redis Cluster has only database 0, got db={self.db}")
        if not 0 <= self.max_redirects <= MAX_REDIRECTS_LIMIT:
            problems.append(f"max_redirects must be in 0..{MAX_REDIRECTS_LIMIT}")
        if not 0 <= self.cluster_retries <= MAX_RETRIES_LIMIT:
            problems.append(f"cluster_retries must be in 0..{MAX_RETRIES_LIMIT}")
        if problems:
            raise ConfigError("; ".join(problems))
        normal = tuple(format_address(*parse_address(s)) for s in self.seeds)
        object.__setattr__(self, "seeds", normal)
        host, port = parse_address(normal[0])
        if (self.host, self.port) != (host, port):
            object.__setattr__(self, "host", host)
            object.__setattr__(self, "port", port)
        super().__post_init__()

    @classmethod
    def from_seeds(cls, seeds: list[str] | tuple[str, ...], **kw: object) -> ClusterOptions:
        """Options for ``seeds`` with any other field set by keyword."""
        host, port = parse_address(seeds[0]) if seeds else ("127.0.0.1", 6379)
        return cls(seeds=tuple(seeds), host=host, port=port, **kw)  # type: ignore[arg-type]

    @classmethod
    def from_options(cls, options: ConnectionOptions, **kw: object) -> ClusterOptions:
        """Cluster options with ``options``' settings; the seeds default to its address."""
        given = options.given()
        fields: dict[str, object] = {name: given[name] for name in _BASE_FIELDS}
        fields["seeds"] = getattr(options, "seeds", None) or (options.address,)
        fields.update(kw)
        return cls(**fields)  # type: ignore[arg-type]

    def node_options(self, address: str) -> ConnectionOptions:
        """Plain single-server options for one node (what its connector gets)."""
        host, port = parse_address(address)
        fields = {name: getattr(self, name) for name in _BASE_FIELDS}
        fields.update(host=host, port=port)
        return ConnectionOptions(**fields)

    def replace(self, **changes: object) -> ClusterOptions:
        """A copy with some fields changed (validated again; see :meth:`given`)."""
        return type(self)(**(self.given() | changes))

    def __repr__(self) -> str:
        # ConnectionOptions' repr lists every field (these too) and hides the password.
        return "ClusterOptions(" + ConnectionOptions.__repr__(self).removeprefix(
            "ConnectionOptions("
        )
