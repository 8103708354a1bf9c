"""Client counters in the Prometheus text exposition format, without a dependency.

:func:`prometheus_text` renders the :class:`~respkv.ClientStats` of one or more clients
(``Client``, ``AsyncClient``, a ``KVStore``'s client, or a snapshot taken earlier) as
the text a Prometheus server scrapes (format 0.0.4, ``CONTENT_TYPE``): every value is a
monotonic counter, so ``rate()`` and ``increase()`` apply. Serve it from any HTTP
handler, or feed the same snapshot to OpenTelemetry (``docs/clients.md`` shows both).

The families (``respkv_*``; each has ``# HELP`` and ``# TYPE``, once):

===========================================  ========================================
``respkv_batches_total{op}``                 batches completed, per operation
``respkv_keys_total{outcome}``               keys by final status: ok, miss, failed
``respkv_key_failures_total{kind}``          failed keys per ``ErrorKind``
``respkv_failed_batches_total``              batches with at least one failed key
``respkv_timeouts_total``                    keys that ended ``TIMEOUT``
``respkv_value_bytes_total{direction}``      value bytes: ``out`` (SET acknowledged),
                                             ``in`` (GET hits, copying reads)
``respkv_connections_opened_total``          connections made by the engine
``respkv_reconnects_total``                  of those, made after a worker's first
``respkv_connect_failures_total``            connection attempts that failed
``respkv_connections_dropped_total``         connections lost, timed out or dropped
===========================================  ========================================

Every operation and every failure kind is written, zeros included, so a series exists
before its first event. What is *not* written: keys, values, prefixes, URLs or any
option but the server's ``host:port`` (label ``address``, on clients; a snapshot has
none). Extra labels (``labels=``, e.g. the serving instance) are the caller's: names
are checked against the format's rules, values escaped.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Final, Protocol

from respkv._clientbase import ClientStats
from respkv._contract import ErrorKind, Op

__all__ = ["CONTENT_TYPE", "StatsSource", "prometheus_text"]

#: The ``Content-Type`` of the exposition (Prometheus text format 0.0.4).
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"

#: Label names the families use themselves (a caller's label may not shadow one).
_RESERVED: Final = frozenset({"op", "outcome", "kind", "direction", "address"})
#: A label name: ``[a-zA-Z_][a-zA-Z0-9_]*``, and ``__`` is reserved by Prometheus.
_LABEL_NAME: Final = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")


class _HasStats(Protocol):
    def stats(self) -> ClientStats: ...


#: What :func:`prometheus_text` takes: a client (anything with ``stats()``), a
#: snapshot, or either paired with labels of its own.
StatsSource = _HasStats | ClientStats | tuple[_HasStats | ClientStats, Mapping[str, str]]

#: (name, help, the ClientStats field) of the families without a label of their own.
_PLAIN: Final = (
    ("failed_batches", "Batches with at least one failed key.", "failed_batches"),
    ("timeouts", "Keys that ended TIMEOUT (op_timeout or a batch deadline).", "timeouts"),
    ("connections_opened", "Connections the engine made (handshake done).", "connections_opened"),
    ("reconnects", "Connections a worker made after its first.", "reconnects"),
    ("connect_failures", "Connection attempts that failed.", "connect_failures"),
    (
        "connections_dropped",
        "Connections lost, timed out or dropped to end a batch.",
        "connections_dropped",
    ),
)


def prometheus_text(*sources: StatsSource, labels: Mapping[str, str] | None = None) -> str:
    """The counters of ``sources`` as one Prometheus text exposition.

    ``labels`` go on every sample; a ``(source, labels)`` pair adds labels of its own
    (needed when two clients talk to the same address). Raises ``ValueError`` for a
    label name the format refuses or that a family uses (``op``, ``kind`` ...)."""
    common = _checked(labels or {})
    rows = [_row(source, common) for source in sources]
    seen = {tuple(sorted(labels.items())) for _, labels in rows}
    if len(seen) < len(rows):
        raise ValueError(
            "two sources have the same labels (one address, no labels of their own): "
            "pass (source, {'name': 'value'}) pairs to tell them apart"
        )
    out: list[str] = []
    _family(out, "batches", "Batches completed, per operation.", rows, _by_op)
    _family(out, "keys", "Keys by final status (ok, miss, failed).", rows, _by_outcome)
    _family(out, "key_failures", "Failed keys per failure kind.", rows, _by_kind)
    _family(out, "value_bytes", "Value bytes moved (out: stored, in: fetched).", rows, _by_dir)
    for name, text, attr in _PLAIN:
        _family(out, name, text, rows, _field(attr))
    return "\n".join(out) + "\n"


def _row(source: StatsSource, common: dict[str, str]) -> tuple[ClientStats, dict[str, str]]:
    own: Mapping[str, str] = {}
    if isinstance(source, tuple):
        source, own = source
    labels = dict(common)
    if not isinstance(source, ClientStats):
        options = getattr(source, "options", None)
        address = getattr(options, "address", None)
        if isinstance(address, str):
            labels["address"] = address
        source = source.stats()
    labels.update(_checked(own))
    return source, labels


def _checked(labels: Mapping[str, str]) -> dict[str, str]:
    for name, value in labels.items():
        if not isinstance(name, str) or not _LABEL_NAME.match(name) or name.startswith("__"):
            raise ValueError(f"invalid Prometheus label name {name!r}")
        if name in _RESERVED:
            raise ValueError(f"label {name!r} is set by respkv.metrics itself")
        if not isinstance(value, str):
            raise ValueError(f"label {name!r}: value must be str, not {type(value).__name__}")
    return dict(labels)


Samples = Iterator[tuple[Mapping[str, str], int]]


def _field(attr: str) -> Callable[[ClientStats], Samples]:
    def samples(s: ClientStats) -> Samples:
        yield {}, getattr(s, attr)

    return samples


def _by_op(s: ClientStats) -> Samples:
    for op in Op:
        yield {"op": op.name.lower()}, s.batches_by_op.get(op, 0)


def _by_outcome(s: ClientStats) -> Samples:
    yield {"outcome": "ok"}, s.ok_keys
    yield {"outcome": "miss"}, s.missed_keys
    yield {"outcome": "failed"}, s.failed_keys


def _by_kind(s: ClientStats) -> Samples:
    for kind in ErrorKind:
        yield {"kind": kind.name.lower()}, s.errors.get(kind, 0)


def _by_dir(s: ClientStats) -> Samples:
    yield {"direction": "out"}, s.bytes_out
    yield {"direction": "in"}, s.bytes_in


def _family(
    out: list[str],
    name: str,
    text: str,
    rows: Sequence[tuple[ClientStats, dict[str, str]]],
    samples: Callable[[ClientStats], Samples],
) -> None:
    metric = f"respkv_{name}_total"
    out.append(f"# HELP {metric} {text}")
    out.append(f"# TYPE {metric} counter")
    for stats, labels in rows:
        for own, value in samples(stats):
            out.append(f"{metric}{_labels({**labels, **own})} {int(value)}")


def _labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    body = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
    return "{" + body + "}"


def _escape(value: str) -> str:
    """A label value as the format writes it: backslash, quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
