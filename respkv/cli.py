"""The ``respkv`` command: benchmark, sweep, local server, chunk-size calculator, doctor.

With no arguments it prints the backend in use and why (``python -m respkv``).

``respkv bench`` is the job a user runs first. It keeps the flags and the text output of
LMCache's reference RESP benchmark (``--host --port --chunk-mb --num-workers
--num-keys --username --password``) so results can be compared line for line, and adds
``--url``, ``--backend``, ``--repeat``, ``--warmup`` and ``--json``. Given no server
(neither ``--host``/``--port`` nor ``--url``) it starts a throwaway ``redis-server`` or
``valkey-server`` on a free loopback port with the recommended flags and stops it at
the end, so it works on a fresh machine. The measuring itself lives in
:mod:`respkv._bench`.

Exit status, the same for every subcommand:

* 0: success;
* 1: the run finished but failed (a key failed, a GET did not verify byte for byte);
* 2: bad usage (flags, URL, an unavailable forced backend, matplotlib missing);
* 3: no server (cannot connect or authenticate, no server binary to start one).

Secrets: passwords (``--password`` or inside ``--url``) are only ever handed to the
connection; every message names the server by ``host:port``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final, NoReturn, TextIO

from respkv._options import ConnectionOptions

__all__ = ["main"]

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
#: Seconds to wait for connect and PING in the pre-flight check.
PREFLIGHT_TIMEOUT: Final = 5.0


class CliError(Exception):
    """A failure to report as one line on stderr with an exit status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


# --------------------------------------------------------------------------- parser


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _int_at_least(minimum: int) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


def _float_list(text: str) -> list[float]:
    return [_positive_float(part) for part in text.split(",") if part.strip()]


def _int_list(text: str) -> list[int]:
    parse = _int_at_least(1)
    return [parse(part) for part in text.split(",") if part.strip()]


def _add_server_flags(p: argparse.ArgumentParser, *, embedded: bool) -> None:
    g = p.add_argument_group(
        "server",
        "without --host, --port or --url a throwaway local server is started"
        if embedded
        else "default: 127.0.0.1:6379",
    )
    g.add_argument("--host", help="server host (default 127.0.0.1 when --port is given)")
    g.add_argument("--port", type=_int_at_least(1), help="server port (default 6379)")
    g.add_argument("--url", help="server URL, e.g. resp://[user:password@]host:port[/db]")
    g.add_argument("--username", default=None, help="ACL user name")
    g.add_argument("--password", default=None, help="password (never printed)")
    if embedded:
        g.add_argument(
            "--server-binary",
            default=None,
            help="binary for the throwaway server (default: redis-server, else valkey-server)",
        )


def _add_backend_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--backend",
        choices=("auto", "python", "native"),
        default=None,
        help="engine to use (default: $RESPKV_BACKEND or auto)",
    )


