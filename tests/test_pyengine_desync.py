"""Pure engine: bytes nobody asked for never reach a later key (issue 9, defect 1).

A real server never sends an unsolicited reply, so a tiny scripted server stands in for
a broken one (or a proxy gone wrong): it answers each request from a script and may
glue an extra reply to the end of a real one, in the same ``send``. Before the fix the
pure engine only peeked at the socket when it went from idle to busy, not at what its
reader had already buffered: the extra reply then answered the next GET on that
connection, which came back OK with the intruder's bytes.

The rule checked: any byte that arrives while no request is in flight, or is left in
the reader after the last reply in flight, is a desynchronised stream. The connection is
dropped; the keys answered before keep their answers; the next key goes over a new
connection and gets its own reply.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Final

import pytest

from respkv import ConnectionOptions, KeyStatus
from respkv._pyengine import PyConnector
from respkv.resp2 import NEED_DATA, Reader
from respkv.testing import wait_for

#: Socket timeout of the fake server's threads: how often they look at the stop flag.
TICK: Final = 0.05
#: Bound on every wait of these tests (a hang fails instead of blocking the suite).
WAIT: Final = 10.0

Script = Callable[[list[bytes], int], bytes]


def bulk(value: bytes) -> bytes:
    return b"$%d\r\n%b\r\n" % (len(value), value)


class TinyServer:
    """A loopback RESP2 server whose replies come from ``script(command, connection)``
    (``connection`` counts from 0); the replies to one received chunk go out in one
    ``sendall``. The handshake (CLIENT, AUTH, SELECT) is answered ``+OK``."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.accepted = 0
        self.commands: list[tuple[int, list[bytes]]] = []
        self._sockets: dict[int, socket.socket] = {}
        #: Set when the client closed connection ``i`` (EOF or a reset).
        self.closed: dict[int, threading.Event] = {}
        self._stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(TICK)
        self.port: int = self._listener.getsockname()[1]
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def options(self, **kw: object) -> ConnectionOptions:
        base = ConnectionOptions(host="127.0.0.1", port=self.port, num_workers=1)
        return base.replace(**kw)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            index = self.accepted
            self._sockets[index] = sock
            self.closed[index] = threading.Event()
            self.accepted += 1
            t = threading.Thread(target=self._serve, args=(sock, index), daemon=True)
            self._threads.append(t)
            t.start()

    def _serve(self, sock: socket.socket, index: int) -> None:
        sock.settimeout(TICK)
        reader = Reader()
        with sock:
            while not self._stop.is_set():
                try:
                    data = sock.recv(65536)
                except TimeoutError:
                    continue
                except OSError:  # reset: the client closed with bytes unread
                    self.closed[index].set()
                    return
                if not data:
                    self.closed[index].set()
                    return
                reader.feed(data)
                out = b""
                while (cmd := reader.gets()) is not NEED_DATA:
                    self.commands.append((index, cmd))
                    if cmd[0].upper() in (b"CLIENT", b"AUTH", b"SELECT"):
                        out += b"+OK\r\n"
                    else:
                        out += self.script(cmd, index)
                try:
                    sock.sendall(out)
                except OSError:
                    return

    def push(self, index: int, data: bytes) -> None:
        """Send ``data`` on connection ``index`` now, unasked."""
        self._sockets[index].sendall(data)

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        for t in self._threads:
            t.join(WAIT)

    def __enter__(self) -> TinyServer:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


VALUES: Final = {b"a": b"AAAA", b"b": b"BBBB", b"c": b"CCCC"}
INTRUDER: Final = b"XXXX"


def gluing_script(cmd: list[bytes], connection: int) -> bytes:
    """GET/EXISTS as a server with VALUES would answer, but the first connection glues
    an extra reply to its answer for key ``a``."""
    name, key = cmd[0].upper(), cmd[1]
    if name == b"GET":
        reply = bulk(VALUES[key]) if key in VALUES else b"$-1\r\n"
        extra = bulk(INTRUDER)
    else:  # EXISTS
        reply = b":1\r\n" if key in VALUES else b":0\r\n"
        extra = b":1\r\n"
    return reply + extra if connection == 0 and key == b"a" else reply


