"""``respkv server``: a local redis-server/valkey-server in the foreground, for trying respkv.

It starts the server on loopback with the recommended flags (persistence off, I/O
threads when there are cores to spare), prints its URL as the first line of stdout (so
a script can read it) and runs until Ctrl-C or SIGTERM, then stops the server.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from typing import Any, NoReturn

from respkv.cli._common import EXIT_FAILED, EXIT_OK, EXIT_UNAVAILABLE, CliError, int_at_least

__all__ = ["add_parser", "cmd_server"]


def add_parser(sub: Any) -> None:
    """Register ``server`` on the subcommand parsers ``sub``."""
    p: argparse.ArgumentParser = sub.add_parser(
        "server",
        help="run a local server in the foreground and print its URL (Ctrl-C stops it)",
        description="Start redis-server (or valkey-server) on loopback with the recommended "
        "flags; the first line of output is its URL.",
    )
    p.add_argument("--port", type=int_at_least(1), default=0, help="port (default: a free one)")
    p.add_argument("--bind", default="127.0.0.1", help="address to listen on (default loopback)")
    p.add_argument("--server-binary", default=None, help="redis-server or valkey-server")
    p.set_defaults(func=cmd_server)


def _raise_interrupt(signum: int, frame: object) -> NoReturn:
    raise KeyboardInterrupt


def cmd_server(args: argparse.Namespace) -> int:
    from respkv._server import LocalServer, recommended_args
    from respkv.errors import ServerNotFoundError

    server = LocalServer(
        binary=args.server_binary, host=args.bind, port=args.port, args=recommended_args()
    )
    if threading.current_thread() is threading.main_thread():
        # SIGTERM stops the server as Ctrl-C does. SIGINT is set explicitly because a
        # shell starting us in the background (``respkv server &``) ignores it.
        signal.signal(signal.SIGTERM, _raise_interrupt)
        signal.signal(signal.SIGINT, _raise_interrupt)
    try:
        server.start()
    except ServerNotFoundError as exc:
        raise CliError(str(exc), EXIT_UNAVAILABLE) from None
    except (RuntimeError, OSError) as exc:
        raise CliError(f"could not start a server: {exc}", EXIT_UNAVAILABLE) from None
    try:
        print(server.url, flush=True)
        flags = " ".join(a if a else "''" for a in recommended_args())
        print(
            f"respkv server: {os.path.basename(server.binary or 'redis-server')} at "
            f"{server.url} with {flags}; Ctrl-C stops it",
            file=sys.stderr,
            flush=True,
        )
        assert server.process is not None
        code = server.process.wait()
        print(
            f"respkv server: the server exited with status {code}:\n{server.log[-2000:]}",
            file=sys.stderr,
        )
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("respkv server: stopping", file=sys.stderr)
        return EXIT_OK
    finally:
        server.stop()
