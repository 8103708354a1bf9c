// C++ unit tests of the native codec (resp2) and tiling, with no framework and no Python.
//
// Built by CMake with -DRESPKV_BUILD_TESTS=ON (ctest), and compiled and run by
// tests/test_native_cpp.py. Exit status 0 means every check passed; each failure prints
// its line and expression. The byte stream is attacked the way the pure codec's tests
// do it: every reply is fed whole, split at every position, and one byte at a time.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "resp2.hpp"
#include "tiling.hpp"

namespace {

int g_failures = 0;
int g_checks = 0;

#define CHECK(expr)                                                         \
  do {                                                                      \
    ++g_checks;                                                             \
    if (!(expr)) {                                                          \
      ++g_failures;                                                         \
      std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #expr); \
    }                                                                       \
  } while (0)

#define CHECK_EQ(a, b)                                                                  \
  do {                                                                                  \
    ++g_checks;                                                                         \
    auto va = (a);                                                                      \
    auto vb = (b);                                                                      \
    if (!(va == vb)) {                                                                  \
      ++g_failures;                                                                     \
      std::fprintf(stderr, "%s:%d: CHECK_EQ failed: %s == %s\n", __FILE__, __LINE__, #a, #b); \
    }                                                                                   \
  } while (0)

using respkv::ProtocolError;
using respkv::Reader;
using respkv::Reply;
using Kind = respkv::Reply::Kind;

// A compact description of a reply for comparisons: kind letter and value.
std::string describe(const Reply& r) {
  switch (r.kind) {
    case Kind::Simple:
      return "+" + r.text;
    case Kind::Error:
      return "-" + r.text;
    case Kind::Integer:
      return ":" + std::to_string(r.integer);
    case Kind::Bulk:
      return "$" + r.text;
    case Kind::Nil:
      return "nil";
    case Kind::Filled:
      return "filled";
    case Kind::SizeMismatch:
      return "mismatch" + std::to_string(r.integer);
    case Kind::Array: {
      std::string s = "[";
      for (const auto& i : r.items) s += describe(i) + ",";
      return s + "]";
    }
  }
  return "?";
}

// Feed `chunks` in order, collect every reply; a protocol error appends "!" + message.
// `target` (when not null) is set before every reply.
std::vector<std::string> run(const std::vector<std::string>& chunks,
                             std::vector<std::uint8_t>* target = nullptr) {
  Reader reader;
  std::vector<std::string> out;
  Reply r;
  try {
    for (const auto& c : chunks) {
      reader.feed(c.data(), c.size());
      for (;;) {
        if (target) reader.set_target(target->data(), target->size());
        if (!reader.gets(r)) break;
        out.push_back(describe(r));
      }
    }
  } catch (const ProtocolError& e) {
    out.push_back(std::string("!") + e.what());
  }
  return out;
}

// The same stream fed whole, split at every position, and one byte at a time, must
// give the same replies each time.
void check_all_splits(const std::string& stream, const std::vector<std::string>& expected,
                      std::size_t target_size = SIZE_MAX) {
  auto with_target = [&](const std::vector<std::string>& chunks) {
    if (target_size == SIZE_MAX) return run(chunks);
    std::vector<std::uint8_t> target(target_size);
    return run(chunks, &target);
  };
  CHECK(with_target({stream}) == expected);
  for (std::size_t cut = 1; cut < stream.size(); ++cut) {
    CHECK(with_target({stream.substr(0, cut), stream.substr(cut)}) == expected);
  }
  std::vector<std::string> bytes;
  for (char c : stream) bytes.emplace_back(1, c);
  CHECK(with_target(bytes) == expected);
}

void test_simple_values() {
  check_all_splits("+OK\r\n", {"+OK"});
  check_all_splits("-ERR bad thing\r\n", {"-ERR bad thing"});
  check_all_splits(":42\r\n:-7\r\n:0\r\n", {":42", ":-7", ":0"});
  check_all_splits("$5\r\nhello\r\n$0\r\n\r\n$-1\r\n", {"$hello", "$", "nil"});
  check_all_splits("*2\r\n:1\r\n$-1\r\n*0\r\n*-1\r\n", {"[:1,nil,]", "[]", "nil"});
  check_all_splits("*2\r\n*1\r\n+a\r\n-E x\r\n", {"[[+a,],-E x,]"});
  // A bulk payload may contain CRLF; a simple string may contain a lone CR.
  check_all_splits("$4\r\n\r\n\r\n\r\n+a\rb\r\n", {"$\r\n\r\n", "+a\rb"});
}

void test_protocol_errors() {
  CHECK(run({"?x\r\n"}) == std::vector<std::string>{"!unknown reply type byte b'?'"});
  CHECK(run({"$abc\r\n"}) == std::vector<std::string>{"!malformed bulk length b'abc'"});
  CHECK(run({"$+5\r\n"}) == std::vector<std::string>{"!malformed bulk length b'+5'"});
  CHECK(run({"*-5\r\n"}) == std::vector<std::string>{"!negative array length -5"});
  CHECK(run({":1x\r\n"}) == std::vector<std::string>{"!malformed integer b'1x'"});
  CHECK(run({"$3\r\nabcd\r\n"}) ==
        std::vector<std::string>{"!bulk string not terminated by CRLF"});
  CHECK(run({"$536870913\r\n"}) ==
        std::vector<std::string>{"!bulk length 536870913 exceeds MAX_BULK_BYTES (536870912)"});
  CHECK(run({"$99999999999999999999\r\n"}) ==
        std::vector<std::string>{
            "!bulk length 99999999999999999999 exceeds MAX_BULK_BYTES (536870912)"});
  CHECK(run({"$999999999999999999999\r\n"}) ==
        std::vector<std::string>{"!malformed bulk length b'999999999999999999999'"});
  CHECK(run({"\x01\r\n"}) == std::vector<std::string>{"!unknown reply type byte b'\\x01'"});
  CHECK(run({"'\r\n"}) == std::vector<std::string>{"!unknown reply type byte b\"'\""});
  // Nesting deeper than MAX_DEPTH.
  std::string deep;
  for (int i = 0; i <= respkv::MAX_DEPTH; ++i) deep += "*1\r\n";
  deep += ":1\r\n";
  CHECK(run({deep}) == std::vector<std::string>{"!arrays nested deeper than MAX_DEPTH (32)"});
  // An endless line.
  std::string endless = "+" + std::string(respkv::MAX_LINE_BYTES + 10, 'a');
  CHECK(run({endless}) ==
        std::vector<std::string>{"!line longer than MAX_LINE_BYTES (65536) without CRLF"});
  CHECK(run({"*1\r\n-" + std::string(respkv::MAX_LINE_BYTES + 1, 'e') + "\r\n"}) ==
        std::vector<std::string>{"!line longer than MAX_LINE_BYTES (65536)"});
  CHECK(run({"$-0\r\n"}) == std::vector<std::string>{"!malformed bulk length b'-0'"});
  CHECK(run({":9223372036854775808\r\n"}) ==
        std::vector<std::string>{"!integer 9223372036854775808 outside the signed 64-bit range"});
  CHECK(run({":-9223372036854775808\r\n"}) == std::vector<std::string>{":-9223372036854775808"});
  // The reader stays unusable.
  Reader reader;
  Reply r;
  reader.feed("?\r\n", 3);
  bool threw = false;
  try {
    reader.gets(r);
  } catch (const ProtocolError&) {
    threw = true;
  }
  CHECK(threw);
  threw = false;
  try {
    reader.gets(r);
  } catch (const ProtocolError& e) {
    threw = std::strcmp(e.what(), "reader is unusable after a protocol error") == 0;
  }
  CHECK(threw);
}

void test_targets() {
  // Exactly the target's size: delivered into it, reported as filled.
  {
    std::vector<std::uint8_t> target(5);
    auto out = run({"$5\r\nhel", "lo\r\n+OK\r\n"}, &target);
    CHECK(out == (std::vector<std::string>{"filled", "+OK"}));
    CHECK(std::string(target.begin(), target.end()) == "hello");
  }
  check_all_splits("$5\r\nhello\r\n:1\r\n", {"filled", ":1"}, 5);
  // Another size: drained, never written, and the stream stays in sync.
  check_all_splits("$6\r\nhello!\r\n+OK\r\n", {"mismatch6", "+OK"}, 5);
  {
    std::vector<std::uint8_t> target(3, 0);
    auto out = run({"$6\r\nabcdef\r\n$3\r\nxyz\r\n"}, &target);
    CHECK(out == (std::vector<std::string>{"mismatch6", "filled"}));
    CHECK(std::string(target.begin(), target.end()) == "xyz");
  }
  // Nil, errors and other types are parsed as usual with a target set.
  check_all_splits("$-1\r\n-WRONGTYPE no\r\n:3\r\n", {"nil", "-WRONGTYPE no", ":3"}, 4);
  // A zero-length value with a zero-length target.
  check_all_splits("$0\r\n\r\n", {"filled"}, 0);
  // A bad terminator after a delivered payload is a protocol error.
  {
    std::vector<std::uint8_t> target(2);
    CHECK(run({"$2\r\nabXY"}, &target) ==
          std::vector<std::string>{"!bulk string not terminated by CRLF"});
  }
  // The zero-copy path: get_buffer() points into the target while the payload streams.
  {
    std::vector<std::uint8_t> target(100000);
    Reader reader;
    reader.set_target(target.data(), target.size());
    std::string head = "$100000\r\nab";
    reader.feed(head.data(), head.size());
    Reply r;
    CHECK(!reader.gets(r));
    std::size_t room = 0;
    std::uint8_t* dst = reader.get_buffer(&room);
    CHECK(dst == target.data() + 2);
    CHECK_EQ(room, std::size_t{99998});
    std::memset(dst, 'z', room);
    reader.buffer_updated(room);
    CHECK(!reader.gets(r));
    reader.feed("\r\n", 2);
    CHECK(reader.gets(r));
    CHECK(r.kind == Kind::Filled);
    CHECK(target[0] == 'a' && target[1] == 'b' && target[99999] == 'z');
    CHECK_EQ(reader.buffered(), std::size_t{0});
  }
}

void test_large_bulk_without_target() {
  std::string payload(300000, 'q');
  std::string stream = "$300000\r\n" + payload + "\r\n:5\r\n";
  std::vector<std::string> chunks;
  for (std::size_t i = 0; i < stream.size(); i += 7919) chunks.push_back(stream.substr(i, 7919));
  auto out = run(chunks);
  CHECK(out.size() == 2);
  CHECK(out.size() == 2 && out[0] == "$" + payload && out[1] == ":5");
}

void test_packing() {
  std::string out;
  std::size_t len = 5;
  respkv::append_command_header(out, "SET", "k1", &len);
  CHECK(out == "*3\r\n$3\r\nSET\r\n$2\r\nk1\r\n$5\r\n");
  out.clear();
  respkv::append_command_header(out, "UNLINK", std::string_view("a\0b", 3), nullptr);
  CHECK(out == std::string("*2\r\n$6\r\nUNLINK\r\n$3\r\na\0b\r\n", 25));
  out.clear();
  respkv::append_command(out, {"CLIENT", "SETNAME", "respkv"});
  CHECK(out == "*3\r\n$6\r\nCLIENT\r\n$7\r\nSETNAME\r\n$6\r\nrespkv\r\n");
}

void test_reprs() {
  CHECK(respkv::bytes_repr("ab'c") == "b\"ab'c\"");
  CHECK(respkv::bytes_repr("a'\"b") == "b'a\\'\"b'");
  CHECK(respkv::bytes_repr(std::string("\t\n\r\\\x7f\xff", 6)) == "b'\\t\\n\\r\\\\\\x7f\\xff'");
  Reply r;
  r.kind = Kind::Array;
  Reply one;
  one.kind = Kind::Integer;
  one.integer = 1;
  Reply err;
  err.kind = Kind::Error;
  err.text = "ERR it's";
  r.items = {one, err};
  CHECK(respkv::reply_repr(r) == "[1, ReplyError(\"ERR it's\")]");
}

void test_tiling() {
  using respkv::Tile;
  using respkv::tile;
  CHECK(tile(0, 4, nullptr).empty());
  CHECK(tile(10, 4, nullptr) == (std::vector<Tile>{{0, 3}, {3, 6}, {6, 8}, {8, 10}}));
  CHECK(tile(3, 8, nullptr) == (std::vector<Tile>{{0, 1}, {1, 2}, {2, 3}}));
  // One huge value first: by bytes it gets a tile of its own.
  std::vector<std::uint64_t> w{100, 1, 1, 1, 1, 1};
  CHECK(tile(6, 2, w.data()) == (std::vector<Tile>{{0, 1}, {1, 6}}));
  // Zero weights count as one byte, so runs of empty values are still spread.
  std::vector<std::uint64_t> zeros(8, 0);
  CHECK(tile(8, 4, zeros.data()) == (std::vector<Tile>{{0, 2}, {2, 4}, {4, 6}, {6, 8}}));
  // Invariants over many shapes: contiguous, non-empty, covering, at most `workers`.
  std::uint64_t seed = 12345;
  auto next = [&seed] {
    seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
    return seed >> 33;
  };
  for (int round = 0; round < 2000; ++round) {
    std::size_t n = next() % 50;
    std::size_t workers = 1 + next() % 12;
    std::vector<std::uint64_t> weights(n);
    for (auto& x : weights) x = next() % 3 == 0 ? 0 : next() % (1 << 22);
    auto tiles = tile(n, workers, round % 2 ? weights.data() : nullptr);
    CHECK(tiles.size() == std::min(n, workers));
    std::size_t at = 0;
    for (const auto& t : tiles) {
      CHECK(t.first == at && t.second > t.first);
      at = t.second;
    }
    CHECK(at == n);
  }
  bool threw = false;
  try {
    tile(1, 0, nullptr);
  } catch (const std::invalid_argument&) {
    threw = true;
  }
  CHECK(threw);
}

}  // namespace

int main() {
  test_simple_values();
  test_protocol_errors();
  test_targets();
  test_large_bulk_without_target();
  test_packing();
  test_reprs();
  test_tiling();
  std::printf("%d checks, %d failures\n", g_checks, g_failures);
  return g_failures == 0 ? 0 : 1;
}
