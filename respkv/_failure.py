"""Per-key failures as data: the record both backends fill, and the one place their
messages are written.

Why a record and not a string. A storage client must *decide* things from a failure:
the cluster router reads ``MOVED 3999 127.0.0.1:7002`` from a server error, the KV store
needs to know whether a failed SET may still have been applied, a retry policy wants to
tell a timeout from a refused connection. Text is for people; decisions need fields. So
an engine reports a failed key as a :class:`Failure`: an :class:`ErrorKind`, the numbers
that go with it (an errno, the expected and actual sizes, the timeout in force) and, for
a server error, the server's own reply text, whose first word is its code (``OOM``,
``NOAUTH``, ``WRONGPASS``, ``MOVED``, ``ASK``, ``LOADING``, ``READONLY``, ``TRYAGAIN``).

The native engine returns kinds and numbers only; every message is formatted here, in
Python, once for both backends (:func:`format_failure`). The key's
:class:`~respkv.KeyStatus` follows from its kind through :data:`STATUS_OF_KIND`, which
is the only status mapping in respkv.

``detail`` carries text that comes from outside respkv and is not ours to reproduce:
an OpenSSL reason, the text of an unexpected exception, the name of a parser limit. No
decision may depend on it.
"""

from __future__ import annotations

import enum
import errno as errno_codes
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from respkv._status import FAILURE_STATUSES, KeyStatus

__all__ = [
    "STATUS_OF_KIND",
    "ErrorKind",
    "Failure",
    "format_failure",
    "summarize",
]


class ErrorKind(enum.IntEnum):
    """Why one key failed. Values are part of the contract (the native module uses them)."""

    #: The connection could not be made (``errno``; ``detail`` for resolver errors).
    CONNECT_FAILED = 1
    #: The server rejected AUTH or SELECT on connect: ``reply`` is its error text,
    #: ``detail`` the command (``"AUTH"`` or ``"SELECT"``).
    HANDSHAKE_FAILED = 2
    #: The TLS handshake or session failed: ``detail`` is the TLS library's reason;
    #: ``reply`` the server's first bytes when they were no TLS (a plaintext server);
    #: ``errno`` ETIMEDOUT when connect_timeout passed in the handshake. With none of
    #: these, the server closed (``errno``: or reset) the connection during the
    #: handshake or right after it, before any reply: how a TLS 1.3 server refuses a
    #: client without the certificate it requires.
    TLS_FAILED = 3
    #: The connection broke with the key in flight: ``errno``, or 0 when the server
    #: closed it in an orderly way.
    CONNECTION_LOST = 4
    #: No reply within ``op_timeout`` (``timeout`` holds it); the connection is dropped.
    TIMED_OUT = 5
    #: The batch's own deadline (``submit_batch_*(..., timeout=)``, in ``timeout``)
    #: passed before the key finished.
    DEADLINE = 6
    #: ``cancel(batch_id)`` ended the batch before the key finished.
    CANCELLED = 7
    #: ``close()`` ended the connector before the key finished.
    CLOSED = 8
    #: GET: the stored value has ``actual`` bytes, the buffer ``expected``.
    SIZE_MISMATCH = 9
    #: The server answered with an error reply: ``reply`` is its text.
    SERVER_ERROR = 10
    #: A well-formed reply of the wrong type for the command: ``reply`` describes it.
    UNEXPECTED_REPLY = 11
    #: The reply stream is not valid RESP2 or breaks a named limit (``detail``);
    #: the connection is dropped.
    PROTOCOL_ERROR = 12
    #: The connection was dropped to end *another* batch (its deadline or cancel) while
    #: this key was in flight on it.
    ABORTED = 13
    #: An unexpected error inside the engine (``detail``: its text); the worker failed
    #: what it held and went on.
    INTERNAL = 14


