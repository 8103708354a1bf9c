// One worker thread: one connection, bounded pipelining, deadlines, reconnects. The C++
// twin of respkv/_pyengine/worker.py (the connection itself is in connection.hpp).
//
// Keys move through three places: unsent (in tiles queued on this worker, FIFO), in
// flight (request queued for writing, reply not yet read; FIFO, matching RESP's in-order
// replies) and done. A request may be sent when nothing is in flight, or when all of:
// fewer than window_small requests in flight; payload bytes in flight plus this one's at
// most window_bytes; and, for a value of at least large_value_bytes, fewer than
// window_values large values in flight. The worker waits in poll() on its socket and its
// wake-up descriptor, with a timeout set by the nearest of: the oldest request's
// op_timeout (counted from when it was queued for writing), a batch deadline, the end of
// a reconnect backoff. Worker threads never touch Python objects.
//
// How keys end:
//   * a reply: OK/MISS as an answer byte, anything else as a Failure record;
//   * a broken connection: its in-flight keys fail (CONNECTION_LOST, TLS_FAILED,
//     PROTOCOL_ERROR; TIMED_OUT after op_timeout); unsent keys go out on a new
//     connection, made after a backoff that doubles from reconnect_backoff_min to
//     reconnect_backoff_max and resets on success; a failed connect fails every unsent
//     key (each failure consumes work, so the loop always ends);
//   * a batch deadline or cancel() (Batch::ending): the batch's unsent keys end at once,
//     without I/O; if any of its keys is in flight, the connection is dropped, which
//     ends them too (DEADLINE / CANCELLED) and every other key in flight on it (ABORTED),
//     then the connection is made again for what follows (no backoff: nothing failed).
//     Dropping is what makes the buffer promise hold: once a batch completes no request
//     of it is left on the wire, so no late reply is ever written into its buffers;
//   * close(): every key not finished ends CLOSED, the keys in flight too (the
//     connection is dropped, so a stalled server cannot hold close());
//   * an exception (std::bad_alloc, ...): every key the worker holds fails INTERNAL with
//     the exception's text, the connection is dropped, and the worker goes on.
//
// `in_flight` in a failure is exact: true when at least one byte of the key's request
// had been written (Connection::sent() past where the request started).
//
// Locking. Submitters append tiles under `mu_` and wake the worker through its
// notifier; cancel() sets `check_ending_` and wakes it; everything else is the worker
// thread's alone.
#pragma once

#include <poll.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "batch.hpp"
#include "connection.hpp"
#include "notifier.hpp"

namespace respkv {

class Engine;
struct EngineOptions;

class Worker {
 public:
  Worker(Engine& engine, std::size_t index);
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;
  ~Worker() { join(); }

  void start();
  void join() {
    if (thread_.joinable()) thread_.join();
  }
  // After join(): release the wake-up descriptor (a signal after this is a no-op).
  void close_wake() { wake_.close_fds(); }
  // Queue a tile (from submit, any thread) and wake the worker once per pull.
  void push(std::shared_ptr<Batch> batch, std::size_t begin, std::size_t end);
  // Wake the worker unconditionally (close).
  void wake() { wake_.signal(); }
  // A batch with a tile here is ending (cancel): look at it now.
  void check_ending() {
    check_ending_.store(true, std::memory_order_release);
    wake_.signal();
  }
  // In a forked child: close this worker's descriptors, touch nothing else.
  void close_fds_in_child();

  // What happened to this worker's connections so far; any thread may read it (the
  // counts are relaxed atomics, bumped once per connection event, never per key).
  struct Counters {
    std::uint64_t opened = 0;            // connections made (handshake done)
    std::uint64_t connect_failures = 0;  // attempts that failed (connect, TLS, handshake)
    std::uint64_t dropped = 0;           // connections lost or dropped (not by close())
  };
  Counters counters() const {
    return Counters{opened_.load(std::memory_order_relaxed),
                    connect_failures_.load(std::memory_order_relaxed),
                    dropped_.load(std::memory_order_relaxed)};
  }

 private:
  struct TileWork {
    std::shared_ptr<Batch> batch;
    std::size_t begin;
    std::size_t end;
  };
  struct TileState {
    std::shared_ptr<Batch> batch;
    std::size_t next;       // first key not yet sent
    std::size_t end;        // one past the tile's last key
    std::size_t remaining;  // keys not finished yet
    std::list<TileState>::iterator self;
  };
  struct InFlight {
    TileState* tile;
    std::size_t index;
    std::size_t bytes;
    bool large;
    std::uint64_t start;         // stream offset where the request begins
    Clock::time_point deadline;  // op_timeout after the request was queued for writing
  };

  void run();
  bool step();
  void pull_inbox();
  void abandon(const TileWork& w, const char* detail);
  void end_batches(Clock::time_point now);
  void idle_wait();
  void wait_until(Clock::time_point t);
  void wait_io();
  void connect();
  void fill();
  void commit(TileState& t, std::size_t i);
  bool flush();
  bool receive();
  bool process_replies();
  bool desync(const char* what);
  void on_reply(const InFlight& f, const Reply& r);
  void lost(const Failure& why);
  void drop(const Failure& why);
  void drop_for_ending();
  void fail_inflight(const Failure& why, bool ending);
  void fail_unsent(const Failure& why);
  void fail_everything(const char* detail) noexcept;
  void finish(TileState& t, std::size_t i, Answer answer) noexcept;
  void finish_failed(TileState& t, std::size_t i, Failure f) noexcept;
  void finish_unrecorded(TileState& t, std::size_t i) noexcept;
  void key_done(TileState& t) noexcept;
  bool written(const InFlight& f) const;
  Failure ending_failure(const Batch& b, bool in_flight) const;
  void set_connection(Connection&& c);
  void drop_connection();
  void schedule_backoff();
  void note_wake(int poll_rc, const pollfd& wake);
  void arm_reader(const InFlight& f);

  Engine& engine_;
  const EngineOptions& opt_;
  const Clock::duration op_timeout_;
  double backoff_;
  Clock::time_point retry_at_{};
  const std::size_t index_;

  Notifier wake_;
  std::mutex mu_;  // inbox_ and wake_pending_
  std::deque<TileWork> inbox_;
  bool wake_pending_ = false;
  std::atomic<bool> check_ending_{false};
  std::atomic<int> socket_fd_{-1};  // conn_'s descriptor, for a forked child
  std::atomic<std::uint64_t> opened_{0};  // Counters (written by the worker thread only)
  std::atomic<std::uint64_t> connect_failures_{0};
  std::atomic<std::uint64_t> dropped_{0};
  std::thread thread_;

  // Owned by the worker thread alone.
  std::list<TileState> tiles_;
  std::deque<TileState*> unsent_;  // tiles with keys not sent yet, FIFO
  std::deque<InFlight> inflight_;
  std::size_t inflight_bytes_ = 0;
  std::size_t inflight_large_ = 0;
  Clock::time_point next_deadline_ = Clock::time_point::max();  // earliest batch deadline
  std::optional<Connection> conn_;
  std::shared_ptr<TlsContext> tls_;
  Reply reply_;
  bool woken_ = true;  // the wake-up descriptor was seen readable: pull the inbox
  std::uint64_t replies_read_ = 0;  // for EngineOptions::test_throw_at_reply
};

}  // namespace respkv