def _add_json_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--json",
        nargs="?",
        const="-",
        default=None,
        metavar="PATH",
        help="write the results as JSON to PATH; alone: JSON on stdout instead of text",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="respkv",
        description="Move large binary chunks (LLM KV-cache) in and out of Redis/Valkey. "
        "With no command: print the backend in use and why.",
        epilog="exit status: 0 ok, 1 run failed (keys or verification), 2 usage, 3 no server",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser(
        "bench",
        help="batch SET/GET/EXISTS throughput, GET verified byte for byte",
        description="Batch SET, GET (verified byte for byte) and EXISTS of NUM_KEYS chunks, "
        "in the output format of LMCache's reference benchmark. Sizes are binary: "
        "KB = 1024 bytes, GB = 2^30 bytes (GiB).",
    )
    _add_server_flags(p, embedded=True)
    _add_backend_flag(p)
    p.add_argument(
        "--chunk-mb",
        type=_positive_float,
        default=4.0,
        help="chunk size in MiB, fractions allowed (default 4)",
    )
    p.add_argument(
        "--num-workers",
        type=_int_at_least(1),
        default=8,
        help="worker threads, one connection each (default 8)",
    )
    p.add_argument(
        "--num-keys", type=_int_at_least(1), default=500, help="keys, one chunk each (default 500)"
    )
    p.add_argument(
        "--repeat",
        type=_int_at_least(1),
        default=1,
        help="timed runs; the median is shown (default 1)",
    )
    p.add_argument(
        "--warmup",
        type=_int_at_least(0),
        default=1,
        help="untimed runs first (default 1: the first SET into an empty server "
        "also pays for its memory allocation)",
    )
    _add_json_flag(p)
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser(
        "sweep",
        help="throughput over chunk sizes x worker counts: table, JSON, PNG plot",
        description="Batch SET and GET throughput (GiB/s) for each chunk size and worker "
        "count. Progress goes to stderr.",
    )
    _add_server_flags(p, embedded=True)
    _add_backend_flag(p)
    p.add_argument(
        "--chunk-mb",
        type=_float_list,
        default=None,
        help="comma-separated chunk sizes in MiB (default 0.5,1,2,4,8,16)",
    )
    p.add_argument(
        "--workers",
        type=_int_list,
        default=None,
        help="comma-separated worker counts (default 1,2,4,8,16)",
    )
    p.add_argument(
        "--total-mb",
        type=_positive_float,
        default=256.0,
        help="MiB moved per point and direction (default 256)",
    )
    p.add_argument(
        "--num-keys",
        type=_int_at_least(1),
        default=None,
        help="keys per point (default: --total-mb worth, at least max workers)",
    )
    p.add_argument(
        "--repeat",
        type=_int_at_least(1),
        default=3,
        help="timed runs per point; the median is used (default 3)",
    )
    p.add_argument(
        "--warmup", type=_int_at_least(0), default=1, help="untimed runs per point (default 1)"
    )
    _add_json_flag(p)
    p.add_argument("--plot", metavar="PNG", help="write a plot (needs respkv[plot])")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser(
        "server",
        help="run a local server in the foreground and print its URL (Ctrl-C stops it)",
        description="Start redis-server (or valkey-server) on loopback with the recommended "
        "flags; the first line of output is its URL.",
    )
    p.add_argument("--port", type=_int_at_least(1), default=0, help="port (default: a free one)")
    p.add_argument("--bind", default="127.0.0.1", help="address to listen on (default loopback)")
    p.add_argument("--server-binary", default=None, help="redis-server or valkey-server")
    p.set_defaults(func=cmd_server)

    p = sub.add_parser(
        "chunk-size",
        help="KV-cache bytes per token and tokens per chunk for a model",
        description="KV-cache chunk-size calculator: give --model (a preset) or "
        "--layers, --kv-heads and --head-dim.",
    )
    p.add_argument("--model", help="preset name, e.g. Llama-3.1-8B (see --list)")
    p.add_argument("--layers", type=_int_at_least(1), help="transformer layers")
    p.add_argument("--kv-heads", type=_int_at_least(1), help="key/value heads")
    p.add_argument("--head-dim", type=_int_at_least(1), help="dimension of one head")
    p.add_argument("--dtype", default="bfloat16", help="KV-cache dtype (default bfloat16)")
    p.add_argument("--tp", type=_int_at_least(1), default=1, help="tensor-parallel ranks")
    p.add_argument("--target", default="4MiB", help="target chunk size (default 4MiB)")
    p.add_argument("--tokens", type=_int_at_least(1), help="size of a chunk of this many tokens")
    p.add_argument(
        "--multiple-of",
        type=_int_at_least(1),
        default=1,
        help="round tokens per chunk down to a multiple of this",
    )
    p.add_argument("--list", action="store_true", help="list the model presets")
    p.add_argument("--json", action="store_true", help="JSON on stdout instead of text")
    p.set_defaults(func=cmd_chunk_size)

    p = sub.add_parser(
        "doctor",
        help="backend, server version and settings, with tuning advice",
        description="Report the backend in use and why, the server's version, io-threads, "
        "maxmemory and policy, persistence, and advice from docs/performance.md.",
    )
    _add_server_flags(p, embedded=False)
    p.set_defaults(func=cmd_doctor)
    return parser


# --------------------------------------------------------------------------- main


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


# --------------------------------------------------------------------------- servers


