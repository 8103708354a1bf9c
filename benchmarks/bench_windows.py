"""How many large GETs to keep in flight per connection: ``window_values`` 1, 2, 4, 8.

``ConnectionOptions.window_values`` bounds the large requests pipelined on one
connection (``window_bytes`` is raised here so it never binds first). A deeper window
hides the round trip between two values; but Redis copies every queued reply into its
output buffer before writing it, so beyond a couple of multi-MiB values more depth only
adds memory traffic on the server. This script measures it, so the default (2) rests on
figures: the batch GET throughput of 4 MiB and 16 MiB values for each window, the
windows alternating round by round, for every available backend.

Run: ``python -m benchmarks.bench_windows``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from functools import partial
from typing import Final

from benchmarks._common import (
    GIB,
    MIB,
    Table,
    add_server_flags,
    check_equal,
    make_values,
    median,
    open_respkv,
    respkv_backends,
    rotated,
    server_from_args,
    timed,
    write_json,
)
from respkv.client import Client

WINDOWS: Final = (1, 2, 4, 8)
#: (value size, keys): 400 MiB per batch either way.
SHAPES: Final = ((4 * MIB, 100), (16 * MIB, 25))
WORKERS: Final = 4


def get_all(client: Client, keys: Sequence[str], dst: Sequence[bytearray]) -> None:
    result = client.batch_get(keys, dst)
    if not result.ok:
        raise SystemExit(f"GET failed: {result.error}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_server_flags(parser)
    parser.add_argument("--rounds", type=int, default=5, help="rounds (default 5)")
    parser.add_argument("--backends", default=None, help="respkv backends (default: all)")
    args = parser.parse_args(argv)
    backends = args.backends.split(",") if args.backends else respkv_backends()

    rates: dict[str, dict[str, float]] = {}
    with server_from_args(args) as options:
        for chunk, n in SHAPES:
            keys = [f"win:{chunk}:{i}" for i in range(n)]
            src = make_values(n, chunk)
            dst = [bytearray(chunk) for _ in range(n)]
            zero = bytes(chunk)
            with open_respkv(options, "python", num_workers=WORKERS) as loader:
                if not loader.batch_set(keys, src).ok:
                    raise SystemExit("SET failed")
            for backend in backends:
                clients = {
                    w: open_respkv(
                        options,
                        backend,
                        num_workers=WORKERS,
                        window_values=w,
                        window_bytes=max(w * chunk, options.window_bytes),
                    )
                    for w in WINDOWS
                }
                samples: dict[int, list[float]] = {w: [] for w in WINDOWS}
                try:
                    for w in WINDOWS:  # warm every connection once, untimed
                        get_all(clients[w], keys, dst)
                    for r in range(args.rounds):
                        for w in rotated(WINDOWS, r):
                            for buf in dst:  # so a GET that writes nothing cannot pass
                                buf[:] = zero
                            seconds, _ = timed(partial(get_all, clients[w], keys, dst))
                            check_equal(src, dst, f"{backend} window {w}")
                            samples[w].append(seconds)
                finally:
                    for c in clients.values():
                        c.close()
                label = f"{backend} {chunk // MIB} MiB x {n}"
                rates[label] = {str(w): n * chunk / median(samples[w]) for w in WINDOWS}
                print(f"{label} done", file=sys.stderr)
            del src, dst

    print(
        f"Batch GET GiB/s by window_values (values in flight per connection), {WORKERS} "
        f"workers, median of {args.rounds} alternating rounds; GiB = 2^30 bytes"
    )
    rows = [[label, *(f"{r[str(w)] / GIB:.2f}" for w in WINDOWS)] for label, r in rates.items()]
    print(Table(["backend, shape", *(f"window {w}" for w in WINDOWS)], rows).render())
    write_json(args.json, {"benchmark": "windows", "workers": WORKERS, "get_bytes_per_s": rates})
    return 0


if __name__ == "__main__":
    sys.exit(main())
