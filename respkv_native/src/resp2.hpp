// Sans-I/O RESP2 for the native backend: command headers and an incremental reply reader.
//
// The C++ twin of respkv/resp2.py: both readers accept and reject the same streams and
// deliver the same values (tests/test_native_codec.py compares them on random streams,
// split anywhere). Nothing here touches a socket, a thread or a clock, and nothing here
// writes English for Python to show: a malformed stream is reported as a ProtocolFault
// code, and respkv/_native.py turns it into a Failure record.
//
// Packing. A command is written as a header (the array length, the command name, the
// key) followed, for SET, by the caller's value and a CRLF. The engine sends the value
// straight from the caller's buffer (writev/sendmsg); only the header is built here.
//
// Reading, the way hiredis's read.c does it. `read()` returns a code, never throws for
// "need more data": Reply (a whole reply is in `out`), NeedData, or Error (a protocol
// fault; the reader stays broken). Progress is kept between calls, so nothing is parsed
// twice however the bytes are split:
//
//   * the line being scanned for its CRLF remembers how far the scan got;
//   * an array under construction is a stack of frames (the node being filled and how
//     many items it still needs, like hiredis's task stack); each item is consumed from
//     the buffer as soon as it is whole;
//   * a bulk payload without a target is appended to its reply as it arrives.
//
// So the receive buffer only ever holds one unfinished line plus one recv() worth of
// bytes: it is bounded (about max_line_bytes + 2 * READ_CHUNK) and, should a long line
// have grown it, it shrinks back to READ_CHUNK once it is empty.
//
// Targets (GET). Before a reply is read the engine may set a *target* (the caller's
// buffer). When the next top-level reply is a bulk string of exactly the target's
// length, `get_buffer()` points into the target, so the payload is received with no
// copy (only the bytes that arrived together with the `$<len>\r\n` header are copied).
// A bulk of another length is drained (dropped, never written to the target) and
// reported as SizeMismatch, so the stream stays in sync. Error replies are values.
//
// Limits (ReaderLimits) come from Python (respkv/resp2.py) when the engine is made; this
// file has no numbers of its own but the size of a receive chunk.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace respkv {

// Receive buffer: its first size, the least free room a recv() is offered, and the size
// it shrinks back to. Native tuning only (the pure reader sizes its own reads).
inline constexpr std::size_t READ_CHUNK = 64 * 1024;

// The parser's limits; the values are respkv/resp2.py's (passed in by the binding).
struct ReaderLimits {
  std::int64_t max_bulk_bytes = 0;     // MAX_BULK_BYTES: longest bulk string
  std::int64_t max_multibulk_len = 0;  // MAX_MULTIBULK_LEN: longest array
  std::size_t max_depth = 0;           // MAX_DEPTH: deepest array nesting
  std::size_t max_line_bytes = 0;      // MAX_LINE_BYTES: longest line without its CRLF
};

// Why a stream was rejected. The failure's `detail` is protocol_fault_text().
enum class ProtocolFault : std::uint8_t {
  None,
  UnknownType,       // a reply starts with a byte that is no RESP2 type
  MalformedLength,   // a bulk/array length that is not an integer (or is -0)
  NegativeLength,    // a length below -1
  BulkTooLong,       // over max_bulk_bytes
  ArrayTooLong,      // over max_multibulk_len
  MalformedInteger,  // an integer reply that is not an integer
  IntegerRange,      // an integer reply outside the signed 64-bit range
  BadTerminator,     // a bulk payload not followed by CRLF
  LineTooLong,       // a line over max_line_bytes
  TooDeep,           // arrays nested deeper than max_depth
};

// A short name for a fault (the limit's name where a limit was broken).
const char* protocol_fault_text(ProtocolFault fault);

// One parsed reply. `integer` is the value of an integer reply, the length of a bulk
// (Bulk, Filled, SizeMismatch) and the item count of an array.
struct Reply {
  enum class Kind : std::uint8_t {
    Simple,        // +text        -> text
    Error,         // -text        -> text (a value, not an exception)
    Integer,       // :n           -> integer
    Bulk,          // $n payload   -> text (no target set)
    Nil,           // $-1
    NilArray,      // *-1
    Array,         // *n items     -> items (when the reader keeps them)
    Filled,        // bulk written whole into the target
    SizeMismatch,  // bulk of another length than the target; drained
  };
  Kind kind = Kind::Nil;
  std::string text;
  std::int64_t integer = 0;
  std::vector<Reply> items;
};

// The reply's RESP type byte and first line (`+QUEUED`, `:5`, `$3`, `*2`, `$-1`), at
// most `max_chars` characters: how an unexpected reply is described.
std::string first_line(const Reply& reply, std::size_t max_chars);

