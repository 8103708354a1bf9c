// A readable-when-signalled descriptor: the C++ twin of respkv/_pyengine/notifier.py.
//
// An eventfd on Linux (one descriptor, a counter), a non-blocking pipe elsewhere. The
// engine's completion queue and each worker's wake-up use one. `close_fds()` exists for
// a forked child, which must release descriptors without touching anything else.
#pragma once

#include "fd.hpp"

namespace respkv {

class Notifier {
 public:
  Notifier();
  int fd() const { return read_.get(); }
  void signal() const;  // make fd() readable
  void reset() const;   // read everything back
  void close_fds();     // close the descriptors now (fork child)

 private:
  UniqueFd read_;
  UniqueFd pipe_write_;  // the pipe's write end; unused with an eventfd
  int write_fd_ = -1;    // read_ (eventfd) or pipe_write_ (pipe)
};

}  // namespace respkv
