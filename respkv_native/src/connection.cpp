// Connect, handshake, send queue and receive; see connection.hpp for the plan.
#include "connection.hpp"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <memory>
#include <vector>

namespace respkv {

std::string errno_text(int err) {
  return "[Errno " + std::to_string(err) + "] " + std::strerror(err);
}

UniqueFd& UniqueFd::operator=(UniqueFd&& other) noexcept {
  if (this != &other) {
    reset();
    fd_ = other.release();
  }
  return *this;
}

UniqueFd::~UniqueFd() { reset(); }

void UniqueFd::reset() {
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
}

std::string ConnectSettings::address() const {
  if (unix_path) return *unix_path;
  std::string h = host.find(':') != std::string::npos ? "[" + host + "]" : host;
  return h + ":" + std::to_string(port);
}

namespace {

enum class Wait : std::uint8_t { Ready, Timeout, Aborted };

// The reason Python gives for a socket timeout (str(TimeoutError('timed out'))).
constexpr const char* TIMED_OUT = "timed out";
// What a connection reports when the server closes it during the handshake.
constexpr const char* CLOSED_IN_HANDSHAKE = "server closed the connection during the handshake";

// Wait until `fd` has `events`, the deadline passes, or the owner aborts. The wake fd is
// watched until it first turns out to be a plain wake-up (new work), then ignored for
// the rest of this connect: it stays readable until the worker loop reads it.
Wait wait_for(int fd, short events, Clock::time_point deadline, int* wake_fd,
              const std::function<bool()>& aborted) {
  for (;;) {
    auto left = deadline - Clock::now();
    if (left <= Clock::duration::zero()) return Wait::Timeout;
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(left).count() + 1;
    pollfd fds[2] = {{fd, events, 0}, {*wake_fd, POLLIN, 0}};
    int rc = ::poll(fds, *wake_fd >= 0 ? 2 : 1, static_cast<int>(std::min<long long>(ms, 1 << 30)));
    if (rc < 0) {
      if (errno == EINTR) continue;
      return Wait::Ready;  // let the following syscall report the error
    }
    if (*wake_fd >= 0 && (fds[1].revents & POLLIN)) {
      if (aborted()) return Wait::Aborted;
      *wake_fd = -1;
    }
    if (fds[0].revents) return Wait::Ready;
  }
}

struct Attempt {
  UniqueFd fd;
  ConnectResult::Failure failure = ConnectResult::Failure::None;
  std::string reason;
};

// Non-blocking connect of a fresh socket to one address, waiting until the deadline.
Attempt connect_one(int family, const sockaddr* addr, socklen_t addrlen, Clock::time_point deadline,
                    int* wake_fd, const std::function<bool()>& aborted) {
  Attempt a;
  UniqueFd fd(::socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) {
    a.failure = ConnectResult::Failure::Io;
    a.reason = errno_text(errno);
    return a;
  }
  int rc;
  do {
    rc = ::connect(fd.get(), addr, addrlen);
  } while (rc < 0 && errno == EINTR);
  if (rc < 0 && errno != EINPROGRESS && errno != EAGAIN) {
    a.failure = ConnectResult::Failure::Io;
    a.reason = errno_text(errno);
    return a;
  }
  if (rc < 0) {
    Wait w = wait_for(fd.get(), POLLOUT, deadline, wake_fd, aborted);
    if (w != Wait::Ready) {
      a.failure = w == Wait::Aborted ? ConnectResult::Failure::Aborted : ConnectResult::Failure::Io;
      a.reason = TIMED_OUT;
      return a;
    }
    int err = 0;
    socklen_t len = sizeof err;
    if (::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
    if (err != 0) {
      a.failure = ConnectResult::Failure::Io;
      a.reason = errno_text(err);
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

Attempt connect_socket(const ConnectSettings& s, Clock::time_point deadline, int* wake_fd,
                       const std::function<bool()>& aborted) {
  if (s.unix_path) {
    sockaddr_un sun{};
    sun.sun_family = AF_UNIX;
    if (s.unix_path->size() >= sizeof sun.sun_path) {
      Attempt a;
      a.failure = ConnectResult::Failure::Io;
      a.reason = "AF_UNIX path too long";
      return a;
    }
    std::memcpy(sun.sun_path, s.unix_path->c_str(), s.unix_path->size() + 1);
    return connect_one(AF_UNIX, reinterpret_cast<const sockaddr*>(&sun), sizeof sun, deadline,
                       wake_fd, aborted);
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  std::string port = std::to_string(s.port);
  int rc = ::getaddrinfo(s.host.c_str(), port.c_str(), &hints, &found);
  if (rc != 0) {
    Attempt a;
    a.failure = ConnectResult::Failure::Io;
    a.reason = "[Errno " + std::to_string(rc) + "] " + ::gai_strerror(rc);
    return a;
  }
  std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> guard(found, &::freeaddrinfo);
  Attempt last;
  last.failure = ConnectResult::Failure::Io;
  last.reason = "getaddrinfo returned no address";
  for (addrinfo* ai = found; ai != nullptr; ai = ai->ai_next) {
    last = connect_one(ai->ai_family, ai->ai_addr, ai->ai_addrlen, deadline, wake_fd, aborted);
    if (last.failure == ConnectResult::Failure::None ||
        last.failure == ConnectResult::Failure::Aborted) {
      break;
    }
  }
  return last;
}

}  // namespace

ConnectResult Connection::open(const ConnectSettings& s, int wake_fd,
                               const std::function<bool()>& aborted) {
  const auto deadline =
      Clock::now() + std::chrono::duration_cast<Clock::duration>(
                         std::chrono::duration<double>(s.connect_timeout));
  ConnectResult result;
  Attempt a = connect_socket(s, deadline, &wake_fd, aborted);
  if (a.failure != ConnectResult::Failure::None) {
    result.failure = a.failure;
    result.reason = std::move(a.reason);
    return result;
  }
  Connection conn(std::move(a.fd));
  if (s.tls) {
    std::string reason;
    conn.ssl_ = tls_session(conn.fd(), *s.tls, s.host, &reason);
    if (!conn.ssl_) {
      result.failure = ConnectResult::Failure::Io;
      result.reason = std::move(reason);
      return result;
    }
    for (;;) {
      TlsIo step = tls_connect(conn.ssl_.get(), &reason);
      if (step == TlsIo::Ok) break;
      if (step == TlsIo::Closed || step == TlsIo::Error) {
        result.failure = ConnectResult::Failure::Io;
        result.reason = step == TlsIo::Closed ? CLOSED_IN_HANDSHAKE : std::move(reason);
        return result;
      }
      Wait w = wait_for(conn.fd(), step == TlsIo::WantRead ? POLLIN : POLLOUT, deadline,
                        &wake_fd, aborted);
      if (w != Wait::Ready) {
        result.failure =
            w == Wait::Aborted ? ConnectResult::Failure::Aborted : ConnectResult::Failure::Io;
        result.reason = TIMED_OUT;
        return result;
      }
    }
  }

  // The handshake: every command in one write, then one reply per command.
  enum class Step : std::uint8_t { Auth, Select, SetName };
  std::vector<Step> steps;
  std::string& out = conn.copy_buffer_for_append();
  if (!s.password.empty()) {
    std::vector<std::string> args{"AUTH"};
    if (!s.username.empty()) args.push_back(s.username);
    args.push_back(s.password);
    append_command(out, args);
    steps.push_back(Step::Auth);
  }
  if (s.db != 0) {
    append_command(out, {"SELECT", std::to_string(s.db)});
    steps.push_back(Step::Select);
  }
  if (!s.client_name.empty()) {
    append_command(out, {"CLIENT", "SETNAME", s.client_name});
    steps.push_back(Step::SetName);
  }
  conn.commit_copy();

  auto io_failure = [&result](std::string reason) {
    result.failure = ConnectResult::Failure::Io;
    result.reason = std::move(reason);
    return std::move(result);
  };
  auto wait_failure = [&result](Wait w) {
    result.failure = w == Wait::Aborted ? ConnectResult::Failure::Aborted : ConnectResult::Failure::Io;
    result.reason = TIMED_OUT;
    return std::move(result);
  };
  std::string why;
  for (;;) {
    Io io = conn.flush(&why);
    if (io == Io::Ok) break;
    if (io == Io::Error) return io_failure(why);
    Wait w = wait_for(conn.fd(), conn.write_needs_read_ ? POLLIN : POLLOUT, deadline, &wake_fd,
                      aborted);
    if (w != Wait::Ready) return wait_failure(w);
  }
  std::size_t answered = 0;
  Reply reply;
  while (answered < steps.size()) {
    bool got = false;
    try {
      got = conn.reader_.gets(reply);
    } catch (const ProtocolError& e) {
      return io_failure(e.what());
    }
    if (got) {
      Step step = steps[answered++];
      if (reply.kind == Reply::Kind::Error && step != Step::SetName) {
        result.failure = step == Step::Auth ? ConnectResult::Failure::Auth
                                            : ConnectResult::Failure::Select;
        result.reason = reply.text;
        return result;
      }
      continue;
    }
    Io io = conn.receive(&why);
    if (io == Io::Closed) return io_failure(CLOSED_IN_HANDSHAKE);
    if (io == Io::Error) return io_failure(why);
    if (io == Io::WouldBlock) {
      Wait w = wait_for(conn.fd(), conn.want_write_ ? POLLOUT : POLLIN, deadline, &wake_fd,
                        aborted);
      if (w != Wait::Ready) return wait_failure(w);
    }
  }
  result.connection.emplace(std::move(conn));
  return result;
}

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
  std::size_t n = send_buf_.size() - copy_mark_;
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

Io Connection::flush(std::string* reason) {
  while (ssl_ && !segments_.empty()) {
    // TLS has no writev: one record per segment (small ones are merged when queued).
    const Segment& seg = segments_.front();
    const std::uint8_t* base =
        seg.ref ? seg.ref : reinterpret_cast<const std::uint8_t*>(send_buf_.data()) + seg.offset;
    std::size_t n = 0;
    switch (tls_write(ssl_.get(), base, seg.len, &n, reason)) {
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
        *reason = "server closed the connection";
        return Io::Error;
      case TlsIo::Error:
        return Io::Error;
    }
  }
  while (!segments_.empty()) {
    iovec iov[MAX_IOV];
    std::size_t count = 0;
    for (const Segment& seg : segments_) {
      if (count == MAX_IOV) break;
      const std::uint8_t* base =
          seg.ref ? seg.ref : reinterpret_cast<const std::uint8_t*>(send_buf_.data()) + seg.offset;
      iov[count].iov_base = const_cast<std::uint8_t*>(base);
      iov[count].iov_len = seg.len;
      ++count;
    }
    msghdr msg{};
    msg.msg_iov = iov;
    msg.msg_iovlen = count;
    ssize_t n = ::sendmsg(fd_.get(), &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        compact();
        return Io::WouldBlock;
      }
      *reason = errno_text(errno);
      return Io::Error;
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

Io Connection::receive(std::string* reason) {
  std::size_t room = 0;
  std::uint8_t* dst = reader_.get_buffer(&room);
  if (ssl_) {
    std::size_t n = 0;
    switch (tls_read(ssl_.get(), dst, room, &n, reason)) {
      case TlsIo::Ok:
        want_write_ = false;
        write_needs_read_ = false;
        reader_.buffer_updated(n);
        return Io::Ok;
      case TlsIo::WantRead:
        return Io::WouldBlock;
      case TlsIo::WantWrite:
        want_write_ = true;
        return Io::WouldBlock;
      case TlsIo::Closed:
        return Io::Closed;
      case TlsIo::Error:
        return Io::Error;
    }
  }
  for (;;) {
    ssize_t n = ::recv(fd_.get(), dst, room, MSG_DONTWAIT);
    if (n > 0) {
      reader_.buffer_updated(static_cast<std::size_t>(n));
      return Io::Ok;
    }
    if (n == 0) return Io::Closed;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return Io::WouldBlock;
    *reason = errno_text(errno);
    return Io::Error;
  }
}

}  // namespace respkv
