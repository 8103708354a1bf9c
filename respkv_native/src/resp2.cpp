// RESP2 packing and reading; see resp2.hpp for the plan. The checks below are made in
// the order respkv/resp2.py makes them, so that both readers reject a stream at the
// same byte for the same reason.
#include "resp2.hpp"

#include <algorithm>
#include <charconv>
#include <cstring>
#include <limits>

namespace respkv {

namespace {

// Digits of a RESP integer line: an optional '-' then digits, at most this many
// characters in all (20: the longest signed 64-bit value; respkv/resp2.py's rule).
constexpr std::size_t MAX_NUMBER_CHARS = 20;

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

// A parsed integer line: its sign and magnitude, and whether the magnitude overflowed
// 64 bits (only possible with 20 digits).
struct Number {
  bool negative = false;
  bool overflow = false;
  std::uint64_t magnitude = 0;
};

// False when `line` is not an optional '-' followed by 1..20 characters of digits.
bool parse_number(std::string_view line, Number* out) {
  if (line.size() > MAX_NUMBER_CHARS) return false;
  Number n;
  if (!line.empty() && line.front() == '-') {
    n.negative = true;
    line.remove_prefix(1);
  }
  if (line.empty()) return false;
  constexpr std::uint64_t max = std::numeric_limits<std::uint64_t>::max();
  for (char c : line) {
    if (c < '0' || c > '9') return false;
    const auto d = static_cast<std::uint64_t>(c - '0');
    if (n.magnitude > (max - d) / 10) n.overflow = true;
    n.magnitude = n.magnitude * 10 + d;  // wraps once overflow is set; not used then
  }
  *out = n;
  return true;
}

constexpr std::uint64_t INT64_MAX_MAGNITUDE = static_cast<std::uint64_t>(INT64_MAX);

}  // namespace

const char* protocol_fault_text(ProtocolFault fault) {
  switch (fault) {
    case ProtocolFault::None:
      return "no fault";
    case ProtocolFault::UnknownType:
      return "unknown reply type byte";
    case ProtocolFault::MalformedLength:
      return "malformed length";
    case ProtocolFault::NegativeLength:
      return "negative length";
    case ProtocolFault::BulkTooLong:
      return "bulk length over MAX_BULK_BYTES";
    case ProtocolFault::ArrayTooLong:
      return "array length over MAX_MULTIBULK_LEN";
    case ProtocolFault::MalformedInteger:
      return "malformed integer";
    case ProtocolFault::IntegerRange:
      return "integer outside the signed 64-bit range";
    case ProtocolFault::BadTerminator:
      return "bulk string not terminated by CRLF";
    case ProtocolFault::LineTooLong:
      return "line over MAX_LINE_BYTES";
    case ProtocolFault::TooDeep:
      return "arrays nested deeper than MAX_DEPTH";
  }
  return "unknown fault";
}

std::string first_line(const Reply& r, std::size_t max_chars) {
  using Kind = Reply::Kind;
  std::string out;
  switch (r.kind) {
    case Kind::Simple:
      out = "+" + r.text;
      break;
    case Kind::Error:
      out = "-" + r.text;
      break;
    case Kind::Integer:
      out = ":" + std::to_string(r.integer);
      break;
    case Kind::Bulk:
    case Kind::Filled:
    case Kind::SizeMismatch:
      out = "$" + std::to_string(r.integer);
      break;
    case Kind::Nil:
      out = "$-1";
      break;
    case Kind::NilArray:
      out = "*-1";
      break;
    case Kind::Array:
      out = "*" + std::to_string(r.integer);
      break;
  }
  if (out.size() > max_chars) {
    std::size_t cut = max_chars;
    // Never split a UTF-8 sequence: back up over continuation bytes.
    while (cut > 0 && (static_cast<unsigned char>(out[cut]) & 0xC0) == 0x80) --cut;
    out.resize(cut);
  }
  return out;
}

void append_command_header(std::string& out, std::string_view name, std::string_view key,
                           const std::size_t* value_len, std::size_t trailing_args) {
  out.push_back('*');
  append_uint(out, (value_len ? 3 : 2) + trailing_args);
  out.append("\r\n");
  append_bulk(out, name);
  append_bulk(out, key);
  if (value_len) {
    out.push_back('$');
    append_uint(out, *value_len);
    out.append("\r\n");
  }
}

void append_set_tail(std::string& out, std::uint64_t ttl_ms) {
  out.append("\r\n");
  if (ttl_ms == 0) return;
  out.append("$2\r\nPX\r\n");
  std::string ms;
  append_uint(ms, ttl_ms);
  append_bulk(out, ms);
}

void append_command(std::string& out, const std::vector<std::string>& args) {
  out.push_back('*');
  append_uint(out, args.size());
  out.append("\r\n");
  for (const auto& a : args) append_bulk(out, a);
}

// --------------------------------------------------------------------------- Reader

Reader::Reader(const ReaderLimits& limits) : limits_(limits), buf_(READ_CHUNK) {}

void Reader::set_target(std::uint8_t* data, std::size_t size, std::size_t header_room) {
  if (mode_ == Mode::Parse && stack_.empty()) {
    target_ = data;
    target_size_ = size;
    has_target_ = true;
    header_room_ = header_room;
  }
}

void Reader::clear_target() {
  if (mode_ == Mode::Parse && stack_.empty()) {
    target_ = nullptr;
    target_size_ = 0;
    has_target_ = false;
    header_room_ = 0;
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
    maybe_shrink();
  }
  // Offer at least half a chunk: move the unfinished reply (at most one line) to the
  // front, and grow only when that line alone leaves too little room.
  constexpr std::size_t MIN_ROOM = READ_CHUNK / 2;
  if (buf_.size() - wpos_ < MIN_ROOM) {
    const std::size_t used = wpos_ - rpos_;
    if (rpos_ > 0) {
      std::memmove(buf_.data(), buf_.data() + rpos_, used);
      rpos_ = 0;
      wpos_ = used;
    }
    if (buf_.size() - wpos_ < MIN_ROOM) buf_.resize(std::max(buf_.size() * 2, wpos_ + READ_CHUNK));
  }
  *room = buf_.size() - wpos_;
  // A large target's header not read yet: ask for the header alone (at least a byte).
  if (header_room_ != 0 && has_target_ && mode_ == Mode::Parse && stack_.empty()) {
    const std::size_t used = wpos_ - rpos_;
    *room = std::min(*room, used < header_room_ ? header_room_ - used : std::size_t{1});
  }
  return buf_.data() + wpos_;
}

void Reader::maybe_shrink() {
  // Called with the buffer empty: a long line grew it; give the memory back.
  if (buf_.size() > READ_CHUNK) std::vector<std::uint8_t>(READ_CHUNK).swap(buf_);
}

void Reader::buffer_updated(std::size_t n) {
  if (mode_ == Mode::Into && remaining_ > 0) {
    into_ += n;
    remaining_ -= static_cast<std::int64_t>(n);
    return;
  }
  wpos_ += n;
  // Payload bytes that are dropped or appended to a reply leave the buffer at once, so
  // a large value never grows it.
  if ((mode_ == Mode::Drain || mode_ == Mode::Text) && remaining_ > 0) {
    const auto take =
        static_cast<std::size_t>(std::min<std::int64_t>(remaining_, static_cast<std::int64_t>(wpos_ - rpos_)));
    if (mode_ == Mode::Text && text_node_ != nullptr) {
      text_node_->text.append(reinterpret_cast<const char*>(buf_.data()) + rpos_, take);
    }
    remaining_ -= static_cast<std::int64_t>(take);
    consume(take);
  }
}

void Reader::feed(const void* data, std::size_t n) {
  if (mode_ == Mode::Broken) return;
  const auto* p = static_cast<const std::uint8_t*>(data);
  while (n > 0) {
    std::size_t room = 0;
    std::uint8_t* dst = get_buffer(&room);
    const std::size_t k = std::min(room, n);
    std::memcpy(dst, p, k);
    buffer_updated(k);
    p += k;
    n -= k;
  }
}

Reader::Step Reader::fail(ProtocolFault fault) {
  mode_ = Mode::Broken;
  fault_ = fault;
  return Step::Error;
}

void Reader::consume(std::size_t n) {
  rpos_ += n;
  scan_ = 0;
  if (rpos_ == wpos_) {
    rpos_ = 0;
    wpos_ = 0;
  }
}

// The line starting at rpos_ (its type byte) up to its CRLF: *line is its text, *next
// the offset after the CRLF. A lone CR inside the line is allowed. The scan resumes
// where the previous call stopped.
Reader::Step Reader::find_line(std::string_view* line, std::size_t* next) {
  const auto* base = reinterpret_cast<const char*>(buf_.data());
  const std::size_t pos = rpos_;
  std::size_t from = pos + 1 + scan_;
  while (from < wpos_) {
    const void* cr = std::memchr(base + from, '\r', wpos_ - from);
    if (cr == nullptr) {
      from = wpos_;
      break;
    }
    const auto eol = static_cast<std::size_t>(static_cast<const char*>(cr) - base);
    if (eol + 1 >= wpos_) {
      from = eol;  // a CR as the last byte: look at it again when more arrives
      break;
    }
    if (base[eol + 1] == '\n') {
      const std::size_t len = eol - pos - 1;
      if (len > limits_.max_line_bytes) return fail(ProtocolFault::LineTooLong);
      *line = std::string_view(base + pos + 1, len);
      *next = eol + 2 - pos;
      return Step::Done;
    }
    from = eol + 1;
  }
  scan_ = from > pos + 1 ? from - pos - 1 : 0;
  // One byte more than the limit may be a line of exactly max_line_bytes and the CR of
  // its CRLF; anything longer can never become a valid line.
  if (wpos_ - pos - 1 > limits_.max_line_bytes + 1) return fail(ProtocolFault::LineTooLong);
  return Step::NeedData;
}

Reader::Step Reader::parse_length(std::string_view line, bool bulk, std::int64_t* n) {
  Number num;
  // "-0" is malformed too: the only negative length is -1 (nil).
  if (!parse_number(line, &num) || line == "-0") return fail(ProtocolFault::MalformedLength);
  if (num.negative) {
    if (num.overflow || num.magnitude > 1) return fail(ProtocolFault::NegativeLength);
    *n = -static_cast<std::int64_t>(num.magnitude);
    return Step::Done;
  }
  const std::int64_t limit = bulk ? limits_.max_bulk_bytes : limits_.max_multibulk_len;
  if (num.overflow || num.magnitude > static_cast<std::uint64_t>(limit)) {
    return fail(bulk ? ProtocolFault::BulkTooLong : ProtocolFault::ArrayTooLong);
  }
  *n = static_cast<std::int64_t>(num.magnitude);
  return Step::Done;
}

namespace {

void reset(Reply& r, Reply::Kind kind) {
  r.kind = kind;
  r.integer = 0;
  r.text.clear();
  r.items.clear();
}

}  // namespace

// The node the next element is parsed into: a new item of the open array (null when
// its items are only counted) or, at the top level, the caller's reply for an element
// that is whole in the buffer (`whole`), else root_, which persists between calls.
Reply* Reader::new_node(Reply& out, bool whole) {
  if (stack_.empty()) {
    in_root_ = !whole;
    Reply& node = whole ? out : root_;
    reset(node, Reply::Kind::Nil);
    return &node;
  }
  Reply* parent = stack_.back().node;
  return parent ? &parent->items.emplace_back() : nullptr;
}

Reader::Step Reader::parse_element(Reply& out) {
  const std::uint8_t type = buf_[rpos_];
  if (type != ':' && type != '+' && type != '-' && type != '$' && type != '*') {
    return fail(ProtocolFault::UnknownType);
  }
  std::string_view ln;
  std::size_t next = 0;
  Step s = find_line(&ln, &next);
  if (s != Step::Done) return s;
  switch (type) {
    case ':': {
      Number num;
      if (!parse_number(ln, &num)) return fail(ProtocolFault::MalformedInteger);
      const std::uint64_t bound = INT64_MAX_MAGNITUDE + (num.negative ? 1 : 0);
      if (num.overflow || num.magnitude > bound) return fail(ProtocolFault::IntegerRange);
      Reply* node = new_node(out, true);
      if (node) {
        node->kind = Reply::Kind::Integer;
        // -(2^63) is the one magnitude that does not fit a positive int64.
        node->integer = !num.negative ? static_cast<std::int64_t>(num.magnitude)
                        : num.magnitude == bound ? std::numeric_limits<std::int64_t>::min()
                                                 : -static_cast<std::int64_t>(num.magnitude);
      }
      consume(next);
      return Step::Done;
    }
    case '+':
    case '-': {
      Reply* node = new_node(out, true);
      if (node) {
        node->kind = type == '+' ? Reply::Kind::Simple : Reply::Kind::Error;
        node->text.assign(ln);
      }
      consume(next);
      return Step::Done;
    }
    case '$': {
      std::int64_t n = 0;
      if (parse_length(ln, true, &n) == Step::Error) return Step::Error;
      // Whole when the payload and its CRLF are in the buffer already (small values).
      const bool whole = n == -1 || static_cast<std::uint64_t>(wpos_ - rpos_ - next) >=
                                        static_cast<std::uint64_t>(n) + 2;
      Reply* node = new_node(out, whole);
      consume(next);
      if (n == -1) {
        if (node) node->kind = Reply::Kind::Nil;
        return Step::Done;
      }
      if (node) {
        node->kind = Reply::Kind::Bulk;
        node->integer = n;
        if (whole) {  // the common case, done here: one copy, no state kept
          node->text.assign(reinterpret_cast<const char*>(buf_.data()) + rpos_,
                            static_cast<std::size_t>(n));
          const auto end = rpos_ + static_cast<std::size_t>(n);
          if (buf_[end] != '\r' || buf_[end + 1] != '\n') return fail(ProtocolFault::BadTerminator);
          consume(static_cast<std::size_t>(n) + 2);
          return Step::Done;
        }
      }
      text_node_ = node;
      remaining_ = n;
      mode_ = Mode::Text;
      return continue_text();
    }
    default: {  // '*'
      std::int64_t n = 0;
      if (parse_length(ln, false, &n) == Step::Error) return Step::Error;
      if (n != -1 && stack_.size() >= limits_.max_depth) return fail(ProtocolFault::TooDeep);
      Reply* node = new_node(out, n <= 0);
      consume(next);
      if (n == -1) {
        if (node) node->kind = Reply::Kind::NilArray;
        return Step::Done;
      }
      if (node) {
        node->kind = Reply::Kind::Array;
        node->integer = n;
      }
      if (n == 0) return Step::Done;
      stack_.push_back(Frame{keep_items_ ? node : nullptr, n});
      return Step::Opened;
    }
  }
}

// A bulk payload without a target: append (or drop) what has arrived, then its CRLF.
Reader::Step Reader::continue_text() {
  if (remaining_ > 0) {
    const auto take = static_cast<std::size_t>(
        std::min<std::int64_t>(remaining_, static_cast<std::int64_t>(wpos_ - rpos_)));
    if (take > 0) {
      if (text_node_) text_node_->text.append(reinterpret_cast<const char*>(buf_.data()) + rpos_, take);
      remaining_ -= static_cast<std::int64_t>(take);
      consume(take);
    }
    if (remaining_ > 0) return Step::NeedData;
  }
  if (wpos_ - rpos_ < 2) return Step::NeedData;
  if (buf_[rpos_] != '\r' || buf_[rpos_ + 1] != '\n') return fail(ProtocolFault::BadTerminator);
  consume(2);
  mode_ = Mode::Parse;
  text_node_ = nullptr;
  return Step::Done;
}

// An element is whole: count it against the open arrays, closing those that are full.
// True when the top-level reply is whole.
bool Reader::close_element() {
  while (!stack_.empty()) {
    if (--stack_.back().left > 0) return false;
    stack_.pop_back();
  }
  return true;
}

ReadStatus Reader::deliver(Reply& out) {
  if (in_root_) {
    std::swap(out, root_);
    in_root_ = false;
  }
  has_target_ = false;
  header_room_ = 0;
  target_ = nullptr;
  return ReadStatus::Reply;
}

ReadStatus Reader::start_target(Reply& out) {
  std::string_view ln;
  std::size_t next = 0;
  Step s = find_line(&ln, &next);
  if (s == Step::NeedData) return ReadStatus::NeedData;
  if (s == Step::Error) return ReadStatus::Error;
  std::int64_t n = 0;
  if (parse_length(ln, true, &n) == Step::Error) return ReadStatus::Error;
  consume(next);
  if (n == -1) {
    reset(out, Reply::Kind::Nil);
    return deliver(out);
  }
  total_ = n;
  const auto take = std::min<std::int64_t>(static_cast<std::int64_t>(wpos_ - rpos_), n);
  if (static_cast<std::size_t>(n) == target_size_) {
    if (take > 0) std::memcpy(target_, buf_.data() + rpos_, static_cast<std::size_t>(take));
    mode_ = Mode::Into;
    into_ = target_ + take;
  } else {
    mode_ = Mode::Drain;
  }
  remaining_ = n - take;
  consume(static_cast<std::size_t>(take));
  return finish_target(out);
}

ReadStatus Reader::finish_target(Reply& out) {
  if (remaining_ > 0 || wpos_ - rpos_ < 2) return ReadStatus::NeedData;
  if (buf_[rpos_] != '\r' || buf_[rpos_ + 1] != '\n') {
    fail(ProtocolFault::BadTerminator);
    return ReadStatus::Error;
  }
  consume(2);
  reset(out, mode_ == Mode::Into ? Reply::Kind::Filled : Reply::Kind::SizeMismatch);
  out.integer = total_;
  mode_ = Mode::Parse;
  into_ = nullptr;
  return deliver(out);
}

ReadStatus Reader::read(Reply& out) {
  switch (mode_) {
    case Mode::Broken:
      return ReadStatus::Error;
    case Mode::Into:
    case Mode::Drain:
      return finish_target(out);
    case Mode::Text: {
      const Step s = continue_text();
      if (s == Step::NeedData) return ReadStatus::NeedData;
      if (s == Step::Error) return ReadStatus::Error;
      if (close_element()) return deliver(out);
      break;
    }
    case Mode::Parse:
      break;
  }
  for (;;) {
    if (rpos_ == wpos_) return ReadStatus::NeedData;
    if (has_target_ && stack_.empty() && buf_[rpos_] == '$') return start_target(out);
    const Step s = parse_element(out);
    if (s == Step::Done) {
      if (close_element()) return deliver(out);
    } else if (s != Step::Opened) {
      return s == Step::NeedData ? ReadStatus::NeedData : ReadStatus::Error;
    }
  }
}

}  // namespace respkv