@dataclass(frozen=True)
class Target:
    """The server a command talks to."""

    options: ConnectionOptions
    embedded: str | None  # "redis-server 7.0.15" for a throwaway server


def _options_from_args(
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
def _server(args: argparse.Namespace) -> Iterator[Target]:
    """The named server, or a throwaway local one for the duration of the block."""
    from respkv._server import LocalServer, recommended_args
    from respkv.errors import ServerNotFoundError

    options = _options_from_args(args)
    if options is not None:
        _preflight(options)
        yield Target(options, None)
        return
    server = LocalServer(binary=args.server_binary, args=recommended_args())
    try:
        server.start()
    except ServerNotFoundError as exc:
        raise CliError(str(exc), EXIT_UNAVAILABLE) from None
    except (RuntimeError, OSError) as exc:
        raise CliError(f"could not start a local server: {exc}", EXIT_UNAVAILABLE) from None
    try:
        options = ConnectionOptions(host=server.host, port=server.port)
        name = _preflight(options)
        print(
            f"respkv: started a throwaway {name} at {options.address} (stopped at the end)",
            file=sys.stderr,
        )
        yield Target(options, name)
    finally:
        server.stop()


def _preflight(options: ConnectionOptions) -> str:
    """Connect, authenticate and PING; return the server version. CliError if not."""
    from respkv._admin import AdminConnection
    from respkv.errors import ReplyError

    try:
        with AdminConnection(options, timeout=PREFLIGHT_TIMEOUT) as admin:
            admin.command("PING")
            return _version(_info(admin, "server"))
    except ReplyError as exc:
        raise CliError(f"server at {options.address} refused us: {exc}", EXIT_UNAVAILABLE) from None
    except OSError as exc:
        raise CliError(f"cannot connect to {options.address}: {exc}", EXIT_UNAVAILABLE) from None


def _info(admin: Any, section: str) -> dict[str, str]:
    raw = admin.command("INFO", section)
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and not line.startswith("#"):
            out[key.strip()] = value.strip()
    return out


def _version(info: dict[str, str]) -> str:
    name = info.get("server_name", "redis")
    version = info.get("valkey_version") if name == "valkey" else None
    return f"{name} {version or info.get('redis_version', '?')}"


def _open_client(options: ConnectionOptions, backend: str | None) -> Any:
    import respkv

    try:
        return respkv.connect(options, backend=backend)
    except (ValueError, ImportError) as exc:
        raise CliError(f"backend unavailable: {exc}", EXIT_USAGE) from None


def _check_backend(backend: str | None) -> Any:
    from respkv._backend import select_backend

    try:
        return select_backend(backend)
    except (ValueError, ImportError) as exc:
        raise CliError(f"backend unavailable: {exc}", EXIT_USAGE) from None


def _check_memory(nbytes: int, what: str) -> None:
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


def _check_workers(counts: Sequence[int]) -> None:
    """Reject worker counts ConnectionOptions would refuse, before any server starts."""
    for n in counts:
        try:
            ConnectionOptions(num_workers=n)
        except ValueError as exc:
            raise CliError(str(exc), EXIT_USAGE) from None


def _chunk_bytes(mib: float) -> int:
    n = round(mib * MIB)
    if not 1 <= n <= MAX_CHUNK_BYTES:
        raise CliError(
            f"chunk size must be 1 byte to {MAX_CHUNK_BYTES // MIB} MiB, got {mib} MiB", EXIT_USAGE
        )
    return n


def _write_json(doc: dict[str, Any], path: str) -> None:
    text = json.dumps(doc, indent=2)
    if path == "-":
        print(text)
        return
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    except OSError as exc:
        raise CliError(f"cannot write {path}: {exc}", EXIT_USAGE) from None


# --------------------------------------------------------------------------- bench


def cmd_bench(args: argparse.Namespace) -> int:
    from respkv._bench import BenchConfig, format_report, report_json, run_bench

    try:
        config = BenchConfig(
            _chunk_bytes(args.chunk_mb),
            args.num_keys,
            args.num_workers,
            repeat=args.repeat,
            warmup=args.warmup,
        )
    except ValueError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    _check_workers([config.num_workers])
    info = _check_backend(args.backend)
    named = bool(args.url or args.host or args.port)
    _check_memory(config.total_bytes * (2 if named else 3), "this benchmark")
    with _server(args) as target:
        options = target.options.replace(num_workers=config.num_workers)
        with _open_client(options, args.backend) as client:
            report = run_bench(client, config)
    if args.json != "-":
        print(format_report(report, backend_line=f"Backend: {info.name} ({info.reason})"))
    if args.json is not None:
        extra = {
            "server": {"embedded": target.embedded is not None, "software": target.embedded},
            "backend": {"requested": info.requested, "reason": info.reason},
        }
        _write_json(report_json(report, extra), args.json)
    return EXIT_OK if report.passed else EXIT_FAILED


# --------------------------------------------------------------------------- sweep


def _progress_line(stream: TextIO, done: int, total: int, text: str) -> None:
    width = 20
    filled = width * done // total
    stream.write(f"[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {text}\n")
    stream.flush()


def cmd_sweep(args: argparse.Namespace) -> int:
    from respkv import _bench

    chunk_sizes = [_chunk_bytes(c) for c in (args.chunk_mb or _bench.SWEEP_CHUNKS_MIB)]
    workers = list(args.workers or _bench.SWEEP_WORKERS)
    if not chunk_sizes or not workers:
        raise CliError("--chunk-mb and --workers need at least one value", EXIT_USAGE)
    _check_workers(workers)
    if args.plot:
        try:
            _bench.check_plotting()
        except ImportError as exc:
            raise CliError(str(exc), EXIT_USAGE) from None
    info = _check_backend(args.backend)
    total = round(args.total_mb * MIB)
    min_keys = args.num_keys if args.num_keys is not None else max(workers)
    if args.num_keys is not None:
        total = 1  # a fixed key count: num_keys chunks at every size
    biggest = max(c * _bench.sweep_keys(c, total, min_keys) for c in chunk_sizes)
    named = bool(args.url or args.host or args.port)
    _check_memory(biggest * (2 if named else 3), "this sweep")

    def on_point(done: int, count: int, p: _bench.SweepPoint) -> None:
        status = "ok" if p.verified else f"FAILED: {p.error}"
        _progress_line(
            sys.stderr,
            done,
            count,
            f"{p.chunk_bytes / MIB:g} MiB x {p.num_workers} workers: "
            f"SET {p.set_bytes_per_s / _bench.GIB:.2f} GiB/s, "
            f"GET {p.get_bytes_per_s / _bench.GIB:.2f} GiB/s, {status}",
        )

    with _server(args) as target:

        def open_client(n: int) -> Any:
            return _open_client(target.options.replace(num_workers=n), args.backend)

        points = _bench.run_sweep(
            open_client,
            chunk_sizes,
            workers,
            total_bytes=total,
            min_keys=min_keys,
            repeat=args.repeat,
            warmup=args.warmup,
            on_point=on_point,
        )
    server_desc = target.embedded or target.options.address
    if args.json != "-":
        print(f"Sweep: {server_desc}, backend {info.name}")
        print(_bench.format_sweep(points))
    if args.json is not None:
        extra = {
            "server": {
                "address": target.options.address,
                "embedded": target.embedded is not None,
                "software": target.embedded,
            },
            "backend": {"name": info.name, "requested": info.requested, "reason": info.reason},
        }
        _write_json(_bench.sweep_json(points, extra), args.json)
    if args.plot:
        _bench.plot_sweep(points, args.plot, f"respkv sweep: {server_desc}, {info.name} backend")
        print(f"respkv sweep: plot written to {args.plot}", file=sys.stderr)
    return EXIT_OK if all(p.verified for p in points) else EXIT_FAILED


# --------------------------------------------------------------------------- server


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


# --------------------------------------------------------------------------- chunk-size


def cmd_chunk_size(args: argparse.Namespace) -> int:
    from respkv import chunksize as cs

    if args.list:
        print(f"{'model':<20}{'layers':>7}{'kv_heads':>9}{'head_dim':>9}{'per token (bf16)':>18}")
        for name, d in cs.PRESETS.items():
            print(
                f"{name:<20}{d.layers:>7}{d.kv_heads:>9}{d.head_dim:>9}"
                f"{cs.format_size(d.bytes_per_token()):>18}"
            )
        return EXIT_OK
    explicit = (args.layers, args.kv_heads, args.head_dim)
    try:
        if args.model and any(v is not None for v in explicit):
            raise ValueError("give --model or --layers/--kv-heads/--head-dim, not both")
        if args.model:
            dims = cs.preset(args.model)
        elif all(v is not None for v in explicit):
            dims = cs.ModelDims("custom", args.layers, args.kv_heads, args.head_dim)
        else:
            raise ValueError(
                "give --model NAME (see --list) or all of --layers, --kv-heads and --head-dim"
            )
        per_token = dims.bytes_per_token(args.dtype, args.tp)
        target = cs.parse_size(args.target)
        tokens = cs.tokens_per_chunk(per_token, target, multiple_of=args.multiple_of)
        elem = cs.dtype_bytes(args.dtype)
        fixed = cs.chunk_bytes(per_token, args.tokens) if args.tokens else None
    except ValueError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    sweet = {f"{m} MiB": (m * MIB) // per_token for m in (1, 2, 4)}
    if args.json:
        doc: dict[str, Any] = {
            "model": dims.name,
            "layers": dims.layers,
            "kv_heads": dims.kv_heads,
            "head_dim": dims.head_dim,
            "dtype": args.dtype,
            "dtype_bytes": elem,
            "tp": args.tp,
            "bytes_per_token": per_token,
            "target_bytes": target,
            "tokens_per_chunk": tokens,
            "chunk_bytes": tokens * per_token,
            "tokens_for": sweet,
        }
        if fixed is not None:
            doc["tokens"] = args.tokens
            doc["bytes_for_tokens"] = fixed
        print(json.dumps(doc, indent=2))
        return EXIT_OK
    print(
        f"Model: {dims.name}: {dims.layers} layers, {dims.kv_heads} KV heads x head_dim "
        f"{dims.head_dim}, {args.dtype} ({elem} bytes), tp {args.tp}"
    )
    print(f"KV cache per token: {cs.format_size(per_token)} ({per_token} bytes)")
    print(
        f"Tokens per chunk for a {cs.format_size(target)} target: {tokens} "
        f"({cs.format_size(tokens * per_token)} per chunk)"
    )
    print("Sweet spot 1-4 MiB: " + ", ".join(f"{k}: {v} tokens" for k, v in sweet.items()))
    if fixed is not None:
        print(f"A chunk of {args.tokens} tokens: {cs.format_size(fixed)}{_size_advice(fixed)}")
    return EXIT_OK


def _size_advice(nbytes: int) -> str:
    if nbytes >= 8 * MIB:
        return " (too big: GETs of 8 MiB and more collapse on Redis/Valkey; aim for 1-4 MiB)"
    if nbytes < MIB:
        return " (small: per-request overhead dominates below 1 MiB; aim for 1-4 MiB)"
    return " (in the 1-4 MiB sweet spot)" if nbytes <= 4 * MIB else " (above 4 MiB)"


# --------------------------------------------------------------------------- doctor


def cmd_doctor(args: argparse.Namespace) -> int:
    from respkv import resp2
    from respkv._admin import AdminConnection
    from respkv._backend import select_backend
    from respkv.errors import ReplyError

    advice: list[str] = []
    try:
        info = select_backend()
        print(f"Backend: {info.name} ({info.reason})")
        if info.name != "native":
            advice.append(
                "the native backend is not in use: build it with 'pip install .' "
                "where a C++17 compiler and CMake exist"
            )
    except (ValueError, ImportError) as exc:
        print(f"Backend: error: {exc}")
        advice.append("fix RESPKV_BACKEND (auto, python or native)")
    print(f"hiredis: {'available' if resp2.hiredis_available() else 'not installed'}")
    print(f"Client CPU cores: {os.cpu_count()}")

    options = _options_from_args(args, default=True)
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
        server = _info(admin, "server")
        memory = _info(admin, "memory")
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
        f"Server: {options.address}: {_version(server)} "
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
