"""Peak memory growth during a 400 MiB batch GET into preallocated buffers.

Zero-copy GET means the payload goes from the socket straight into the caller's
buffers, so fetching 100 x 4 MiB should cost the process almost no memory beyond the
buffers it already holds. The target (the pure-backend issue) is a peak RSS growth
under 32 MiB; redis-py, which builds a ``bytes`` object per value, is measured too for
contrast.

Method. Each contender runs in a fresh child process (so memory freed by one cannot be
reused by the next): it connects, allocates and touches the 100 destination buffers,
warms up with a small GET, then resets the kernel's peak-RSS mark (``echo 5 >
/proc/self/clear_refs``, Linux >= 4.0) and reads ``VmRSS``; after the timed batch GET,
``VmHWM`` minus that ``VmRSS`` is the peak growth. Where ``clear_refs`` cannot be
written, ``ru_maxrss`` growth is used (the child's peak so far is its current size, as
nothing large was freed before). Every value is verified afterwards.

Run: ``python -m benchmarks.bench_memory``.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import resource
import subprocess
import sys
from collections.abc import Sequence
from typing import Any, Final

from benchmarks._common import (
    MIB,
    Table,
    add_server_flags,
    open_respkv,
    respkv_backends,
    server_from_args,
    write_json,
)
from respkv._options import ConnectionOptions
from respkv.cli._measure import stamp_chunk

CHUNK: Final = 4 * MIB
KEYS: Final = 100
WORKERS: Final = 4
#: Keys fetched once before the measurement (threads, sockets and buffers warm).
WARM_KEYS: Final = 4
TARGET_GROWTH: Final = 32 * MIB
SEED: Final = 20240601
CHILD_TIMEOUT: Final = 300.0


def value(index: int, base: bytes) -> bytearray:
    buf = bytearray(base)
    stamp_chunk(buf, index)
    return buf


def base_block() -> bytes:
    return random.Random(SEED).randbytes(CHUNK)


def keys() -> list[str]:
    return [f"mem:{i}" for i in range(KEYS)]


def status_bytes(field: str) -> int | None:
    """A ``VmRSS``/``VmHWM`` figure of /proc/self/status in bytes (None off Linux)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
    except OSError:
        return False
    return True


def maxrss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux


def child(contender: str, options: ConnectionOptions) -> dict[str, Any]:
    """Measure one contender in this (fresh) process."""
    names = keys()
    dst = [bytearray(CHUNK) for _ in names]  # zero-filled, so touched and resident
    if contender == "redis-py":
        import redis

        client: Any = redis.Redis(host=options.host, port=options.port, socket_timeout=60)

        def fetch(ks: Sequence[str], out: Sequence[bytearray]) -> None:
            pipe = client.pipeline(transaction=False)
            for k in ks:
                pipe.get(k)
            for buf, v in zip(out, pipe.execute(), strict=True):
                buf[:] = v
    else:
        client = open_respkv(options, contender, num_workers=WORKERS)

        def fetch(ks: Sequence[str], out: Sequence[bytearray]) -> None:
            result = client.batch_get(ks, out)
            if not result.ok:
                raise SystemExit(f"GET failed: {result.error}")

    fetch(names[:WARM_KEYS], dst[:WARM_KEYS])
    gc.collect()
    method = "clear_refs" if reset_peak() else "ru_maxrss"
    before = status_bytes("VmRSS") if method == "clear_refs" else maxrss()
    fetch(names, dst)
    after = status_bytes("VmHWM") if method == "clear_refs" else maxrss()
    client.close()
    base = base_block()
    verified = all(buf == value(i, base) for i, buf in enumerate(dst))
    assert before is not None and after is not None
    return {
        "contender": contender,
        "method": method,
        "rss_before": before,
        "peak": after,
        "growth": after - before,
        "verified": verified,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_server_flags(parser)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, respkv_url_options(args.url))))
        return 0

    with server_from_args(args) as options:
        base = base_block()
        with open_respkv(options, "python", num_workers=WORKERS) as client:
            result = client.batch_set(keys(), [value(i, base) for i in range(KEYS)])
            if not result.ok:
                raise SystemExit(f"SET failed: {result.error}")
        contenders = respkv_backends()
        try:
            import redis  # noqa: F401

            contenders.append("redis-py")
        except ImportError:
            print("(redis-py not installed: no contrast figure)")
        url = f"resp://{options.address}"
        rows, results = [], []
        for name in contenders:
            cmd = [sys.executable, "-m", "benchmarks.bench_memory", "--url", url, "--child", name]
            proc = subprocess.run(
                cmd, capture_output=True, text=True, timeout=CHILD_TIMEOUT, check=False
            )
            if proc.returncode != 0:
                raise SystemExit(f"{name}: child failed:\n{proc.stderr[-2000:]}")
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            results.append(r)
            verdict = (
                ("met" if r["growth"] < TARGET_GROWTH else "BELOW")
                if name != "redis-py"
                else "contrast"
            )
            rows.append(
                [
                    f"respkv {name}" if name != "redis-py" else "redis-py+hiredis",
                    f"{r['rss_before'] / MIB:.0f}",
                    f"{r['growth'] / MIB:.1f}",
                    "yes" if r["verified"] else "NO",
                    verdict,
                ]
            )
    print(
        f"Peak RSS growth during one batch GET of {KEYS} x {CHUNK // MIB} MiB "
        f"({KEYS * CHUNK / 1e6:.0f} MB) into preallocated buffers, {WORKERS} workers; "
        f"target < {TARGET_GROWTH // MIB} MiB; method {results[0]['method']}"
    )
    print(
        Table(
            ["contender", "RSS before MiB", "peak growth MiB", "verified", "vs target"], rows
        ).render()
    )
    write_json(args.json, {"benchmark": "memory", "chunk": CHUNK, "keys": KEYS, "results": results})
    return 0 if all(r["verified"] for r in results) else 1


def respkv_url_options(url: str) -> ConnectionOptions:
    import respkv.config

    return respkv.config.resolve(url)


if __name__ == "__main__":
    sys.exit(main())
