// Tiling; see tiling.hpp. The loop below is respkv/_tiling.py line for line.
#include "tiling.hpp"

#include <algorithm>
#include <stdexcept>

namespace respkv {

std::vector<Tile> tile(std::size_t n, std::size_t workers, const std::uint64_t* weights) {
  if (workers < 1) throw std::invalid_argument("workers must be >= 1");
  const std::size_t k = std::min(n, workers);
  std::vector<Tile> out;
  if (k == 0) return out;
  out.reserve(k);
  if (weights == nullptr || k == 1) {
    const std::size_t base = n / k;
    const std::size_t extra = n % k;
    std::size_t start = 0;
    for (std::size_t i = 0; i < k; ++i) {
      std::size_t stop = start + base + (i < extra ? 1 : 0);
      out.emplace_back(start, stop);
      start = stop;
    }
    return out;
  }
  std::vector<std::uint64_t> cum(n);
  std::uint64_t total = 0;
  for (std::size_t i = 0; i < n; ++i) {
    total += std::max<std::uint64_t>(weights[i], 1);
    cum[i] = total;
  }
  std::vector<std::size_t> cuts{0};
  cuts.reserve(k + 1);
  std::size_t j = 0;
  for (std::size_t t = 1; t < k; ++t) {
    // Python's int * int / int: exact for totals below 2**53 (every real batch).
    const double goal = static_cast<double>(total * t) / static_cast<double>(k);
    // The first index whose cumulative weight reaches the goal ends tile t-1.
    while (j < n && static_cast<double>(cum[j]) < goal) ++j;
    std::size_t cut = j;
    if (j < n) {
      const double prev = j ? static_cast<double>(cum[j - 1]) : 0.0;
      if ((static_cast<double>(cum[j]) - goal) < (goal - prev)) cut = j + 1;
    }
    // Keep at least one key in this tile and leave one for each tile still to come.
    cut = std::max(cut, cuts.back() + 1);
    cut = std::min(cut, n - (k - t));
    cuts.push_back(cut);
  }
  cuts.push_back(n);
  for (std::size_t i = 0; i + 1 < cuts.size(); ++i) out.emplace_back(cuts[i], cuts[i + 1]);
  return out;
}

}  // namespace respkv
