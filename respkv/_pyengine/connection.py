"""One connection of a pure worker: the socket and everything that happens on it.

What it owns: opening the socket without blocking (TCP connect, TLS handshake, the
AUTH / SELECT / CLIENT SETNAME handshake, each a *phase* the worker drives from its
``selectors`` loop, so a connection being made never stops the worker from meeting a
batch deadline or a cancel), writing queued request bytes with ``sendmsg`` (TLS:
``send``), receiving into the :class:`~respkv.resp2.Reader` (``recv_into`` straight
into a GET caller's buffer while a payload streams in, else into the connection's own
receive buffer, which the reader copies from), and the TLS detail that decrypted
bytes may wait inside the TLS object while the socket itself is not readable
(:meth:`Connection.has_pending`). Which requests are in flight, windows and deadlines
belong to the worker (:mod:`respkv._pyengine.worker`).

Every failure is raised as :class:`Dropped` carrying a :class:`~respkv._failure.Failure`
(kind and numbers, never an English message): the worker gives it to the keys that were
waiting on this connection and drops it.

OS facts relied on. A non-blocking ``connect`` returns ``EINPROGRESS`` and the socket
becomes writable when it is done, ``SO_ERROR`` then holding the outcome. An ``AF_UNIX``
connect is immediate (there is no handshake to wait for), so it is made blocking with
``connect_timeout``. Name resolution (``getaddrinfo``) is blocking: a numeric address
(the usual case) resolves at once; a host name waits on the system resolver.
"""

from __future__ import annotations

import errno
import selectors
import socket
import ssl
import threading
from collections import deque
from itertools import islice
from typing import Any, Final

from respkv._admin import handshake_commands, handshake_required
from respkv._failure import ErrorKind, Failure
from respkv._limits import HEADER_RECV, MAX_IOV, RECV_CHUNK
from respkv._options import ConnectionOptions, TLSOptions
from respkv._tls import make_ssl_context, ssl_reason
from respkv.errors import ReplyError
from respkv.resp2 import NEED_DATA, Reader, pack_command

__all__ = [
    "Connection",
    "Dropped",
    "Poller",
    "TlsContext",
]

_READ: Final = selectors.EVENT_READ
_WRITE: Final = selectors.EVENT_WRITE
#: A TLS session ended by the peer without a TLS reason (EOF, close_notify).
_TLS_EOF: Final = (ssl.SSLEOFError, ssl.SSLZeroReturnError)
_WOULD_BLOCK: Final = (
    BlockingIOError,
    InterruptedError,
    ssl.SSLWantReadError,
    ssl.SSLWantWriteError,
)

# Phases, in order.
_TCP: Final = 0  # non-blocking connect in progress
_TLS: Final = 1  # TLS handshake in progress
_HELLO: Final = 2  # AUTH / SELECT / CLIENT SETNAME sent, replies awaited
_READY: Final = 3  # requests may flow
_CLOSED: Final = 4


