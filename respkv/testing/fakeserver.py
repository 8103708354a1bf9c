"""A tiny scripted RESP2 server on loopback, for replies a real server never sends.

The fault matrix needs streams no real Redis produces: ``-LOADING`` on demand, an
integer beyond 64 bits, an endless line, ``+QUEUED`` where a bulk belongs, an extra
reply glued to the end of a real one in the same ``send``. A real server stays the
reference for everything else (tests of normal behaviour never use this).

:class:`FakeServer` parses requests (RESP arrays of bulk strings), and answers each
with ``script(command)`` when that returns bytes, else like a minimal server: a dict
behind ``SET``/``GET``/``EXISTS``/``UNLINK``/``DEL``, ``+OK`` for the handshake
(``AUTH``, ``SELECT``, ``CLIENT``), ``+PONG``, and for ``CLUSTER`` the error a standalone
server gives. The replies to all the commands found in
one received chunk go out in one ``sendall``, as a real server writes a pipeline's
replies. ``script`` may return :data:`CLOSE` (close the connection without answering)
or :data:`SILENT` (answer nothing: a stalled server).

One thread per connection with short socket timeouts, all stopped by :meth:`close`;
every wait is bounded.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Final

__all__ = ["CLOSE", "SILENT", "FakeServer", "Script"]

#: ``script`` result: close the connection at once, without answering.
CLOSE: Final = b"\x00close"
#: ``script`` result: send nothing for this command (the server went quiet).
SILENT: Final = b"\x00silent"

_DATA_COMMANDS: Final = frozenset({b"SET", b"GET", b"EXISTS", b"UNLINK", b"DEL"})

Script = Callable[[list[bytes]], bytes | None]

#: Socket timeout of the accept and connection threads: how often they check the stop flag.
_TICK: Final = 0.05
#: Largest request accepted (a SET of a test value); more is a client bug here.
_MAX_REQUEST: Final = 64 * 1024 * 1024


def bulk(value: bytes | None) -> bytes:
    """A bulk string reply (nil for ``None``)."""
    if value is None:
        return b"$-1\r\n"
    return b"$%d\r\n%b\r\n" % (len(value), value)


def _parse(buf: bytearray, pos: int) -> tuple[list[bytes], int] | None:
    """One request at ``pos``: (arguments, end), or ``None`` when incomplete."""
    if buf[pos : pos + 1] != b"*":
        raise ValueError(f"fake server expects RESP arrays, got {bytes(buf[pos : pos + 20])!r}")
    eol = buf.find(b"\r\n", pos)
    if eol < 0:
        return None
    count = int(buf[pos + 1 : eol])
    args: list[bytes] = []
    p = eol + 2
    for _ in range(count):
        eol = buf.find(b"\r\n", p)
        if eol < 0:
            return None
        n = int(buf[p + 1 : eol])
        start, stop = eol + 2, eol + 2 + n
        if len(buf) < stop + 2:
            return None
        args.append(bytes(buf[start:stop]))
        p = stop + 2
    return args, p


class FakeServer:
    """A scripted RESP2 server on a free loopback port; a context manager."""

    def __init__(self, script: Script | None = None) -> None:
        self.script = script
        self.store: dict[bytes, bytes] = {}
        #: Every command received, in order (upper-cased name first).
        self.commands: list[list[bytes]] = []
        self.connections = 0
        self._data_connections: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self._listener.settimeout(_TICK)
        self.host = "127.0.0.1"
        self.port: int = self._listener.getsockname()[1]
        self._threads: list[threading.Thread] = []
        self._socks: list[socket.socket] = []
        self._acceptor = threading.Thread(target=self._accept_loop, daemon=True)
        self._acceptor.start()

    @property
    def data_connections(self) -> int:
        """Connections that carried a data command (SET, GET, EXISTS, UNLINK, DEL): a
        client may keep others of its own (a cluster router's discovery connection)."""
        with self._lock:
            return len(self._data_connections)

    def count(self, name: bytes) -> int:
        """How many commands named ``name`` (upper case) were received."""
        with self._lock:
            return sum(1 for c in self.commands if c and c[0] == name)

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            sock.settimeout(_TICK)
            with self._lock:
                self.connections += 1
                self._socks.append(sock)
                number = self.connections
            t = threading.Thread(target=self._serve, args=(sock, number), daemon=True)
            t.start()
            self._threads.append(t)

    def _serve(self, sock: socket.socket, number: int) -> None:
        buf = bytearray()
        with contextlib.suppress(OSError), sock:
            while not self._stop.is_set():
                try:
                    data = sock.recv(1 << 20)
                except TimeoutError:
                    continue
                if not data or len(buf) + len(data) > _MAX_REQUEST:
                    return
                buf += data
                out, used, close = self._answer(buf, number)
                del buf[:used]
                if out:
                    sock.sendall(out)
                if close:
                    return

    def _answer(self, buf: bytearray, number: int) -> tuple[bytes, int, bool]:
        out = bytearray()
        pos = 0
        while pos < len(buf):
            parsed = _parse(buf, pos)
            if parsed is None:
                break
            args, pos = parsed
            args[0] = args[0].upper()
            with self._lock:
                self.commands.append(args)
                if args[0] in _DATA_COMMANDS:
                    self._data_connections.add(number)
            reply = self.script(args) if self.script is not None else None
            if reply is None:
                reply = self._default(args)
            if reply == CLOSE:
                return bytes(out), pos, True
            if reply != SILENT:
                out += reply
        return bytes(out), pos, False

    def _default(self, args: list[bytes]) -> bytes:
        name, rest = args[0], args[1:]
        with self._lock:
            if name == b"SET" and len(rest) == 2:
                self.store[rest[0]] = rest[1]
                return b"+OK\r\n"
            if name == b"GET" and len(rest) == 1:
                return bulk(self.store.get(rest[0]))
            if name == b"EXISTS":
                return b":%d\r\n" % sum(1 for k in rest if k in self.store)
            if name in (b"UNLINK", b"DEL"):
                return b":%d\r\n" % sum(1 for k in rest if self.store.pop(k, None) is not None)
        if name == b"CLUSTER":
            # What a standalone Redis says (the cluster router reads it as "one node").
            return b"-ERR This instance has cluster support disabled\r\n"
        if name in (b"AUTH", b"SELECT", b"CLIENT", b"HELLO"):
            return b"+OK\r\n"
        if name == b"PING":
            return b"+PONG\r\n"
        return b"-ERR unknown command '%b'\r\n" % name[:40]

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        with self._lock:
            socks = list(self._socks)
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
        self._acceptor.join(timeout=5)
        for t in self._threads:
            t.join(timeout=5)

    def __enter__(self) -> FakeServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
