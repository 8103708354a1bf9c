// Sans-I/O RESP2 for the native backend: command headers and an incremental reply reader.
//
// This is the C++ twin of respkv/resp2.py and follows it rule for rule, including the
// text of every protocol error, so that both backends report a malformed stream the same
// way. Nothing here touches a socket, a thread or a clock.
//
// Packing. A command is written as a header (the array length, the command name, the
// key) followed, for SET, by the caller's value and a CRLF. The engine sends the value
// straight from the caller's buffer (writev/sendmsg); only the header is built here.
//
// Reading. The reader owns a growable receive buffer. The engine asks `get_buffer()` for
// the place the next recv() should write to and reports the count with
// `buffer_updated()`. Before the reply of a GET is parsed, the engine sets a *target*
// (the caller's buffer): when the reply is a bulk string of exactly the target's length,
// `get_buffer()` points into the target, so the payload is received with no copy (only
// the bytes that arrived together with the `$<len>\r\n` header are copied). A bulk of
// another length is drained (dropped, never written to the target) and reported as
// SizeMismatch, so the stream stays in sync. Error replies are values (Reply::Error);
// a malformed stream throws ProtocolError and leaves the reader unusable.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace respkv {

// Limits, the same numbers (and names, in messages) as respkv/resp2.py.
inline constexpr std::int64_t MAX_BULK_BYTES = 512LL * 1024 * 1024;  // proto-max-bulk-len
inline constexpr std::int64_t MAX_MULTIBULK_LEN = 1LL << 32;         // longest array
inline constexpr int MAX_DEPTH = 32;                                 // deepest array nesting
inline constexpr std::size_t MAX_LINE_BYTES = 64 * 1024;             // longest line w/o CRLF
// Receive buffer: the first allocation, and how much free room a recv() is offered.
inline constexpr std::size_t READ_CHUNK = 64 * 1024;

// A malformed reply stream. The message is the one respkv/resp2.py raises.
class ProtocolError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// One parsed reply. Arrays keep their items; the engine only looks at the top level.
struct Reply {
  enum class Kind : std::uint8_t {
    Simple,        // +text        -> text
    Error,         // -text        -> text (a value, not an exception)
    Integer,       // :n           -> integer
    Bulk,          // $n payload   -> text (no target set)
    Nil,           // $-1 or *-1
    Array,         // *n items     -> items
    Filled,        // bulk written whole into the target
    SizeMismatch,  // bulk of another length than the target; drained; integer = length
  };
  Kind kind = Kind::Nil;
  std::string text;
  std::int64_t integer = 0;
  std::vector<Reply> items;
};

// The RESP2 header of a one-key command: `*<argc>\r\n$<len>\r\n<NAME>\r\n$<klen>\r\n<key>\r\n`
// plus, when `value_len` is given (SET), the value's `$<len>\r\n`. Appended to `out`.
void append_command_header(std::string& out, std::string_view name, std::string_view key,
                           const std::size_t* value_len);
// A whole command of small arguments, appended to `out` (handshake commands).
void append_command(std::string& out, const std::vector<std::string>& args);

// Python's repr() of a bytes object (b'...'), for messages identical to the pure codec's.
std::string bytes_repr(std::string_view data);

struct Reply;
// Python's repr() of the value respkv/resp2.py returns for `reply` (bytes, int, None, a
// list, ReplyError('...'), FILLED, SizeMismatch(length=N)), for "unexpected reply" texts.
std::string reply_repr(const Reply& reply);

class Reader {
 public:
  Reader();

  // Deliver the next reply, if it is a bulk string, into [data, data+size). Applies to the
  // next reply to start; ignored while a payload is being delivered or drained.
  void set_target(std::uint8_t* data, std::size_t size);
  void clear_target();

  // Where the next recv() should write and how much room there is (never zero).
  std::uint8_t* get_buffer(std::size_t* room);
  // Report that `n` bytes were written at the place get_buffer() returned.
  void buffer_updated(std::size_t n);
  // Copy bytes in (tests, and any caller without a socket).
  void feed(const void* data, std::size_t n);

  // The next whole reply into `out`: true, or false when more data is needed.
  // Throws ProtocolError on a malformed stream (and from then on).
  bool gets(Reply& out);

  // Bytes received but not consumed yet.
  std::size_t buffered() const { return wpos_ - rpos_; }

 private:
  enum class Mode : std::uint8_t { Parse, Into, Drain, Broken };
  struct Incomplete {};

  [[noreturn]] void fail(const std::string& message);
  void advance(std::size_t end);
  void consume_drained();
  std::string_view line(std::size_t pos, std::size_t* end);
  std::int64_t length(std::string_view line, const char* what, std::int64_t limit);
  void parse(std::size_t pos, int depth, Reply& out, std::size_t* end);
  bool start_bulk_into(std::size_t pos, Reply& out);
  bool finish_payload(Reply& out);

  std::vector<std::uint8_t> buf_;
  std::size_t rpos_ = 0;  // first unconsumed byte
  std::size_t wpos_ = 0;  // end of received bytes
  Mode mode_ = Mode::Parse;
  std::uint8_t* target_ = nullptr;  // set_target()'s buffer (valid while has_target_)
  std::size_t target_size_ = 0;
  bool has_target_ = false;
  std::uint8_t* into_ = nullptr;   // unfilled part of the target (Into)
  std::int64_t remaining_ = 0;     // payload bytes still to come (Into / Drain)
  std::int64_t total_ = 0;         // full payload length (Into / Drain)
};

}  // namespace respkv
