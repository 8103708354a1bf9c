"""respkv against its peers and the loopback ceiling, alternating in one run.

Contenders, each measured once per round in a rotated order (A B C ..., B C A ...):

* ``respkv native`` (when ``respkv_native`` loads) and ``respkv python``: one batch SET
  and one batch GET of all keys through :class:`respkv.client.Client`, 4 workers;
* ``LMCache native``: LMCache's own C++ client (``lmcache.lmcache_redis`` from the
  released wheel), when the ``lmcache`` package is installed and that extension loads
  (it links libtorch: it is loaded here with the CPU torch build installed, never with
  stand-in libraries); skipped with the reason printed otherwise. Same worker count;
  every wait on it is bounded (it never completes a GET of a missing key);
* ``redis-py``: redis-py with hiredis, one ``pipeline(transaction=False)`` per batch on
  one connection. Only ``execute()`` is timed; copying the returned ``bytes`` into the
  caller's buffers (which a KV cache needs) is left out, in redis-py's favour;
* ``iperf3``: one TCP stream over loopback for ``--iperf-seconds``: what the kernel
  moves through a single connection, the ceiling for one SET stream;
* EXISTS over 1,000 existing keys: respkv (one batch of 1,000 keys, repeated),
  redis-py (a pipeline of 1,000), and ``redis-benchmark -P 64 -c <workers>`` on the
  same 1,000 keys.

Each round measures, per contender: SET to fresh keys (the keys deleted, untimed, just
before), SET overwriting the same keys, and GET; plus the client process's CPU time
(user + system, all threads) per GB moved (GB = 1e9 bytes) for SET and GET. Every GET is
checked byte for byte (outside the timing). The ratios printed at the end
are the targets the engine issues name; ``met`` / ``BELOW`` is information, the exit
status is 0 either way (a benchmark is not a test).

Run: ``python -m benchmarks.side_by_side`` (``--help`` for the knobs).
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Final

from benchmarks._common import (
    GIB,
    MIB,
    Table,
    add_server_flags,
    check_equal,
    flush,
    gib,
    machine,
    make_values,
    median,
    open_respkv,
    respkv_backends,
    rotated,
    run_tool,
    server_from_args,
    server_version,
    timed,
    write_json,
)
from respkv._options import ConnectionOptions

#: The two shapes the engine issues set targets for: (chunk MiB, keys).
CONFIGS: Final = ((4.0, 100), (1.0, 400))
WORKERS: Final = 4
EXISTS_KEYS: Final = 1000
#: EXISTS batches per sample: one batch of 1,000 keys lasts milliseconds, too short
#: to time alone.
EXISTS_BATCHES: Final = 20
#: Requests ``redis-benchmark`` sends per sample.
REDIS_BENCHMARK_REQUESTS: Final = 200_000
EXISTS_PREFIX: Final = "bx:"
TOOL_TIMEOUT: Final = 120.0


class BulkContender:
    """Something that can SET and GET a batch and count EXISTS hits."""

    name: str

    def set(self, keys: Sequence[str], values: Sequence[bytearray]) -> None:
        raise NotImplementedError

    def get(self, keys: Sequence[str], out: Sequence[bytearray]) -> Callable[[], None]:
        """Fetch (timed); return the untimed step that leaves the values in ``out``."""
        raise NotImplementedError

    def exists(self, keys: Sequence[str]) -> int:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class RespkvContender(BulkContender):
    def __init__(self, options: ConnectionOptions, backend: str, workers: int) -> None:
        self.name = f"respkv {backend}"
        self.client = open_respkv(options, backend, num_workers=workers)

    def set(self, keys: Sequence[str], values: Sequence[bytearray]) -> None:
        result = self.client.batch_set(keys, values)
        if not result.ok:
            raise SystemExit(f"{self.name} SET failed: {result.error}")

    def get(self, keys: Sequence[str], out: Sequence[bytearray]) -> Callable[[], None]:
        result = self.client.batch_get(keys, out)
        if not result.ok:
            raise SystemExit(f"{self.name} GET failed: {result.error}")
        return lambda: None

    def exists(self, keys: Sequence[str]) -> int:
        return sum(self.client.batch_exists(keys).hits)

    def close(self) -> None:
        self.client.close()


class RedisPyContender(BulkContender):
    name = "redis-py+hiredis"

    def __init__(self, options: ConnectionOptions) -> None:
        import redis

        self.client = redis.Redis(
            host=options.host,
            port=options.port,
            db=options.db,
            username=options.username or None,
            password=options.password or None,
            socket_timeout=60,
        )

    def set(self, keys: Sequence[str], values: Sequence[bytearray]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for key, value in zip(keys, values, strict=True):
            pipe.set(key, memoryview(value))
        pipe.execute()

    def get(self, keys: Sequence[str], out: Sequence[bytearray]) -> Callable[[], None]:
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.get(key)
        replies = pipe.execute()

        def copy() -> None:
            for buf, value in zip(out, replies, strict=True):
                buf[:] = value

        return copy

    def exists(self, keys: Sequence[str]) -> int:
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.exists(key)
        return sum(int(v) for v in pipe.execute())

    def close(self) -> None:
        self.client.close()


def redis_py_available() -> bool:
    try:
        import redis.utils
    except ImportError:
        print("(redis-py not installed: pip install 'redis>=5' hiredis)")
        return False
    if not redis.utils.HIREDIS_AVAILABLE:
        print("(redis-py runs without hiredis: pip install hiredis for the fair comparison)")
    return True


#: Longest wait for one LMCache batch: far above any batch here, so only a hang meets it.
LMCACHE_WAIT_S: Final = 120.0


class LMCacheContender(BulkContender):
    """LMCache's own native client (``lmcache.lmcache_redis.LMCacheRedisClient``)."""

    name = "LMCache native"

    def __init__(self, module: Any, options: ConnectionOptions, workers: int) -> None:
        self.client = module.LMCacheRedisClient(
            options.host, options.port, workers, options.username, options.password
        )
        self._poll = select.poll()
        self._poll.register(self.client.event_fd(), select.POLLIN)

    def _wait(self, fid: int, what: str) -> tuple[bool, str, Any]:
        deadline = time.monotonic() + LMCACHE_WAIT_S
        while (left := deadline - time.monotonic()) > 0:
            self._poll.poll(left * 1000)
            for done, ok, error, results in self.client.drain_completions():
                if done == fid:
                    return ok, error, results
        raise SystemExit(f"{self.name} {what} did not complete within {LMCACHE_WAIT_S:g} s")

    def set(self, keys: Sequence[str], values: Sequence[bytearray]) -> None:
        fid = self.client.submit_batch_set(list(keys), [memoryview(v) for v in values])
        ok, error, _ = self._wait(fid, "SET")
        if not ok:
            raise SystemExit(f"{self.name} SET failed: {error}")

    def get(self, keys: Sequence[str], out: Sequence[bytearray]) -> Callable[[], None]:
        fid = self.client.submit_batch_get(list(keys), [memoryview(b) for b in out])
        ok, error, results = self._wait(fid, "GET")
        if not ok or not all(results):
            raise SystemExit(f"{self.name} GET failed: {error or 'misses'}")
        return lambda: None

    def exists(self, keys: Sequence[str]) -> int:
        ok, error, results = self._wait(self.client.submit_batch_exists(list(keys)), "EXISTS")
        if not ok:
            raise SystemExit(f"{self.name} EXISTS failed: {error}")
        return sum(bool(r) for r in results)

    def close(self) -> None:
        self.client.close()