#: The status each kind gives its key: the only status mapping in respkv.
STATUS_OF_KIND: Final[dict[ErrorKind, KeyStatus]] = {
    ErrorKind.CONNECT_FAILED: KeyStatus.IO_ERROR,
    ErrorKind.HANDSHAKE_FAILED: KeyStatus.SERVER_ERROR,
    ErrorKind.TLS_FAILED: KeyStatus.IO_ERROR,
    ErrorKind.CONNECTION_LOST: KeyStatus.IO_ERROR,
    ErrorKind.TIMED_OUT: KeyStatus.TIMEOUT,
    ErrorKind.DEADLINE: KeyStatus.TIMEOUT,
    ErrorKind.CANCELLED: KeyStatus.CANCELLED,
    ErrorKind.CLOSED: KeyStatus.CANCELLED,
    ErrorKind.SIZE_MISMATCH: KeyStatus.SIZE_MISMATCH,
    ErrorKind.SERVER_ERROR: KeyStatus.SERVER_ERROR,
    ErrorKind.UNEXPECTED_REPLY: KeyStatus.SERVER_ERROR,
    ErrorKind.PROTOCOL_ERROR: KeyStatus.PROTOCOL_ERROR,
    ErrorKind.ABORTED: KeyStatus.IO_ERROR,
    ErrorKind.INTERNAL: KeyStatus.IO_ERROR,
}
assert set(STATUS_OF_KIND) == set(ErrorKind)
assert set(STATUS_OF_KIND.values()) <= FAILURE_STATUSES


@dataclass(frozen=True, slots=True)
class Failure:
    """Why one key failed, as data. ``message`` is the readable form."""

    kind: ErrorKind
    #: Where the key was going (``host:port`` or a socket path); filled by the connector.
    address: str = ""
    #: The OS error number, when the failure came from a system call (else 0).
    errno: int = 0
    #: SIZE_MISMATCH: the buffer's size in bytes.
    expected: int = 0
    #: SIZE_MISMATCH: the stored value's size in bytes.
    actual: int = 0
    #: TIMED_OUT / DEADLINE: the timeout in force, in seconds.
    timeout: float = 0.0
    #: SERVER_ERROR / HANDSHAKE_FAILED: the server's error reply, verbatim (no ``-``).
    #: UNEXPECTED_REPLY: a short description of the reply. TLS_FAILED: the server's
    #: plaintext answer to the TLS handshake (printable ASCII, one line, shortened).
    reply: str = ""
    #: Text from outside respkv (TLS library, parser limit, exception); never decided on.
    detail: str = ""
    #: True when the key's request had been (at least partly) written when it failed:
    #: a SET may then have been applied by the server ("unknown outcome").
    in_flight: bool = False

    @property
    def status(self) -> KeyStatus:
        """The key's status, from its kind (:data:`STATUS_OF_KIND`)."""
        return STATUS_OF_KIND[self.kind]

    @property
    def code(self) -> str:
        """The server's error code (the reply's first word: ``MOVED``, ``OOM``..), or ``""``."""
        if self.kind is not ErrorKind.SERVER_ERROR and self.kind is not ErrorKind.HANDSHAKE_FAILED:
            return ""
        return self.reply.split(" ", 1)[0]

    @property
    def outcome_unknown(self) -> bool:
        """For a write: the server may or may not have applied it."""
        return self.in_flight and self.status in (
            KeyStatus.IO_ERROR,
            KeyStatus.TIMEOUT,
            KeyStatus.CANCELLED,
            KeyStatus.PROTOCOL_ERROR,
        )

    @property
    def message(self) -> str:
        return format_failure(self)

    def __str__(self) -> str:
        return format_failure(self)


def _os_reason(f: Failure) -> str:
    if f.errno:
        name = errno_codes.errorcode.get(f.errno, str(f.errno))
        text = f"[Errno {f.errno}] {os.strerror(f.errno)} ({name})"
        return f"{text}: {f.detail}" if f.detail else text
    return f.detail


