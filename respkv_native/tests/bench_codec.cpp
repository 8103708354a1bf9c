// A micro-benchmark of the native RESP2 reader (no Python, no sockets): the C++ twin of
// benchmarks/bench_codec.py's workloads, plus the shapes that expose a reader that
// re-parses a partial reply from its start (a long line and a long array fed in
// pieces). Built by CMake with RESPKV_BUILD_TESTS=ON as respkv_native_bench_codec;
// prints the median of REPEAT runs per workload. Not a test: nothing is asserted on speed.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "resp2.hpp"

namespace {

using respkv::Reader;
using respkv::ReaderLimits;
using respkv::ReadStatus;
using respkv::Reply;
using Clock = std::chrono::steady_clock;

constexpr int REPEAT = 15;
// The limits of respkv/resp2.py (this program has no Python to ask).
constexpr ReaderLimits LIMITS{512LL * 1024 * 1024, 1LL << 32, 32, 64 * 1024};

template <class F>
double median_seconds(F f) {
  std::vector<double> runs;
  for (int i = 0; i < REPEAT; ++i) {
    auto t = Clock::now();
    f();
    runs.push_back(std::chrono::duration<double>(Clock::now() - t).count());
  }
  std::sort(runs.begin(), runs.end());
  return runs[runs.size() / 2];
}

// Deliver `stream` in pieces of `piece` bytes through get_buffer/buffer_updated (as recv
// would), reading every reply as soon as it is whole. Returns the number of replies.
int run(const std::string& stream, std::size_t piece, std::vector<std::uint8_t>* target) {
  Reader reader(LIMITS);
  Reply reply;
  std::size_t pos = 0;
  int count = 0;
  for (;;) {
    for (;;) {
      if (target) reader.set_target(target->data(), target->size());
      if (reader.read(reply) != ReadStatus::Reply) break;
      ++count;
    }
    if (pos >= stream.size()) return count;
    std::size_t room = 0;
    std::uint8_t* dst = reader.get_buffer(&room);
    const std::size_t n = std::min({piece, room, stream.size() - pos});
    std::memcpy(dst, stream.data() + pos, n);
    reader.buffer_updated(n);
    pos += n;
  }
}

}  // namespace

int main() {
  const std::size_t MIB = 1024 * 1024;
  std::string ints;
  for (int i = 0; i < 10000; ++i) ints += ":1\r\n";
  std::string small;
  for (int i = 0; i < 10000; ++i) small += "$16\r\n0123456789abcdef\r\n";
  const std::string payload(4 * MIB, 'x');
  const std::string bulk = "$" + std::to_string(payload.size()) + "\r\n" + payload + "\r\n";
  std::vector<std::uint8_t> target(payload.size());
  const std::string line = "+" + std::string(60000, 'a') + "\r\n";
  std::string array = "*2000\r\n";
  for (int i = 0; i < 2000; ++i) array += "$16\r\n0123456789abcdef\r\n";

  struct Row {
    const char* name;
    double seconds;
  };
  const Row rows[] = {
      {"10,000 ':1' replies, fed at once", median_seconds([&] { run(ints, 1 << 20, nullptr); })},
      {"10,000 16-byte bulks, fed at once", median_seconds([&] { run(small, 1 << 20, nullptr); })},
      {"4 MiB bulk into a target, 64 KiB pieces",
       median_seconds([&] { run(bulk, 64 * 1024, &target); })},
      {"4 MiB bulk, no target, 64 KiB pieces",
       median_seconds([&] { run(bulk, 64 * 1024, nullptr); })},
      {"60 KB simple string, 64-byte pieces", median_seconds([&] { run(line, 64, nullptr); })},
      {"array of 2,000 bulks, 512-byte pieces", median_seconds([&] { run(array, 512, nullptr); })},
  };
  std::printf("native RESP2 reader, median of %d runs\n", REPEAT);
  for (const Row& r : rows) std::printf("  %-42s %9.3f ms\n", r.name, r.seconds * 1e3);
  std::printf("  4 MiB bulk into a target: %.1f GiB/s\n",
              4.0 / 1024 / rows[2].seconds);
  return 0;
}
