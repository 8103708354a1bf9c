// One submitted batch and the records its keys end with: the C++ twin of
// respkv/_pyengine/batch.py.
//
// A Batch is built by the binding while it holds the GIL (keys copied into one string,
// buffer pointers taken from memoryviews that respkv/_native.py keeps alive), then only
// read by workers, except for the per-key slots below.
//
// What a key ends with. Each key gets an answer byte (`Answer`: OK or MISS) or, when it
// failed, a Failure record: an ErrorKind and the numbers that go with it. The values of
// ErrorKind are respkv._failure.ErrorKind's; which KeyStatus a kind gives is decided in
// Python (respkv._failure.STATUS_OF_KIND), never here. Failures are rare, so they are
// kept sparse: a list of (index, record) under a small mutex, touched only when a key
// fails; a batch with no failure allocates nothing per key.
//
// Ending early. `ending` is 0 while the batch runs; a deadline or cancel() sets it, once
// (compare-and-swap), to DEADLINE or CANCELLED, and every worker holding a tile of the
// batch then ends its keys (see worker.hpp). `workers` names those workers, so cancel()
// wakes only them.
//
// Completion. Each key is finished exactly once by the worker that owns its tile; the
// last key of a tile decrements `tiles_left` with acq_rel ordering, and the worker that
// brings it to zero (and so has seen every other worker's writes) queues the batch.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "clock.hpp"

namespace respkv {

// Values are the contract (respkv._contract.Op).
enum class Op : std::uint8_t { Set = 0, Get = 1, Exists = 2, Delete = 3 };

// A key's answer byte. A failed key's byte is Failed and its status comes from its
// Failure record's kind, in Python.
enum class Answer : std::uint8_t { Ok = 0, Miss = 1, Failed = 255 };

// Values are the contract (respkv._failure.ErrorKind).
enum class ErrorKind : std::uint8_t {
  None = 0,
  ConnectFailed = 1,
  HandshakeFailed = 2,
  TlsFailed = 3,
  ConnectionLost = 4,
  TimedOut = 5,
  Deadline = 6,
  Cancelled = 7,
  Closed = 8,
  SizeMismatch = 9,
  ServerError = 10,
  UnexpectedReply = 11,
  ProtocolError = 12,
  Aborted = 13,
  Internal = 14,
};

// Why a key failed, as data (respkv._failure.Failure without `address`, which Python
// fills in). Only the fields of the kind are set.
struct Failure {
  ErrorKind kind = ErrorKind::None;
  int err = 0;                 // errno of the failed system call, or 0
  std::uint64_t expected = 0;  // SIZE_MISMATCH: the buffer's size
  std::uint64_t actual = 0;    // SIZE_MISMATCH: the value's size
  double timeout = 0.0;        // TIMED_OUT / DEADLINE (and connect timeouts): seconds
  std::string reply;           // the server's error text; an unexpected reply's first line
  std::string detail;          // library text: a TLS reason, a parser limit, an exception
  bool in_flight = false;      // the key's request had been (partly) written
};

struct FailureRecord {
  std::size_t index;
  Failure failure;
};

struct Batch {
  Batch(Op op_, std::size_t n) : op(op_), size(n), answers(n, static_cast<std::uint8_t>(Answer::Ok)) {
    key_offsets.reserve(n + 1);
  }

  std::uint64_t id = 0;
  Op op;
  std::size_t size;                      // number of keys
  std::string key_bytes;                 // all keys, back to back
  std::vector<std::size_t> key_offsets;  // size + 1 offsets into key_bytes
  std::vector<std::uint8_t*> data;       // SET/GET: the caller's buffers
  std::vector<std::size_t> lengths;      // SET/GET: their sizes in bytes
  std::vector<std::uint8_t> answers;     // Answer per key
  std::uint64_t ttl_ms = 0;              // SET: every key's expiry (PX milliseconds), 0: none

  bool has_deadline = false;
  Clock::time_point deadline{};  // submit time + timeout
  double timeout = 0.0;          // the batch's timeout=, in seconds
  std::atomic<std::uint8_t> ending{0};  // 0, or ErrorKind Deadline / Cancelled
  std::vector<std::size_t> workers;     // the workers holding its tiles

  std::atomic<std::size_t> tiles_left{0};
  std::shared_ptr<Batch> next_done;  // the engine's completion queue (intrusive: no allocation)

  std::mutex failures_mu;  // guards failures (workers of different tiles)
  std::vector<FailureRecord> failures;

  std::string_view key(std::size_t i) const {
    return std::string_view(key_bytes).substr(key_offsets[i], key_offsets[i + 1] - key_offsets[i]);
  }
  // Payload bytes of key i for the pipelining windows (0 for EXISTS/DELETE).
  std::size_t payload(std::size_t i) const { return lengths.empty() ? 0 : lengths[i]; }

  // Start ending the batch with `kind` (Deadline or Cancelled) unless it already is;
  // the kind in force afterwards.
  ErrorKind end_with(ErrorKind kind) {
    std::uint8_t expected_kind = 0;
    ending.compare_exchange_strong(expected_kind, static_cast<std::uint8_t>(kind),
                                   std::memory_order_acq_rel);
    return static_cast<ErrorKind>(ending.load(std::memory_order_acquire));
  }
  ErrorKind ending_kind() const { return static_cast<ErrorKind>(ending.load(std::memory_order_acquire)); }

  // Key i failed. Never throws: should the record not fit in memory, the key is still
  // marked Failed and respkv/_native.py reports it as INTERNAL (record lost).
  void record_failure(std::size_t i, Failure f) noexcept {
    answers[i] = static_cast<std::uint8_t>(Answer::Failed);
    try {
      std::lock_guard<std::mutex> lock(failures_mu);
      failures.push_back(FailureRecord{i, std::move(f)});
    } catch (...) {
    }
  }
};

}  // namespace respkv
