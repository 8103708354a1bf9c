// C++ unit tests of the native codec (resp2) and tiling, with no framework and no Python.
//
// Built and run by ctest (respkv_native/tests/CMakeLists.txt; tests/test_native_cpp.py
// runs that from pytest). Exit status 0 means every check passed; each failure prints
// its line and expression. The byte stream is attacked the way the pure codec's tests
// do it: every reply is fed whole, split at every position, and one byte at a time.
// Protocol errors are codes (ProtocolFault); the reader must never throw for them.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <stdexcept>
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

using respkv::ProtocolFault;
using respkv::Reader;
using respkv::ReaderLimits;
using respkv::ReadStatus;
using respkv::Reply;
using Kind = respkv::Reply::Kind;

// This program has no Python to ask: respkv/resp2.py's limits, written out.
constexpr std::size_t MAX_LINE = 64 * 1024;
constexpr std::size_t MAX_DEPTH = 32;
constexpr ReaderLimits LIMITS{512LL * 1024 * 1024, 1LL << 32, MAX_DEPTH, MAX_LINE};

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
    case Kind::NilArray:
      return "nil*";
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

// Feed `chunks` in order, collect every reply; a protocol error appends "!" + its text.
// `target` (when not null) is set before every reply.
std::vector<std::string> run(const std::vector<std::string>& chunks,
                             std::vector<std::uint8_t>* target = nullptr) {
  Reader reader(LIMITS);
  std::vector<std::string> out;
  Reply r;
  for (const auto& c : chunks) {
    reader.feed(c.data(), c.size());
    for (;;) {
      if (target) reader.set_target(target->data(), target->size());
      const ReadStatus got = reader.read(r);
      if (got == ReadStatus::Error) {
        out.push_back(std::string("!") + respkv::protocol_fault_text(reader.fault()));
        return out;
      }
      if (got == ReadStatus::NeedData) break;
      out.push_back(describe(r));
    }
  }
  return out;
}

std::vector<std::string> fault(ProtocolFault f) {
  return {std::string("!") + respkv::protocol_fault_text(f)};
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
  check_all_splits("*2\r\n:1\r\n$-1\r\n*0\r\n*-1\r\n", {"[:1,nil,]", "[]", "nil*"});
  check_all_splits("*2\r\n*1\r\n+a\r\n-E x\r\n", {"[[+a,],-E x,]"});
  // A bulk payload may contain CRLF; a simple string may contain a lone CR.
  check_all_splits("$4\r\n\r\n\r\n\r\n+a\rb\r\n", {"$\r\n\r\n", "+a\rb"});
}

