"""What every ``respkv`` subcommand shares: exit statuses, the error it reports, flag types.

A subcommand reports a failure by raising :class:`CliError` with a message (one line,
no secrets) and an exit status; :func:`respkv.cli.main` prints it as
``respkv COMMAND: message`` on stderr and returns the status. The statuses are the same
for every subcommand and are documented in ``respkv --help`` and README.md.

The checks here run before any server is contacted, so a mistake in the flags costs
nothing: worker counts (:func:`check_workers`), chunk sizes (:func:`chunk_bytes`), the
memory a plan needs (:func:`check_memory`), the backend (:func:`check_backend`).
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from respkv._options import ConnectionOptions

if TYPE_CHECKING:
    from respkv._backend import BackendInfo
    from respkv.client import Client

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_UNAVAILABLE: Final = 3
#: Exit status after Ctrl-C, as shells report a SIGINT death.
EXIT_INTERRUPTED: Final = 130

MIB: Final = 1024 * 1024
#: Largest chunk ``bench``/``sweep`` accept: Redis's default ``proto-max-bulk-len``.
MAX_CHUNK_BYTES: Final = 512 * MIB
#: Share of the available memory a benchmark may plan to use (buffers, and the
#: embedded server's copy of the values): the rest is left to the system.
MEMORY_HEADROOM: Final = 0.8


class CliError(Exception):
    """A failure to report as one line on stderr with an exit status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


# -- flag types ------------------------------------------------------------------------


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def int_at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


def float_list(text: str) -> list[float]:
    return [positive_float(part) for part in text.split(",") if part.strip()]


def int_list(text: str) -> list[int]:
    parse = int_at_least(1)
    return [parse(part) for part in text.split(",") if part.strip()]


def add_backend_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--backend",
        choices=("auto", "python", "native"),
        default=None,
        help="engine to use (default: $RESPKV_BACKEND or auto)",
    )


def add_json_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--json",
        nargs="?",
        const="-",
        default=None,
        metavar="PATH",
        help="write the results as JSON to PATH; alone: JSON on stdout instead of text",
    )


# -- checks before any I/O ---------------------------------------------------------------


def check_backend(backend: str | None) -> BackendInfo:
    from respkv._backend import select_backend

    try:
        return select_backend(backend)
    except (ValueError, ImportError) as exc:
        raise CliError(f"backend unavailable: {exc}", EXIT_USAGE) from None


def open_client(options: ConnectionOptions, backend: str | None) -> Client:
    import respkv

    try:
        return respkv.connect(options, backend=backend)
    except (ValueError, ImportError) as exc:
        raise CliError(f"backend unavailable: {exc}", EXIT_USAGE) from None


def check_memory(nbytes: int, what: str) -> None:
    """Refuse a plan that needs more memory than the machine has available."""
    try:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return
    if nbytes > available * MEMORY_HEADROOM:
        raise CliError(
            f"{what} needs about {nbytes / 2**30:.1f} GiB of memory but "
            f"{available / 2**30:.1f} GiB is available; lower --num-keys or --chunk-mb",
            EXIT_USAGE,
        )


def check_workers(counts: Sequence[int]) -> None:
    """Reject worker counts ConnectionOptions would refuse, before any server starts."""
    for n in counts:
        try:
            ConnectionOptions(num_workers=n)
        except ValueError as exc:
            raise CliError(str(exc), EXIT_USAGE) from None


def chunk_bytes(mib: float) -> int:
    n = round(mib * MIB)
    if not 1 <= n <= MAX_CHUNK_BYTES:
        raise CliError(
            f"chunk size must be 1 byte to {MAX_CHUNK_BYTES // MIB} MiB, got {mib} MiB", EXIT_USAGE
        )
    return n


def check_output_path(path: str | None, flag: str) -> None:
    """Refuse, before any work, an output file that cannot be written: a missing or
    read-only directory, or a directory in place of the file. ``-`` is stdout."""
    if path is None or path == "-":
        return
    target = Path(path)
    parent = target.parent
    if target.is_dir():
        raise CliError(f"{flag} {path}: is a directory, not a file", EXIT_USAGE)
    if not parent.is_dir():
        raise CliError(f"{flag} {path}: no such directory {str(parent)!r}", EXIT_USAGE)
    writable = os.access(target, os.W_OK) if target.exists() else os.access(parent, os.W_OK)
    if not writable:
        raise CliError(f"{flag} {path}: not writable", EXIT_USAGE)


def write_json(doc: dict[str, Any], path: str) -> None:
    text = json.dumps(doc, indent=2)
    if path == "-":
        print(text)
        return
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    except OSError as exc:
        raise CliError(f"cannot write {path}: {exc}", EXIT_USAGE) from None