def load_lmcache() -> Any:
    """LMCache's ``lmcache_redis`` extension, or None with the reason printed."""
    try:
        module = importlib.import_module("lmcache.lmcache_redis")
    except ImportError as exc:
        print(f"(LMCache native skipped: lmcache.lmcache_redis does not load: {exc})")
        return None
    version = getattr(importlib.import_module("lmcache"), "__version__", "?")
    print(f"(LMCache native: lmcache {version}, {os.path.basename(module.__file__ or '?')})")
    return module


# --------------------------------------------------------------------------- iperf3


@dataclass
class Iperf3:
    """A persistent ``iperf3 -s`` on loopback; :meth:`measure` runs one client stream."""

    seconds: float
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Iperf3:
        from respkv.testing.servers import free_port

        self.port = free_port()
        self.proc = subprocess.Popen(
            ["iperf3", "-s", "-B", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return self

    def measure(self) -> float:
        """Bytes per second the receiver saw over one stream (retrying while it starts)."""
        cmd = [
            "iperf3",
            "-c",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-P",
            "1",
            "-t",
            f"{self.seconds:g}",
            "-J",
        ]
        deadline = time.monotonic() + 10
        while True:
            proc = run_tool(cmd, TOOL_TIMEOUT)
            if proc.returncode == 0:
                doc = json.loads(proc.stdout)
                return float(doc["end"]["sum_received"]["bits_per_second"]) / 8
            if time.monotonic() > deadline:
                raise SystemExit(f"iperf3 failed: {proc.stdout[-500:]} {proc.stderr[-500:]}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None


def redis_benchmark_exists(options: ConnectionOptions, clients: int) -> float:
    """``redis-benchmark -P 64`` EXISTS on the 1,000 prepared keys: requests per second."""
    cmd = [
        "redis-benchmark",
        "-h",
        options.host,
        "-p",
        str(options.port),
        "-P",
        "64",
        "-c",
        str(clients),
        "-n",
        str(REDIS_BENCHMARK_REQUESTS),
        "-r",
        str(EXISTS_KEYS),
        "--csv",
    ]
    if options.password:
        cmd += ["-a", options.password, "--no-auth-warning"]
        if options.username:
            cmd += ["--user", options.username]
    cmd += ["EXISTS", f"{EXISTS_PREFIX}__rand_int__"]
    proc = run_tool(cmd, TOOL_TIMEOUT)
    for line in proc.stdout.splitlines():
        if line.startswith('"EXISTS'):
            return float(line.split(",")[1].strip('"'))
    raise SystemExit(f"redis-benchmark failed: {proc.stderr[-500:]}")


# --------------------------------------------------------------------------- runs


@dataclass
class BulkResult:
    chunk_bytes: int
    num_keys: int
    set_s: dict[str, list[float]] = field(default_factory=dict)
    fresh_s: dict[str, list[float]] = field(default_factory=dict)
    get_s: dict[str, list[float]] = field(default_factory=dict)
    #: Client CPU seconds (process user + system) per sample, for SET (both) and GET.
    set_cpu: dict[str, list[float]] = field(default_factory=dict)
    get_cpu: dict[str, list[float]] = field(default_factory=dict)
    iperf3: list[float] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.chunk_bytes * self.num_keys

    def rate(self, op: str, name: str) -> float:
        """Bytes per second; ``op`` is SET (overwrite), SET_FRESH or GET."""
        table = {"SET": self.set_s, "SET_FRESH": self.fresh_s, "GET": self.get_s}[op]
        samples = table.get(name, [])
        return self.total / median(samples) if samples else float("nan")

    def cpu_per_gb(self, op: str, name: str) -> float:
        """Client CPU seconds per GB (1e9 bytes) for SET (fresh and overwrite) or GET."""
        samples = (self.set_cpu if op == "SET" else self.get_cpu).get(name, [])
        return median(samples) / (self.total / 1e9) if samples else float("nan")

    def ceiling(self) -> float:
        return median(self.iperf3) if self.iperf3 else float("nan")


def timed_cpu(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """Wall seconds and this process's CPU seconds (all threads) ``fn()`` took."""
    c0 = time.process_time()
    wall, result = timed(fn)
    return wall, time.process_time() - c0, result


def run_bulk(
    contenders: Sequence[BulkContender],
    options: ConnectionOptions,
    iperf: Iperf3 | None,
    chunk_bytes: int,
    num_keys: int,
    *,
    rounds: int,
) -> BulkResult:
    result = BulkResult(chunk_bytes, num_keys)
    keys = [f"sbs:{chunk_bytes}:{i}" for i in range(num_keys)]
    src = make_values(num_keys, chunk_bytes)
    dst = [bytearray(chunk_bytes) for _ in range(num_keys)]
    zero = bytes(chunk_bytes)
    lineup: list[BulkContender | Iperf3] = [*contenders, *([iperf] if iperf else [])]
    # One untimed pass each: the server allocates the values' memory on the first SET.
    for c in contenders:
        c.set(keys, src)
    for r in range(rounds):
        for who in rotated(lineup, r):
            if isinstance(who, Iperf3):
                result.iperf3.append(who.measure())
                continue
            flush(options)  # untimed: the next SET writes fresh keys
            t_fresh, c_fresh, _ = timed_cpu(partial(who.set, keys, src))
            t_set, c_set, _ = timed_cpu(partial(who.set, keys, src))
            for buf in dst:
                buf[:] = zero
            t_get, c_get, finish = timed_cpu(partial(who.get, keys, dst))
            finish()
            check_equal(src, dst, who.name)
            result.fresh_s.setdefault(who.name, []).append(t_fresh)
            result.set_s.setdefault(who.name, []).append(t_set)
            result.get_s.setdefault(who.name, []).append(t_get)
            result.set_cpu.setdefault(who.name, []).extend([c_fresh, c_set])
            result.get_cpu.setdefault(who.name, []).append(c_get)
        print(f"  round {r + 1}/{rounds} done", file=sys.stderr)
    return result


@dataclass
class ExistsResult:
    ops: dict[str, list[float]] = field(default_factory=dict)

    def rate(self, name: str) -> float:
        return median(self.ops.get(name, [])) if self.ops.get(name) else float("nan")


def run_exists(
    contenders: Sequence[BulkContender],
    options: ConnectionOptions,
    rounds: int,
    use_redis_benchmark: bool,
    workers: int,
) -> ExistsResult:
    keys = [f"{EXISTS_PREFIX}{i:012d}" for i in range(EXISTS_KEYS)]
    values = [bytearray(b"x" * 16) for _ in keys]
    contenders[0].set(keys, values)
    result = ExistsResult()
    lineup: list[BulkContender | str] = [*contenders]
    if use_redis_benchmark:
        lineup.append("redis-benchmark")
    for r in range(rounds):
        for who in rotated(lineup, r):
            if isinstance(who, str):
                ops = redis_benchmark_exists(options, workers)
                result.ops.setdefault(f"redis-benchmark -P 64 -c {workers}", []).append(ops)
                continue

            def batches(who: BulkContender = who) -> int:
                return sum(who.exists(keys) for _ in range(EXISTS_BATCHES))

            seconds, hits = timed(batches)
            if hits != EXISTS_KEYS * EXISTS_BATCHES:
                raise SystemExit(f"{who.name} EXISTS found {hits} of {EXISTS_KEYS} per batch")
            result.ops.setdefault(who.name, []).append(EXISTS_KEYS * EXISTS_BATCHES / seconds)
    return result


# --------------------------------------------------------------------------- report


@dataclass
class Ratio:
    """One comparison; ``target`` None means shown for information (no target there)."""

    what: str
    value: float
    target: float | None
    unit: str = "x"

    @property
    def verdict(self) -> str:
        if math.isnan(self.value):
            return "n/a"
        if self.target is None:
            return "info"
        return "met" if self.value >= self.target else "BELOW"

    def row(self) -> list[str]:
        if math.isnan(self.value):
            shown = "-"
        else:
            shown = f"{self.value:,.0f}" if self.unit == "ops/s" else f"{self.value:.2f}x"
        if self.target is None:
            goal = ""
        else:
            goal = f">= {self.target:,.0f}" if self.unit == "ops/s" else f">= {self.target:g}x"
        return [self.what, shown, goal, self.verdict]


#: The shape issue 3 sets the pure backend's targets for (4 MiB x 100 keys); issue 4
#: sets the native targets for both shapes.
PURE_TARGET_SHAPE: Final = (4 * MIB, 100)


def ratios(bulk: Sequence[BulkResult], ex: ExistsResult, workers: int) -> list[Ratio]:
    out: list[Ratio] = []
    rpy = RedisPyContender.name
    rb = f"redis-benchmark -P 64 -c {workers}"
    for b in bulk:
        shape = f"{b.chunk_bytes / MIB:g} MiB x {b.num_keys}"
        targeted = (b.chunk_bytes, b.num_keys) == PURE_TARGET_SHAPE
        for op, target in (("SET", 4.0), ("GET", 3.0)):
            value = b.rate(op, "respkv python") / b.rate(op, rpy)
            out.append(
                Ratio(f"{shape}: python {op} / redis-py {op}", value, target if targeted else None)
            )
        value = b.rate("SET", "respkv python") / b.ceiling()
        out.append(
            Ratio(f"{shape}: python SET / iperf3 1 stream", value, 0.8 if targeted else None)
        )
        for op in ("SET", "GET"):
            native = b.rate(op, "respkv native")
            out.append(
                Ratio(
                    f"{shape}: native {op} / python {op}", native / b.rate(op, "respkv python"), 1.0
                )
            )
            out.append(
                Ratio(f"{shape}: native {op} / redis-py {op}", native / b.rate(op, rpy), 5.0)
            )
    out.extend(lmcache_ratios(bulk, ex))
    python_ops, native_ops = ex.rate("respkv python"), ex.rate("respkv native")
    out.append(Ratio("EXISTS 1000 keys: python ops/s", python_ops, 150_000, "ops/s"))
    out.append(Ratio(f"EXISTS: python / {rb}", python_ops / ex.rate(rb), 0.25))
    out.append(Ratio("EXISTS: native / python", native_ops / python_ops, 2.0))
    out.append(Ratio(f"EXISTS: native / {rb}", native_ops / ex.rate(rb), 0.5))
    return out


def lmcache_ratios(bulk: Sequence[BulkResult], ex: ExistsResult) -> list[Ratio]:
    """respkv against LMCache's own client (issue 13: >= 1.0x SET/GET, >= 4x EXISTS)."""
    lm = LMCacheContender.name
    if not ex.ops.get(lm):
        return []
    out: list[Ratio] = []
    for b in bulk:
        shape = f"{b.chunk_bytes / MIB:g} MiB x {b.num_keys}"
        for backend in ("native", "python"):
            for op in ("SET_FRESH", "SET", "GET"):
                shown = {"SET_FRESH": "SET fresh", "SET": "SET overwrite"}.get(op, op)
                value = b.rate(op, f"respkv {backend}") / b.rate(op, lm)
                out.append(Ratio(f"{shape}: {backend} {shown} / LMCache", value, 1.0))
    for backend in ("native", "python"):
        value = ex.rate(f"respkv {backend}") / ex.rate(lm)
        out.append(Ratio(f"EXISTS: {backend} / LMCache", value, 4.0))
    return out


def bulk_table(b: BulkResult, names: Sequence[str]) -> Table:
    rows: list[Sequence[str]] = []
    for name in names:
        rows.append(
            [
                name,
                gib(b.rate("SET_FRESH", name)),
                gib(b.rate("SET", name)),
                gib(b.rate("GET", name)),
                f"{b.cpu_per_gb('SET', name):.3f}",
                f"{b.cpu_per_gb('GET', name):.3f}",
            ]
        )
    if b.iperf3:
        rows.append(["iperf3 (1 stream, ceiling)", "-", gib(b.ceiling()), "-", "-", "-"])
    header = ["contender", "SET fresh GiB/s", "SET overwrite GiB/s", "GET GiB/s"]
    return Table([*header, "SET CPU-s/GB", "GET CPU-s/GB"], rows)


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_server_flags(parser)
    parser.add_argument("--rounds", type=int, default=5, help="rounds per shape (default 5)")
    parser.add_argument("--workers", type=int, default=WORKERS, help="workers (default 4)")
    parser.add_argument("--iperf-seconds", type=float, default=2.0, help="per iperf3 sample")
    parser.add_argument(
        "--shapes", default="4x100,1x400", help="CHUNK_MIBxKEYS,... (default 4x100,1x400)"
    )
    parser.add_argument("--backends", default=None, help="respkv backends (default: all)")
    return parser.parse_args(argv)


def _contenders(options: ConnectionOptions, args: argparse.Namespace) -> list[BulkContender]:
    """respkv on each backend asked for, then LMCache's adapter and redis-py if present."""
    backends = args.backends.split(",") if args.backends else respkv_backends()
    contenders: list[BulkContender] = [RespkvContender(options, b, args.workers) for b in backends]
    lmcache = load_lmcache()
    if lmcache is not None:
        contenders.append(LMCacheContender(lmcache, options, args.workers))
    if redis_py_available():
        contenders.append(RedisPyContender(options))
    return contenders


def _measure(
    contenders: Sequence[BulkContender], options: ConnectionOptions, args: argparse.Namespace
) -> tuple[list[BulkResult], ExistsResult]:
    """Every bulk shape, then EXISTS, with the iperf3 ceiling when iperf3 is there."""
    shapes = [(float(c), int(k)) for c, k in (s.split("x") for s in args.shapes.split(","))]
    iperf = Iperf3(args.iperf_seconds).start() if shutil.which("iperf3") else None
    if iperf is None:
        print("(iperf3 not on PATH: no loopback ceiling; apt-get install iperf3)")
    try:
        bulk = []
        for chunk_mib, keys in shapes:
            print(f"{chunk_mib:g} MiB x {keys} keys ...", file=sys.stderr)
            bulk.append(
                run_bulk(
                    contenders, options, iperf, round(chunk_mib * MIB), keys, rounds=args.rounds
                )
            )
        print("EXISTS ...", file=sys.stderr)
        has_rb = shutil.which("redis-benchmark") is not None
        ex = run_exists(contenders, options, args.rounds, has_rb, args.workers)
    finally:
        if iperf is not None:
            iperf.stop()
    return bulk, ex


def _report(
    bulk: Sequence[BulkResult], ex: ExistsResult, names: list[str], table: Sequence[Ratio]
) -> None:
    for b in bulk:
        print(
            f"\n{b.chunk_bytes / MIB:g} MiB x {b.num_keys} keys ({b.total / GIB:.2f} GiB per batch)"
        )
        print(bulk_table(b, names).render())
    print(f"\nEXISTS over {EXISTS_KEYS} keys (ops/s)")
    print(
        Table(["contender", "ops/s"], [[name, f"{ex.rate(name):,.0f}"] for name in ex.ops]).render()
    )
    print("\nRatios (targets from the engine issues)")
    print(Table(["ratio", "value", "target", ""], [r.row() for r in table]).render())


def _json_doc(
    args: argparse.Namespace,
    info: dict[str, Any],
    version: str,
    *,
    bulk: Sequence[BulkResult],
    ex: ExistsResult,
    table: Sequence[Ratio],
) -> dict[str, Any]:
    return {
        "benchmark": "side_by_side",
        "machine": info,
        "server": version,
        "workers": args.workers,
        "rounds": args.rounds,
        "bulk": [
            {
                "chunk_bytes": b.chunk_bytes,
                "num_keys": b.num_keys,
                "set_fresh_seconds": b.fresh_s,
                "set_seconds": b.set_s,
                "get_seconds": b.get_s,
                "set_cpu_seconds": b.set_cpu,
                "get_cpu_seconds": b.get_cpu,
                "iperf3_bytes_per_s": b.iperf3,
            }
            for b in bulk
        ],
        "exists_ops_per_s": ex.ops,
        "ratios": [
            {"what": r.what, "value": r.value, "target": r.target, "verdict": r.verdict}
            for r in table
        ],
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    with server_from_args(args) as options:
        version = server_version(options)
        info = machine()
        print(
            f"side by side on {info['cpus']} CPUs ({info['cpu_model']}), {version}, "
            f"{args.workers} workers, {args.rounds} rounds, medians; GiB = 2^30 bytes, "
            "CPU-s/GB: client CPU seconds per 1e9 bytes"
        )
        contenders = _contenders(options, args)
        try:
            bulk, ex = _measure(contenders, options, args)
        finally:
            for c in contenders:
                c.close()
    table = ratios(bulk, ex, args.workers)
    _report(bulk, ex, [c.name for c in contenders], table)
    write_json(args.json, _json_doc(args, info, version, bulk=bulk, ex=ex, table=table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
