// Time for deadlines: the monotonic clock, seconds from Python as durations, and the
// millisecond timeout of a poll() until a time point.
#pragma once

#include <algorithm>
#include <chrono>

namespace respkv {

using Clock = std::chrono::steady_clock;

// Longest wait handed to one poll(): about 12 days, well inside its int milliseconds.
// Longer deadlines (none are allowed: respkv._options.MAX_TIMEOUT is one day) just loop.
inline constexpr long long MAX_POLL_MS = 1LL << 30;
// Seconds beyond this are clamped when converted (a guard against a caller that did not
// validate; 1e7 s is 115 days, and its nanoseconds fit in 64 bits many times over).
inline constexpr double MAX_SECONDS = 1e7;

inline Clock::duration seconds(double s) {
  const double clamped = s > 0 ? std::min(s, MAX_SECONDS) : 0.0;
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(clamped));
}

// Milliseconds for poll() until `t` (from `now`), rounded up so the time has passed on
// return; 0 when it has passed already; -1 (forever) for time_point::max().
inline int poll_ms_until(Clock::time_point t, Clock::time_point now) {
  if (t == Clock::time_point::max()) return -1;
  if (t <= now) return 0;
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t - now).count() + 1;
  return static_cast<int>(std::min<long long>(ms, MAX_POLL_MS));
}

}  // namespace respkv