void test_protocol_errors() {
  CHECK(run({"?x\r\n"}) == fault(ProtocolFault::UnknownType));
  CHECK(run({"$abc\r\n"}) == fault(ProtocolFault::MalformedLength));
  CHECK(run({"$+5\r\n"}) == fault(ProtocolFault::MalformedLength));
  CHECK(run({"*-5\r\n"}) == fault(ProtocolFault::NegativeLength));
  CHECK(run({":1x\r\n"}) == fault(ProtocolFault::MalformedInteger));
  CHECK(run({"$3\r\nabcd\r\n"}) == fault(ProtocolFault::BadTerminator));
  CHECK(run({"$536870913\r\n"}) == fault(ProtocolFault::BulkTooLong));
  CHECK(run({"$99999999999999999999\r\n"}) == fault(ProtocolFault::BulkTooLong));
  CHECK(run({"$999999999999999999999\r\n"}) == fault(ProtocolFault::MalformedLength));
  CHECK(run({"*4294967297\r\n"}) == fault(ProtocolFault::ArrayTooLong));
  CHECK(run({"\x01\r\n"}) == fault(ProtocolFault::UnknownType));
  // Nesting deeper than MAX_DEPTH; a nil array at that depth is fine.
  std::string deep;
  for (std::size_t i = 0; i <= MAX_DEPTH; ++i) deep += "*1\r\n";
  CHECK(run({deep + ":1\r\n"}) == fault(ProtocolFault::TooDeep));
  std::string deep_nil;
  for (std::size_t i = 0; i < MAX_DEPTH; ++i) deep_nil += "*1\r\n";
  CHECK(run({deep_nil + "*-1\r\n"}).size() == 1 && run({deep_nil + "*-1\r\n"})[0][0] == '[');
  // An endless line, whole or in pieces, and a long line inside an array.
  std::string endless = "+" + std::string(MAX_LINE + 10, 'a');
  CHECK(run({endless}) == fault(ProtocolFault::LineTooLong));
  std::vector<std::string> pieces;
  for (std::size_t i = 0; i < endless.size(); i += 1000) pieces.push_back(endless.substr(i, 1000));
  CHECK(run(pieces) == fault(ProtocolFault::LineTooLong));
  CHECK(run({"*1\r\n-" + std::string(MAX_LINE + 1, 'e') + "\r\n"}) == fault(ProtocolFault::LineTooLong));
  // A line of exactly MAX_LINE bytes is fine, also when its CR arrives alone.
  const std::string longest = "+" + std::string(MAX_LINE, 'b');
  CHECK(run({longest, "\r", "\n"}) == std::vector<std::string>{"+" + std::string(MAX_LINE, 'b')});
  CHECK(run({"$-0\r\n"}) == fault(ProtocolFault::MalformedLength));
  CHECK(run({":9223372036854775808\r\n"}) == fault(ProtocolFault::IntegerRange));
  CHECK(run({":-9223372036854775809\r\n"}) == fault(ProtocolFault::IntegerRange));
  CHECK(run({":99999999999999999999\r\n"}) == fault(ProtocolFault::IntegerRange));
  CHECK(run({":-9223372036854775808\r\n"}) == std::vector<std::string>{":-9223372036854775808"});
  CHECK(run({":9223372036854775807\r\n"}) == std::vector<std::string>{":9223372036854775807"});
  // The reader stays broken, and says why, without throwing.
  Reader reader(LIMITS);
  Reply r;
  reader.feed("?\r\n", 3);
  CHECK(reader.read(r) == ReadStatus::Error);
  reader.feed("+OK\r\n", 5);
  CHECK(reader.read(r) == ReadStatus::Error);
  CHECK(reader.fault() == ProtocolFault::UnknownType);
}