#: TLS_FAILED with no reason, no answer quoted and no timeout (see ErrorKind.TLS_FAILED).
TLS_CLOSED_REASON: Final = (
    "the server closed the connection during the TLS handshake "
    "(it probably requires a client certificate: set cert_file and key_file)"
)
#: TLS_FAILED with ETIMEDOUT and no reason from the TLS library.
TLS_TIMEOUT_REASON: Final = (
    "no complete answer to the TLS handshake within connect_timeout "
    "(is the port plaintext? use resp:// or the server's tls-port)"
)


def _tls_reason(f: Failure) -> str:
    reason = _os_reason(f)
    if f.reply:
        said = f'the server did not answer with TLS (it sent "{f.reply}")'
        return f"{said}: {reason}" if reason else said
    if f.detail:
        return reason
    explain = TLS_TIMEOUT_REASON if f.errno == errno_codes.ETIMEDOUT else TLS_CLOSED_REASON
    return f"{reason}: {explain}" if reason else explain


def _seconds(t: float) -> str:
    return f"{t:g} s"


def _at(f: Failure) -> str:
    return f.address or "the server"


#: One formatter per kind: the only place respkv words a per-key failure.
_FORMATS: Final[dict[ErrorKind, Callable[[Failure], str]]] = {
    ErrorKind.CONNECT_FAILED: lambda f: (
        f"connect to {_at(f)} failed: {_os_reason(f) or 'unknown reason'}"
    ),
    ErrorKind.HANDSHAKE_FAILED: lambda f: f"{f.detail or 'AUTH'} failed: {f.reply}",
    ErrorKind.TLS_FAILED: lambda f: f"TLS with {_at(f)} failed: {_tls_reason(f)}",
    ErrorKind.CONNECTION_LOST: lambda f: (
        f"connection to {_at(f)} lost: {_os_reason(f) or 'server closed the connection'}"
    ),
    ErrorKind.TIMED_OUT: lambda f: (
        f"no reply from {_at(f)} within op_timeout ({_seconds(f.timeout)})"
    ),
    ErrorKind.DEADLINE: lambda f: (
        f"batch deadline ({_seconds(f.timeout)}) passed before the key finished"
    ),
    ErrorKind.CANCELLED: lambda f: "batch cancelled before the key finished",
    ErrorKind.CLOSED: lambda f: "connector closed before the key finished",
    ErrorKind.SIZE_MISMATCH: lambda f: f"value is {f.actual} bytes, buffer is {f.expected} bytes",
    ErrorKind.SERVER_ERROR: lambda f: f.reply,
    ErrorKind.UNEXPECTED_REPLY: lambda f: f"unexpected reply: {f.reply}",
    ErrorKind.PROTOCOL_ERROR: lambda f: f"protocol error from {_at(f)}: {f.detail}",
    ErrorKind.ABORTED: lambda f: (
        f"connection to {_at(f)} dropped to end another batch; outcome unknown"
    ),
    ErrorKind.INTERNAL: lambda f: f"internal error in the engine: {f.detail}",
}
assert set(_FORMATS) == set(ErrorKind)


def format_failure(f: Failure) -> str:
    """The one readable message for a failure, whichever backend reported it."""
    return _FORMATS[f.kind](f)


def summarize(statuses: Sequence[KeyStatus], failures: Sequence[Failure | None]) -> str | None:
    """The batch's one-line error: ``None`` when no key failed."""
    # OK (0) and MISS (1) are the only non-failures: one max() decides the common case.
    if not statuses or max(statuses) <= KeyStatus.MISS:
        return None
    failed = [i for i, s in enumerate(statuses) if s in FAILURE_STATUSES]
    first = failed[0]
    f = failures[first]
    detail = f.message if f is not None else statuses[first].name
    name = statuses[first].name
    return f"{len(failed)} of {len(statuses)} keys failed; key {first}: {name}: {detail}"
