"""A LocalServer restarts on the port it had, while its old connections sit in TIME_WAIT.

The fault matrix and LMCache's restart cases stop a server and start a new one on the
same port. The server side of every connection it had closes first and so lingers in
TIME_WAIT; redis-server binds with SO_REUSEADDR and does not mind, and the port check
that runs before a fixed-port start must not mind either.
"""

from __future__ import annotations

from respkv._admin import AdminConnection
from respkv._options import ConnectionOptions
from respkv.testing.servers import LocalServer


def test_restart_on_the_same_port_with_connections_in_time_wait() -> None:
    first = LocalServer().start()
    port = first.port
    try:
        # A few client connections the server side will close when it stops.
        admins = [AdminConnection(ConnectionOptions(port=port)) for _ in range(3)]
        for a in admins:
            assert a.command("PING") == b"PONG"
    finally:
        first.stop()
    for a in admins:
        a.close()
    with LocalServer(port=port) as second, AdminConnection(ConnectionOptions(port=port)) as a:
        assert second.port == port
        assert a.command("PING") == b"PONG"