// The receive buffer never holds a large value and shrinks after a long line.
void test_bounded_buffer() {
  Reader reader(LIMITS);
  Reply r;
  const std::string payload(8 * 1024 * 1024, 'v');
  const std::string stream = "$" + std::to_string(payload.size()) + "\r\n" + payload + "\r\n";
  std::size_t most = 0;
  ReadStatus got = ReadStatus::NeedData;
  for (std::size_t i = 0; i < stream.size(); i += 60000) {  // read after each piece, as recv
    CHECK(got == ReadStatus::NeedData);
    reader.feed(stream.data() + i, std::min<std::size_t>(60000, stream.size() - i));
    most = std::max(most, reader.capacity());
    got = reader.read(r);
  }
  CHECK(got == ReadStatus::Reply);
  CHECK(r.kind == Kind::Bulk && r.text == payload);
  CHECK(most <= 4 * respkv::READ_CHUNK);
  const std::string line = "+" + std::string(MAX_LINE - 1, 'l') + "\r\n";
  reader.feed(line.data(), line.size());
  CHECK(reader.capacity() > respkv::READ_CHUNK);
  CHECK(reader.read(r) == ReadStatus::Reply);
  std::size_t room = 0;
  reader.get_buffer(&room);
  CHECK_EQ(reader.capacity(), respkv::READ_CHUNK);
  CHECK(reader.idle());
  // Arrays whose items are only counted keep nothing.
  Reader counting(LIMITS);
  counting.set_keep_items(false);
  std::string arr = "*3\r\n$5\r\nhello\r\n*1\r\n:1\r\n+x\r\n";
  counting.feed(arr.data(), arr.size());
  CHECK(counting.read(r) == ReadStatus::Reply);
  CHECK(r.kind == Kind::Array && r.integer == 3 && r.items.empty());
  CHECK(respkv::first_line(r, 80) == "*3");
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
    CHECK(run({"$2\r\nabXY"}, &target) == fault(ProtocolFault::BadTerminator));
  }
  // The zero-copy path: get_buffer() points into the target while the payload streams.
  {
    std::vector<std::uint8_t> target(100000);
    Reader reader(LIMITS);
    reader.set_target(target.data(), target.size());
    std::string head = "$100000\r\nab";
    reader.feed(head.data(), head.size());
    Reply r;
    CHECK(reader.read(r) == ReadStatus::NeedData);
    std::size_t room = 0;
    std::uint8_t* dst = reader.get_buffer(&room);
    CHECK(dst == target.data() + 2);
    CHECK_EQ(room, std::size_t{99998});
    std::memset(dst, 'z', room);
    reader.buffer_updated(room);
    CHECK(reader.read(r) == ReadStatus::NeedData);
    reader.feed("\r\n", 2);
    CHECK(reader.read(r) == ReadStatus::Reply);
    CHECK(r.kind == Kind::Filled);
    CHECK(target[0] == 'a' && target[1] == 'b' && target[99999] == 'z');
    CHECK_EQ(reader.buffered(), std::size_t{0});
  }
  // header_room: until the header is read, a receive is offered only that much (the
  // payload then lands in the target, not in the receive buffer); a reply that is not
  // the value (an error line longer than the room) still reads, a byte at a time.
  {
    std::vector<std::uint8_t> target(100000);
    Reader reader(LIMITS);
    reader.set_target(target.data(), target.size(), 16);
    std::size_t room = 0;
    reader.get_buffer(&room);
    CHECK_EQ(room, std::size_t{16});
    reader.feed("$100000\r", 8);  // a header not whole yet
    reader.get_buffer(&room);
    CHECK_EQ(room, std::size_t{8});
    Reply r;
    reader.feed("\n", 1);
    CHECK(reader.read(r) == ReadStatus::NeedData);
    CHECK(reader.get_buffer(&room) == target.data());
    CHECK_EQ(room, std::size_t{100000});
  }
  {
    std::vector<std::uint8_t> target(100000);
    Reader reader(LIMITS);
    reader.set_target(target.data(), target.size(), 4);
    const std::string err = "-ERR a long error line\r\n";
    std::size_t room = 0;
    for (char c : err) {
      reader.get_buffer(&room);
      CHECK(room >= 1 && room <= 4);
      reader.feed(&c, 1);
    }
    Reply r;
    CHECK(reader.read(r) == ReadStatus::Reply);
    CHECK(r.kind == Kind::Error && r.text == "ERR a long error line");
    reader.get_buffer(&room);  // the target is spent: a full receive again
    CHECK(room >= respkv::READ_CHUNK / 2);
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

void test_first_lines() {
  Reply r;
  r.kind = Kind::Simple;
  r.text = "QUEUED";
  CHECK(respkv::first_line(r, 80) == "+QUEUED");
  r.kind = Kind::Integer;
  r.integer = 5;
  CHECK(respkv::first_line(r, 80) == ":5");
  r.kind = Kind::SizeMismatch;
  r.integer = 3;
  CHECK(respkv::first_line(r, 80) == "$3");
  r.kind = Kind::NilArray;
  CHECK(respkv::first_line(r, 80) == "*-1");
  r.kind = Kind::Simple;
  r.text = std::string(100, 'x');
  CHECK(respkv::first_line(r, 80).size() == 80);
  r.text = std::string(78, 'x') + "\xc3\xa9\xc3\xa9";  // no UTF-8 sequence is cut
  CHECK(respkv::first_line(r, 80).size() == 79);
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
  test_bounded_buffer();
  test_packing();
  test_first_lines();
  test_tiling();
  std::printf("%d checks, %d failures\n", g_checks, g_failures);
  return g_failures == 0 ? 0 : 1;
}
