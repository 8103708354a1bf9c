"""Which server a subcommand talks to, and the pre-flight check that it answers.

``bench`` and ``sweep`` talk to the server the flags name; with none named they start a
throwaway local one (:func:`server`) for the duration of the run and stop it at the
end. ``doctor`` talks to the named server, default ``127.0.0.1:6379``.

Before any measuring, :func:`preflight` connects, authenticates and sends ``PING`` with
a short deadline, so a wrong port or password ends in one clear line (exit status 3)
instead of a benchmark full of per-key I/O errors.

Secrets: a password (``--password`` or inside ``--url``) is only ever handed to the
connection; every message names the server by ``host:port``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from respkv._options import ConnectionOptions
from respkv.cli._common import EXIT_UNAVAILABLE, EXIT_USAGE, CliError, int_at_least

if TYPE_CHECKING:
    from respkv._admin import AdminConnection

#: Seconds to wait for connect and PING in the pre-flight check.
PREFLIGHT_TIMEOUT: Final = 5.0


def add_server_flags(p: argparse.ArgumentParser, *, embedded: bool) -> None:
    g = p.add_argument_group(
        "server",
        "without --host, --port or --url a throwaway local server is started"
        if embedded
        else "default: 127.0.0.1:6379",
    )
    g.add_argument("--host", help="server host (default 127.0.0.1 when --port is given)")
    g.add_argument("--port", type=int_at_least(1), help="server port (default 6379)")
    g.add_argument("--url", help="server URL, e.g. resp://[user:password@]host:port[/db]")
    g.add_argument("--username", default=None, help="ACL user name")
    g.add_argument("--password", default=None, help="password (never printed)")
    if embedded:
        g.add_argument(
            "--server-binary",
            default=None,
            help="binary for the throwaway server (default: redis-server, else valkey-server)",
        )


@dataclass(frozen=True)
class Target:
    """The server a command talks to."""

    options: ConnectionOptions
    embedded: str | None  # "redis-server 7.0.15" for a throwaway server


def options_from_args(
    args: argparse.Namespace, *, default: bool = False
) -> ConnectionOptions | None:
    """The server named by the flags (``RESPKV_*`` variables fill what they leave empty),
    or None when none was named and ``default`` is false."""
    from respkv.config import resolve
    from respkv.errors import ConfigError

    if args.url and (args.host or args.port):
        raise CliError("give either --url or --host/--port, not both", EXIT_USAGE)
    if not (args.url or args.host or args.port or default):
        return None
    try:
        return resolve(
            args.url or None,
            host=args.host,
            port=args.port,
            username=args.username,
            password=args.password,
        )
    except (ConfigError, ValueError) as exc:
        raise CliError(f"bad server settings: {exc}", EXIT_USAGE) from None


@contextmanager
def server(args: argparse.Namespace) -> Iterator[Target]:
    """The named server, or a throwaway local one for the duration of the block."""
    from respkv._server import LocalServer, recommended_args
    from respkv.errors import ServerNotFoundError

    options = options_from_args(args)
    if options is not None:
        preflight(options)
        yield Target(options, None)
        return
    local = LocalServer(binary=args.server_binary, args=recommended_args())
    try:
        local.start()
    except ServerNotFoundError as exc:
        raise CliError(str(exc), EXIT_UNAVAILABLE) from None
    except (RuntimeError, OSError) as exc:
        raise CliError(f"could not start a local server: {exc}", EXIT_UNAVAILABLE) from None
    try:
        options = ConnectionOptions(host=local.host, port=local.port)
        name = preflight(options)
        print(
            f"respkv: started a throwaway {name} at {options.address} (stopped at the end)",
            file=sys.stderr,
        )
        yield Target(options, name)
    finally:
        local.stop()


def preflight(options: ConnectionOptions) -> str:
    """Connect, authenticate and PING; return the server version. CliError if not."""
    from respkv._admin import AdminConnection
    from respkv.errors import ReplyError

    try:
        with AdminConnection(options, timeout=PREFLIGHT_TIMEOUT) as admin:
            admin.command("PING")
            return version(info(admin, "server"))
    except ReplyError as exc:
        raise CliError(f"server at {options.address} refused us: {exc}", EXIT_UNAVAILABLE) from None
    except OSError as exc:
        raise CliError(f"cannot connect to {options.address}: {exc}", EXIT_UNAVAILABLE) from None


def info(admin: AdminConnection, section: str) -> dict[str, str]:
    """One ``INFO`` section as a mapping."""
    raw = admin.command("INFO", section)
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and not line.startswith("#"):
            out[key.strip()] = value.strip()
    return out


def version(server_info: dict[str, str]) -> str:
    """``redis 7.0.15`` or ``valkey 8.0.1`` from the ``server`` INFO section."""
    name = server_info.get("server_name", "redis")
    number = server_info.get("valkey_version") if name == "valkey" else None
    return f"{name} {number or server_info.get('redis_version', '?')}"
