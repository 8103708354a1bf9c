"""A small blocking link to one cluster node, whose failures are :class:`Failure` records.

The router's slow paths run on it: reading the slot map (``CLUSTER SHARDS``) and
serving ``ASK`` redirects (``ASKING`` then the command, pipelined on one connection, as
the ASK redirection rule requires). Those are rare, so a plain blocking socket with a
deadline is the right tool; the bulk traffic stays on the per-node connectors.

Every way such a call can fail becomes the same data an engine reports for a key
(:class:`~respkv._failure.Failure`), so keys failed on this path look like keys failed
anywhere else: a refused connection is ``CONNECT_FAILED`` with its errno, a rejected
AUTH is ``HANDSHAKE_FAILED`` with the server's reply, a reply that did not come in time
is ``TIMED_OUT``, a dropped connection ``CONNECTION_LOST``. An error *reply* to a
command is not a failure of the link: it is returned as a
:class:`~respkv.errors.ReplyError` value in its place, as the codec gives it.

GET through an ASK redirect is received straight into the caller's buffer
(:meth:`~respkv.resp2.Reader.set_target`), so a value of another size is drained and
reported as :class:`~respkv.resp2.SizeMismatch`, exactly as on the fast path.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Sequence
from typing import Any

from respkv._admin import handshake_commands, handshake_required, open_socket
from respkv._failure import ErrorKind, Failure
from respkv._limits import RECV_CHUNK  # bytes asked of recv at a time, as the engines
from respkv._options import ConnectionOptions
from respkv.errors import ProtocolError, ReplyError
from respkv.resp2 import NEED_DATA, Reader, pack_command

__all__ = ["LinkError", "NodeLink"]


class LinkError(Exception):
    """The link failed; ``failure`` says how (the link must be dropped)."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.message)
        self.failure = failure


def _os_failure(kind: ErrorKind, address: str, exc: BaseException, sent: bool) -> Failure:
    if isinstance(exc, ssl.SSLError):
        return Failure(ErrorKind.TLS_FAILED, address, detail=exc.reason or str(exc), in_flight=sent)
    if isinstance(exc, socket.gaierror):
        return Failure(kind, address, detail=str(exc), in_flight=sent)
    errno = exc.errno if isinstance(exc, OSError) and exc.errno else 0
    return Failure(kind, address, errno=errno, detail="" if errno else str(exc), in_flight=sent)


class NodeLink:
    """One blocking connection to ``options``' server; not thread-safe (one user)."""

    def __init__(self, options: ConnectionOptions, timeout: float) -> None:
        self.address = options.address
        self._reader = Reader()
        # One receive buffer for the link's life (as the pure engine's connections).
        self._scratch = memoryview(bytearray(RECV_CHUNK))
        #: The RESP type byte of each reply of the last :meth:`call` (for describe_reply).
        self.types: list[int] = []
        try:
            self._sock = open_socket(options, min(options.connect_timeout, timeout))
        except (OSError, ssl.SSLError) as exc:
            raise LinkError(
                _os_failure(ErrorKind.CONNECT_FAILED, self.address, exc, False)
            ) from None
        try:
            for cmd in handshake_commands(options):
                (reply,) = self.call([cmd], timeout)
                if isinstance(reply, ReplyError) and handshake_required(cmd):
                    raise LinkError(
                        Failure(
                            ErrorKind.HANDSHAKE_FAILED,
                            self.address,
                            reply=str(reply),
                            detail=str(cmd[0]),
                        )
                    )
        except BaseException:
            self.close()
            raise

    def call(
        self,
        commands: Sequence[Sequence[object]],
        timeout: float,
        target: memoryview | None = None,
    ) -> list[Any]:
        """Send ``commands`` in one write and return their replies in order.

        ``target``: the *last* reply, if it is a bulk string, goes into this buffer
        (``FILLED``, or ``SizeMismatch`` when its length differs). Raises LinkError.
        """
        deadline = time.monotonic() + timeout
        parts = [p for cmd in commands for p in pack_command(*cmd)]
        try:
            self._sock.settimeout(timeout)
            for part in parts:
                self._sock.sendall(part)
        except (OSError, ssl.SSLError) as exc:
            raise LinkError(self._io_failure(exc, True, timeout)) from None
        replies: list[Any] = []
        self.types = []
        for i in range(len(commands)):
            if target is not None and i == len(commands) - 1:
                self._reader.set_target(target)
            replies.append(self._read_one(deadline, timeout))
            self.types.append(self._reader.last_type)
        return replies

    def _read_one(self, deadline: float, timeout: float) -> Any:
        reader, sock = self._reader, self._sock
        try:
            while True:
                reply = reader.gets()
                if reply is not NEED_DATA:
                    return reply
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError
                sock.settimeout(remaining)
                view = reader.get_buffer()
                if view is not None:
                    n = sock.recv_into(view)
                    if n:
                        reader.buffer_updated(n)
                else:
                    n = sock.recv_into(self._scratch)
                    if n:
                        reader.feed(self._scratch[:n])
                if not n:
                    raise LinkError(
                        Failure(ErrorKind.CONNECTION_LOST, self.address, in_flight=True)
                    )
        except ProtocolError as exc:
            raise LinkError(
                Failure(ErrorKind.PROTOCOL_ERROR, self.address, detail=str(exc), in_flight=True)
            ) from None
        except (OSError, ssl.SSLError) as exc:
            raise LinkError(self._io_failure(exc, True, timeout)) from None

    def _io_failure(self, exc: BaseException, sent: bool, timeout: float) -> Failure:
        if isinstance(exc, TimeoutError | socket.timeout):
            return Failure(ErrorKind.TIMED_OUT, self.address, timeout=timeout, in_flight=sent)
        return _os_failure(ErrorKind.CONNECTION_LOST, self.address, exc, sent)

    def close(self) -> None:
        sock = getattr(self, "_sock", None)
        if sock is not None:
            sock.close()
