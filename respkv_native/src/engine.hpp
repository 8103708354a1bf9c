// The native engine: submit, tiling hand-off, cancel, the completion queue, close. The
// C++ twin of respkv/_pyengine/engine.py and the behaviour spec in respkv/_contract.py;
// the workers are in worker.hpp, a batch's records in batch.hpp.
//
// Options. Every number and policy shared with the pure engine (defaults, windows,
// limits, the inline threshold, MAX_IOV, the backoff, the handshake commands) comes
// from Python in EngineOptions when the engine is made (respkv/_native.py); this side
// has no copy of them.
//
// Submission. `submit` runs without the GIL. Under one lock it gives the batch the next
// id (1, 2, ...), cuts it with `tile()` (weights: value sizes for SET/GET), and hands
// tile i to worker (rr + i) % num_workers, rr advancing by one per batch, exactly like
// the pure engine. A batch with a timeout gets its deadline (submit time + timeout).
// Until it completes, a batch is in `running_`, where cancel() finds it.
//
// Completion. The worker that finishes a batch's last tile queues it: the queue is an
// intrusive list (Batch::next_done), so queuing never allocates and cannot fail. The
// completion eventfd is written once per drain (coalesced); `drain()` reads it back
// before it takes the queue, under the same lock.
//
// Close. `close()` is idempotent: no new batches; every key not finished ends CLOSED
// (connections with keys in flight are dropped, so it returns promptly whatever the
// server does); the workers are joined; the event fd is left readable so waiters wake.
// Completions can still be drained.
//
// Fork. The engine remembers the pid that made it. In any other process (a fork child)
// its worker threads do not exist and its locks may have been held at the fork by a
// thread that is gone: close() and the destructor then only close the descriptors
// (the event fd, the workers' wake-ups and sockets) and deliberately leak the rest.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <vector>

#include "batch.hpp"
#include "connection.hpp"
#include "notifier.hpp"
#include "tls.hpp"

namespace respkv {

struct EngineOptions {
  ConnectSettings connect;
  std::optional<TlsSettings> tls;  // set: TLS (resps://) after the TCP connect
  ConnectionConfig connection;     // parser limits, MAX_IOV
  std::size_t num_workers = 0;
  double op_timeout = 0.0;
  std::size_t window_values = 0;
  std::size_t window_bytes = 0;
  std::size_t window_small = 0;
  std::size_t large_value_bytes = 0;   // LARGE_VALUE_BYTES: counts against window_values
  std::size_t header_recv = 0;         // HEADER_RECV: a large GET's header is received alone
  std::size_t inline_value_bytes = 0;  // values below are copied next to their header
  double reconnect_backoff_min = 0.0;
  double reconnect_backoff_max = 0.0;
  // Test hook (tests/test_native_engine.py): each worker throws std::bad_alloc when it
  // reads its n-th reply, to prove that an exception fails keys, not the process. 0: off.
  std::uint64_t test_throw_at_reply = 0;
  // Test hook: each worker lingers this many seconds before it exits, standing for a
  // call that close() cannot interrupt (a blocking getaddrinfo). 0: off.
  double test_exit_delay = 0.0;
};

class Worker;

class Engine {
 public:
  explicit Engine(EngineOptions options);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  int event_fd() const;  // -1 once closed
  // Queue the batch with an optional deadline (`timeout` seconds from now; <= 0: none);
  // returns its id, or 0 when the engine is closed. Throws std::invalid_argument for an
  // empty batch.
  std::uint64_t submit(std::shared_ptr<Batch> batch, double timeout);
  // Start ending a running batch (CANCELLED); false when it is unknown or complete.
  bool cancel(std::uint64_t batch_id);
  // Every batch completed since the last call.
  std::vector<std::shared_ptr<Batch>> drain();
  void close();

  const EngineOptions& options() const { return options_; }
  bool closing() const { return closing_.load(std::memory_order_acquire); }
  // Called by a worker when the last tile of `batch` is done. Never throws.
  void complete(std::shared_ptr<Batch> batch) noexcept;
  // Its workers' connection counters, summed; `reconnects` counts the connections a
  // worker made after its first.
  struct Counters {
    std::uint64_t opened = 0;
    std::uint64_t reconnects = 0;
    std::uint64_t connect_failures = 0;
    std::uint64_t dropped = 0;
  };
  Counters counters() const;
  // The engine's one TLS context, made on first use; null (and *error) on failure.
  std::shared_ptr<TlsContext> tls_context(TlsError* error);

 private:
  bool forked() const;
  void close_in_child();

  EngineOptions options_;
  const pid_t owner_pid_;
  Notifier completions_fd_;
  std::vector<std::unique_ptr<Worker>> workers_;

  std::mutex submit_mu_;  // ids, round robin, closed_; held while tiles are queued
  std::uint64_t next_id_ = 1;
  std::size_t rr_ = 0;
  bool closed_ = false;
  std::atomic<bool> closing_{false};
  std::mutex close_mu_;  // serialises joins
  bool child_closed_ = false;

  std::mutex running_mu_;  // running_
  std::unordered_map<std::uint64_t, std::shared_ptr<Batch>> running_;

  mutable std::mutex done_mu_;  // the completion queue and its eventfd
  std::shared_ptr<Batch> done_head_;
  Batch* done_tail_ = nullptr;
  bool signalled_ = false;

  std::mutex tls_mu_;
  std::shared_ptr<TlsContext> tls_ctx_;
};

}  // namespace respkv
