"""A fault-injecting TCP proxy in front of a real server, for tests.

It listens on a free loopback port and forwards every connection to the target. Faults
are switched on from the test, each one deterministic, in either direction: *requests*
(client to server) or *replies* (server to client).

* :meth:`FaultProxy.stall` stops forwarding a direction from now on (a server that took
  the request and went silent, or a request that never gets through); the bytes are
  held in order and :meth:`FaultProxy.unstall` releases them. :meth:`FaultProxy.stall_after`
  does the same ``n`` bytes from now (a value that stops halfway).
* :meth:`FaultProxy.cut_after` forwards ``n`` more bytes of a direction, then breaks the
  connection: with a reset (RST) or an orderly close (FIN to the client). Counting the
  bytes of a known exchange puts the cut at any phase: inside a request header, a SET
  payload, a reply header, a GET payload, the final CRLF.
* :meth:`FaultProxy.trickle` forwards one byte per ``send`` (each its own segment:
  TCP_NODELAY), so the client sees every possible split of a reply or a request.
* :meth:`FaultProxy.inject_after` inserts unsolicited bytes into the reply stream after
  ``n`` more reply bytes, sent in the same ``send`` as the bytes before them (so they
  arrive in the same segment as the end of a reply); :meth:`FaultProxy.inject_now`
  sends them at once to every client.
* :meth:`FaultProxy.corrupt_at` overwrites reply bytes ``n`` bytes from now (a length
  header, an integer).
* :meth:`FaultProxy.refuse` closes the listening socket (new connections are refused:
  ``ECONNREFUSED``) until :meth:`FaultProxy.allow`, which listens on the same port again.
* :meth:`FaultProxy.reset_all` resets every open connection at once.

Requests the client sent but the proxy had not yet forwarded when the client closed or
reset its connection are dropped, never delivered late: a test that counts a timed-out
SET as "unknown outcome" must not see it applied after its next command.

Offsets count the bytes that *enter* the proxy in that direction from the moment the
fault is armed, over all *data* connections: those that have carried a GET, SET,
EXISTS, UNLINK or DEL. A connector's control connections (a cluster router's slot-map
reads) are forwarded but neither counted nor faulted, and neither are a connection's
bytes before its first data command (its handshake). A test that wants exact phases
uses one worker (``num_workers=1``). ``accepted`` counts connections, so a test can see that
a client reconnected.

One thread runs everything: an event loop (``selectors``: epoll on Linux, so it works
with any number of descriptors) over the listener, every connection and a wake-up
socket pair. Every socket is touched by that thread alone; the methods above post a
command and wait (bounded) until the loop has applied it, so a fault is in force when
its method returns.
"""

from __future__ import annotations

import contextlib
import queue
import re
import select
import selectors
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Final, Literal

__all__ = ["REPLIES", "REQUESTS", "Direction", "FaultProxy"]

Direction = Literal["requests", "replies"]
REQUESTS: Final = "requests"
REPLIES: Final = "replies"
_BOTH: Final = (REQUESTS, REPLIES)

#: Bytes read per ``recv``: large enough that a reply of a few KiB is read (and, with an
#: injection, forwarded) in one piece.
_RECV: Final = 256 * 1024
#: Reply bytes per connection waiting to be written before the proxy stops reading the
#: server: TCP back-pressure then holds the rest in the kernel, so memory stays bounded.
_HIGH_WATER: Final = 4 * 1024 * 1024
#: Request bytes per connection the proxy takes in ahead of the server: more than an
#: engine writes without replies (its window_bytes, 8 MiB, plus a value), so that the
#: client's FIN is never stuck behind requests the proxy has not read.
_HELD_LIMIT: Final = 64 * 1024 * 1024
#: Longest a fault method waits for the loop thread to apply it (it takes microseconds).
_COMMAND_TIMEOUT: Final = 5.0
#: A data command in a request stream: ``$3\r\nGET\r\n`` and the like.
_DATA_COMMAND: Final = re.compile(rb"\$(?:3\r\n(?:GET|SET|DEL)|6\r\n(?:EXISTS|UNLINK))\r\n", re.I)
#: Request bytes kept to find a command name split over two reads.
_TAIL: Final = 16
#: Event-loop wake-up period when idle (also bounds how late ``refuse_for`` ends).
_TICK: Final = 0.05
#: Deadline of the blocking connect to the target (a loopback server answers at once).
_CONNECT_TIMEOUT: Final = 2.0