// The RESP2 header of a one-key command: `*<argc>\r\n$<len>\r\n<NAME>\r\n$<klen>\r\n<key>\r\n`
// plus, when `value_len` is given (SET), the value's `$<len>\r\n`. Appended to `out`.
// `trailing_args` counts arguments that follow the value (SET's `PX <ms>`: 2).
void append_command_header(std::string& out, std::string_view name, std::string_view key,
                           const std::size_t* value_len, std::size_t trailing_args = 0);
// What follows a SET's value: its CRLF, then `$2\r\nPX\r\n$<n>\r\n<ms>\r\n` when `ttl_ms`
// is not 0 (the expiry after the payload, so a large value is still sent from the
// caller's buffer). Appended to `out`.
void append_set_tail(std::string& out, std::uint64_t ttl_ms);
// A whole command of small arguments, appended to `out` (handshake commands).
void append_command(std::string& out, const std::vector<std::string>& args);

enum class ReadStatus : std::uint8_t { Reply, NeedData, Error };

class Reader {
 public:
  explicit Reader(const ReaderLimits& limits);

  // Deliver the next reply, if it is a bulk string, into [data, data+size). Applies to the
  // next top-level reply to start; ignored while a reply is under way. `header_room`
  // (not 0): until that reply's header is read, get_buffer() offers at most this many
  // bytes, so a large payload lands in the target instead of being copied there from
  // the receive buffer (respkv._limits.HEADER_RECV, as the pure engine does).
  void set_target(std::uint8_t* data, std::size_t size, std::size_t header_room = 0);
  void clear_target();
  // Arrays: keep their items (the default), or only count them (the engine, for which
  // any array is an unexpected reply: a huge one then costs no memory).
  void set_keep_items(bool keep) { keep_items_ = keep; }

  // Where the next recv() should write and how much room there is (never zero).
  std::uint8_t* get_buffer(std::size_t* room);
  // Report that `n` bytes were written at the place get_buffer() returned.
  void buffer_updated(std::size_t n);
  // Copy bytes in (tests, and any caller without a socket). Ignored once broken.
  void feed(const void* data, std::size_t n);

  // The next whole reply into `out`, NeedData, or Error (see fault()).
  ReadStatus read(Reply& out);
  ProtocolFault fault() const { return fault_; }

  // True when no reply is under way and no byte is waiting: anything that arrives now
  // was not asked for.
  bool idle() const { return mode_ == Mode::Parse && stack_.empty() && rpos_ == wpos_; }
  // Bytes received but not consumed yet, and the receive buffer's size (tests).
  std::size_t buffered() const { return wpos_ - rpos_; }
  std::size_t capacity() const { return buf_.size(); }

 private:
  enum class Mode : std::uint8_t { Parse, Text, Into, Drain, Broken };
  enum class Step : std::uint8_t { Done, Opened, NeedData, Error };
  struct Frame {
    Reply* node;        // the array being filled (null: items are only counted)
    std::int64_t left;  // items still to come
  };

  Step fail(ProtocolFault fault);
  void consume(std::size_t n);
  void maybe_shrink();
  Step find_line(std::string_view* line, std::size_t* next);
  Step parse_length(std::string_view line, bool bulk, std::int64_t* n);
  Reply* new_node(Reply& out, bool whole);
  Step parse_element(Reply& out);
  Step continue_text();
  bool close_element();
  ReadStatus start_target(Reply& out);
  ReadStatus finish_target(Reply& out);
  ReadStatus deliver(Reply& out);

  ReaderLimits limits_;
  std::vector<std::uint8_t> buf_;
  std::size_t rpos_ = 0;  // first unconsumed byte
  std::size_t wpos_ = 0;  // end of received bytes
  std::size_t scan_ = 0;  // bytes after rpos_ already searched for the line's CRLF
  Mode mode_ = Mode::Parse;
  ProtocolFault fault_ = ProtocolFault::None;
  bool keep_items_ = true;

  Reply root_;                // a top-level reply that takes more than one read()
  bool in_root_ = false;      // the reply under way is in root_
  std::vector<Frame> stack_;  // open arrays, outermost first
  Reply* text_node_ = nullptr;  // Text: the bulk being appended to (null: dropped)

  std::uint8_t* target_ = nullptr;  // set_target()'s buffer (valid while has_target_)
  std::size_t target_size_ = 0;
  bool has_target_ = false;
  std::size_t header_room_ = 0;  // set_target()'s header_room (while has_target_)
  std::uint8_t* into_ = nullptr;  // unfilled part of the target (Into)
  std::int64_t remaining_ = 0;    // payload bytes still to come (Text / Into / Drain)
  std::int64_t total_ = 0;        // full payload length (Into / Drain)
};

}  // namespace respkv
