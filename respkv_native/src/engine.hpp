// The native engine: worker threads, tiling, bounded pipelining, completion queue.
//
// The C++ twin of respkv/_pyengine and the behaviour spec in respkv/_contract.py.
//
// Submission. A Batch is built by the binding while it holds the GIL (keys copied into
// one string, buffer pointers taken from memoryviews the Python wrapper keeps alive until
// the completion is drained); `Engine::submit` then runs without the GIL. Under one lock
// it gives the batch the next id (1, 2, ...), cuts it with `tile()` (weights: value sizes
// for SET/GET), and hands tile i to worker (rr + i) % num_workers, rr advancing by one per
// batch, exactly like the pure engine.
//
// Workers. Each worker thread owns at most one Connection and pipelines the keys of its
// queued tiles in FIFO order. A request may be sent when nothing is in flight, or when
// all of: fewer than window_small requests in flight; payload bytes in flight plus this
// one's at most window_bytes; and, for a value of at least LARGE_VALUE_BYTES, fewer than
// window_values large values in flight. The worker waits in poll() on its socket and its
// wake-up eventfd with a timeout set by the oldest request's deadline (op_timeout from the
// moment its first byte was written). Worker threads never touch Python objects.
//
// Completion. Each key is finished exactly once by the worker that owns its tile; the
// last key of a tile decrements the batch's `tiles_left` with acq_rel ordering, and the
// worker that brings it to zero (and so has seen every other worker's writes) queues the
// batch. Queuing writes the completion eventfd once per drain (coalesced); `drain()` reads
// it back before it takes the queue, under the same lock.
//
// Close. `close()` is idempotent: no new batches; keys not sent yet finish CANCELLED;
// keys in flight finish normally, bounded by their deadline; the workers are joined.
// Completions produced by close can still be drained afterwards.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "connection.hpp"

namespace respkv {

// Values of at least this many bytes count against window_values (a "large" value).
inline constexpr std::size_t LARGE_VALUE_BYTES = 256 * 1024;

// Values are the contract (respkv._contract.Op / KeyStatus).
enum class Op : std::uint8_t { Set = 0, Get = 1, Exists = 2, Delete = 3 };
enum class Status : std::uint8_t {
  Ok = 0,
  Miss = 1,
  SizeMismatch = 2,
  ServerError = 3,
  IoError = 4,
  Timeout = 5,
  Cancelled = 6,
  ProtocolError = 7,
};

// One submitted batch. Inputs are immutable once submitted; each status/error slot is
// written by the one worker owning that key's tile.
struct Batch {
  Batch(Op op, std::size_t n);

  std::uint64_t id = 0;
  Op op;
  std::size_t size;                      // number of keys
  std::string key_bytes;                 // all keys, back to back
  std::vector<std::size_t> key_offsets;  // size + 1 offsets into key_bytes
  std::vector<std::uint8_t*> data;       // SET/GET: the caller's buffers
  std::vector<std::size_t> lengths;      // SET/GET: their sizes in bytes
  std::vector<std::uint8_t> statuses;    // Status per key
  std::vector<std::string> errors;       // message per key; empty means None
  std::atomic<std::size_t> tiles_left{0};

  std::string_view key(std::size_t i) const {
    return std::string_view(key_bytes).substr(key_offsets[i], key_offsets[i + 1] - key_offsets[i]);
  }
  // Payload bytes of key i for the pipelining windows (0 for EXISTS/DELETE).
  std::size_t payload(std::size_t i) const { return lengths.empty() ? 0 : lengths[i]; }
};

struct EngineOptions {
  ConnectSettings connect;
  std::size_t num_workers = 8;
  double op_timeout = 30.0;
  std::string op_timeout_text;  // how Python prints op_timeout; empty: repr of the double
  std::size_t window_values = 2;
  std::size_t window_bytes = 8 * 1024 * 1024;
  std::size_t window_small = 256;
  double reconnect_backoff_min = 0.01;
  double reconnect_backoff_max = 1.0;
};

// The fixed texts of per-key errors (shared with the pure engine).
inline constexpr const char* CANCELLED_TEXT = "connector closed before the key was sent";
inline constexpr const char* UNEXPECTED_TEXT = "unexpected reply";
inline constexpr std::size_t UNEXPECTED_REPR_CHARS = 80;  // {reply!r:.80}

// A readable-when-signalled descriptor: eventfd on Linux, a pipe elsewhere.
class Notifier {
 public:
  Notifier();
  int fd() const { return read_.get(); }
  void signal() const;  // make fd() readable
  void reset() const;   // read everything back

 private:
  UniqueFd read_;
  UniqueFd pipe_write_;  // the pipe's write end; unused with an eventfd
  int write_fd_ = -1;    // read_ (eventfd) or pipe_write_ (pipe)
};

class Worker;

class Engine {
 public:
  explicit Engine(EngineOptions options);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  int event_fd() const { return completions_fd_.fd(); }
  // Queue the batch; returns its id, or 0 when the engine is closed. Throws
  // std::invalid_argument for an empty batch.
  std::uint64_t submit(std::shared_ptr<Batch> batch);
  // Every batch completed since the last call.
  std::vector<std::shared_ptr<Batch>> drain();
  void close();

  const EngineOptions& options() const { return options_; }
  bool closing() const { return closing_.load(std::memory_order_acquire); }
  // Called by a worker when the last tile of `batch` is done.
  void complete(std::shared_ptr<Batch> batch);

 private:
  EngineOptions options_;
  Notifier completions_fd_;
  std::vector<std::unique_ptr<Worker>> workers_;

  std::mutex submit_mu_;  // ids, round robin, closed_; held while tiles are queued
  std::uint64_t next_id_ = 1;
  std::size_t rr_ = 0;
  bool closed_ = false;
  std::atomic<bool> closing_{false};
  std::mutex close_mu_;  // serialises joins

  std::mutex done_mu_;  // the completion queue and its eventfd
  std::vector<std::shared_ptr<Batch>> done_;
  bool signalled_ = false;
};

}  // namespace respkv
