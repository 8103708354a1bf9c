"""A fault-injecting TCP proxy in front of a real server, for tests.

It listens on a free loopback port and forwards every connection to the target. Faults
are switched on from the test, each one deterministic:

* :meth:`FaultProxy.stall` holds every server-to-client byte from now on (a server
  that accepted the request and went silent): drives the TIMEOUT path.
  :meth:`FaultProxy.unstall` releases what was held, in order.
* :meth:`FaultProxy.cut_after` forwards ``n`` more server-to-client bytes, then
  resets both sides (RST): a connection broken in the middle of a value.
* :meth:`FaultProxy.reset_all` resets every open connection at once.

``accepted`` counts connections, so a test can see that a client reconnected.
Everything is bounded: sockets poll with a short timeout and stop with the proxy.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading
from types import TracebackType

__all__ = ["FaultProxy"]

_POLL = 0.05  # seconds between checks of the stop flag


def _reset(sock: socket.socket) -> None:
    # shutdown() takes effect at once even while another thread is in select() on the
    # socket (close() alone would wait for that thread to let go of the file).
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


class FaultProxy:
    """Loopback TCP proxy with switchable faults; a context manager."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self._listener.settimeout(_POLL)
        self.host = "127.0.0.1"
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._stalled = threading.Event()
        self._cut_budget: int | None = None
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._threads: list[threading.Thread] = []
        self.accepted = 0
        self._acceptor = threading.Thread(target=self._accept_loop, daemon=True)
        self._acceptor.start()

    # -- faults --------------------------------------------------------------------

    def stall(self) -> None:
        """Hold all server-to-client bytes from now on."""
        self._stalled.set()

    def unstall(self) -> None:
        self._stalled.clear()

    def cut_after(self, nbytes: int) -> None:
        """Reset the connection after forwarding ``nbytes`` more reply bytes."""
        with self._lock:
            self._cut_budget = nbytes

    def reset_all(self) -> None:
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for a, b in pairs:
            _reset(a)
            _reset(b)

    # -- plumbing ------------------------------------------------------------------

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _reset(client)
                continue
            for s in (client, upstream):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self.accepted += 1
                self._pairs.append((client, upstream))
            for src, dst, replies in ((client, upstream, False), (upstream, client, True)):
                t = threading.Thread(target=self._pump, args=(src, dst, replies), daemon=True)
                t.start()
                self._threads.append(t)

    def _pump(self, src: socket.socket, dst: socket.socket, replies: bool) -> None:
        held = bytearray()
        while not self._stop.is_set():
            if held and not self._stalled.is_set():
                try:
                    dst.sendall(held)
                except OSError:
                    break
                held.clear()
            try:
                ready, _, _ = select.select([src], [], [], _POLL)
                if not ready:
                    continue
                data = src.recv(262144)
            except (OSError, ValueError):
                break
            if not data:
                break
            if replies and (self._stalled.is_set() or held):
                # Held bytes go first: append and let the top of the loop flush in order.
                held += data
                continue
            if replies:
                with self._lock:
                    budget = self._cut_budget
                    if budget is not None:
                        if len(data) >= budget:
                            self._cut_budget = None
                            data = data[:budget]
                            cut = True
                        else:
                            self._cut_budget = budget - len(data)
                            cut = False
                    else:
                        cut = False
                if cut:
                    with contextlib.suppress(OSError):
                        dst.sendall(data)
                    _reset(dst)
                    _reset(src)
                    return
            try:
                dst.sendall(data)
            except OSError:
                break
        _reset(dst)
        _reset(src)

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        self.reset_all()
        self._acceptor.join(timeout=5)
        for t in self._threads:
            t.join(timeout=5)

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
