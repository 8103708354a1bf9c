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
import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from respkv._options import ConnectionOptions
from respkv.cli._common import EXIT_UNAVAILABLE, EXIT_USAGE, CliError, int_at_least

if TYPE_CHECKING:
    from respkv._admin import AdminConnection

#: Seconds to wait for connect and PING in the pre-flight check.
PREFLIGHT_TIMEOUT: Final = 5.0


#: Environment variables that name a server when no flag does, in the order they are
#: read: ``RESPKV_URL``, then the host/port variables of :data:`respkv.config.ENV_FALLBACKS`
#: (``RESPKV_*``, then LMCache's ``LMCACHE_RESP_*``, which LMCache's docs tell users to
#: export).
SERVER_ENV: Final = (
    "RESPKV_URL",
    "RESPKV_HOST",
    "RESPKV_PORT",
    "LMCACHE_RESP_HOST",
    "LMCACHE_RESP_PORT",
)
#: How long the plaintext probe after a failed TLS handshake may take.
PLAINTEXT_PROBE_TIMEOUT: Final = 2.0


def add_server_flags(p: argparse.ArgumentParser, *, embedded: bool) -> None:
    g = p.add_argument_group(
        "server",
        "without --host, --port or --url (and none of $RESPKV_URL, $RESPKV_HOST, "
        "$RESPKV_PORT, $LMCACHE_RESP_HOST, $LMCACHE_RESP_PORT) a throwaway local server "
        "is started"
        if embedded
        else "default: $RESPKV_URL, $RESPKV_HOST/$RESPKV_PORT, $LMCACHE_RESP_HOST/"
        "$LMCACHE_RESP_PORT, else 127.0.0.1:6379",
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
    source: str = ""  # what named it: "--url", "RESPKV_URL", ...; "" for a throwaway one
    #: The throwaway server's unix socket (it listens on one beside its TCP port).
    unix_path: str | None = None


def named_by(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> str | None:
    """What names the server: the flags, else the variables of :data:`SERVER_ENV` that
    are set (joined by ``/``), else None (no server named)."""
    if args.url:
        return "--url"
    flags = [f for f, v in (("--host", args.host), ("--port", args.port)) if v]
    if flags:
        return "/".join(flags)
    env = os.environ if environ is None else environ
    if env.get("RESPKV_URL"):
        return "RESPKV_URL"
    names = [n for n in SERVER_ENV[1:] if env.get(n)]
    return "/".join(names) or None


def options_from_args(
    args: argparse.Namespace, *, default: bool = False
) -> ConnectionOptions | None:
    """The server named by the flags or the environment (``RESPKV_URL``, then the
    ``RESPKV_*`` / ``LMCACHE_RESP_*`` variables fill what the flags leave empty), or None
    when none was named and ``default`` is false."""
    from respkv.config import resolve
    from respkv.errors import ConfigError

    if args.url and (args.host or args.port):
        raise CliError("give either --url or --host/--port, not both", EXIT_USAGE)
    source = named_by(args)
    if source is None and not default:
        return None
    url = args.url or (os.environ.get("RESPKV_URL") if source == "RESPKV_URL" else None)
    try:
        return resolve(
            url or None,
            host=args.host,
            port=args.port,
            username=args.username,
            password=args.password,
        )
    except (ConfigError, ValueError) as exc:
        where = f" ({source})" if source and not source.startswith("--") else ""
        raise CliError(f"bad server settings{where}: {exc}", EXIT_USAGE) from None


@contextmanager
def server(args: argparse.Namespace) -> Iterator[Target]:
    """The named server, or a throwaway local one for the duration of the block.

    The first line on stderr says which, and for a named one what named it."""
    options = options_from_args(args)
    if options is not None:
        source = named_by(args) or ""
        print(
            f"respkv {args.command}: using the server at {options.address}, named by {source}"
            + ("" if source.startswith("--") else " (no throwaway server is started)"),
            file=sys.stderr,
            flush=True,
        )
        preflight(options)
        yield Target(options, None, source)
        return
    with _throwaway(args) as target:
        yield target


@contextmanager
def _throwaway(args: argparse.Namespace) -> Iterator[Target]:
    from respkv.errors import ServerNotFoundError
    from respkv.testing.servers import LocalServer, recommended_args

    local = LocalServer(binary=args.server_binary, args=recommended_args(), unix_socket=True)
    try:
        local.start()
    except ServerNotFoundError as exc:
        hint = "" if args.server_binary else "; or pass --host/--port/--url to use a running server"
        raise CliError(f"{exc}{hint}", EXIT_UNAVAILABLE) from None
    except (RuntimeError, OSError) as exc:
        raise CliError(f"could not start a local server: {exc}", EXIT_UNAVAILABLE) from None
    try:
        options = ConnectionOptions(host=local.host, port=local.port)
        name = preflight(options)
        print(
            f"respkv {args.command}: started a throwaway {name} at {options.address} "
            "(stopped at the end)",
            file=sys.stderr,
            flush=True,
        )
        yield Target(options, name, unix_path=local.unix_path)
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
        raise CliError(connect_failure(options, exc), EXIT_UNAVAILABLE) from None


def connect_failure(options: ConnectionOptions, exc: OSError) -> str:
    """Why connecting to ``options`` failed, in one line. A failed TLS handshake is
    probed once more in plaintext: a server that answers PING there is a plaintext port,
    which a TLS client otherwise only sees as a handshake that times out."""
    text = f"cannot connect to {options.address}: {exc}"
    if options.tls is None or not _answers_plaintext(options):
        return text
    return (
        f"cannot connect to {options.address} with TLS: the TLS handshake failed ({exc}), "
        "and the port answers PING in plaintext, so it does not speak TLS; use a resp:// "
        "URL (no TLS) or the server's tls-port"
    )


def _answers_plaintext(options: ConnectionOptions) -> bool:
    from respkv._admin import AdminConnection
    from respkv.errors import ReplyError

    try:
        with AdminConnection(
            options.replace(tls=None, password="", username=""), timeout=PLAINTEXT_PROBE_TIMEOUT
        ) as admin:
            admin.command("PING")
    except ReplyError:
        return True  # -NOAUTH: a plaintext server that wants a password
    except OSError:
        return False
    return True


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
