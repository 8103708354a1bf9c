// Connect, handshake, send queue and receive; see connection.hpp for the plan.
#include "connection.hpp"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <utility>

namespace respkv {

namespace {

enum class Wait : std::uint8_t { Ready, Timeout, Interrupted };


// Wait until `fd` has `events`, the deadline passes, or the owner interrupts.
Wait wait_for(int fd, short events, Clock::time_point deadline, const Interrupt& in) {
  for (;;) {
    const auto now = Clock::now();
    if (now >= in.stop_at) return Wait::Interrupted;
    if (now >= deadline) return Wait::Timeout;
    pollfd fds[2] = {{fd, events, 0}, {in.wake_fd, POLLIN, 0}};
    const int ms = poll_ms_until(std::min(deadline, in.stop_at), now);
    const int rc = ::poll(fds, in.wake_fd >= 0 ? 2 : 1, ms);
    if (rc < 0) {
      if (errno == EINTR) continue;
      return Wait::Ready;  // let the following syscall report the error
    }
    if (in.wake_fd >= 0 && (fds[1].revents & POLLIN) && in.interrupted()) {
      return Wait::Interrupted;
    }
    if (fds[0].revents) return Wait::Ready;
  }
}

Failure connect_failure(int err, std::string detail = {}) {
  Failure f;
  f.kind = ErrorKind::ConnectFailed;
  f.err = err;
  f.detail = std::move(detail);
  return f;
}

// connect_timeout passed: errno ETIMEDOUT, as the pure engine reports it.
Failure timed_out(ErrorKind kind, std::string detail) {
  Failure f;
  f.kind = kind;
  f.err = ETIMEDOUT;
  f.detail = std::move(detail);
  return f;
}

struct Attempt {
  UniqueFd fd;
  bool interrupted = false;
  Failure failure;  // kind None: connected
};

// Non-blocking connect of a fresh socket to one address, waiting until the deadline.
Attempt connect_one(int family, const sockaddr* addr, socklen_t addrlen, Clock::time_point deadline,
                    const Interrupt& in) {
  Attempt a;
  UniqueFd fd(::socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) {
    a.failure = connect_failure(errno);
    return a;
  }
  int rc;
  do {
    rc = ::connect(fd.get(), addr, addrlen);
  } while (rc < 0 && errno == EINTR);
  if (rc < 0 && errno != EINPROGRESS && errno != EAGAIN) {
    a.failure = connect_failure(errno);
    return a;
  }
  if (rc < 0) {
    const Wait w = wait_for(fd.get(), POLLOUT, deadline, in);
    if (w == Wait::Interrupted) {
      a.interrupted = true;
      return a;
    }
    if (w == Wait::Timeout) {
      a.failure = timed_out(ErrorKind::ConnectFailed, {});
      return a;
    }
    int err = 0;
    socklen_t len = sizeof err;
    if (::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
    if (err != 0) {
      a.failure = connect_failure(err);
      return a;
    }
  }
  if (family != AF_UNIX) {
    int one = 1;
    ::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  a.fd = std::move(fd);
  return a;
}

Attempt connect_socket(const ConnectSettings& s, Clock::time_point deadline, const Interrupt& in) {
  if (s.unix_path) {
    sockaddr_un sun{};
    sun.sun_family = AF_UNIX;
    if (s.unix_path->size() >= sizeof sun.sun_path) {
      Attempt a;
      a.failure = connect_failure(ENAMETOOLONG);
      return a;
    }
    std::memcpy(sun.sun_path, s.unix_path->c_str(), s.unix_path->size() + 1);
    return connect_one(AF_UNIX, reinterpret_cast<const sockaddr*>(&sun), sizeof sun, deadline, in);
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const std::string port = std::to_string(s.port);
  const int rc = ::getaddrinfo(s.host.c_str(), port.c_str(), &hints, &found);
  if (rc != 0) {
    Attempt a;
    a.failure = connect_failure(rc == EAI_SYSTEM ? errno : 0, ::gai_strerror(rc));
    return a;
  }
  std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> guard(found, &::freeaddrinfo);
  Attempt last;
  last.failure = connect_failure(0, "getaddrinfo returned no address");
  for (addrinfo* ai = found; ai != nullptr; ai = ai->ai_next) {
    last = connect_one(ai->ai_family, ai->ai_addr, ai->ai_addrlen, deadline, in);
    if (last.failure.kind == ErrorKind::None || last.interrupted) break;
  }
  return last;
}

// A server's first bytes, when they are no TLS record (content types 20..23 start one):
// printable ASCII up to the end of the line, others as '.'. Empty when they look like
// TLS or nothing has arrived.
std::string plaintext(const std::string& first) {
  if (first.empty()) return {};
  const auto type = static_cast<unsigned char>(first[0]);
  if (type >= 20 && type <= 23) return {};
  std::string out;
  for (char ch : first) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '\r' || c == '\n') break;
    out.push_back(c >= 0x20 && c < 0x7f ? static_cast<char>(c) : '.');
  }
  return out;
}

// Up to `n` bytes waiting in the socket, left there (OpenSSL reads a record header
// first; the rest of a plaintext line is still unread).
std::string peek(int fd, std::size_t n) {
  std::string out(n, '\0');
  const ssize_t got = ::recv(fd, out.data(), n, MSG_PEEK | MSG_DONTWAIT);
  out.resize(got > 0 ? static_cast<std::size_t>(got) : 0);
  return out;
}

// Bytes of a plaintext answer quoted (enough for "-ERR unknown command").
constexpr std::size_t QUOTE_BYTES = 48;

}  // namespace

// The connect sequence after the socket is up: TLS, then the handshake commands.
struct Handshake {
  const ConnectSettings& s;
  const Interrupt& in;
  Clock::time_point deadline;
  ConnectResult result;

