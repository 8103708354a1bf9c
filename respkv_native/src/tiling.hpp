// Splitting a batch over worker threads: the C++ twin of respkv/_tiling.py.
//
// A batch of n keys becomes at most `workers` tiles: contiguous, in order, never empty,
// and balanced (by bytes when weights are given, a zero weight counting as one byte).
// The cut points are computed with the same arithmetic as the pure module (a double
// goal `total * t / k`, the same comparisons), so both backends cut every batch at the
// same places and send each key to the same worker.
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace respkv {

// A half-open range [first, second) of key indices.
using Tile = std::pair<std::size_t, std::size_t>;

// Cut [0, n) into at most `workers` tiles. `weights` is null (every key weighs the same)
// or points to n byte counts. Throws std::invalid_argument for workers < 1.
std::vector<Tile> tile(std::size_t n, std::size_t workers, const std::uint64_t* weights);

}  // namespace respkv
