"""``respkv doctor``: the backend in use, the server's settings, and tuning advice.

It reports the backend and why, the server's version, io-threads, maxmemory and its
policy, and persistence, then advice for each setting that hurts a KV cache.
"""

from __future__ import annotations

import argparse
import os
from typing import Any, Final

from respkv._options import ConnectionOptions
from respkv.cli._common import EXIT_OK, EXIT_UNAVAILABLE, CliError
from respkv.cli._target import (
    PREFLIGHT_TIMEOUT,
    add_server_flags,
    connect_failure,
    info,
    named_by,
    options_from_args,
    version,
)

__all__ = ["add_parser", "cmd_doctor"]


def add_parser(sub: Any) -> None:
    """Register ``doctor`` on the subcommand parsers ``sub``."""
    p: argparse.ArgumentParser = sub.add_parser(
        "doctor",
        help="backend, server version and settings, with tuning advice",
        description="Report the backend in use and why, the server's version, io-threads, "
        "maxmemory and policy, persistence, advice for each, and the tuning guide.",
    )
    add_server_flags(p, embedded=False)
    p.set_defaults(func=cmd_doctor)


#: The tuning guide's points, printed by ``doctor`` itself: a pip install has no docs/
#: folder to point to (docs/performance.md in the source tree has the measurements).
TUNING_GUIDE: Final = (
    "chunks of 1-4 MiB: GETs of 8 MiB and more collapse on Redis/Valkey, and below "
    "1 MiB per-request costs dominate ('respkv chunk-size --model NAME' gives the "
    "tokens per chunk)",
    "workers: 4-8 to start; measure on the real host with "
    "'respkv sweep --workers 2,4,8,16 --chunk-mb 2,4'",
    "server: persistence off (--save '' --appendonly no), a maxmemory with a policy "
    "(allkeys-lru lets the server evict), io-threads about one per four cores (at most 4, "
    "none below 8 cores)",
    "client: preallocate the GET buffers and reuse them (zero copy), and use the native "
    "backend, whose I/O runs without the GIL",
)
#: The server settings ``doctor`` reads with ``CONFIG GET``.
SETTINGS: Final = (
    "io-threads",
    "io-threads-do-reads",
    "maxmemory",
    "maxmemory-policy",
    "save",
    "appendonly",
)


def _backend_advice() -> list[str]:
    """Print the backend in use and why; return advice about it."""
    from respkv._backend import select_backend

    advice = []
    try:
        backend = select_backend()
        print(f"Backend: {backend.name} ({backend.reason})")
        if backend.name != "native":
            advice.append(
                "the native backend is not in use: build it with 'pip install .' "
                "where a C++17 compiler and CMake exist"
            )
    except (ValueError, ImportError) as exc:
        print(f"Backend: error: {exc}")
        advice.append("fix RESPKV_BACKEND (auto, python or native)")
    print(f"Client CPU cores: {os.cpu_count()}")
    return advice


def _read_server(
    args: argparse.Namespace, options: ConnectionOptions
) -> tuple[dict[str, str], dict[str, str], dict[str, str], str | None]:
    """INFO server, INFO memory, the :data:`SETTINGS` and why CONFIG GET was refused."""
    from respkv._admin import AdminConnection
    from respkv.errors import ReplyError

    try:
        admin = AdminConnection(options, timeout=PREFLIGHT_TIMEOUT)
    except ReplyError as exc:
        raise CliError(f"server at {options.address} refused us: {exc}", EXIT_UNAVAILABLE) from None
    except OSError as exc:
        # The hint only where no server was named: the default 127.0.0.1:6379 was tried.
        hint = "" if named_by(args) else " (pass --host/--port or --url to name a server)"
        raise CliError(connect_failure(options, exc) + hint, EXIT_UNAVAILABLE) from None
    with admin:
        server, memory = info(admin, "server"), info(admin, "memory")
        config: dict[str, str] = {}
        for name in SETTINGS:
            try:
                reply = admin.command("CONFIG", "GET", name)
            except ReplyError as exc:
                return server, memory, config, str(exc)
            if len(reply) >= 2:
                config[name] = reply[1].decode("utf-8", "replace")
    return server, memory, config, None


def cmd_doctor(args: argparse.Namespace) -> int:
    advice = _backend_advice()
    options = options_from_args(args, default=True)
    assert options is not None
    server, memory, config, refused = _read_server(args, options)
    print(
        f"Server: {options.address}: {version(server)} "
        f"({server.get('redis_mode', 'standalone')}, {server.get('os', '?')})"
    )
    print(f"Memory used: {memory.get('used_memory_human', '?')}")
    if refused is not None:
        print(f"CONFIG GET refused ({refused}): settings below come from INFO only")
    advice += _doctor_settings(config, memory, options)
    print("Advice:" if advice else "Advice: none, the settings match the tuning guide")
    for line in advice:
        print(f"  - {line}")
    print("Tuning guide:")
    for line in TUNING_GUIDE:
        print(f"  - {line}")
    return EXIT_OK


def _doctor_settings(
    config: dict[str, str], memory: dict[str, str], options: ConnectionOptions
) -> list[str]:
    """Print the server settings that matter for bulk values; return advice for them."""
    advice = []
    io_threads = config.get("io-threads")
    reads = config.get("io-threads-do-reads")
    print(f"io-threads: {io_threads or '?'}" + (f" (io-threads-do-reads {reads})" if reads else ""))
    maxmemory = config.get("maxmemory", memory.get("maxmemory", "?"))
    policy = config.get("maxmemory-policy", memory.get("maxmemory_policy", "?"))
    limit = "no limit" if maxmemory == "0" else memory.get("maxmemory_human", maxmemory)
    print(f"maxmemory: {maxmemory} ({limit}), policy {policy}")
    save = config.get("save")
    aof = config.get("appendonly")
    print(
        f"Persistence: save {save!r}, appendonly {aof}"
        if save is not None
        else "Persistence: unknown"
    )
    if save or aof == "yes":
        advice.append(
            "persistence is on: a KV cache can be recomputed, so run with "
            "--save '' --appendonly no (RDB snapshots fork and copy-on-write can "
            "double memory under GBs of values; AOF writes every value to disk)"
        )
    if maxmemory == "0":
        advice.append(
            "no maxmemory: the server grows until the OS kills it; set maxmemory "
            "to what the cache may use, and choose a maxmemory-policy"
        )
    elif policy == "noeviction":
        advice.append(
            "maxmemory-policy noeviction: once full, SETs fail with -OOM (reported "
            "per key); use allkeys-lru to let the server evict instead"
        )
    local = options.host in ("127.0.0.1", "localhost", "::1") and options.unix_path is None
    cores = os.cpu_count() or 1
    if io_threads is not None and local:
        if io_threads == "1" and cores >= 8:
            advice.append(
                f"io-threads 1 on a {cores}-core host: --io-threads 4 lets the "
                "server read and write large replies on more cores"
            )
        elif io_threads != "1" and cores < 4:
            advice.append(
                f"io-threads {io_threads} on a {cores}-core host: the threads "
                "compete with the clients for cores; use 1"
            )
    return advice