  // Each step returns false once it has recorded why the connect ended (the connection
  // itself is dropped by open(), after the steps: they still hold references to it).
  bool fail(Failure f) {
    result.failure = std::move(f);
    return false;
  }
  bool interrupted() {
    result.interrupted = true;
    return false;
  }

  bool tls(Connection& conn, const TlsContext& ctx) {
    TlsError e;
    conn.ssl_ = ctx.session(conn.fd(), s.host, &e);
    if (!conn.ssl_) return fail(tls_failure(e));
    TlsFirstBytes first;
    tls_watch_first_bytes(conn.ssl_.get(), &first);
    const bool ok = tls_steps(conn, first);
    tls_unwatch_first_bytes(conn.ssl_.get());
    conn.tls_fresh_ = ok;
    return ok;
  }

  // Failures are data, worded in Python (respkv/_failure.py, TLS_FAILED): `reply` quotes
  // a plaintext answer, `detail` is OpenSSL's reason, ETIMEDOUT a handshake that did not
  // finish in time, and none of these a server that closed the connection.
  bool tls_steps(Connection& conn, const TlsFirstBytes& first) {
    // What the server sent, when it is not TLS: read by OpenSSL so far, then unread.
    auto answer = [&] { return plaintext(first.bytes + peek(conn.fd(), QUOTE_BYTES)); };
    for (;;) {
      TlsError e;
      const TlsIo step = tls_connect(conn.ssl_.get(), &e);
      if (step == TlsIo::Ok) return true;
      if (step == TlsIo::Closed || step == TlsIo::Error) {
        Failure f = tls_failure(e);
        f.reply = answer();
        return fail(std::move(f));
      }
      const short events = step == TlsIo::WantRead ? POLLIN : POLLOUT;
      const Wait w = wait_for(conn.fd(), events, deadline, in);
      if (w == Wait::Interrupted) return interrupted();
      if (w == Wait::Timeout) {
        Failure f = timed_out(ErrorKind::TlsFailed, {});
        f.reply = answer();
        return fail(std::move(f));
      }
    }
  }

  static Failure tls_failure(const TlsError& e) {
    Failure f;
    f.kind = ErrorKind::TlsFailed;
    f.err = e.err;
    f.detail = e.detail;
    return f;
  }

  // connect_timeout passed in the handshake: "no reply to AUTH / CLIENT", as the pure
  // engine says it.
  bool no_reply() {
    std::string names;
    for (const HandshakeCommand& c : s.handshake) {
      if (!names.empty()) names += " / ";
      if (!c.args.empty()) names += c.args.front();
    }
    return fail(timed_out(ErrorKind::ConnectFailed, "no reply to " + names));
  }

