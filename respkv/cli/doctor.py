"""``respkv doctor``: the backend in use, the server's settings, and tuning advice.

It reports the backend and why, the server's version, io-threads, maxmemory and its
policy, and persistence, then advice for each setting that hurts a KV cache.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from respkv._options import ConnectionOptions
from respkv.cli._common import EXIT_OK, EXIT_UNAVAILABLE, CliError
from respkv.cli._target import PREFLIGHT_TIMEOUT, add_server_flags, info, options_from_args, version

__all__ = ["add_parser", "cmd_doctor"]


def add_parser(sub: Any) -> None:
    """Register ``doctor`` on the subcommand parsers ``sub``."""
    p: argparse.ArgumentParser = sub.add_parser(
        "doctor",
        help="backend, server version and settings, with tuning advice",
        description="Report the backend in use and why, the server's version, io-threads, "
        "maxmemory and policy, persistence, and advice from docs/performance.md.",
    )
    add_server_flags(p, embedded=False)
    p.set_defaults(func=cmd_doctor)


def cmd_doctor(args: argparse.Namespace) -> int:
    from respkv import resp2
    from respkv._admin import AdminConnection
    from respkv._backend import select_backend
    from respkv.errors import ReplyError

    advice: list[str] = []
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
    print(f"hiredis: {'available' if resp2.hiredis_available() else 'not installed'}")
    print(f"Client CPU cores: {os.cpu_count()}")

    options = options_from_args(args, default=True)
    assert options is not None
    try:
        admin = AdminConnection(options, timeout=PREFLIGHT_TIMEOUT)
    except ReplyError as exc:
        raise CliError(f"server at {options.address} refused us: {exc}", EXIT_UNAVAILABLE) from None
    except OSError as exc:
        raise CliError(
            f"cannot connect to {options.address}: {exc} (pass --host/--port or --url)",
            EXIT_UNAVAILABLE,
        ) from None
    with admin:
        server = info(admin, "server")
        memory = info(admin, "memory")
        config: dict[str, str] = {}
        refused = None
        for name in (
            "io-threads",
            "io-threads-do-reads",
            "maxmemory",
            "maxmemory-policy",
            "save",
            "appendonly",
        ):
            try:
                reply = admin.command("CONFIG", "GET", name)
            except ReplyError as exc:
                refused = str(exc)
                break
            if len(reply) >= 2:
                config[name] = reply[1].decode("utf-8", "replace")
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
    print("Tuning guide: docs/performance.md")
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
