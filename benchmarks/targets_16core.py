"""The 16-core targets of issue 13, checked against a :mod:`benchmarks.scaling` JSON file.

On a 16-core host with Valkey 8 at ``--io-threads 4`` (``benchmarks/run_16core.sh``):

* respkv native reaches 6 GB/s GET and 5 GB/s SET (overwrite; fresh keys shown too) at
  its best worker count;
* respkv native is at least 1.3x LMCache's native connector at 8 workers, every
  operation;
* respkv native is at least 1.5x respkv python at 16 workers: the GIL must show.

GB = 1e9 bytes. The verdicts are information: the exit status is 0 whatever they say
(a benchmark is not a test), 1 only when the file lacks the figures.

Run: ``python -m benchmarks.targets_16core results.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from collections.abc import Sequence
from typing import Any, Final

NATIVE: Final = "respkv native"
PYTHON: Final = "respkv python"
LMCACHE: Final = "LMCache native"
GET_TARGET: Final = 6.0  # GB/s
SET_TARGET: Final = 5.0  # GB/s
VS_LMCACHE: Final = (8, 1.3)  # workers, ratio
VS_PYTHON: Final = (16, 1.5)
OPS: Final = {"SET_FRESH": "SET fresh", "SET": "SET overwrite", "GET": "GET"}


def rate(cell: dict[str, Any], name: str, op: str) -> float:
    samples = cell["contenders"].get(name, {}).get(op, [])
    if not samples:
        return float("nan")
    total = int(cell["chunk_bytes"]) * int(cell["num_keys"])
    return total / statistics.median(float(s["wall"]) for s in samples) / 1e9


def rows(doc: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(what, value, target, verdict) for every target and chunk size."""
    out: list[tuple[str, str, str, str]] = []

    def verdict(value: float, target: float) -> str:
        return "n/a" if math.isnan(value) else ("met" if value >= target else "BELOW")

    cells = doc["cells"]
    for chunk in sorted({c["chunk_bytes"] for c in cells}):
        size = f"{chunk / 2**20:g} MiB"
        mine = [c for c in cells if c["chunk_bytes"] == chunk]
        for op, target in (("GET", GET_TARGET), ("SET", SET_TARGET), ("SET_FRESH", SET_TARGET)):
            best = _best(mine, op)
            value = rate(best, NATIVE, op)
            shown = f"{value:.2f} GB/s at {best['workers']} w"
            goal = f">= {target:g} GB/s"
            out.append((f"{size}: native {OPS[op]}", shown, goal, verdict(value, target)))
        for (workers, target), other in ((VS_LMCACHE, LMCACHE), (VS_PYTHON, PYTHON)):
            cell = next((c for c in mine if c["workers"] == workers), None)
            for op, label in OPS.items():
                value = (
                    float("nan") if cell is None else rate(cell, NATIVE, op) / rate(cell, other, op)
                )
                what = f"{size}: native / {other} {label}, {workers} w"
                shown = "-" if math.isnan(value) else f"{value:.2f}x"
                out.append((what, shown, f">= {target:g}x", verdict(value, target)))
    return out


def _best(cells: Sequence[dict[str, Any]], op: str) -> dict[str, Any]:
    """The cell where respkv native's ``op`` rate is highest."""

    def key(cell: dict[str, Any]) -> float:
        value = rate(cell, NATIVE, op)
        return 0.0 if math.isnan(value) else value

    return max(cells, key=key)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("json", help="the JSON file benchmarks.scaling --json wrote")
    args = parser.parse_args(argv)
    with open(args.json, encoding="utf-8") as f:
        doc = json.load(f)
    if not doc.get("cells"):
        print(f"{args.json}: no cells measured")
        return 1
    table = rows(doc)
    widths = [max(len(r[i]) for r in table) for i in range(4)]
    print(f"\nissue 13 targets ({', '.join(doc.get('servers', []))}; GB = 1e9 bytes)")
    for r in table:
        print(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))
            )
        )
    met = sum(r[3] == "met" for r in table)
    print(f"{met} of {sum(r[3] != 'n/a' for r in table)} targets met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
