// RESP2 packing and reading; see resp2.hpp for the plan. The parsing functions below keep
// the structure (and the order of checks) of respkv/resp2.py so that the two readers
// accept, reject and describe the same streams.
#include "resp2.hpp"

#include <algorithm>
#include <charconv>
#include <cstring>

namespace respkv {

namespace {

using i128 = __int128;

void append_uint(std::string& out, std::size_t n) {
  char tmp[24];
  auto res = std::to_chars(tmp, tmp + sizeof tmp, n);
  out.append(tmp, res.ptr);
}

void append_bulk(std::string& out, std::string_view arg) {
  out.push_back('$');
  append_uint(out, arg.size());
  out.append("\r\n");
  out.append(arg);
  out.append("\r\n");
}

std::string i128_to_string(i128 v) {
  if (v == 0) return "0";
  bool negative = v < 0;
  // Values come from at most 20 decimal digits, far from the type's limits.
  if (negative) v = -v;
  std::string digits;
  while (v > 0) {
    digits.push_back(static_cast<char>('0' + static_cast<int>(v % 10)));
    v /= 10;
  }
  if (negative) digits.push_back('-');
  std::reverse(digits.begin(), digits.end());
  return digits;
}

// bytes.isdigit(): non-empty and only ASCII digits.
bool all_digits(std::string_view s) {
  if (s.empty()) return false;
  return std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// int(line) for a line already checked to be an optional '-' and at most 20 digits.
i128 parse_decimal(std::string_view line) {
  bool negative = !line.empty() && line.front() == '-';
  if (negative) line.remove_prefix(1);
  i128 v = 0;
  for (char c : line) v = v * 10 + (c - '0');
  return negative ? -v : v;
}

// Integer-reply digits: an optional '-' then digits, at most 20 characters in all.
bool valid_number_line(std::string_view line) {
  std::string_view body = (!line.empty() && line.front() == '-') ? line.substr(1) : line;
  return all_digits(body) && line.size() <= 20;
}

constexpr std::size_t REPR_PREFIX = 32;  // line[:32] in the pure codec's messages

}  // namespace

void append_command_header(std::string& out, std::string_view name, std::string_view key,
                           const std::size_t* value_len) {
  out.append(value_len ? "*3\r\n" : "*2\r\n");
  append_bulk(out, name);
  append_bulk(out, key);
  if (value_len) {
    out.push_back('$');
    append_uint(out, *value_len);
    out.append("\r\n");
  }
}

void append_command(std::string& out, const std::vector<std::string>& args) {
  out.push_back('*');
  append_uint(out, args.size());
  out.append("\r\n");
  for (const auto& a : args) append_bulk(out, a);
}

namespace {

// repr() of bytes (prefix "b") or of a str decoded from UTF-8 (no prefix; characters
// beyond ASCII are kept as they are, as Python prints printable ones).
std::string quoted_repr(std::string_view data, bool as_bytes) {
  bool has_single = data.find('\'') != std::string_view::npos;
  bool has_double = data.find('"') != std::string_view::npos;
  char quote = (has_single && !has_double) ? '"' : '\'';
  std::string out = as_bytes ? "b" : "";
  out.push_back(quote);
  static constexpr char HEX[] = "0123456789abcdef";
  for (char ch : data) {
    auto c = static_cast<unsigned char>(ch);
    if (c == static_cast<unsigned char>(quote) || c == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(c));
    } else if (c == '\t') {
      out.append("\\t");
    } else if (c == '\n') {
      out.append("\\n");
    } else if (c == '\r') {
      out.append("\\r");
    } else if (c < 0x20 || c == 0x7f || (as_bytes && c > 0x7f)) {
      out.append("\\x");
      out.push_back(HEX[c >> 4]);
      out.push_back(HEX[c & 0xf]);
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  out.push_back(quote);
  return out;
}

}  // namespace

std::string bytes_repr(std::string_view data) { return quoted_repr(data, true); }

std::string reply_repr(const Reply& r) {
  switch (r.kind) {
    case Reply::Kind::Simple:
    case Reply::Kind::Bulk:
      return bytes_repr(r.text);
    case Reply::Kind::Error:
      return "ReplyError(" + quoted_repr(r.text, false) + ")";
    case Reply::Kind::Integer:
      return std::to_string(r.integer);
    case Reply::Kind::Nil:
      return "None";
    case Reply::Kind::Filled:
      return "FILLED";
    case Reply::Kind::SizeMismatch:
      return "SizeMismatch(length=" + std::to_string(r.integer) + ")";
    case Reply::Kind::Array: {
      std::string out = "[";
      for (std::size_t i = 0; i < r.items.size(); ++i) {
        if (i) out += ", ";
        out += reply_repr(r.items[i]);
      }
      return out + "]";
    }
  }
  return "?";
}

// --------------------------------------------------------------------------- Reader

Reader::Reader() : buf_(READ_CHUNK) {}

void Reader::set_target(std::uint8_t* data, std::size_t size) {
  if (mode_ == Mode::Parse) {
    target_ = data;
    target_size_ = size;
    has_target_ = true;
  }
}

void Reader::clear_target() {
  if (mode_ == Mode::Parse) {
    target_ = nullptr;
    target_size_ = 0;
    has_target_ = false;
  }
}

std::uint8_t* Reader::get_buffer(std::size_t* room) {
  if (mode_ == Mode::Into && remaining_ > 0) {
    *room = static_cast<std::size_t>(remaining_);
    return into_;
  }
  if (rpos_ == wpos_) {
    rpos_ = 0;
    wpos_ = 0;
  }
  if (buf_.size() - wpos_ < READ_CHUNK) {
    std::size_t used = wpos_ - rpos_;
    if (rpos_ > 0 && buf_.size() - used >= READ_CHUNK) {
      std::memmove(buf_.data(), buf_.data() + rpos_, used);
      rpos_ = 0;
      wpos_ = used;
    } else {
      buf_.resize(std::max(buf_.size() * 2, wpos_ + READ_CHUNK));
    }
  }
  *room = buf_.size() - wpos_;
  return buf_.data() + wpos_;
}

void Reader::buffer_updated(std::size_t n) {
  if (mode_ == Mode::Into && remaining_ > 0) {
    into_ += n;
    remaining_ -= static_cast<std::int64_t>(n);
    return;
  }
  wpos_ += n;
  if (mode_ == Mode::Drain) consume_drained();
}

void Reader::feed(const void* data, std::size_t n) {
  if (mode_ == Mode::Broken) throw ProtocolError("reader is unusable after a protocol error");
  const auto* p = static_cast<const std::uint8_t*>(data);
  while (n > 0) {
    std::size_t room = 0;
    std::uint8_t* dst = get_buffer(&room);
    std::size_t k = std::min(room, n);
    std::memcpy(dst, p, k);
    buffer_updated(k);
    p += k;
    n -= k;
  }
}

void Reader::consume_drained() {
  auto take = std::min<std::int64_t>(remaining_, static_cast<std::int64_t>(wpos_ - rpos_));
  remaining_ -= take;
  advance(rpos_ + static_cast<std::size_t>(take));
}

void Reader::fail(const std::string& message) {
  mode_ = Mode::Broken;
  throw ProtocolError(message);
}

void Reader::advance(std::size_t end) {
  rpos_ = end;
  if (rpos_ >= wpos_) {
    rpos_ = 0;
    wpos_ = 0;
  }
}

std::string_view Reader::line(std::size_t pos, std::size_t* end) {
  const auto* base = reinterpret_cast<const char*>(buf_.data());
  std::size_t from = pos + 1;
  while (from < wpos_) {
    const void* cr = std::memchr(base + from, '\r', wpos_ - from);
    if (cr == nullptr) break;
    auto eol = static_cast<std::size_t>(static_cast<const char*>(cr) - base);
    if (eol + 1 >= wpos_) break;
    if (base[eol + 1] == '\n') {
      if (eol - pos - 1 > MAX_LINE_BYTES) {
        fail("line longer than MAX_LINE_BYTES (" + std::to_string(MAX_LINE_BYTES) + ")");
      }
      *end = eol + 2;
      return std::string_view(base + pos + 1, eol - pos - 1);
    }
    from = eol + 1;
  }
  // Checked here, not only at the top level, so that an unterminated line inside an
  // array cannot grow the buffer without bound. One byte more than the limit may be a
  // line of exactly MAX_LINE_BYTES and the CR of its CRLF.
  if (wpos_ - pos - 1 > MAX_LINE_BYTES + 1) {
    fail("line longer than MAX_LINE_BYTES (" + std::to_string(MAX_LINE_BYTES) + ") without CRLF");
  }
  throw Incomplete{};
}

std::int64_t Reader::length(std::string_view ln, const char* what, std::int64_t limit) {
  // '-0' is malformed too: the only negative length is -1 (nil).
  if (!valid_number_line(ln) || ln == "-0") {
    fail(std::string("malformed ") + what + " length " + bytes_repr(ln.substr(0, REPR_PREFIX)));
  }
  i128 n = parse_decimal(ln);
  if (n < -1) fail(std::string("negative ") + what + " length " + i128_to_string(n));
  if (n > limit) {
    const char* limit_name =
        std::strcmp(what, "bulk") == 0 ? "MAX_BULK_BYTES" : "MAX_MULTIBULK_LEN";
    fail(std::string(what) + " length " + i128_to_string(n) + " exceeds " + limit_name + " (" +
         std::to_string(limit) + ")");
  }
  return static_cast<std::int64_t>(n);
}

void Reader::parse(std::size_t pos, int depth, Reply& out, std::size_t* end) {
  if (pos >= wpos_) throw Incomplete{};
  std::uint8_t kind = buf_[pos];
  switch (kind) {
    case ':': {
      std::string_view ln = line(pos, end);
      if (!valid_number_line(ln)) fail("malformed integer " + bytes_repr(ln.substr(0, REPR_PREFIX)));
      i128 v = parse_decimal(ln);
      if (v < INT64_MIN || v > INT64_MAX) {
        fail("integer " + i128_to_string(v) + " outside the signed 64-bit range");
      }
      out.kind = Reply::Kind::Integer;
      out.integer = static_cast<std::int64_t>(v);
      return;
    }
    case '$': {
      std::size_t hdr_end = 0;
      std::string_view ln = line(pos, &hdr_end);
      std::int64_t n = length(ln, "bulk", MAX_BULK_BYTES);
      if (n == -1) {
        out.kind = Reply::Kind::Nil;
        *end = hdr_end;
        return;
      }
      std::size_t stop = hdr_end + static_cast<std::size_t>(n);
      if (wpos_ < stop + 2) throw Incomplete{};
      if (buf_[stop] != '\r' || buf_[stop + 1] != '\n') fail("bulk string not terminated by CRLF");
      out.kind = Reply::Kind::Bulk;
      out.text.assign(reinterpret_cast<const char*>(buf_.data()) + hdr_end, static_cast<std::size_t>(n));
      *end = stop + 2;
      return;
    }
    case '+':
    case '-': {
      std::string_view ln = line(pos, end);
      out.kind = kind == '+' ? Reply::Kind::Simple : Reply::Kind::Error;
      out.text.assign(ln);
      return;
    }
    case '*': {
      std::size_t hdr_end = 0;
      std::string_view ln = line(pos, &hdr_end);
      std::int64_t n = length(ln, "array", MAX_MULTIBULK_LEN);
      if (n == -1) {
        out.kind = Reply::Kind::Nil;
        *end = hdr_end;
        return;
      }
      if (depth >= MAX_DEPTH) {
        fail("arrays nested deeper than MAX_DEPTH (" + std::to_string(MAX_DEPTH) + ")");
      }
      out.kind = Reply::Kind::Array;
      out.items.clear();
      std::size_t at = hdr_end;
      for (std::int64_t i = 0; i < n; ++i) {
        Reply item;
        parse(at, depth + 1, item, &at);
        out.items.push_back(std::move(item));
      }
      *end = at;
      return;
    }
    default: {
      char byte = static_cast<char>(kind);
      fail("unknown reply type byte " + bytes_repr(std::string_view(&byte, 1)));
    }
  }
}

bool Reader::gets(Reply& out) {
  if (mode_ != Mode::Parse) {
    if (mode_ == Mode::Broken) throw ProtocolError("reader is unusable after a protocol error");
    return finish_payload(out);
  }
  std::size_t pos = rpos_;
  if (pos >= wpos_) {
    rpos_ = 0;
    wpos_ = 0;
    return false;
  }
  out = Reply{};
  std::size_t end = 0;
  try {
    if (has_target_ && buf_[pos] == '$') return start_bulk_into(pos, out);
    parse(pos, 0, out, &end);
  } catch (const Incomplete&) {
    return false;
  }
  advance(end);
  has_target_ = false;
  target_ = nullptr;
  return true;
}

bool Reader::start_bulk_into(std::size_t pos, Reply& out) {
  std::size_t end = 0;
  std::string_view ln = line(pos, &end);
  std::int64_t n = length(ln, "bulk", MAX_BULK_BYTES);
  if (n == -1) {
    advance(end);
    has_target_ = false;
    target_ = nullptr;
    out.kind = Reply::Kind::Nil;
    return true;
  }
  total_ = n;
  auto avail = static_cast<std::int64_t>(wpos_ - end);
  std::int64_t take = std::min(avail, n);
  if (static_cast<std::size_t>(n) == target_size_) {
    if (take > 0) std::memcpy(target_, buf_.data() + end, static_cast<std::size_t>(take));
    mode_ = Mode::Into;
    into_ = target_ + take;
  } else {
    mode_ = Mode::Drain;
  }
  remaining_ = n - take;
  advance(end + static_cast<std::size_t>(take));
  return finish_payload(out);
}

bool Reader::finish_payload(Reply& out) {
  if (remaining_ > 0) return false;
  if (wpos_ - rpos_ < 2) return false;
  if (buf_[rpos_] != '\r' || buf_[rpos_ + 1] != '\n') fail("bulk string not terminated by CRLF");
  advance(rpos_ + 2);
  out = Reply{};
  if (mode_ == Mode::Into) {
    out.kind = Reply::Kind::Filled;
  } else {
    out.kind = Reply::Kind::SizeMismatch;
    out.integer = total_;
  }
  mode_ = Mode::Parse;
  has_target_ = false;
  target_ = nullptr;
  into_ = nullptr;
  return true;
}

}  // namespace respkv
