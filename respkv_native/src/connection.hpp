// One non-blocking connection to the server: connect, handshake, send queue, receive.
//
// The C++ twin of the pure engine's connection handling. A Connection is move-only and
// owns its socket through UniqueFd, so a dropped connection is simply destroyed.
//
// Connect. `Connection::open` resolves the address, connects without blocking and waits
// with poll() until `connect_timeout` (measured from the start of the call), sets
// TCP_NODELAY, then sends the handshake in one write: AUTH [username] password when a
// password is set, SELECT db when db is not 0, CLIENT SETNAME when a client name is set.
// It reads one reply per command before the same deadline. An error reply to AUTH or
// SELECT fails the connect (reported as a server error: the server answered); an error
// reply to CLIENT SETNAME is ignored (old servers, ACLs without CLIENT).
// The owner's wake-up descriptor is polled too, so that closing the engine interrupts a
// connect in progress instead of waiting for its timeout.
//
// Sending. The send queue is a list of segments: small ones (command headers, small
// values, CRLFs) are copied into one growing byte string, large values are referenced
// in the caller's buffer and never copied. `flush()` hands up to MAX_IOV segments to one
// sendmsg() and keeps going until the kernel would block, so partial writes resume
// exactly where they stopped. `sent()` counts bytes written since the connection opened,
// which is how the engine learns when a request started to go out.
//
// Receiving. `receive()` does one recv() into the place the Reader asks for: its own
// buffer, or the caller's GET buffer while a payload of the right size streams in.
//
// TLS (see tls.hpp). With `tls` set, the handshake runs after the TCP connect, within the
// same deadline; sends and receives then go through SSL_write/SSL_read on the same
// segments and reader buffers, so payloads are still never copied in user space.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <string>

#include "resp2.hpp"
#include "tls.hpp"

namespace respkv {

using Clock = std::chrono::steady_clock;

// Values at least this large are sent from the caller's buffer; smaller ones are copied
// into the send buffer next to their header (fewer iovecs; same as resp2.py).
inline constexpr std::size_t REFERENCE_THRESHOLD = 16 * 1024;
// Segments handed to one sendmsg() (well under IOV_MAX = 1024).
inline constexpr std::size_t MAX_IOV = 64;
// Consumed bytes at the front of the send buffer before it is compacted.
inline constexpr std::size_t SEND_COMPACT_BYTES = 64 * 1024;

// "[Errno N] text", as Python's str(OSError) reads, so both backends say the same.
std::string errno_text(int err);

// An owned file descriptor, closed on destruction. Move-only.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept;
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd();

  int get() const { return fd_; }
  int release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void reset();

 private:
  int fd_ = -1;
};

// Where and how to connect; built from ConnectionOptions.
struct ConnectSettings {
  std::string host = "127.0.0.1";
  int port = 6379;
  std::optional<std::string> unix_path;
  std::string username;
  std::string password;
  std::int64_t db = 0;
  std::string client_name;
  double connect_timeout = 5.0;
  std::optional<TlsSettings> tls;  // set: TLS (resps://) after the TCP connect

  // host:port ([v6]:port) or the socket path, as ConnectionOptions.address reads.
  std::string address() const;
};

// The outcome of one recv() or flush().
enum class Io : std::uint8_t { Ok, WouldBlock, Closed, Error };

struct ConnectResult;

class Connection {
 public:
  // Connect and handshake (see above). `wake_fd` is polled while waiting; when it is
  // readable and `aborted()` says so, the attempt stops with Failure::Aborted.
  static ConnectResult open(const ConnectSettings& settings, int wake_fd,
                            const std::function<bool()>& aborted);

  Connection(Connection&&) = default;
  Connection& operator=(Connection&&) = default;
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;
  ~Connection() = default;

  int fd() const { return fd_.get(); }
  Reader& reader() { return reader_; }

  // Queue bytes to send: copied (small), or referenced until sent (caller's buffer).
  void queue_copy(const void* data, std::size_t n);
  std::string& copy_buffer_for_append();  // append to it, then call commit_copy()
  void commit_copy();
  void queue_ref(const std::uint8_t* data, std::size_t n);

  bool has_unsent() const { return !segments_.empty(); }
  std::uint64_t queued() const { return queued_; }  // stream offset after all queued bytes
  std::uint64_t sent() const { return sent_; }      // bytes written so far

  // Write until the queue is empty (Ok) or the kernel would block (WouldBlock);
  // Error sets *reason.
  Io flush(std::string* reason);
  // One recv() into the reader: Ok, WouldBlock, Closed (orderly EOF) or Error (*reason).
  Io receive(std::string* reason);
  // Poll for writability: bytes to send, or TLS needs to write before it can go on.
  bool wants_write() const { return (has_unsent() && !write_needs_read_) || want_write_; }
  // Decrypted bytes are waiting inside the TLS session: read before polling.
  bool pending() const;

 private:
  explicit Connection(UniqueFd fd) : fd_(std::move(fd)) {}
  void compact();                   // drop sent bytes from the front of send_buf_
  void consume_sent(std::size_t n);  // drop n written bytes from the front of the queue

  struct Segment {
    const std::uint8_t* ref;  // caller's bytes, or null for send_buf_[offset, offset+len)
    std::size_t offset;
    std::size_t len;
  };

  UniqueFd fd_;
  SslPtr ssl_;  // null for plain TCP / Unix sockets; freed before fd_ is closed
  bool want_write_ = false;        // TLS: a read cannot go on until the socket is writable
  bool write_needs_read_ = false;  // TLS: a write cannot go on until the socket is readable
  Reader reader_;
  std::string send_buf_;
  std::size_t copy_mark_ = 0;  // send_buf_ size when copy_buffer_for_append() was called
  std::deque<Segment> segments_;
  std::uint64_t queued_ = 0;
  std::uint64_t sent_ = 0;
};

struct ConnectResult {
  enum class Failure : std::uint8_t { None, Io, Auth, Select, Aborted };
  Failure failure = Failure::None;
  std::string reason;  // Io: what went wrong; Auth/Select: the server's error text
  std::optional<Connection> connection;
};

}  // namespace respkv
