"""Tiling: a batch cut over workers is contiguous, ordered, never empty and balanced.

Balance has two meanings. Without weights (EXISTS, DELETE) tile sizes differ by at most
one key. With weights (bytes per value) the heaviest tile is compared with the best
possible contiguous split, computed here independently (binary search on the answer):
the cut points sit at the nearest key boundary to each ideal share, so the heaviest
tile may exceed the optimum by less than one value.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from respkv._tiling import tile

EXAMPLES: Final = settings(max_examples=200, deadline=None)
MIB: Final = 1024 * 1024


def check_shape(tiles: list[range], n: int, workers: int) -> None:
    """Contiguous, ordered, covering ``range(n)``, never empty, at most ``workers``."""
    assert len(tiles) == min(n, workers)
    assert all(len(t) > 0 for t in tiles), tiles
    assert all(t.step == 1 for t in tiles)
    if n:
        assert tiles[0].start == 0 and tiles[-1].stop == n
    assert all(a.stop == b.start for a, b in zip(tiles, tiles[1:])), tiles


def effective(weights: Sequence[int]) -> list[int]:
    """What the tiler balances: a zero weight counts as one byte."""
    return [max(w, 1) for w in weights]


def optimal_max(weights: Sequence[int], parts: int) -> int:
    """Smallest possible heaviest tile over all contiguous splits into ``parts``."""
    lo, hi = max(weights), sum(weights)
    while lo < hi:
        mid = (lo + hi) // 2
        used, run = 1, 0
        for w in weights:
            if run + w > mid:
                used, run = used + 1, w
            else:
                run += w
        if used <= parts:
            hi = mid
        else:
            lo = mid + 1
    return lo


@pytest.mark.parametrize(
    ("n", "workers", "sizes"),
    [
        (0, 4, []),
        (1, 8, [1]),
        (3, 8, [1, 1, 1]),
        (8, 8, [1] * 8),
        (10, 4, [3, 3, 2, 2]),
        (13, 4, [4, 3, 3, 3]),
        (100, 7, [15, 15, 14, 14, 14, 14, 14]),
        (5, 1, [5]),
    ],
)
def test_unweighted_fixed(n: int, workers: int, sizes: list[int]) -> None:
    tiles = tile(n, workers)
    check_shape(tiles, n, workers)
    assert [len(t) for t in tiles] == sizes


def test_weighted_spreads_the_big_values() -> None:
    # Four 16 MiB values and twelve small ones on four workers: a split by count would
    # give one worker all four big values; by bytes each gets one.
    weights = [16 * MIB] * 4 + [4096] * 12
    tiles = tile(len(weights), 4, weights)
    check_shape(tiles, len(weights), 4)
    assert [sum(1 for i in t if weights[i] == 16 * MIB) for t in tiles] == [1, 1, 1, 1]


def test_weighted_one_heavy_value_gets_its_own_tile() -> None:
    weights = [1, 1, 1, 1000, 1, 1]
    tiles = tile(len(weights), 3, weights)
    check_shape(tiles, len(weights), 3)
    heaviest = max(sum(weights[i] for i in t) for t in tiles)
    assert heaviest == 1000


def test_zero_weights_are_spread() -> None:
    tiles = tile(9, 3, [0] * 9)
    assert [len(t) for t in tiles] == [3, 3, 3]


def test_one_worker_takes_everything() -> None:
    assert tile(4, 1, [5, 0, 7, 1]) == [range(4)]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((-1, 4, None), "n must be >= 0"),
        ((3, 0, None), "workers must be >= 1"),
        ((3, 2, [1, 2]), "weights has 2 entries for 3 keys"),
    ],
)
def test_bad_arguments(args: tuple[int, int, list[int] | None], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        tile(*args)


@EXAMPLES
@given(n=st.integers(0, 500), workers=st.integers(1, 64))
def test_unweighted_is_balanced(n: int, workers: int) -> None:
    tiles = tile(n, workers)
    check_shape(tiles, n, workers)
    if tiles:
        sizes = [len(t) for t in tiles]
        assert max(sizes) - min(sizes) <= 1


@EXAMPLES
@given(
    weights=st.lists(
        st.one_of(
            st.integers(0, 16 * MIB),
            st.sampled_from([0, 1, 4096, MIB, 4 * MIB, 16 * MIB]),
        ),
        max_size=200,
    ),
    workers=st.integers(1, 32),
)
def test_weighted_is_close_to_optimal(weights: list[int], workers: int) -> None:
    n = len(weights)
    tiles = tile(n, workers, weights)
    check_shape(tiles, n, workers)
    if not tiles:
        return
    eff = effective(weights)
    heaviest = max(sum(eff[i] for i in t) for t in tiles)
    best = optimal_max(eff, len(tiles))
    assert best <= heaviest <= best + max(eff)
    # A consequence worth stating on its own: never worse than twice the optimum.
    assert heaviest <= 2 * best


@EXAMPLES
@given(n=st.integers(1, 300), workers=st.integers(1, 32), w=st.integers(0, 10 * MIB))
def test_equal_weights_split_like_counts(n: int, workers: int, w: int) -> None:
    sizes = [len(t) for t in tile(n, workers, [w] * n)]
    assert max(sizes) - min(sizes) <= 1