  // Every command in one write, then one reply per command.
  bool commands(Connection& conn) {
    if (s.handshake.empty()) return true;
    std::string& out = conn.copy_buffer_for_append();
    for (const HandshakeCommand& c : s.handshake) append_command(out, c.args);
    conn.commit_copy();
    for (;;) {
      const Io io = conn.flush();
      if (io == Io::Ok) break;
      if (io == Io::Error) return fail(conn.error());
      const Wait w = wait_for(conn.fd(), conn.write_needs_read_ ? POLLIN : POLLOUT, deadline, in);
      if (w == Wait::Interrupted) return interrupted();
      if (w == Wait::Timeout) return no_reply();
    }
    std::size_t answered = 0;
    Reply reply;
    while (answered < s.handshake.size()) {
      const ReadStatus got = conn.reader_.read(reply);
      if (got == ReadStatus::Error) {
        Failure f;
        f.kind = ErrorKind::ProtocolError;
        f.detail = protocol_fault_text(conn.reader_.fault());
        return fail(std::move(f));
      }
      if (got == ReadStatus::Reply) {
        const HandshakeCommand& cmd = s.handshake[answered++];
        if (reply.kind == Reply::Kind::Error && cmd.required) {
          Failure f;
          f.kind = ErrorKind::HandshakeFailed;
          f.reply = reply.text;
          f.detail = cmd.args.empty() ? std::string() : cmd.args.front();
          return fail(std::move(f));
        }
        continue;
      }
      const Io io = conn.receive();
      if (io == Io::Closed || io == Io::Error) return fail(conn.error());  // see fail_errno
      if (io == Io::WouldBlock) {
        const Wait w = wait_for(conn.fd(), conn.want_write_ ? POLLOUT : POLLIN, deadline, in);
        if (w == Wait::Interrupted) return interrupted();
        if (w == Wait::Timeout) return no_reply();
      }
    }
    return true;
  }
};

ConnectResult Connection::open(const ConnectSettings& s, const ConnectionConfig& config,
                               const TlsContext* tls, const Interrupt& in) {
  const auto deadline = Clock::now() + seconds(s.connect_timeout);
  Handshake h{s, in, deadline, {}};
  Attempt a = connect_socket(s, deadline, in);
  if (a.interrupted) {
    h.interrupted();
  } else if (a.failure.kind != ErrorKind::None) {
    h.fail(std::move(a.failure));
  } else {
    h.result.connection.emplace(Connection(std::move(a.fd), config));
    Connection& conn = *h.result.connection;
    if ((!tls || h.tls(conn, *tls)) && h.commands(conn)) return std::move(h.result);
    h.result.connection.reset();
  }
  return std::move(h.result);
}

Connection::Connection(UniqueFd fd, const ConnectionConfig& config)
    : fd_(std::move(fd)), reader_(config.reader), iov_(std::max<std::size_t>(config.max_iov, 1)) {}

// ----------------------------------------------------------------------------- sending

void Connection::queue_copy(const void* data, std::size_t n) {
  std::string& buf = copy_buffer_for_append();
  buf.append(static_cast<const char*>(data), n);
  commit_copy();
}

std::string& Connection::copy_buffer_for_append() {
  if (segments_.empty()) send_buf_.clear();
  copy_mark_ = send_buf_.size();
  return send_buf_;
}

void Connection::commit_copy() {
  const std::size_t n = send_buf_.size() - copy_mark_;
  if (n == 0) return;
  if (!segments_.empty() && segments_.back().ref == nullptr &&
      segments_.back().offset + segments_.back().len == copy_mark_) {
    segments_.back().len += n;
  } else {
    segments_.push_back({nullptr, copy_mark_, n});
  }
  queued_ += n;
}

void Connection::queue_ref(const std::uint8_t* data, std::size_t n) {
  if (n == 0) return;
  segments_.push_back({data, 0, n});
  queued_ += n;
}

// A close or reset right after the TLS handshake, before any reply, is the handshake
// failing (TLS_FAILED): a TLS 1.3 server checks the client certificate only once the
// client's side of the handshake is over. Later it is CONNECTION_LOST.
Io Connection::fail_errno(int err) {
  error_ = Failure{};
  error_.kind = tls_fresh_ ? ErrorKind::TlsFailed : ErrorKind::ConnectionLost;
  error_.err = err;
  return Io::Error;
}

Io Connection::fail_tls(const TlsError& e) {
  if (e.detail.empty()) return fail_errno(e.err);
  error_ = Failure{};
  error_.kind = ErrorKind::TlsFailed;
  error_.err = e.err;
  error_.detail = e.detail;
  return Io::Error;
}

Io Connection::flush_tls() {
  while (!segments_.empty()) {
    // TLS has no writev: one record per segment (small ones are merged when queued).
    const Segment& seg = segments_.front();
    const std::uint8_t* base =
        seg.ref ? seg.ref : reinterpret_cast<const std::uint8_t*>(send_buf_.data()) + seg.offset;
    std::size_t n = 0;
    TlsError e;
    switch (tls_write(ssl_.get(), base, seg.len, &n, &e)) {
      case TlsIo::Ok:
        want_write_ = false;
        write_needs_read_ = false;
        sent_ += n;
        consume_sent(n);
        continue;
      case TlsIo::WantWrite:
        want_write_ = true;
        compact();
        return Io::WouldBlock;
      case TlsIo::WantRead:
        write_needs_read_ = true;
        compact();
        return Io::WouldBlock;
      case TlsIo::Closed:
        return fail_errno(0);
      case TlsIo::Error:
        return fail_tls(e);
    }
  }
  send_buf_.clear();
  return Io::Ok;
}

Io Connection::flush() {
  if (ssl_) return flush_tls();
  while (!segments_.empty()) {
    std::size_t count = 0;
    for (const Segment& seg : segments_) {
      if (count == iov_.size()) break;
      const std::uint8_t* base =
          seg.ref ? seg.ref : reinterpret_cast<const std::uint8_t*>(send_buf_.data()) + seg.offset;
      iov_[count].iov_base = const_cast<std::uint8_t*>(base);
      iov_[count].iov_len = seg.len;
      ++count;
    }
    msghdr msg{};
    msg.msg_iov = iov_.data();
    msg.msg_iovlen = count;
    const ssize_t n = ::sendmsg(fd_.get(), &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        compact();
        return Io::WouldBlock;
      }
      return fail_errno(errno);
    }
    sent_ += static_cast<std::uint64_t>(n);
    consume_sent(static_cast<std::size_t>(n));
  }
  send_buf_.clear();
  return Io::Ok;
}

void Connection::consume_sent(std::size_t n) {
  while (n > 0) {
    Segment& front = segments_.front();
    if (n >= front.len) {
      n -= front.len;
      segments_.pop_front();
    } else {
      if (front.ref) {
        front.ref += n;
      } else {
        front.offset += n;
      }
      front.len -= n;
      n = 0;
    }
  }
}

// Consumed bytes at the front of the send buffer before it is compacted (native tuning).
constexpr std::size_t SEND_COMPACT_BYTES = 64 * 1024;

void Connection::compact() {
  // Copied bytes before the first copied segment still queued have been sent.
  std::size_t low = send_buf_.size();
  for (const Segment& seg : segments_) {
    if (seg.ref == nullptr) {
      low = seg.offset;
      break;
    }
  }
  if (low < SEND_COMPACT_BYTES || low < send_buf_.size() / 2) return;
  send_buf_.erase(0, low);
  for (Segment& seg : segments_) {
    if (seg.ref == nullptr) seg.offset -= low;
  }
}

// ----------------------------------------------------------------------------- receiving

bool Connection::pending() const { return ssl_ && tls_pending(ssl_.get()); }

Io Connection::receive() {
  std::size_t room = 0;
  std::uint8_t* dst = reader_.get_buffer(&room);
  if (ssl_) {
    std::size_t n = 0;
    TlsError e;
    switch (tls_read(ssl_.get(), dst, room, &n, &e)) {
      case TlsIo::Ok:
        want_write_ = false;
        write_needs_read_ = false;
        tls_fresh_ = false;  // a reply: the server accepted the handshake
        reader_.buffer_updated(n);
        return Io::Ok;
      case TlsIo::WantRead:
        return Io::WouldBlock;
      case TlsIo::WantWrite:
        want_write_ = true;
        return Io::WouldBlock;
      case TlsIo::Closed:
        fail_errno(0);
        return Io::Closed;
      case TlsIo::Error:
        return fail_tls(e);
    }
  }
  for (;;) {
    const ssize_t n = ::recv(fd_.get(), dst, room, MSG_DONTWAIT);
    if (n > 0) {
      reader_.buffer_updated(static_cast<std::size_t>(n));
      return Io::Ok;
    }
    if (n == 0) {
      fail_errno(0);
      return Io::Closed;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return Io::WouldBlock;
    return fail_errno(errno);
  }
}

}  // namespace respkv