class Dropped(Exception):
    """The connection must be dropped; ``failure`` is what the keys waiting on it get
    (the worker sets ``in_flight`` per key)."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.kind.name)
        self.failure = failure


class Poller:
    """A worker's one wait: its wake-up fd and its connection's socket in one selector
    (epoll on Linux: any descriptor number works). The socket registered is tracked by
    object, not by number: a reconnect or a TLS wrapper brings a new socket object,
    possibly on the number the old one had."""

    def __init__(self, wake_fd: int) -> None:
        self._sel = selectors.DefaultSelector()
        self._sel.register(wake_fd, _READ, None)
        self._sock: socket.socket | None = None  # registered, with its fd and events
        self._fd = -1
        self._events = 0

    def watch(self, sock: socket.socket | None, events: int) -> None:
        """Wait for ``events`` on ``sock`` from now on (``None`` or 0: on no socket)."""
        if sock is not self._sock:
            if self._sock is not None:  # safe when the old socket is already closed
                self._sel.unregister(self._fd)
            self._sock, self._fd, self._events = None, -1, 0
        if sock is None or events == self._events:
            return
        if not self._events:
            self._fd = sock.fileno()
            self._sel.register(self._fd, events, True)
            self._sock = sock
        elif not events:
            self._sel.unregister(self._fd)
            self._sock, self._fd = None, -1
        else:
            self._sel.modify(self._fd, events, True)
        self._events = events

    def wait(self, timeout: float | None) -> tuple[int, bool]:
        """Block up to ``timeout`` seconds (``None``: no limit): the socket's ready
        events, and whether the wake fd fired."""
        mask = 0
        woken = False
        for key, ready in self._sel.select(None if timeout is None else max(0.0, timeout)):
            if key.data is None:
                woken = True
            else:
                mask |= ready
        return mask, woken

    def close(self) -> None:
        self._sel.close()


class TlsContext:
    """One ``ssl.SSLContext`` per connector, made on first use and then shared by every
    worker and every reconnect (the CA file is read once). A failure to make it (a
    missing CA file) is reported to the keys and tried again on the next connect."""

    def __init__(self, tls: TLSOptions) -> None:
        self.options = tls
        self._lock = threading.Lock()
        self._context: ssl.SSLContext | None = None

    def get(self) -> ssl.SSLContext:
        with self._lock:
            if self._context is None:
                self._context = make_ssl_context(self.options)
            return self._context


class Connection:
    """A socket being opened or open, with its reply reader (see the module essay)."""

    def __init__(self, options: ConnectionOptions, tls: TlsContext | None) -> None:
        self._opt = options
        self._tls = tls
        self.address = options.address
        self.sock: socket.socket | None = None
        self.reader = Reader()
        #: Where replies are received before the reader copies them: one buffer for the
        #: connection's life, because ``recv(RECV_CHUNK)`` would map, shrink and unmap a
        #: fresh 256 KiB object per call (``mmap``/``mremap``/``munmap``, measured).
        self._scratch = memoryview(bytearray(RECV_CHUNK))
        self.phase = _CLOSED
        #: True once the connection is open and hand-shaken (``phase`` is READY): an
        #: attribute, not a property, because the worker reads it on every round.
        self.ready = False
        #: A TLS connection (whose decrypted bytes may wait unannounced).
        self.tls = tls is not None
        #: Bytes written on this connection, for ``Failure.in_flight`` of its keys.
        self.sent = 0
        #: The last :meth:`receive` got every byte it asked for: more may be waiting.
        self.filled = False
        #: The last :meth:`send` left bytes queued: wait until the socket is writable.
        self.write_blocked = False
        #: Monotonic time by which the connection must be ready (connect_timeout).
        self.connect_deadline = 0.0
        #: TLS handshake done, no reply received yet: a TLS 1.3 server checks the client
        #: certificate only after the client's side of the handshake is over, so a close
        #: or reset now is still the TLS handshake failing (see :meth:`_closed`).
        self._tls_fresh = False
        self._addresses: list[Any] = []
        self._last_error = 0
        self._tls_want = _WRITE
        self._hello: memoryview = memoryview(b"")
        self._hello_cmds: list[tuple[object, ...]] = []  # sent, reply not read yet

    # -- opening -------------------------------------------------------------------

    def begin(self, now: float) -> None:
        """Start connecting; raises :class:`Dropped` when it fails at once."""
        opt = self._opt
        self.connect_deadline = now + opt.connect_timeout
        self._tls_fresh = False
        if opt.unix_path is not None:
            self._connect_unix(opt.unix_path)
            self._after_tcp()
            return
        try:
            infos = socket.getaddrinfo(opt.host, opt.port, 0, socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise Dropped(self._failure(ErrorKind.CONNECT_FAILED, detail=str(exc))) from None
        self._addresses = [(family, sockaddr) for family, _, _, _, sockaddr in infos]
        self.phase = _TCP
        self._next_address()

    def events(self) -> int:
        """The readiness the current opening phase waits for."""
        if self.phase == _TCP:
            return _WRITE
        if self.phase == _TLS:
            return self._tls_want
        return _WRITE | _READ if self._hello else _READ

    def advance(self) -> None:
        """Make progress after the socket became ready; raises :class:`Dropped`."""
        if self.phase == _TCP:
            assert self.sock is not None
            err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self._last_error = err
                self._next_address()
                return
            self._after_tcp()
        elif self.phase == _TLS:
            self._tls_handshake()
        elif self.phase == _HELLO:
            self._hello_step()

    def timed_out(self) -> Failure:
        """What the waiting keys get when ``connect_timeout`` passes while opening."""
        timeout = errno.ETIMEDOUT
        if self.phase == _TLS:  # worded by respkv._failure (a plaintext port?)
            return self._failure(ErrorKind.TLS_FAILED, errno=timeout)
        if self.phase == _HELLO:
            detail = "no reply to " + " / ".join(str(c[0]) for c in self._hello_cmds)
            return self._failure(ErrorKind.CONNECT_FAILED, errno=timeout, detail=detail)
        return self._failure(ErrorKind.CONNECT_FAILED, errno=timeout)

    def _connect_unix(self, path: str) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self._opt.connect_timeout)
        try:
            sock.connect(path)
        except OSError as exc:
            sock.close()
            code = exc.errno or (errno.ETIMEDOUT if isinstance(exc, TimeoutError) else 0)
            raise Dropped(self._failure(ErrorKind.CONNECT_FAILED, errno=code)) from None
        sock.setblocking(False)
        self.sock = sock

    def _next_address(self) -> None:
        """Try the next resolved address; raise when none is left."""
        self._close_socket()
        while self._addresses:
            family, sockaddr = self._addresses.pop(0)
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            err = sock.connect_ex(sockaddr)
            if err in (0, errno.EINPROGRESS):
                self.sock = sock
                if err == 0:
                    self._after_tcp()
                return
            sock.close()
            self._last_error = err
        raise Dropped(self._failure(ErrorKind.CONNECT_FAILED, errno=self._last_error))

    def _after_tcp(self) -> None:
        tls = self._tls
        if tls is None:
            self._start_hello()
            return
        assert self.sock is not None
        try:
            context = tls.get()
        except (OSError, ValueError) as exc:
            raise Dropped(self._tls_load_failure(exc)) from None
        name = tls.options.server_hostname or self._opt.host
        self.sock = context.wrap_socket(
            self.sock, server_hostname=name, do_handshake_on_connect=False
        )
        self.phase = _TLS
        self._tls_handshake()

    def _tls_handshake(self) -> None:
        sock = self.sock
        assert isinstance(sock, ssl.SSLSocket)
        try:
            sock.do_handshake()
        except ssl.SSLWantReadError:
            self._tls_want = _READ
            return
        except ssl.SSLWantWriteError:
            self._tls_want = _WRITE
            return
        except OSError as exc:
            raise Dropped(self._tls_failure(exc)) from None
        self._tls_fresh = True
        self._start_hello()

    def _start_hello(self) -> None:
        cmds = handshake_commands(self._opt)
        if not cmds:
            self._set_ready()
            return
        self._hello_cmds = cmds
        payload = b"".join(bytes(memoryview(p)) for c in cmds for p in pack_command(*c))
        self._hello = memoryview(payload)
        self.phase = _HELLO
        self._hello_step()

    def _hello_step(self) -> None:
        sock = self.sock
        assert sock is not None
        while self._hello:
            try:
                n = sock.send(self._hello)
            except _WOULD_BLOCK:
                return
            except OSError as exc:
                raise Dropped(self._lost(exc)) from None
            self._hello = self._hello[n:]
        while self._hello_cmds:
            reply = self.reader.gets()
            if reply is NEED_DATA:
                if not self.receive(header_only=False):
                    return
                continue
            cmd = self._hello_cmds.pop(0)
            if isinstance(reply, ReplyError) and handshake_required(cmd):
                raise Dropped(
                    self._failure(ErrorKind.HANDSHAKE_FAILED, reply=str(reply), detail=str(cmd[0]))
                )
        self._set_ready()

    # -- requests and replies ------------------------------------------------------

    def send(self, out: deque[memoryview | bytes]) -> None:
        """Write as much of ``out`` as the socket takes, popping what was written."""
        sock = self.sock
        assert sock is not None
        try:
            if self._tls is not None:
                sent = sock.send(out[0])
            else:
                sent = sock.sendmsg(out if len(out) <= MAX_IOV else list(islice(out, MAX_IOV)))
        except _WOULD_BLOCK:
            self.write_blocked = True
            return
        except OSError as exc:
            raise Dropped(self._lost(exc)) from None
        self.sent += sent
        self.write_blocked = False
        while sent:
            head = out[0]
            size = len(head) if isinstance(head, bytes) else head.nbytes
            if sent >= size:
                out.popleft()
                sent -= size
            else:
                out[0] = memoryview(head)[sent:]
                sent = 0
                self.write_blocked = True  # the socket took part of a buffer: it is full

    def receive(self, header_only: bool) -> int:
        """Receive once into the reader: the byte count, 0 when nothing was ready.
        ``filled`` says afterwards whether it got all it asked for (more may be waiting).

        ``header_only``: the next reply is a large GET value, so ask for its header
        alone and let the payload land in the caller's buffer. Raises
        :class:`Dropped` on an error or when the server closed the connection."""
        sock = self.sock
        assert sock is not None
        reader = self.reader
        try:
            view = reader.get_buffer()
            if view is not None:
                n = sock.recv_into(view)
                if n:
                    reader.buffer_updated(n)
                self.filled = n == len(view)
            else:
                asked = HEADER_RECV if header_only else RECV_CHUNK
                n = sock.recv_into(self._scratch, asked)
                if n:
                    reader.feed(self._scratch[:n])
                self.filled = n == asked
        except _WOULD_BLOCK:
            self.filled = False
            return 0
        except OSError as exc:
            raise Dropped(self._lost(exc)) from None
        if not n:
            raise Dropped(self._closed(0))
        self._tls_fresh = False
        return n

    def probe(self) -> None:
        """With nothing in flight: raise :class:`Dropped` if the server closed the
        connection (an idle timeout, a restart), failed it, or sent bytes nobody asked
        for (a desynchronised stream). One small ``recv`` (a peek, without TLS), cheap
        enough for every time a worker goes from idle to busy."""
        sock = self.sock
        assert sock is not None
        try:
            # MSG_PEEK is refused on a TLS socket; one byte taken there is a desync anyway.
            data = sock.recv(1) if self.tls else sock.recv(1, socket.MSG_PEEK)
        except _WOULD_BLOCK:
            return
        except OSError as exc:
            raise Dropped(self._lost(exc)) from None
        if not data:
            raise Dropped(self._closed(0))
        raise Dropped(self.desync("with no request in flight"))

    def desync(self, when: str) -> Failure:
        """The failure of keys on a connection whose stream went out of step."""
        return self._failure(ErrorKind.PROTOCOL_ERROR, detail=f"unsolicited bytes {when}")

    def has_pending(self) -> bool:
        """TLS: decrypted bytes wait in the TLS object (the socket may not be readable)."""
        return self.tls and self.sock is not None and self.sock.pending() > 0  # type: ignore[attr-defined]

    def close(self) -> None:
        self.phase = _CLOSED
        self.ready = False
        self._close_socket()

    # -- internals -----------------------------------------------------------------

    def _set_ready(self) -> None:
        self.phase = _READY
        self.ready = True

    def _close_socket(self) -> None:
        sock, self.sock = self.sock, None
        if sock is not None:
            sock.close()

    def _failure(self, kind: ErrorKind, **fields: Any) -> Failure:
        return Failure(kind, self.address, **fields)

    def _lost(self, exc: OSError) -> Failure:
        """A send or receive failed: the connection broke, or (TLS) the session did."""
        if isinstance(exc, ssl.SSLError) and not isinstance(exc, _TLS_EOF):
            return self._failure(ErrorKind.TLS_FAILED, detail=ssl_reason(exc))
        return self._closed(0 if isinstance(exc, ssl.SSLError) else exc.errno or 0)

    def _closed(self, err: int) -> Failure:
        """The server closed or reset the connection (``err``: its errno, 0 for an
        orderly close). Right after a TLS handshake, before any reply, that is the
        handshake failing (kind TLS_FAILED with no reason: respkv._failure says what it
        means), as the native engine reports it."""
        kind = ErrorKind.TLS_FAILED if self._tls_fresh else ErrorKind.CONNECTION_LOST
        return self._failure(kind, errno=err)

    def _tls_failure(self, exc: OSError) -> Failure:
        """The TLS handshake failed: OpenSSL's reason, or only the errno (0: the server
        closed the connection) when it gave none."""
        if isinstance(exc, ssl.SSLError) and not isinstance(exc, _TLS_EOF):
            return self._failure(ErrorKind.TLS_FAILED, detail=ssl_reason(exc))
        err = 0 if isinstance(exc, ssl.SSLError) else exc.errno or 0
        return self._failure(ErrorKind.TLS_FAILED, errno=err)

    def _tls_load_failure(self, exc: OSError | ValueError) -> Failure:
        """The TLS context could not be made (a CA, certificate or key file)."""
        what = "cannot load the TLS files (ca_file, cert_file, key_file)"
        if isinstance(exc, ssl.SSLError):
            return self._failure(ErrorKind.TLS_FAILED, detail=f"{what}: {ssl_reason(exc)}")
        if isinstance(exc, OSError) and exc.errno:
            return self._failure(ErrorKind.TLS_FAILED, errno=exc.errno, detail=what)
        return self._failure(ErrorKind.TLS_FAILED, detail=f"{what}: {exc}")
