"""Resolved connection settings handed to a backend.

:mod:`respkv.config` turns URLs, JSON and environment variables into one
:class:`ConnectionOptions`; the engines only ever read this frozen record. Secrets live
in fields that never reach ``repr`` (see :meth:`ConnectionOptions.__repr__`).

Default numbers and where they come from:

* ``num_workers=8``: LMCache's default; each worker owns one connection.
* ``window_values=2`` / ``window_bytes=8 MiB``: large SET/GET requests in flight per
  connection. Redis copies every queued reply into its output buffer before writing,
  so deep pipelining of multi-MiB GETs only adds memory traffic (measured:
  benchmarks/bench_windows.py). Two values keep the socket busy while the next
  request is on its way.
* ``window_small=256``: EXISTS/DELETE requests in flight per connection; replies are
  four bytes, so deep pipelining amortises the round trips.
* ``connect_timeout=5 s``, ``op_timeout=30 s``: an operation's deadline runs from the
  moment its request starts to be sent; 30 s covers a 512 MiB value on a slow link.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Final

from respkv.errors import ConfigError

__all__ = ["MAX_TIMEOUT", "ConnectionOptions", "TLSOptions"]

MIB: Final = 1024 * 1024
#: Longest timeout accepted anywhere (``connect_timeout``, ``op_timeout``, a batch's
#: ``timeout``): one day. Longer is no deadline at all in practice, and the OS waits
#: underneath (``poll``'s int milliseconds, ``settimeout``) overflow near 24.8 days, so
#: an "infinite" timeout is refused with this bound named instead of hanging a worker.
MAX_TIMEOUT: Final = 86_400.0


@dataclass(frozen=True)
class TLSOptions:
    """TLS settings for ``resps://`` connections."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    server_hostname: str | None = None
    verify: bool = True


@dataclass(frozen=True)
class ConnectionOptions:
    """Everything a backend needs to open and run its connections."""

    host: str = "127.0.0.1"
    port: int = 6379
    unix_path: str | None = None
    username: str = ""
    password: str = field(default="", repr=False)
    db: int = 0
    num_workers: int = 8
    connect_timeout: float = 5.0
    op_timeout: float = 30.0
    client_name: str = "respkv"
    tls: TLSOptions | None = None
    window_values: int = 2
    window_bytes: int = 8 * MIB
    window_small: int = 256
    reconnect_backoff_min: float = 0.01
    reconnect_backoff_max: float = 1.0

    def __post_init__(self) -> None:
        problems = [*self._address_problems(), *self._timing_problems()]
        for name in ("window_values", "window_bytes", "window_small"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 1 <= self.num_workers <= 256:
            problems.append(f"num_workers must be in 1..256, got {self.num_workers}")
        if self.client_name and any(c.isspace() for c in self.client_name):
            problems.append("client_name must not contain whitespace")
        if problems:
            raise ConfigError("; ".join(problems))

    def _address_problems(self) -> list[str]:
        problems = []
        if self.unix_path is None and not 0 < self.port < 65536:
            problems.append(f"port must be in 1..65535, got {self.port}")
        if self.unix_path is None and not self.host:
            problems.append("host must not be empty")
        if self.db < 0:
            problems.append(f"db must be >= 0, got {self.db}")
        return problems

    def _timing_problems(self) -> list[str]:
        problems = []
        for name in ("connect_timeout", "op_timeout"):
            value = getattr(self, name)
            if not 0 < value <= MAX_TIMEOUT:  # also False for nan
                problems.append(
                    f"{name} must be > 0 and at most MAX_TIMEOUT ({MAX_TIMEOUT:g} s), got {value}"
                )
        if not 0 <= self.reconnect_backoff_min <= self.reconnect_backoff_max:
            problems.append("need 0 <= reconnect_backoff_min <= reconnect_backoff_max")
        return problems

    def __repr__(self) -> str:
        parts = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "password":
                parts.append(f"password={'***' if value else repr('')}")
            else:
                parts.append(f"{f.name}={value!r}")
        return f"ConnectionOptions({', '.join(parts)})"

    @property
    def address(self) -> str:
        """Where the server is, for messages: ``host:port`` or the socket path."""
        if self.unix_path is not None:
            return self.unix_path
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def replace(self, **changes: object) -> ConnectionOptions:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]