def _hung_up(sock: socket.socket) -> bool:
    """True when the peer has closed or reset ``sock`` (even with unread data queued)."""
    poller = select.poll()
    poller.register(sock, select.POLLRDHUP | select.POLLHUP | select.POLLERR)
    return bool(poller.poll(0))


def _rst(sock: socket.socket) -> None:
    """Close with a reset: SO_LINGER 0 makes close() send RST, not FIN."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


@dataclass
class _Action:
    """A fault placed ``at`` bytes into a direction's stream (absolute position)."""

    at: int
    kind: Literal["cut", "inject", "corrupt", "stall"]
    data: bytes = b""
    how: Literal["reset", "close"] = "reset"


@dataclass
class _Flow:
    """One direction of one connection."""

    src: socket.socket
    dst: socket.socket
    out: bytearray = field(default_factory=bytearray)
    #: Bytes stopped by a ``stall_after``: forwarded on ``unstall``.
    held: bytearray = field(default_factory=bytearray)
    #: Index in ``out`` after which the connection is to be broken, once written.
    cut_at: int | None = None
    cut_how: Literal["reset", "close"] = "reset"
    eof: bool = False


class _Link:
    """A client connection and its upstream connection."""

    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client = client
        self.upstream = upstream
        self.flows: dict[str, _Flow] = {
            REQUESTS: _Flow(client, upstream),
            REPLIES: _Flow(upstream, client),
        }
        #: After an orderly close: the client socket is only read (and dropped) until EOF.
        self.draining = False
        self.closed = False
        #: Whether the link has carried a data command (faults apply to those only),
        #: and the last request bytes seen before it did (a name split over two reads).
        self.data = False
        self.tail = b""


