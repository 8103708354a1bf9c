"""The ``respkv`` command: benchmark, sweep, local server, chunk-size calculator, doctor.

With no arguments it prints the backend in use and why (``python -m respkv``).

One module per subcommand (:mod:`~respkv.cli.bench`, :mod:`~respkv.cli.sweep`,
:mod:`~respkv.cli.server`, :mod:`~respkv.cli.chunk_size`, :mod:`~respkv.cli.doctor`),
each with an ``add_parser(sub)`` that registers its flags and a ``cmd_*`` that runs it;
what they share is in ``_common`` (exit statuses, flag types, checks before I/O),
``_target`` (which server, the pre-flight check) and ``_measure`` (one verified
SET/GET/EXISTS run).

Exit status, the same for every subcommand:

* 0: success;
* 1: the run finished but failed (a key failed, a GET did not verify byte for byte);
* 2: bad usage (flags, URL, an unavailable forced backend, matplotlib missing);
* 3: no server (cannot connect or authenticate, no server binary to start one, the
  port of ``respkv server`` taken).

``respkv server`` also ends with 1 when its server exits by itself, and with 0 after
Ctrl-C or SIGTERM. ``respkv --version`` prints the version.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from respkv import __version__
from respkv.cli import bench, chunk_size, doctor, server, sweep
from respkv.cli._common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    CliError,
)

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_UNAVAILABLE",
    "EXIT_USAGE",
    "CliError",
    "build_parser",
    "main",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="respkv",
        description="Move large binary chunks (LLM KV-cache) in and out of Redis/Valkey. "
        "With no command: print the backend in use and why.",
        epilog="exit status: 0 ok, 1 run failed (keys or verification), 2 usage, 3 no server",
    )
    parser.add_argument("--version", action="version", version=f"respkv {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in (bench, sweep, server, chunk_size, doctor):
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``respkv`` command; return its exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error argparse already printed
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if args.command is None:
        return cmd_backend()
    try:
        status: int = args.func(args)
    except CliError as exc:
        print(f"respkv {args.command}: {exc}", file=sys.stderr)
        return exc.status
    except KeyboardInterrupt:
        print(f"respkv {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader of our output went away (``respkv ... | head``): stop quietly, and
        # point stdout at /dev/null so the interpreter's final flush does not fail too.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILED
    return status


def cmd_backend() -> int:
    from respkv._backend import select_backend

    try:
        info = select_backend()
    except (ValueError, ImportError) as exc:
        print(f"respkv: backend error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"backend: {info.name}")
    print(f"reason: {info.reason}")
    return EXIT_OK
