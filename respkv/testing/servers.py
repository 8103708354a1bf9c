"""Start and stop a throwaway local ``redis-server`` / ``valkey-server``.

Used by the test fixtures (:mod:`respkv.testing`), ``respkv bench`` when no server is
given, and ``respkv server``. The server listens on loopback only, on a free port,
with persistence off (``--save '' --appendonly no``), in its own temporary directory,
and is stopped by pid. A port taken between choosing and binding (parallel test
workers) shows as an early exit; the start is then retried on another port.

Readiness is a real ``PING`` answered with ``+PONG`` (``AUTH`` first for a server with a
password; ``-LOADING`` waits), polled with a bounded deadline, and the server that
answered must be ours: ``INFO server`` reports its ``process_id``. Without that check a
port taken by somebody else's server looks ready (its PONG) until our process exits, and
a caller would be handed the other server. A fixed port found taken, before or after
the start, raises :class:`PortTakenError`. A TLS server (``tls=TlsFiles(...)``) listens
on its TLS port only (``--port 0``), and the readiness check goes through a TLS
handshake.

A password is written to a configuration file (mode 0600) in the server's directory,
never passed on the command line, where any local user could read it (``ps``).

``unix_socket=True`` makes the server listen on a unix socket in its private directory
too (mode 0700, :attr:`LocalServer.unix_path`), beside its TCP port: co-located clients
move 1-8 MiB values 1.3-2x faster through it than through loopback TCP, because a unix
socket holds at most the sender's buffer of a value when Redis reads, so Redis copies
less (measured: benchmarks/scaling.py, docs/performance.md "Unix sockets").
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Final

from respkv.errors import ReplyError, ServerNotFoundError
from respkv.resp2 import NEED_DATA, Reader, pack_command

__all__ = [
    "INSTALL_HINT",
    "LocalServer",
    "PortTakenError",
    "TlsFiles",
    "find_server_binary",
    "free_port",
    "recommended_args",
    "tls_url_query",
]

SERVER_BINARIES: Final = ("redis-server", "valkey-server")
INSTALL_HINT: Final = (
    "no redis-server or valkey-server on PATH; install one, e.g. "
    "'apt-get install -y redis-server' (Debian/Ubuntu), 'brew install redis' (macOS)"
)
#: How long a server may take to answer PING after it was started.
START_TIMEOUT: Final = 15.0
#: How many ports are tried when the chosen one is taken before the server binds.
START_ATTEMPTS: Final = 5
#: The unix socket's name in the server's directory (``unix_socket=True``): short, as
#: a socket path must fit ``sun_path`` (108 bytes on Linux) with the directory.
UNIX_SOCKET_NAME: Final = "server.sock"


class PortTakenError(RuntimeError):
    """The fixed port a server was asked to listen on is used by something else."""


def find_server_binary(preferred: str | None = None) -> str:
    """Path of the server binary: ``preferred`` (a path, or a name on PATH) if given,
    else the first of :data:`SERVER_BINARIES` on PATH."""
    if preferred and os.sep in preferred:
        if not os.path.exists(preferred):
            raise ServerNotFoundError(f"server binary {preferred!r}: no such file")
        if os.path.isdir(preferred) or not os.access(preferred, os.X_OK):
            raise ServerNotFoundError(f"server binary {preferred!r}: not an executable file")
        return preferred
    if preferred:
        path = shutil.which(preferred)
        if path:
            return path
        raise ServerNotFoundError(
            f"server binary {preferred!r}: no executable of that name on PATH; give its "
            "path, or a name such as redis-server or valkey-server"
        )
    for name in SERVER_BINARIES:
        path = shutil.which(name)
        if path:
            return path
    raise ServerNotFoundError(INSTALL_HINT)


def check_port_free(host: str, port: int) -> None:
    """Raise :class:`PortTakenError` when ``host:port`` cannot be bound right now."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        # As redis-server itself binds: connections of a server that just stopped linger
        # in TIME_WAIT, which must not make its port look taken for a restart.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise PortTakenError(
                f"cannot listen on {host}:{port}: {exc.strerror or exc} "
                "(is another server running there?)"
            ) from None


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on ``host`` (loopback)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def recommended_args(cores: int | None = None) -> list[str]:
    """Server flags recommended for a KV-cache store (see docs/performance.md).

    Persistence off (a cache is rebuilt by recomputing), and I/O threads when there are
    cores to spare: about one per four cores, at most 4 (measured gains stop there).
    """
    cores = cores or os.cpu_count() or 1
    args = ["--save", "", "--appendonly", "no"]
    io_threads = min(4, cores // 4)
    if io_threads > 1:
        args += ["--io-threads", str(io_threads)]
    return args


@dataclass(frozen=True)
class TlsFiles:
    """Certificates for a TLS server: its own pair, the CA it trusts for clients, and
    optionally a client pair (used by the readiness check and put in :attr:`LocalServer.url`).

    ``auth_clients`` is redis's ``tls-auth-clients``: ``yes`` (a client certificate is
    required), ``optional`` or ``no``.
    """

    cert_file: str
    key_file: str
    ca_file: str
    client_cert_file: str | None = None
    client_key_file: str | None = None
    auth_clients: str = "optional"


def tls_url_query(tls: TlsFiles) -> str:
    """The query of a ``resps://`` URL that trusts ``tls``'s CA and presents its client
    pair, if it has one (see :mod:`respkv.config`)."""
    query = f"ca_file={tls.ca_file}"
    if tls.client_cert_file:
        query += f"&cert_file={tls.client_cert_file}"
        query += f"&key_file={tls.client_key_file or tls.client_cert_file}"
    return query


def _probe(
    host: str, port: int, timeout: float, tls: TlsFiles | None = None, password: str = ""
) -> list[Any]:
    """The replies to ``[AUTH password] PING`` and ``INFO server`` on one connection
    (fewer when the server closes it first: a TLS-only port read in plaintext)."""
    s = socket.create_connection((host, port), timeout=timeout)
    if tls is not None:
        # Readiness only: trust the CA, but do not check the name (the host may be an IP).
        ctx = ssl.create_default_context(cafile=tls.ca_file)
        ctx.check_hostname = False
        if tls.client_cert_file:
            ctx.load_cert_chain(tls.client_cert_file, tls.client_key_file)
        try:
            s = ctx.wrap_socket(s, server_hostname=host)
        except BaseException:
            s.close()
            raise
    commands: list[tuple[str, ...]] = [("AUTH", password)] if password else []
    commands += [("PING",), ("INFO", "server")]
    with s:
        s.sendall(b"".join(bytes(b) for c in commands for b in pack_command(*c)))
        reader = Reader()
        replies: list[Any] = []
        while len(replies) < len(commands):
            reply = reader.gets()
            if reply is not NEED_DATA:
                replies.append(reply)
                continue
            chunk = s.recv(65536)
            if not chunk:
                break
            reader.feed(chunk)
        return replies[1:] if password else replies


def _process_id(info: object) -> int | None:
    """``process_id`` from an ``INFO server`` reply, or None when it has none."""
    if not isinstance(info, bytes):
        return None
    for line in info.decode("utf-8", "replace").splitlines():
        key, _, value = line.partition(":")
        if key == "process_id" and value.strip().isdigit():
            return int(value)
    return None


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to a new file only its owner can read (it may hold a password)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


def _config_quote(value: str) -> str:
    """``value`` as one double-quoted argument of a redis/valkey configuration file
    (their ``sdssplitargs`` reads ``\\``, ``\\"``, ``\\n``, ``\\r``, ``\\t``)."""
    escaped = (
        value.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("\t", "\\t")
    )
    return f'"{escaped}"'


@dataclass
class LocalServer:
    """A local Redis-compatible server for tests and benchmarks; a context manager."""

    binary: str | None = None
    host: str = "127.0.0.1"
    port: int = 0
    args: Sequence[str] = ()
    password: str = field(default="", repr=False)
    acl_users: Sequence[str] = field(default=(), repr=False)
    tls_args: Sequence[str] = ()
    tls: TlsFiles | None = None
    unix_socket: bool = False
    process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    workdir: Path | None = field(default=None, init=False, repr=False)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.tls is None:
            return f"resp://{host}:{self.port}"
        return f"resps://{host}:{self.port}?{tls_url_query(self.tls)}"

    @property
    def unix_path(self) -> str | None:
        """The unix socket the server listens on (``unix_socket=True``), else None."""
        if not self.unix_socket or self.workdir is None:
            return None
        return str(self.workdir / UNIX_SOCKET_NAME)

    @property
    def log(self) -> str:
        """The server's log so far (for failure messages)."""
        if self.workdir is None:
            return ""
        path = self.workdir / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self) -> LocalServer:
        binary = find_server_binary(self.binary)
        fixed_port = self.port
        if fixed_port:
            check_port_free(self.host, fixed_port)
        self.workdir = Path(tempfile.mkdtemp(prefix="respkv-server-"))
        last_error = ""
        for _ in range(START_ATTEMPTS):
            port = fixed_port or free_port(self.host)
            cmd = [binary, *self._config_args(port)]
            log = open(self.workdir / "server.log", "ab")  # noqa: SIM115 - owned by the child
            try:
                proc = subprocess.Popen(
                    cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
                )
            finally:
                log.close()
            state = self._wait_ready(proc, port)
            if state == "ready":
                self.process = proc
                self.port = port
                return self
            last_error = self.log[-2000:]
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            if fixed_port:
                break
        # No server to stop later: remove its directory now (a caller whose start()
        # raised, e.g. in a ``with`` statement, never calls stop()).
        shutil.rmtree(self.workdir, ignore_errors=True)
        self.workdir = None
        if fixed_port and state == "foreign":
            raise PortTakenError(
                f"cannot listen on {self.host}:{fixed_port}: another server answers there"
            )
        raise RuntimeError(f"{binary} did not start; its log says:\n{last_error}")

    def _config_args(self, port: int) -> list[str]:
        assert self.workdir is not None
        args = [
            "--port", str(port), "--bind", self.host, "--dir", str(self.workdir),
            "--save", "", "--appendonly", "no", "--daemonize", "no",
            "--protected-mode", "no", "--logfile", "",
        ]  # fmt: skip
        if self.acl_users:
            # An ACL file and config-file users cannot be mixed, so the default user's
            # password moves into the ACL file too.
            lines = list(self.acl_users)
            if self.password:
                lines.insert(0, f"user default on >{self.password} ~* &* +@all")
            aclfile = self.workdir / "users.acl"
            _write_private(aclfile, "\n".join(lines) + "\n")
            args += ["--aclfile", str(aclfile)]
        elif self.password:
            # A config file (the first argument) keeps the password out of ``ps``.
            conf = self.workdir / "auth.conf"
            _write_private(conf, f"requirepass {_config_quote(self.password)}\n")
            args.insert(0, str(conf))
        if self.unix_socket:
            args += [
                "--unixsocket",
                str(self.workdir / UNIX_SOCKET_NAME),
                "--unixsocketperm",
                "700",
            ]
        if self.tls is not None:
            args += [
                "--port", "0", "--tls-port", str(port),
                "--tls-cert-file", self.tls.cert_file, "--tls-key-file", self.tls.key_file,
                "--tls-ca-cert-file", self.tls.ca_file, "--tls-auth-clients", self.tls.auth_clients,
            ]  # fmt: skip
        return args + list(self.tls_args) + list(self.args)

    def _wait_ready(self, proc: subprocess.Popen[bytes], port: int) -> str:
        """``"ready"``, ``"exited"`` (or never answered in time), or ``"foreign"``: the
        port answers, but ``INFO server`` names another process."""
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return "exited"
            try:
                replies = _probe(self.host, port, 1.0, tls=self.tls, password=self.password)
            except OSError:
                time.sleep(0.01)
                continue
            if not replies:
                # A TLS-only port closes plaintext connections: it is listening.
                return "ready" if self.tls_args else "exited"
            ping = replies[0]
            if isinstance(ping, ReplyError) and str(ping).startswith("LOADING"):
                time.sleep(0.01)
                continue
            pid = _process_id(replies[1]) if len(replies) > 1 else None
            if pid is not None and pid != proc.pid:
                return "foreign"
            if ping == b"PONG" or (isinstance(ping, ReplyError) and str(ping).startswith("NOAUTH")):
                return "ready"
            time.sleep(0.01)
        return "exited"

    def stop(self) -> None:
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def __enter__(self) -> LocalServer:
        return self.start() if self.process is None else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
