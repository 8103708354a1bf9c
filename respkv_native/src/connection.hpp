// One non-blocking connection to the server: connect, handshake, send queue, receive.
// The C++ twin of respkv/_pyengine/connection.py. A Connection is move-only and owns
// its socket, so a dropped connection is simply destroyed (and with it every pointer
// into a caller's buffer that its send queue or reader held).
//
// Connect. `Connection::open` resolves the address, connects without blocking and waits
// with poll() until `connect_timeout` (measured from the start of the call), sets
// TCP_NODELAY, runs the TLS handshake when the engine has a TlsContext, then sends the
// handshake commands in one write and reads one reply per command before the same
// deadline. The commands are built in Python (respkv._admin.handshake_commands): an
// error reply to a `required` one (AUTH, SELECT) fails the connect with the server's
// text; an error reply to the others (CLIENT SETNAME) is ignored.
//
// The owner's wake-up descriptor is polled too (`Interrupt`): when it is readable,
// `interrupted()` says whether to give up (close, a cancel); and the wait also ends at
// `stop_at`, the owner's next batch deadline. An interrupted connect is not a failure.
//
// Sending. The send queue is a list of segments: small ones (command headers, small
// values, CRLFs) are copied into one growing byte string, large values are referenced
// in the caller's buffer and never copied. `flush()` hands up to `max_iov` segments to
// one sendmsg() and keeps going until the kernel would block, so partial writes resume
// exactly where they stopped. `sent()` counts bytes written since the connection opened,
// which is how the engine learns whether a request started to go out.
//
// Receiving. `receive()` does one recv() into the place the Reader asks for: its own
// buffer, or the caller's GET buffer while a payload of the right size streams in.
//
// Failures are data: `error()` is a Failure (CONNECTION_LOST with an errno, TLS_FAILED
// with OpenSSL's reason), never a sentence.
//
// TLS (see tls.hpp): sends and receives go through SSL_write/SSL_read on the same
// segments and reader buffers, so payloads are still never copied in user space.
#pragma once

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "batch.hpp"
#include "fd.hpp"
#include "resp2.hpp"
#include "tls.hpp"

namespace respkv {

// A handshake command and whether an error reply to it fails the connect.
struct HandshakeCommand {
  std::vector<std::string> args;
  bool required = true;
};

// Where and how to connect; built from ConnectionOptions by respkv/_native.py.
struct ConnectSettings {
  std::string host;
  int port = 0;
  std::optional<std::string> unix_path;
  double connect_timeout = 0.0;
  std::vector<HandshakeCommand> handshake;
};

// Per-connection limits and sizes, from Python (see engine.hpp).
struct ConnectionConfig {
  ReaderLimits reader;
  std::size_t max_iov = 0;  // segments per sendmsg()
};

// The outcome of one recv() or flush().
enum class Io : std::uint8_t { Ok, WouldBlock, Closed, Error };

// What a connect in progress also watches (see above).
struct Interrupt {
  int wake_fd = -1;
  std::function<bool()> interrupted;  // wake_fd is readable: reset it; true means stop
  Clock::time_point stop_at = Clock::time_point::max();
};

struct ConnectResult;

class Connection {
 public:
  static ConnectResult open(const ConnectSettings& settings, const ConnectionConfig& config,
                            const TlsContext* tls, const Interrupt& interrupt);

  Connection(Connection&&) = default;
  Connection& operator=(Connection&&) = default;
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;
  ~Connection() = default;

  int fd() const { return fd_.get(); }
  Reader& reader() { return reader_; }
  // Why the last flush()/receive() returned Error (or Closed: CONNECTION_LOST, errno 0).
  const Failure& error() const { return error_; }

  // Queue bytes to send: copied (small), or referenced until sent (caller's buffer).
  void queue_copy(const void* data, std::size_t n);
  std::string& copy_buffer_for_append();  // append to it, then call commit_copy()
  void commit_copy();
  void queue_ref(const std::uint8_t* data, std::size_t n);

  bool has_unsent() const { return !segments_.empty(); }
  std::uint64_t queued() const { return queued_; }  // stream offset after all queued bytes
  std::uint64_t sent() const { return sent_; }      // bytes written so far

  // Write until the queue is empty (Ok) or the kernel would block (WouldBlock).
  Io flush();
  // One recv() into the reader: Ok, WouldBlock, Closed (orderly EOF) or Error.
  Io receive();
  // Poll for writability: bytes to send, or TLS needs to write before it can go on.
  bool wants_write() const { return (has_unsent() && !write_needs_read_) || want_write_; }
  // Decrypted bytes are waiting inside the TLS session: read before polling.
  bool pending() const;

 private:
  Connection(UniqueFd fd, const ConnectionConfig& config);
  void compact();                    // drop sent bytes from the front of send_buf_
  void consume_sent(std::size_t n);  // drop n written bytes from the front of the queue
  Io flush_tls();
  Io fail_errno(int err);
  Io fail_tls(const TlsError& e);

  struct Segment {
    const std::uint8_t* ref;  // caller's bytes, or null for send_buf_[offset, offset+len)
    std::size_t offset;
    std::size_t len;
  };

  UniqueFd fd_;
  SslPtr ssl_;  // null for plain TCP / Unix sockets; freed before fd_ is closed
  bool want_write_ = false;        // TLS: a read cannot go on until the socket is writable
  bool write_needs_read_ = false;  // TLS: a write cannot go on until the socket is readable
  bool tls_fresh_ = false;         // TLS handshake done, no reply yet (see fail_errno)
  Reader reader_;
  std::vector<iovec> iov_;  // max_iov entries, reused by every flush()
  std::string send_buf_;
  std::size_t copy_mark_ = 0;  // send_buf_ size when copy_buffer_for_append() was called
  std::deque<Segment> segments_;
  std::uint64_t queued_ = 0;
  std::uint64_t sent_ = 0;
  Failure error_;

  friend struct Handshake;
};

struct ConnectResult {
  bool interrupted = false;  // the owner asked to stop (not a failure)
  Failure failure;           // kind None: connected
  std::optional<Connection> connection;
};

}  // namespace respkv
