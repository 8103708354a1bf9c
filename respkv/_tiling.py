"""Splitting a batch over worker threads.

A batch of ``n`` keys becomes at most ``workers`` *tiles*: contiguous, in order, never
empty, and balanced. Contiguity keeps each worker's pipeline in key order (good for
locality and for readable traces); balance is by bytes when values differ in size, so
one worker is not left with all the 16 MiB values while another idles. For EXISTS and
DELETE (no payload) every key weighs the same.

The cut points are where the running total crosses ``k * total / tiles``, then nudged
so that every tile keeps at least one key.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["tile"]


def tile(n: int, workers: int, weights: Sequence[int] | None = None) -> list[range]:
    """Cut ``range(n)`` into at most ``workers`` contiguous, non-empty, balanced tiles.

    ``weights`` (bytes per key) balances by bytes; a zero weight counts as one byte so
    that runs of empty values are still spread.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if weights is not None and len(weights) != n:
        raise ValueError(f"weights has {len(weights)} entries for {n} keys")
    k = min(n, workers)
    if k == 0:
        return []
    if weights is None or k == 1:
        base, extra = divmod(n, k)
        out = []
        start = 0
        for i in range(k):
            stop = start + base + (1 if i < extra else 0)
            out.append(range(start, stop))
            start = stop
        return out
    cum = []
    total = 0
    for w in weights:
        total += max(int(w), 1)
        cum.append(total)
    cuts = [0]
    j = 0
    for t in range(1, k):
        goal = total * t / k
        # First index whose cumulative weight reaches the goal ends tile t-1.
        while j < n and cum[j] < goal:
            j += 1
        cut = j + 1 if j < n and (cum[j] - goal) < (goal - (cum[j - 1] if j else 0)) else j
        # Keep at least one key in this tile and leave one for each tile still to come.
        cut = max(cut, cuts[-1] + 1)
        cut = min(cut, n - (k - t))
        cuts.append(cut)
    cuts.append(n)
    return [range(a, b) for a, b in zip(cuts, cuts[1:])]
