"""Resolved connection settings handed to a backend.

:mod:`respkv.config` turns URLs, JSON and environment variables into one
:class:`ConnectionOptions`; the engines only ever read this frozen record. Secrets live
in fields that never reach ``repr`` (see :meth:`ConnectionOptions.__repr__`).

Default numbers and where they come from (measured: ``benchmarks/scaling.py``, the
figures in docs/performance.md, "Against LMCache's connector"):

* ``num_workers``: :func:`default_num_workers` of this machine's cores: as many as
  there are cores, at least :data:`MIN_DEFAULT_WORKERS` and at most
  :data:`MAX_DEFAULT_WORKERS` (LMCache's default). Each worker owns one connection and
  keeps at most one large value in flight on it, so the workers set how many bytes the
  server holds in flight at once. On 2 cores no count was best everywhere, but 4 had
  the smallest worst case over 0.5-4 MiB SET/GET (within 18 % of the best count at every
  point; 8 fell to 63 % on 4 MiB GET: 32 MB of replies in flight on a single-threaded
  server). A ``num_workers`` given explicitly (argument, URL, JSON, environment) always
  wins.
* ``window_values`` / ``window_bytes=8 MiB``: large SET/GET requests in flight per
  connection. ``window_values=0`` (the default) is :func:`default_window_values`: two
  with a single worker, else one. One, as LMCache's connector does: with a second
  large SET queued behind the first, Redis's greedy read after a large argument pulls
  the next value into the query buffer, which it then copies (``memmove``, 8 % -> 19 %
  of its time at 1 MiB x 8 connections) instead of adopting the buffer as the value,
  and faults 2-15x more pages per GB on SET; a second GET queued doubles the replies
  Redis copies into its output buffers. With one in flight the server does exactly the
  work it does for LMCache (same faults, same CPU per GB). A single connection is the
  exception: the server then idles while the client turns each value around, and a
  second value queued hides that (1.0-1.6x at 0.5-8 MiB with one worker, both
  backends); from two workers on it cost up to 30 %. On a link with a long round trip
  and few workers, ``window_values=2`` may pay as well: measure it there.
* ``window_small=256``: EXISTS/DELETE requests in flight per connection; replies are
  four bytes, so deep pipelining amortises the round trips.
* ``connect_timeout=5 s``, ``op_timeout=30 s``: an operation's deadline runs from the
  moment its request starts to be sent; 30 s covers a 512 MiB value on a slow link.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final

from respkv.errors import ConfigError

__all__ = [
    "MAX_DEFAULT_WORKERS",
    "MAX_TIMEOUT",
    "MIN_DEFAULT_WORKERS",
    "ConnectionOptions",
    "TLSOptions",
    "default_num_workers",
    "default_window_values",
]

MIB: Final = 1024 * 1024
#: Longest timeout accepted anywhere (``connect_timeout``, ``op_timeout``, a batch's
#: ``timeout``): one day. Longer is no deadline at all in practice, and the OS waits
#: underneath (``poll``'s int milliseconds, ``settimeout``) overflow near 24.8 days, so
#: an "infinite" timeout is refused with this bound named instead of hanging a worker.
MAX_TIMEOUT: Final = 86_400.0
#: Fewest workers chosen by default: on 2 cores 4 had the smallest worst case over
#: 0.5-4 MiB chunks, and fewer leave the server idle while a client thread waits for a
#: core on a busy host (measured: benchmarks/scaling.py, docs/performance.md).
MIN_DEFAULT_WORKERS: Final = 4
#: Most workers chosen by default: LMCache's default; more connections add bytes in
#: flight on the server without adding throughput.
MAX_DEFAULT_WORKERS: Final = 8


def default_num_workers(cores: int | None = None) -> int:
    """The worker count used when none is given: ``cores`` (default: this machine's
    CPUs available to this process) clamped to ``MIN_DEFAULT_WORKERS..MAX_DEFAULT_WORKERS``."""
    if cores is None:
        try:
            cores = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):  # not Linux
            cores = os.cpu_count() or 1
    return max(MIN_DEFAULT_WORKERS, min(MAX_DEFAULT_WORKERS, cores))


def default_window_values(num_workers: int) -> int:
    """Large values in flight per connection when ``window_values`` is 0 (the default):
    2 for a single worker, whose server would otherwise idle while each value is turned
    around, else 1 (see the module notes)."""
    return 2 if num_workers == 1 else 1


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
    num_workers: int = field(default_factory=default_num_workers)
    connect_timeout: float = 5.0
    op_timeout: float = 30.0
    client_name: str = "respkv"
    tls: TLSOptions | None = None
    #: Large values in flight per connection. 0 (the default) is replaced at once by
    #: :func:`default_window_values` of ``num_workers``, so readers see the number in
    #: effect; :meth:`replace` derives it again when ``num_workers`` changes.
    window_values: int = 0
    window_bytes: int = 8 * MIB
    window_small: int = 256
    reconnect_backoff_min: float = 0.01
    reconnect_backoff_max: float = 1.0
    #: ``window_values`` was derived from ``num_workers`` (given as 0 or not at all). Not
    #: a field: set on the instance by ``__post_init__``, read by :meth:`given`.
    _window_derived: ClassVar[bool] = False

    def __post_init__(self) -> None:
        if self.window_values == 0:
            # A frozen record: set once here, before anyone can read it.
            object.__setattr__(self, "window_values", default_window_values(self.num_workers))
            object.__setattr__(self, "_window_derived", True)
        problems = [*self._address_problems(), *self._timing_problems()]
        if self.window_values < 0:
            problems.append(
                f"window_values must be >= 0 (0: by num_workers), got {self.window_values}"
            )
        for name in ("window_bytes", "window_small"):
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

    def given(self) -> dict[str, Any]:
        """The fields as given: what rebuilds these options with other changes (a
        ``window_values`` derived from ``num_workers`` is 0 here, so it is derived again
        for the new count)."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        if self._window_derived:
            fields["window_values"] = 0
        return fields

    def replace(self, **changes: object) -> ConnectionOptions:
        """A copy with some fields changed (validated again; see :meth:`given`)."""
        return type(self)(**(self.given() | changes))