@pytest.fixture
def server() -> Iterator[TinyServer]:
    with TinyServer(gluing_script) as s:
        yield s


def test_extra_reply_glued_to_a_get_never_answers_the_next_get(server: TinyServer) -> None:
    conn = PyConnector(server.options())
    try:
        first = [bytearray(4)]
        c = wait_for(conn, conn.submit_batch_get([b"a"], first), WAIT)
        assert c.statuses == (KeyStatus.OK,) and first[0] == VALUES[b"a"]
        second = [bytearray(b"\xee" * 4)]
        c = wait_for(conn, conn.submit_batch_get([b"b"], second), WAIT)
        assert bytes(second[0]) != INTRUDER, "the glued reply answered the next key"
        assert c.statuses == (KeyStatus.OK,) and second[0] == VALUES[b"b"]
        assert server.accepted == 2, "the desynchronised connection is dropped and replaced"
        # The stream stays right afterwards: every key gets its own value.
        out = [bytearray(4) for _ in VALUES]
        c = wait_for(conn, conn.submit_batch_get(list(VALUES), out), WAIT)
        assert c.ok and [bytes(o) for o in out] == list(VALUES.values())
    finally:
        conn.close()


def test_extra_reply_after_the_last_of_a_pipeline_keeps_the_answers(server: TinyServer) -> None:
    """``a`` answered last in a pipelined batch: the keys before it and ``a`` itself keep
    their (correct) answers; only the connection goes."""
    conn = PyConnector(server.options())
    try:
        keys = [b"b", b"c", b"a"]
        out = [bytearray(4) for _ in keys]
        c = wait_for(conn, conn.submit_batch_get(keys, out), WAIT)
        assert c.ok, c.failures
        assert [bytes(o) for o in out] == [VALUES[k] for k in keys]
        c = wait_for(conn, conn.submit_batch_exists([b"zzz", b"b"]), WAIT)
        assert c.statuses == (KeyStatus.MISS, KeyStatus.OK)
        assert server.accepted == 2
    finally:
        conn.close()


def test_extra_integer_glued_to_exists_never_answers_the_next_exists(server: TinyServer) -> None:
    """The EXISTS fast path (``gets_many``) with a ``:1`` glued after the answer."""
    conn = PyConnector(server.options())
    try:
        c = wait_for(conn, conn.submit_batch_exists([b"a"]), WAIT)
        assert c.statuses == (KeyStatus.OK,)
        c = wait_for(conn, conn.submit_batch_exists([b"missing"]), WAIT)
        assert c.statuses == (KeyStatus.MISS,), "the glued :1 answered the next EXISTS"
        assert server.accepted == 2
    finally:
        conn.close()


def test_bytes_while_idle_drop_the_connection() -> None:
    """Bytes that arrive later, while nothing is in flight, are a desync as well: the
    engine drops the connection as they arrive, before any later request could take
    them for its reply."""

    def script(cmd: list[bytes], connection: int) -> bytes:
        return bulk(VALUES[cmd[1]]) if cmd[1] in VALUES else b"$-1\r\n"

    with TinyServer(script) as server:
        conn = PyConnector(server.options())
        try:
            assert wait_for(conn, conn.submit_batch_get([b"a"], [bytearray(4)]), WAIT).ok
            server.push(0, bulk(INTRUDER))
            assert server.closed[0].wait(WAIT), "the engine kept a connection with stray bytes"
            out = [bytearray(4)]
            c = wait_for(conn, conn.submit_batch_get([b"b"], out), WAIT)
            assert c.statuses == (KeyStatus.OK,) and out[0] == VALUES[b"b"]
            assert server.accepted == 2
        finally:
            conn.close()
