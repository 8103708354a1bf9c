"""The throwaway local server (``respkv.testing.servers.LocalServer``) and the pytest fixtures.

Everything here runs real ``redis-server`` processes on loopback. A started server
answers PING and runs with persistence off; a stopped one leaves no process (checked
by pid) and no directory behind; a port taken between choosing and binding is retried
on another port; the AUTH fixture enforces both the default password and the ACL user.
"""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from respkv._admin import AdminConnection
from respkv._options import ConnectionOptions
from respkv.errors import ReplyError, ServerNotFoundError
from respkv.testing import ACL_PASSWORD, ACL_USER, AUTH_PASSWORD
from respkv.testing.servers import (
    INSTALL_HINT,
    LocalServer,
    PortTakenError,
    find_server_binary,
    free_port,
    recommended_args,
)


def admin(server: LocalServer, **options: object) -> AdminConnection:
    opts = ConnectionOptions(host=server.host, port=server.port).replace(**options)
    return AdminConnection(opts, timeout=10)


def pid_is_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def is_stopped(server: LocalServer) -> bool:
    """No process and no directory (a function, so mypy forgets earlier narrowing)."""
    return server.process is None and server.workdir is None


@pytest.fixture
def private_tmp(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Servers started in this test put their directories here, where we can look."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback port bound (not listening) by this process: a server cannot have it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


# ------------------------------------------------------------------------ fixtures


def test_session_server_answers_ping_with_persistence_off(redis_server: LocalServer) -> None:
    assert redis_server.process is not None and redis_server.process.poll() is None
    assert redis_server.host == "127.0.0.1"
    assert redis_server.url == f"resp://127.0.0.1:{redis_server.port}"
    with admin(redis_server) as conn:
        assert conn.command("PING") == b"PONG"
        assert conn.command("CONFIG", "GET", "save") == [b"save", b""]
        assert conn.command("CONFIG", "GET", "appendonly") == [b"appendonly", b"no"]
        assert conn.command("CONFIG", "GET", "bind")[1] == b"127.0.0.1"


def test_redis_options_start_from_an_empty_database(
    redis_server: LocalServer, redis_options: ConnectionOptions
) -> None:
    assert (redis_options.host, redis_options.port) == (redis_server.host, redis_server.port)
    with AdminConnection(redis_options, timeout=10) as conn:
        assert conn.command("DBSIZE") == 0
        conn.command("SET", "test_server:leftover", "x")  # the next test's flush removes it


def test_make_server_passes_extra_flags(make_server: Callable[..., LocalServer]) -> None:
    server = make_server("--maxmemory", "10mb", "--maxmemory-policy", "noeviction")
    with admin(server) as conn:
        assert conn.command("CONFIG", "GET", "maxmemory") == [b"maxmemory", b"10485760"]
        assert conn.command("CONFIG", "GET", "maxmemory-policy")[1] == b"noeviction"


def test_auth_server_needs_a_password(auth_server: LocalServer) -> None:
    with admin(auth_server, client_name="") as conn:
        with pytest.raises(ReplyError) as info:
            conn.command("PING")
        assert info.value.prefix == "NOAUTH"
    with admin(auth_server, password=AUTH_PASSWORD) as conn:
        assert conn.command("PING") == b"PONG"
    with pytest.raises(ReplyError) as wrong:
        admin(auth_server, password="not-the-password")
    assert wrong.value.prefix == "WRONGPASS"


def test_auth_server_acl_user(auth_server: LocalServer) -> None:
    with admin(auth_server, username=ACL_USER, password=ACL_PASSWORD) as conn:
        assert conn.command("ACL", "WHOAMI") == ACL_USER.encode()
        assert conn.command("SET", "acl:key", b"v") == b"OK"
        assert conn.command("GET", "acl:key") == b"v"
        assert conn.command("UNLINK", "acl:key") == 1
        with pytest.raises(ReplyError) as denied:  # the user is limited: no FLUSHALL
            conn.command("FLUSHALL")
        assert denied.value.prefix == "NOPERM"
    with pytest.raises(ReplyError) as wrong:
        admin(auth_server, username=ACL_USER, password=AUTH_PASSWORD)
    assert wrong.value.prefix == "WRONGPASS"


# -------------------------------------------------------------------- LocalServer


def test_start_ping_stop_leaves_no_process_and_no_directory(private_tmp: Path) -> None:
    server = LocalServer().start()
    proc = server.process
    assert proc is not None
    pid = proc.pid
    assert server.workdir is not None and server.workdir.parent == private_tmp
    with admin(server) as conn:
        assert conn.command("PING") == b"PONG"
    assert "Ready to accept connections" in server.log
    port = server.port

    server.stop()
    assert is_stopped(server)
    assert proc.returncode == 0  # SIGTERM: a clean shutdown, reaped by stop()
    assert pid_is_gone(pid)
    assert list(private_tmp.iterdir()) == []
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    server.stop()  # idempotent


def test_context_manager_stops_the_server(private_tmp: Path) -> None:
    with LocalServer() as server:
        assert server.process is not None
        pid = server.process.pid
        with admin(server) as conn:
            assert conn.command("PING") == b"PONG"
    assert pid_is_gone(pid)
    assert list(private_tmp.iterdir()) == []


def test_port_taken_before_binding_is_retried(
    monkeypatch: pytest.MonkeyPatch, taken_port: int
) -> None:
    # Parallel test workers race for ports: one may take the port chosen here before
    # the server binds it. Simulated by handing out a taken port first.
    offered: list[int] = []

    def racy_free_port(host: str = "127.0.0.1") -> int:
        port = taken_port if not offered else free_port(host)
        offered.append(port)
        return port

    monkeypatch.setattr("respkv.testing.servers.free_port", racy_free_port)
    with LocalServer() as server:
        assert offered[0] == taken_port and len(offered) == 2
        assert server.port == offered[1] != taken_port
        assert "Address already in use" in server.log  # the first attempt's failure
        with admin(server) as conn:
            assert conn.command("PING") == b"PONG"


def test_fixed_port_taken_fails_before_starting_and_cleans_up(
    private_tmp: Path, taken_port: int
) -> None:
    server = LocalServer(port=taken_port)
    with pytest.raises(PortTakenError, match=f"cannot listen on 127.0.0.1:{taken_port}") as info:
        server.start()
    assert "Address already in use" in str(info.value)
    assert is_stopped(server)
    assert list(private_tmp.iterdir()) == []


@pytest.fixture
def not_a_server(tmp_path: Path) -> str:
    """A "server binary" that runs but never listens: whoever answers is someone else."""
    script = tmp_path / "sleepy-server"
    script.write_text("#!/bin/sh\nexec sleep 30\n")
    script.chmod(0o755)
    return str(script)


def test_a_port_answered_by_another_server_is_not_taken_for_ours(
    monkeypatch: pytest.MonkeyPatch, redis_server: LocalServer, not_a_server: str
) -> None:
    # The bind check can lose a race (the port is taken between the check and the start);
    # the process id in INFO then tells the other server from ours. Before this check
    # the other server's PONG made start() succeed and hand out somebody else's server.
    monkeypatch.setattr("respkv.testing.servers.check_port_free", lambda host, port: None)
    server = LocalServer(binary=not_a_server, port=redis_server.port)
    with pytest.raises(PortTakenError, match="another server answers there"):
        server.start()
    assert is_stopped(server)
    monkeypatch.setattr(
        "respkv.testing.servers.free_port", lambda host="127.0.0.1": redis_server.port
    )
    with pytest.raises(RuntimeError, match="did not start"):
        LocalServer(binary=not_a_server).start()


def test_a_password_stays_out_of_the_command_line(private_tmp: Path) -> None:
    password = 'p w"q\\r\tend'  # spaces, quotes, backslashes and tabs survive the file
    with LocalServer(password=password) as server:
        assert server.process is not None
        argv = Path(f"/proc/{server.process.pid}/cmdline").read_bytes()
        assert b"p w" not in argv and b"requirepass" not in argv
        with admin(server, password=password) as conn:
            assert conn.command("PING") == b"PONG"
        with pytest.raises(ReplyError, match="NOAUTH"), admin(server) as conn:
            conn.command("PING")


def test_find_server_binary() -> None:
    assert Path(find_server_binary()).name in ("redis-server", "valkey-server")
    assert Path(find_server_binary("redis-server")).name == "redis-server"
    # A name that is not on PATH is named as such, not as "no redis-server on PATH".
    with pytest.raises(ServerNotFoundError) as info:
        find_server_binary("no-such-server-xyz")
    assert "'no-such-server-xyz': no executable of that name on PATH" in str(info.value)
    assert "no redis-server" not in str(info.value)
    with pytest.raises(ServerNotFoundError, match="'/no/such/redis-server': no such file"):
        find_server_binary("/no/such/redis-server")
    with pytest.raises(ServerNotFoundError, match="'/tmp': not an executable file"):
        find_server_binary("/tmp")
    path = find_server_binary()
    assert find_server_binary(path) == path
    assert "apt-get install -y redis-server" in INSTALL_HINT
    assert "--host" not in INSTALL_HINT  # flags belong to the command that has them


def test_free_port_can_be_bound() -> None:
    port = free_port()
    assert 0 < port < 65536
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", port))
        assert s.getsockname() == ("127.0.0.1", port)


@pytest.mark.parametrize(
    ("cores", "io_threads"),
    [(1, None), (4, None), (7, None), (8, "2"), (12, "3"), (16, "4"), (128, "4")],
)
def test_recommended_args(cores: int, io_threads: str | None) -> None:
    args = recommended_args(cores)
    assert args[:4] == ["--save", "", "--appendonly", "no"]
    if io_threads is None:
        assert "--io-threads" not in args
    else:
        assert args[4:] == ["--io-threads", io_threads]
