// eventfd (Linux) or pipe wake-ups; see notifier.hpp.
#include "notifier.hpp"

#include <unistd.h>
#ifdef __linux__
#include <sys/eventfd.h>
#else
#include <fcntl.h>
#endif

#include <cerrno>
#include <cstdint>
#include <system_error>

namespace respkv {

Notifier::Notifier() {
#ifdef __linux__
  int fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fd < 0) throw std::system_error(errno, std::generic_category(), "eventfd");
  read_ = UniqueFd(fd);
  write_fd_ = fd;
#else
  int p[2];
  if (::pipe(p) < 0) throw std::system_error(errno, std::generic_category(), "pipe");
  read_ = UniqueFd(p[0]);
  pipe_write_ = UniqueFd(p[1]);
  for (int fd : p) {
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
    ::fcntl(fd, F_SETFD, FD_CLOEXEC);
  }
  write_fd_ = p[1];
#endif
}

void Notifier::signal() const {
#ifdef __linux__
  std::uint64_t one = 1;
  while (::write(write_fd_, &one, sizeof one) < 0 && errno == EINTR) {
  }
#else
  char one = 1;
  while (::write(write_fd_, &one, 1) < 0 && errno == EINTR) {
  }
#endif
}

void Notifier::reset() const {
#ifdef __linux__
  std::uint64_t count = 0;
  while (::read(read_.get(), &count, sizeof count) < 0 && errno == EINTR) {
  }
#else
  char sink[64];
  for (;;) {
    ssize_t n = ::read(read_.get(), sink, sizeof sink);
    if (n > 0) continue;
    if (n < 0 && errno == EINTR) continue;
    break;
  }
#endif
}

void Notifier::close_fds() {
  write_fd_ = -1;
  pipe_write_.reset();
  read_.reset();
}

}  // namespace respkv
