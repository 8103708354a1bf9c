"""``respkv server``: a local redis-server/valkey-server in the foreground, for trying respkv.

It starts the server on loopback with the recommended flags (persistence off, I/O
threads when there are cores to spare) plus ``--maxmemory``, ``--maxmemory-policy``,
``--requirepass`` and ``--io-threads`` when given, prints its URL as the first line of
stdout (so a script can read it) and runs until Ctrl-C or SIGTERM, then stops the
server. The URL is printed only once the server that answers on the port is the one
started here (:class:`respkv.testing.servers.LocalServer` checks its process id): with the port
taken the command fails with exit status 3 and prints no URL. The password is never
printed (the URL has none) and never reaches the server's command line.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
import threading
from typing import TYPE_CHECKING, Any, Final, NoReturn

from respkv.cli._common import EXIT_FAILED, EXIT_OK, EXIT_UNAVAILABLE, CliError, int_at_least

if TYPE_CHECKING:
    from respkv.testing.servers import LocalServer

__all__ = ["add_parser", "cmd_server", "server_args"]


#: ``--maxmemory`` as redis.conf writes memory sizes: bytes, or a number with a unit
#: (``k``/``m``/``g`` are powers of 1000, ``kb``/``mb``/``gb`` powers of 1024).
MEMORY_SIZE: Final = re.compile(r"\d+(?:[kmg]b?|b)?", re.IGNORECASE)
#: Largest ``--io-threads``: redis's and valkey's ``IO_THREADS_MAX_NUM``.
MAX_IO_THREADS: Final = 128
#: Eviction policies redis and valkey accept for ``--maxmemory-policy``.
MAXMEMORY_POLICIES: Final = (
    "noeviction", "allkeys-lru", "allkeys-lfu", "allkeys-random",
    "volatile-lru", "volatile-lfu", "volatile-random", "volatile-ttl",
)  # fmt: skip


def _memory_size(text: str) -> str:
    if not MEMORY_SIZE.fullmatch(text.strip()):
        raise argparse.ArgumentTypeError(
            f"not a memory size: {text!r} (bytes, or a number with k, kb, m, mb, g or gb)"
        )
    return text.strip()


def _io_threads(text: str) -> int:
    value = int_at_least(1)(text)
    if value > MAX_IO_THREADS:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_IO_THREADS}, got {value}")
    return value


def add_parser(sub: Any) -> None:
    """Register ``server`` on the subcommand parsers ``sub``."""
    p: argparse.ArgumentParser = sub.add_parser(
        "server",
        help="run a local server in the foreground and print its URL (Ctrl-C stops it)",
        description="Start redis-server (or valkey-server) on loopback with the recommended "
        "flags; the first line of output is its URL, printed once the server answers. "
        "Exit status 3 when it cannot start (port taken, no binary), 1 when it exits by "
        "itself, 0 after Ctrl-C or SIGTERM.",
    )
    p.add_argument("--port", type=int_at_least(1), default=0, help="port (default: a free one)")
    p.add_argument("--bind", default="127.0.0.1", help="address to listen on (default loopback)")
    p.add_argument(
        "--server-binary", default=None, help="redis-server or valkey-server: a name or a path"
    )
    p.add_argument(
        "--maxmemory",
        type=_memory_size,
        default=None,
        help="memory limit, e.g. 4gb (default: none; see --maxmemory-policy)",
    )
    p.add_argument(
        "--maxmemory-policy",
        choices=MAXMEMORY_POLICIES,
        default=None,
        help="what to do when full (server default noeviction: SETs fail with OOM)",
    )
    p.add_argument(
        "--requirepass",
        default=None,
        help="password clients must give (never printed; kept out of the process list)",
    )
    p.add_argument(
        "--io-threads",
        type=_io_threads,
        default=None,
        help="server I/O threads (default: one per four cores, at most 4; 1 below 8 cores)",
    )
    from respkv.cli import cluster  # --cluster N, --replicas R (respkv.cli.cluster)

    cluster.add_server_flags(p)
    p.set_defaults(func=cmd_server)


def server_args(args: argparse.Namespace) -> list[str]:
    """The server's flags: the recommended ones, with the command's options applied."""
    from respkv.testing.servers import recommended_args

    flags = recommended_args()
    if args.io_threads is not None:
        if "--io-threads" in flags:
            i = flags.index("--io-threads")
            del flags[i : i + 2]
        if args.io_threads > 1:
            flags += ["--io-threads", str(args.io_threads)]
    if args.maxmemory is not None:
        flags += ["--maxmemory", args.maxmemory]
    if args.maxmemory_policy is not None:
        flags += ["--maxmemory-policy", args.maxmemory_policy]
    return flags


def _raise_interrupt(signum: int, frame: object) -> NoReturn:
    raise KeyboardInterrupt


def _start(args: argparse.Namespace, flags: list[str]) -> LocalServer:
    """The started server; CliError (exit status 3) when it cannot start. Nothing has been
    printed to stdout then: a script reading the URL never gets one that is not ours."""
    from respkv.errors import ServerNotFoundError
    from respkv.testing.servers import LocalServer, PortTakenError

    server = LocalServer(
        binary=args.server_binary,
        host=args.bind,
        port=args.port,
        args=flags,
        password=args.requirepass or "",
    )
    try:
        return server.start()
    except (ServerNotFoundError, PortTakenError) as exc:
        raise CliError(str(exc), EXIT_UNAVAILABLE) from None
    except (RuntimeError, OSError) as exc:
        raise CliError(f"could not start a server: {exc}", EXIT_UNAVAILABLE) from None


def cmd_server(args: argparse.Namespace) -> int:
    flags = server_args(args)
    if threading.current_thread() is threading.main_thread():
        # SIGTERM stops the server as Ctrl-C does. SIGINT is set explicitly because a
        # shell starting us in the background (``respkv server &``) ignores it.
        signal.signal(signal.SIGTERM, _raise_interrupt)
        signal.signal(signal.SIGINT, _raise_interrupt)
    if args.cluster:
        from respkv.cli.cluster import run_cluster_server

        return run_cluster_server(args, flags)
    server = _start(args, flags)
    try:
        print(server.url, flush=True)
        shown = " ".join(a if a else "''" for a in flags)
        auth = "; clients must give the --requirepass password" if args.requirepass else ""
        print(
            f"respkv server: {os.path.basename(server.binary or 'redis-server')} at "
            f"{server.url} with {shown}{auth}; Ctrl-C stops it",
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