class FaultProxy:
    """Loopback TCP proxy with switchable faults; a context manager."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.host = "127.0.0.1"
        self._listener: socket.socket | None = self._listen(0)
        self.port: int = self._listener.getsockname()[1]
        self.accepted = 0
        self._links: list[_Link] = []
        self._stalled: set[str] = set()
        self._trickle: set[str] = set()
        self._seen: dict[str, int] = {REQUESTS: 0, REPLIES: 0}
        self._actions: dict[str, list[_Action]] = {REQUESTS: [], REPLIES: []}
        self._refuse_until = 0.0
        self._commands: queue.SimpleQueue[tuple[Callable[[], None], threading.Event]] = (
            queue.SimpleQueue()
        )
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._sel = selectors.DefaultSelector()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="respkv-faultproxy", daemon=True)
        self._thread.start()

    # -- faults --------------------------------------------------------------------

    def stall(self, direction: Direction = REPLIES) -> None:
        """Hold every byte of ``direction`` not yet forwarded, from now on (the default:
        replies). The proxy stops reading that side: the kernel holds the rest."""

        def apply() -> None:
            self._stalled.add(direction)
            for link in self._links:
                flow = link.flows[direction]
                flow.held[:0] = flow.out
                flow.out.clear()

        self._call(apply)

    def stall_after(self, nbytes: int, direction: Direction = REPLIES) -> None:
        """Forward ``nbytes`` more bytes of ``direction``, then hold the rest."""
        self._arm(direction, _Action(nbytes, "stall"))

    def unstall(self, direction: Direction | None = None) -> None:
        """Release what ``direction`` (both when ``None``) held, in order."""
        dirs = _BOTH if direction is None else (direction,)

        def apply() -> None:
            self._stalled.difference_update(dirs)
            for link in list(self._links):
                if REQUESTS in dirs and _hung_up(link.client):
                    # A request held while its client gave up is never delivered late
                    # (it would apply a write the client already counts as failed).
                    self._drop(link, "reset")
                    continue
                for d in dirs:
                    flow = link.flows[d]
                    flow.out += flow.held
                    flow.held.clear()

        self._call(apply)

    def trickle(self, direction: Direction | None = None, on: bool = True) -> None:
        """Forward ``direction`` (both when ``None``) one byte per send, or stop doing so."""
        dirs = _BOTH if direction is None else (direction,)
        self._call(lambda: (self._trickle.update if on else self._trickle.difference_update)(dirs))

    def cut_after(
        self,
        nbytes: int,
        direction: Direction = REPLIES,
        how: Literal["reset", "close"] = "reset",
    ) -> None:
        """Forward ``nbytes`` more bytes of ``direction``, then break that connection:
        ``reset`` sends RST both ways, ``close`` sends the client a FIN (orderly)."""
        self._arm(direction, _Action(nbytes, "cut", how=how))

    def inject_after(self, nbytes: int, data: bytes) -> None:
        """Insert ``data`` into the reply stream after ``nbytes`` more reply bytes; it goes
        out in the same send as the bytes before it."""
        self._arm(REPLIES, _Action(nbytes, "inject", data=bytes(data)))

    def corrupt_at(self, nbytes: int, data: bytes) -> None:
        """Overwrite the reply bytes from ``nbytes`` bytes from now with ``data``."""
        self._arm(REPLIES, _Action(nbytes, "corrupt", data=bytes(data)))

    def inject_now(self, data: bytes) -> None:
        """Send ``data`` to every connected client at once (unsolicited bytes)."""

        def apply() -> None:
            for link in list(self._links):
                link.flows[REPLIES].out += data
                # Written before the call returns: the bytes are in the client's socket
                # buffer by then (a loopback send reaches the peer at once).
                self._write(link)

        self._call(apply)

    def refuse(self, seconds: float | None = None) -> None:
        """Refuse new connections (the port is closed) until :meth:`allow`, or for
        ``seconds``. Open connections are left alone."""

        def apply() -> None:
            self._close_listener()
            self._refuse_until = float("inf") if seconds is None else time.monotonic() + seconds

        self._call(apply)

    def allow(self) -> None:
        """Listen again on the same port."""

        def apply() -> None:
            self._refuse_until = 0.0
            self._reopen_listener()

        self._call(apply)

    def reset_all(self) -> None:
        """Reset every open connection (RST to both sides)."""

        def apply() -> None:
            for link in list(self._links):
                self._drop(link, "reset")

        self._call(apply)

    def forwarded(self, direction: Direction) -> int:
        """Bytes that entered the proxy in ``direction`` so far (all connections)."""
        return self._seen[direction]

    @property
    def listening(self) -> bool:
        """False while connections are refused."""
        return self._listener is not None

    @property
    def open_connections(self) -> int:
        """Client connections currently open through the proxy."""
        return sum(1 for link in self._links if not link.closed)

    # -- commands ------------------------------------------------------------------

    def _arm(self, direction: Direction, action: _Action) -> None:
        """Place ``action`` (whose ``at`` is relative: bytes from now) in ``direction``."""
        if action.at < 0:
            raise ValueError(f"nbytes must be >= 0, got {action.at}")

        def apply() -> None:
            action.at += self._seen[direction]
            self._actions[direction].append(action)
            self._actions[direction].sort(key=lambda a: a.at)

        self._call(apply)

    def _call(self, fn: Callable[[], None]) -> None:
        if threading.current_thread() is self._thread:
            fn()
            return
        done = threading.Event()
        self._commands.put((fn, done))
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        if not done.wait(_COMMAND_TIMEOUT):
            raise RuntimeError("fault proxy loop did not apply the command in time")

    # -- listener ------------------------------------------------------------------

    def _listen(self, port: int) -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.listen(128)
        s.setblocking(False)
        return s

    def _close_listener(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(KeyError, ValueError):
                self._sel.unregister(self._listener)
            self._listener.close()
            self._listener = None

    def _reopen_listener(self) -> None:
        if self._listener is None and not self._stop:
            self._listener = self._listen(self.port)
            self._sel.register(self._listener, selectors.EVENT_READ, "listen")

    def _accept(self) -> None:
        assert self._listener is not None
        try:
            client, _ = self._listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        try:
            upstream = socket.create_connection(self.target, timeout=_CONNECT_TIMEOUT)
        except OSError:
            _rst(client)
            return
        for s in (client, upstream):
            s.setblocking(False)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.accepted += 1
        self._links.append(_Link(client, upstream))

    # -- the loop ------------------------------------------------------------------

    def _run(self) -> None:
        self._sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        assert self._listener is not None
        self._sel.register(self._listener, selectors.EVENT_READ, "listen")
        while not self._stop:
            self._register_interest()
            busy = any(self._trickling(link) for link in self._links)
            events = self._sel.select(0 if busy else _TICK)
            for key, mask in events:
                if key.data == "wake":
                    with contextlib.suppress(OSError):
                        self._wake_r.recv(4096)
                elif key.data == "listen":
                    self._accept()
                else:
                    self._on_ready(key.fileobj, mask)  # type: ignore[arg-type]
            self._run_commands()
            if not self.listening and time.monotonic() >= self._refuse_until:
                self._reopen_listener()
            for link in list(self._links):
                self._write(link)
        self._shutdown()

    def _run_commands(self) -> None:
        while True:
            try:
                fn, done = self._commands.get_nowait()
            except queue.Empty:
                return
            try:
                fn()
            finally:
                done.set()

    def _trickling(self, link: _Link) -> bool:
        return any(d in self._trickle and f.out for d, f in link.flows.items())

    def _register_interest(self) -> None:
        for link in self._links:
            for sock in (link.client, link.upstream):
                if sock.fileno() < 0:
                    continue
                mask = 0
                for d, f in link.flows.items():
                    if f.src is sock and self._reading(d, f):
                        mask |= selectors.EVENT_READ
                    if f.dst is sock and f.out:
                        mask |= selectors.EVENT_WRITE
                if link.draining and sock is link.client:
                    mask = selectors.EVENT_READ
                self._set_interest(sock, mask, link)

    def _reading(self, direction: str, flow: _Flow) -> bool:
        """Whether to read the flow's source now. A stalled reply stream is left in the
        kernel (back-pressure on the server); a request stream is always read, into
        ``held`` while stalled, so that a client that gives up is seen at once."""
        if flow.eof or flow.cut_at is not None:
            return False
        if direction == REQUESTS:
            # Requests are read ahead (up to _HELD_LIMIT) so that a client's FIN is seen
            # as soon as it is sent, not after megabytes queued in front of it: then what
            # the client sent and the server has not got is dropped (see _read), never
            # forwarded after the client's next commands on another connection.
            return len(flow.held if direction in self._stalled else flow.out) < _HELD_LIMIT
        if direction in self._stalled:
            return False
        return len(flow.out) < _HIGH_WATER

    def _set_interest(self, sock: socket.socket, mask: int, link: _Link) -> None:
        try:
            current = self._sel.get_key(sock).events
        except KeyError:
            current = 0
        if mask == current:
            return
        if not mask:
            self._sel.unregister(sock)
        elif current:
            self._sel.modify(sock, mask, link)
        else:
            self._sel.register(sock, mask, link)

    def _on_ready(self, sock: socket.socket, mask: int) -> None:
        link = next((x for x in self._links if sock in (x.client, x.upstream)), None)
        if link is None or link.closed:
            return
        if mask & selectors.EVENT_READ:
            if link.draining:
                self._drain_client(link)
                return
            flow = link.flows[REQUESTS if sock is link.client else REPLIES]
            self._read(link, flow, REQUESTS if sock is link.client else REPLIES)

    def _drain_client(self, link: _Link) -> None:
        try:
            data = link.client.recv(_RECV)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._forget(link)

    def _read(self, link: _Link, flow: _Flow, direction: str) -> None:
        try:
            data = flow.src.recv(_RECV)
        except BlockingIOError:
            return
        except OSError:
            # The source broke: pass a reset on, so the other side sees one too.
            self._drop(link, "reset")
            return
        if not data:
            if direction == REQUESTS:
                # The client is gone: what it sent and the server has not got is dropped.
                self._drop(link, "reset")
                return
            # The server closed: passed on (FIN) once what is held has been written.
            flow.eof = True
            return
        if not link.data:
            link.data = direction == REQUESTS and _DATA_COMMAND.search(link.tail + data) is not None
            link.tail = data[-_TAIL:]
            if not link.data:
                flow.out += data  # a control connection: forwarded, not counted
                return
        start = self._seen[direction]
        self._seen[direction] = start + len(data)
        stalled = direction in self._stalled  # (a stall_after below starts one itself)
        self._apply_actions(flow, direction, bytearray(data), start)
        if stalled:
            flow.held += flow.out
            flow.out.clear()

    def _apply_actions(self, flow: _Flow, direction: str, data: bytearray, start: int) -> None:
        """Append ``data`` (stream positions ``start``..) to ``flow.out``, applying the
        faults that fall inside it."""
        end = start + len(data)
        actions = self._actions[direction]
        pending: list[_Action] = []
        base = len(flow.out)
        flow.out += data
        inserted = 0
        for action in actions:
            if action.at > end or (action.at == end and action.kind == "corrupt"):
                pending.append(action)
                continue
            pos = base + inserted + max(action.at, start) - start
            if action.kind == "corrupt":
                skip = max(0, start - action.at)
                chunk = action.data[skip:]
                room = len(flow.out) - pos
                flow.out[pos : pos + min(room, len(chunk))] = chunk[:room]
                if len(chunk) > room:
                    pending.append(_Action(end, "corrupt", chunk[room:]))
            elif action.kind == "stall":
                flow.held += flow.out[pos:]
                del flow.out[pos:]
                self._stalled.add(direction)
            elif action.kind == "inject":
                flow.out[pos:pos] = action.data
                inserted += len(action.data)
            else:
                del flow.out[pos:]
                flow.cut_at = pos
                flow.cut_how = action.how
                # Nothing after a cut goes anywhere: the faults after it are dropped.
                pending = [a for a in pending if a.at < action.at]
                break
        self._actions[direction] = pending

    def _write(self, link: _Link) -> None:
        for direction, flow in link.flows.items():
            if link.closed:
                return
            if flow.out:
                chunk = flow.out[:1] if direction in self._trickle else flow.out
                try:
                    sent = flow.dst.send(chunk)
                except BlockingIOError:
                    continue
                except OSError:
                    self._drop(link, "reset")
                    return
                del flow.out[:sent]
                if flow.cut_at is not None:
                    flow.cut_at -= sent
            if flow.cut_at is not None and flow.cut_at <= 0 and not flow.out:
                self._drop(link, flow.cut_how)
                return
            if flow.eof and not flow.out and not link.draining:
                # The server closed: FIN to the client.
                self._drop(link, "close")
                return

    # -- closing -------------------------------------------------------------------

    def _drop(self, link: _Link, how: Literal["reset", "close"]) -> None:
        if link.closed:
            return
        for sock in (link.client, link.upstream):
            with contextlib.suppress(KeyError, ValueError):
                self._sel.unregister(sock)
        _rst(link.upstream)
        if how == "close" and not link.draining:
            # Orderly: FIN to the client; keep reading (and dropping) what it still sends,
            # so that unread data does not turn the close into a reset.
            with contextlib.suppress(OSError):
                link.client.shutdown(socket.SHUT_WR)
            link.draining = True
            for f in link.flows.values():
                f.out.clear()
                f.eof = True
            return
        self._forget(link, reset=True)

    def _forget(self, link: _Link, reset: bool = False) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self._sel.unregister(link.client)
        if reset:
            _rst(link.client)
        else:
            with contextlib.suppress(OSError):
                link.client.close()
        link.closed = True
        with contextlib.suppress(ValueError):
            self._links.remove(link)

    def _shutdown(self) -> None:
        for link in list(self._links):
            self._drop(link, "reset")
            self._forget(link, reset=True)
        self._close_listener()
        self._run_commands()
        self._sel.close()
        self._wake_r.close()

    def close(self) -> None:
        if self._stop:
            return

        def apply() -> None:
            self._stop = True

        self._call(apply)
        self._thread.join(timeout=_COMMAND_TIMEOUT)
        self._wake_w.close()

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
