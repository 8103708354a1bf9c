"""Two or more builds of respkv against each other, alternating in one run.

A change to an engine is judged against the build before it in the same run, on the
same throwaway server, the builds taking turns (the order rotated every round), since
figures taken minutes apart on a shared machine differ by more than most changes do.
A build is a directory holding the ``respkv`` package (and ``respkv_native`` for the
native backend), e.g. ``pip install --no-deps --target /tmp/old <old checkout>``, or
``.`` for the respkv this interpreter imports. Each sample runs in a fresh process
(``python -S`` with the build first on ``sys.path``, so an editable install's finder does
not shadow it), which writes the keys, warms up, and times ``--repeat`` batches of
``Client.batch_set`` or ``batch_get``; the sample is their median, with this process's
CPU time per GB (all threads).

Run: ``python -m benchmarks.ab_builds --build before=/tmp/old --build after=. --cells
python:get:0.5:4,native:set:1:4 --rounds 9``. Units: GB = 1e9 bytes.
"""

from __future__ import annotations

import argparse
import json
import os
import site
import statistics
import subprocess
import sys
import time
from typing import Final

MIB: Final = 1 << 20
DEFAULT_CELLS: Final = ",".join(
    f"{b}:{op}:{mib}:4"
    for b in ("python", "native")
    for mib in (0.5, 1, 4)
    for op in ("set", "get")
)


Cell = tuple[str, str, float, int]  # backend, op, MiB, workers


def child(build: str, cell: Cell, port: int) -> None:
    """One sample (in its own process): print [GB/s, CPU-s per GB] as JSON."""
    backend, op, mib, workers = cell
    if build != ".":
        sys.path.insert(0, build)
    import respkv
    from respkv._options import ConnectionOptions
    from respkv.client import Client

    if build != "." and not respkv.__file__.startswith(os.path.abspath(build)):
        raise SystemExit(f"respkv came from {respkv.__file__}, not from {build}")
    size = int(mib * MIB)
    n = max(1, int(float(os.environ["AB_TOTAL_MIB"]) * MIB) // size)
    repeat = int(os.environ["AB_REPEAT"])
    options = ConnectionOptions(host="127.0.0.1", port=port, num_workers=workers)
    client = Client(options, backend=backend)
    values = [os.urandom(size) for _ in range(4)]
    keys = [f"ab:{i}" for i in range(n)]
    buffers = [values[i % 4] for i in range(n)]
    out = [bytearray(size) for _ in range(n)]
    if not (client.batch_set(keys, buffers).ok and client.batch_get(keys, out).ok):
        raise SystemExit("the warm-up batch failed")
    samples = []
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        result = client.batch_set(keys, buffers) if op == "set" else client.batch_get(keys, out)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        if not result.ok:
            raise SystemExit(f"{op} failed")
        samples.append((n * size / wall / 1e9, cpu / (n * size / 1e9)))
    client.close()
    print(json.dumps(sorted(samples)[len(samples) // 2]))


def sample(build: str, cell: Cell, port: int, env: dict[str, str]) -> list[float]:
    backend, op, mib, workers = cell
    # -S: no site-packages processing, so an editable install cannot shadow the build;
    # the interpreter's site-packages are appended for respkv's own imports.
    flags = [] if build == "." else ["-S"]
    args = [sys.executable, *flags, "-m", "benchmarks.ab_builds", "--child", build, backend, op]
    args += [str(mib), str(workers), str(port)]
    done = subprocess.run(args, capture_output=True, text=True, env=env, check=False)
    if done.returncode:
        raise SystemExit(f"sample {build} {cell} failed:\n{done.stderr[-3000:]}")
    return list(json.loads(done.stdout.strip().splitlines()[-1]))


def parse_cells(text: str) -> list[Cell]:
    cells = []
    for item in text.split(","):
        backend, op, mib, workers = item.split(":")
        if backend not in ("python", "native") or op not in ("set", "get"):
            raise SystemExit(f"bad cell {item!r}: BACKEND(python|native):OP(set|get):MIB:WORKERS")
        cells.append((backend, op, float(mib), int(workers)))
    return cells


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        sys.path.extend(os.environ.get("AB_SITE", "").split(os.pathsep))
        (cell,) = parse_cells(":".join(argv[2:6]))
        child(argv[1], cell, int(argv[6]))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", action="append", required=True, help="NAME=DIR (. = this install)")
    ap.add_argument("--cells", default=DEFAULT_CELLS, help="backend:op:mib:workers,...")
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--repeat", type=int, default=3, help="timed batches per sample")
    ap.add_argument("--total-mib", type=float, default=256, help="bytes per batch")
    args = ap.parse_args(argv)
    builds = dict(b.split("=", 1) for b in args.build)
    cells = parse_cells(args.cells)
    from respkv.testing.servers import LocalServer

    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, AB_TOTAL_MIB=str(args.total_mib), AB_REPEAT=str(args.repeat))
    env["AB_SITE"] = os.pathsep.join(site.getsitepackages())
    env["PYTHONPATH"] = here  # benchmarks.ab_builds itself; the build goes first
    got: dict[tuple[Cell, str], list[list[float]]] = {}
    names = list(builds)
    with LocalServer() as server:
        for r in range(args.rounds):
            order = names[r % len(names) :] + names[: r % len(names)]
            for cell in cells:
                for name in order:
                    got.setdefault((cell, name), []).append(
                        sample(builds[name], cell, server.port, env)
                    )
            print(f"  round {r + 1}/{args.rounds} (load {os.getloadavg()[0]:.2f})", file=sys.stderr)
    print(f"GB/s (client CPU-s/GB), medians of {args.rounds} rounds; x = / {names[0]}")
    print(f"{'cell':24}" + "".join(f"{n:>26}" for n in names))
    for cell in cells:
        base = statistics.median(s[0] for s in got[(cell, names[0])])
        row = ""
        for name in names:
            rate = statistics.median(s[0] for s in got[(cell, name)])
            cpu = statistics.median(s[1] for s in got[(cell, name)])
            row += f"{rate:>12.2f} ({cpu:.3f}) {rate / base:.2f}x"
        print(f"{cell[0]} {cell[1].upper()} {cell[2]:g} MiB {cell[3]} w".ljust(24) + row)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
