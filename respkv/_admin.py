"""A small blocking connection for administrative commands.

The batch engines are built for moving bulk values; this is for everything around
them: ``INFO`` and ``CONFIG GET`` for ``respkv doctor``, ``SCAN`` for usage recovery,
``FLUSHALL`` in test fixtures. One socket, one request at a time, a deadline on every
call, AUTH/SELECT/TLS from the same :class:`~respkv.ConnectionOptions` as the engines.

It also owns the connect handshake every connection runs (:func:`handshake_commands`)
and which of its failures fail a connect (:func:`handshake_required`): the engines, the
native one included, and the cluster links read both from here. TLS policy is
:mod:`respkv._tls`.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Final

from respkv._options import ConnectionOptions
from respkv._tls import make_ssl_context
from respkv.errors import ReplyError
from respkv.resp2 import NEED_DATA, Reader, pack_command

__all__ = [
    "REQUIRED_HANDSHAKE",
    "AdminConnection",
    "handshake_commands",
    "handshake_required",
    "open_socket",
]

#: Handshake commands whose error reply fails the connect. The others (CLIENT SETNAME)
#: are courtesy: old servers and restricted ACL users refuse them harmlessly. Every
#: connection follows this rule: both engines (the native one through
#: ``respkv._native.engine_config``), this admin connection and the cluster's links.
REQUIRED_HANDSHAKE: Final = frozenset({"AUTH", "SELECT"})


def open_socket(options: ConnectionOptions, timeout: float) -> socket.socket:
    """A connected (and, for TLS, handshaken) blocking socket with TCP_NODELAY."""
    sock: socket.socket
    if options.unix_path is not None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(options.unix_path)
        except BaseException:
            sock.close()
            raise
    else:
        sock = socket.create_connection((options.host, options.port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if options.tls is not None:
        ctx = make_ssl_context(options.tls)
        server_name = options.tls.server_hostname or options.host
        try:
            sock = ctx.wrap_socket(sock, server_hostname=server_name)
        except BaseException:
            sock.close()
            raise
    return sock


def handshake_commands(options: ConnectionOptions) -> list[tuple[object, ...]]:
    """AUTH, SELECT and CLIENT SETNAME as the options ask, in that order."""
    cmds: list[tuple[object, ...]] = []
    if options.password:
        if options.username:
            cmds.append(("AUTH", options.username, options.password))
        else:
            cmds.append(("AUTH", options.password))
    if options.db:
        cmds.append(("SELECT", options.db))
    if options.client_name:
        cmds.append(("CLIENT", "SETNAME", options.client_name))
    return cmds


def handshake_required(command: Sequence[object]) -> bool:
    """Whether an error reply to ``command`` (one of :func:`handshake_commands`) fails the
    connect (:data:`REQUIRED_HANDSHAKE`)."""
    return str(command[0]).upper() in REQUIRED_HANDSHAKE


class AdminConnection:
    """Blocking request/reply connection; error replies are raised as ReplyError."""

    def __init__(self, options: ConnectionOptions, timeout: float | None = None) -> None:
        self._timeout = timeout if timeout is not None else options.op_timeout
        self._sock = open_socket(options, min(options.connect_timeout, self._timeout))
        self._sock.settimeout(self._timeout)
        self._reader = Reader()
        try:
            for cmd in handshake_commands(options):
                try:
                    self.command(*cmd)
                except ReplyError:
                    if handshake_required(cmd):
                        raise
        except BaseException:
            self.close()
            raise

    def command(self, *args: object) -> Any:
        """Send one command and return its reply; raise ReplyError for an error reply."""
        self._sock.sendall(b"".join(bytes(memoryview(p)) for p in pack_command(*args)))
        while True:
            reply = self._reader.gets()
            if reply is not NEED_DATA:
                break
            data = self._sock.recv(65536)
            if not data:
                raise ConnectionError("server closed the connection")
            self._reader.feed(data)
        if isinstance(reply, ReplyError):
            raise reply
        return reply

    def pipeline(self, commands: Sequence[Sequence[object]]) -> list[Any]:
        """Send ``commands`` in one write and return their replies in order. Error
        replies are returned as :class:`ReplyError` values, not raised (one bad key
        must not hide the others' answers)."""
        if not commands:
            return []
        self._sock.sendall(
            b"".join(bytes(memoryview(p)) for cmd in commands for p in pack_command(*cmd))
        )
        replies: list[Any] = []
        while len(replies) < len(commands):
            reply = self._reader.gets()
            if reply is NEED_DATA:
                data = self._sock.recv(65536)
                if not data:
                    raise ConnectionError("server closed the connection")
                self._reader.feed(data)
                continue
            replies.append(reply)
        return replies

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> AdminConnection:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
