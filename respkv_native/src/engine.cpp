// The engine and its workers; see engine.hpp for the plan.
#include "engine.hpp"

#include <poll.h>
#include <pthread.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/eventfd.h>
#else
#include <fcntl.h>
#endif

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <list>
#include <optional>
#include <stdexcept>
#include <system_error>
#include <thread>
#include <utility>

#include "tiling.hpp"

namespace respkv {

namespace {

// Bounds one burst of reads, so a fast sender cannot keep a worker from sending.
constexpr int MAX_RECV_ROUNDS = 64;
// Text for an orderly close by the server (the pure engine's wording).
constexpr const char* CLOSED_BY_SERVER = "server closed the connection";

Clock::duration seconds(double s) {
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
}

// Milliseconds for poll() until `t`, rounded up so the deadline has passed on return.
int poll_ms_until(Clock::time_point t) {
  auto left = t - Clock::now();
  if (left <= Clock::duration::zero()) return 0;
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(left).count() + 1;
  return static_cast<int>(std::min<long long>(ms, 1 << 30));
}

// Python's repr() of a float (shortest round-trip digits, fixed notation for exponents
// in [-4, 16)), so "op_timeout (30.0 s)" reads the same from both backends.
std::string python_float(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::scientific);
  std::string s(buf, res.ptr);
  bool negative = s.front() == '-';
  if (negative) s.erase(0, 1);
  auto epos = s.find('e');
  int exp = std::atoi(s.c_str() + epos + 1);
  std::string digits;
  for (std::size_t i = 0; i < epos; ++i) {
    if (s[i] != '.') digits.push_back(s[i]);
  }
  std::string out;
  if (exp >= -4 && exp < 16) {
    int point = exp + 1;  // digits before the decimal point
    auto ndigits = static_cast<int>(digits.size());
    if (point <= 0) {
      out = "0." + std::string(static_cast<std::size_t>(-point), '0') + digits;
    } else if (point >= ndigits) {
      out = digits + std::string(static_cast<std::size_t>(point - ndigits), '0') + ".0";
    } else {
      out = digits.substr(0, static_cast<std::size_t>(point)) + "." +
            digits.substr(static_cast<std::size_t>(point));
    }
  } else {
    out = digits.substr(0, 1);
    if (digits.size() > 1) out += "." + digits.substr(1);
    char e[16];
    std::snprintf(e, sizeof e, "e%c%02d", exp < 0 ? '-' : '+', std::abs(exp));
    out += e;
  }
  return negative ? "-" + out : out;
}

}  // namespace

// ------------------------------------------------------------------------------ Batch

Batch::Batch(Op op_, std::size_t n) : op(op_), size(n), statuses(n, 0), errors(n) {
  key_offsets.reserve(n + 1);
}

// ---------------------------------------------------------------------------- Notifier

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

// ------------------------------------------------------------------------------ Worker

class Worker {
 public:
  Worker(Engine& engine, std::size_t index)
      : engine_(engine),
        opt_(engine.options()),
        address_(opt_.connect.address()),
        timeout_text_("no reply within op_timeout (" +
                      (opt_.op_timeout_text.empty() ? python_float(opt_.op_timeout)
                                                    : opt_.op_timeout_text) +
                      " s)"),
        op_timeout_(seconds(opt_.op_timeout)),
        backoff_(opt_.reconnect_backoff_min),
        index_(index) {}
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;
  ~Worker() { join(); }

  void start() {
    thread_ = std::thread([this] {
#ifdef __linux__
      // Named like the pure engine's threads (Linux allows 15 characters).
      const std::string name = "respkv-w" + std::to_string(index_);
      pthread_setname_np(pthread_self(), name.c_str());
#endif
      run();
    });
  }
  void join() {
    if (thread_.joinable()) thread_.join();
  }
  // Queue a tile (from submit, any thread) and wake the worker once per pull.
  void push(std::shared_ptr<Batch> batch, std::size_t begin, std::size_t end) {
    std::lock_guard<std::mutex> lock(mu_);
    inbox_.push_back(TileWork{std::move(batch), begin, end});
    if (!wake_pending_) {
      wake_pending_ = true;
      wake_.signal();
    }
  }
  // Wake the worker unconditionally (close).
  void wake() { wake_.signal(); }

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
    Clock::time_point deadline;  // op_timeout after the request was queued for writing
  };

  void run();
  void pull_inbox();
  void idle_wait();
  void wait_until(Clock::time_point t);
  void wait_io();
  void connect();
  void fill();
  void commit(TileState& t, std::size_t i);
  bool flush();
  bool receive();
  bool process_replies();
  void on_reply(const InFlight& f, const Reply& r);
  void lost(const std::string& reason);
  void drop(Status status, const std::string& message);
  void fail_unsent(Status status, const std::string& message);
  void finish(TileState& t, std::size_t i, Status status, const std::string& message);
  void schedule_backoff();

  Engine& engine_;
  const EngineOptions& opt_;
  const std::string address_;
  const std::string timeout_text_;
  const Clock::duration op_timeout_;
  double backoff_;
  Clock::time_point retry_at_{};
  const std::size_t index_;

  Notifier wake_;
  std::mutex mu_;  // inbox_ and wake_pending_
  std::deque<TileWork> inbox_;
  bool wake_pending_ = false;
  std::thread thread_;

  // Owned by the worker thread alone.
  std::list<TileState> tiles_;
  std::deque<TileState*> unsent_;  // tiles with keys not sent yet, FIFO
  std::deque<InFlight> inflight_;
  std::size_t inflight_bytes_ = 0;
  std::size_t inflight_large_ = 0;
  std::optional<Connection> conn_;
  Reply reply_;
};

void Worker::run() {
  for (;;) {
    pull_inbox();
    const bool closing = engine_.closing();
    if (closing) {
      // Every submit that got in before close is in the inbox by now.
      pull_inbox();
      fail_unsent(Status::Cancelled, CANCELLED_TEXT);
    }
    if (unsent_.empty() && inflight_.empty()) {
      if (closing) break;
      idle_wait();
      continue;
    }
    if (!conn_) {
      if (Clock::now() < retry_at_) {
        wait_until(retry_at_);
      } else {
        connect();
      }
      continue;
    }
    fill();
    if (!flush()) continue;
    wait_io();
  }
  conn_.reset();
}

void Worker::pull_inbox() {
  std::deque<TileWork> got;
  {
    std::lock_guard<std::mutex> lock(mu_);
    got.swap(inbox_);
    wake_pending_ = false;
    wake_.reset();
  }
  for (TileWork& w : got) {
    tiles_.push_back(TileState{std::move(w.batch), w.begin, w.end, w.end - w.begin, {}});
    auto it = std::prev(tiles_.end());
    it->self = it;
    unsent_.push_back(&*it);
  }
}

void Worker::idle_wait() {
  pollfd fds[2] = {{wake_.fd(), POLLIN, 0}, {conn_ ? conn_->fd() : -1, POLLIN, 0}};
  int rc = ::poll(fds, conn_ ? 2 : 1, -1);
  if (rc <= 0 || !conn_ || fds[1].revents == 0) return;
  // An idle connection became readable: the server closed it (or sent something no
  // request asked for, which would desynchronise the next reply). Drop it quietly;
  // the next batch connects again. (A TLS session ticket reads as WouldBlock: kept.)
  std::string reason;
  if (conn_->receive(&reason) != Io::WouldBlock) conn_.reset();
}

void Worker::wait_until(Clock::time_point t) {
  pollfd fd = {wake_.fd(), POLLIN, 0};
  ::poll(&fd, 1, poll_ms_until(t));
}

void Worker::wait_io() {
  short events = POLLIN;
  if (conn_->wants_write()) events |= POLLOUT;
  pollfd fds[2] = {{conn_->fd(), events, 0}, {wake_.fd(), POLLIN, 0}};
  int timeout = -1;
  if (!inflight_.empty()) timeout = poll_ms_until(inflight_.front().deadline);
  // Bytes already decrypted inside a TLS session do not make the socket readable.
  const bool pending = conn_->pending();
  if (pending) timeout = 0;
  int rc = ::poll(fds, 2, timeout);
  if (pending || (rc > 0 && (fds[0].revents & (POLLIN | POLLERR | POLLHUP)))) {
    if (!receive()) return;
  }
  if (!inflight_.empty() && Clock::now() >= inflight_.front().deadline) {
    drop(Status::Timeout, timeout_text_);
  }
}

void Worker::connect() {
  ConnectResult r = Connection::open(opt_.connect, wake_.fd(), [this] { return engine_.closing(); });
  switch (r.failure) {
    case ConnectResult::Failure::None:
      conn_.emplace(std::move(*r.connection));
      backoff_ = opt_.reconnect_backoff_min;
      return;
    case ConnectResult::Failure::Aborted:
      return;  // closing: the next round cancels the queued keys
    case ConnectResult::Failure::Io:
      schedule_backoff();
      fail_unsent(Status::IoError, "connect to " + address_ + " failed: " + r.reason);
      return;
    case ConnectResult::Failure::Auth:
      schedule_backoff();
      fail_unsent(Status::ServerError, "AUTH failed: " + r.reason);
      return;
    case ConnectResult::Failure::Select:
      schedule_backoff();
      fail_unsent(Status::ServerError, "SELECT failed: " + r.reason);
      return;
  }
}

void Worker::schedule_backoff() {
  retry_at_ = Clock::now() + seconds(backoff_);
  backoff_ = std::min(backoff_ * 2, opt_.reconnect_backoff_max);
}

void Worker::fill() {
  while (!unsent_.empty()) {
    TileState& t = *unsent_.front();
    const std::size_t i = t.next;
    const std::size_t bytes = t.batch->payload(i);
    const bool large = bytes >= LARGE_VALUE_BYTES;
    if (!inflight_.empty()) {
      if (inflight_.size() >= opt_.window_small) break;
      if (inflight_bytes_ + bytes > opt_.window_bytes) break;
      if (large && inflight_large_ >= opt_.window_values) break;
    }
    commit(t, i);
    if (++t.next == t.end) unsent_.pop_front();
  }
}

void Worker::commit(TileState& t, std::size_t i) {
  const Batch& b = *t.batch;
  Connection& c = *conn_;
  std::string& out = c.copy_buffer_for_append();
  switch (b.op) {
    case Op::Set: {
      const std::size_t len = b.lengths[i];
      append_command_header(out, "SET", b.key(i), &len);
      if (len < REFERENCE_THRESHOLD) {
        if (len) out.append(reinterpret_cast<const char*>(b.data[i]), len);
        out.append("\r\n");
        c.commit_copy();
      } else {
        c.commit_copy();
        c.queue_ref(b.data[i], len);
        c.queue_copy("\r\n", 2);
      }
      break;
    }
    case Op::Get:
      append_command_header(out, "GET", b.key(i), nullptr);
      c.commit_copy();
      break;
    case Op::Exists:
      append_command_header(out, "EXISTS", b.key(i), nullptr);
      c.commit_copy();
      break;
    case Op::Delete:
      append_command_header(out, "UNLINK", b.key(i), nullptr);
      c.commit_copy();
      break;
  }
  const std::size_t bytes = b.payload(i);
  const bool large = bytes >= LARGE_VALUE_BYTES;
  inflight_.push_back(InFlight{&t, i, bytes, large, Clock::now() + op_timeout_});
  inflight_bytes_ += bytes;
  if (large) ++inflight_large_;
}

bool Worker::flush() {
  if (!conn_->has_unsent()) return true;
  std::string reason;
  if (conn_->flush(&reason) == Io::Error) {
    lost(reason);
    return false;
  }
  return true;
}

bool Worker::receive() {
  for (int round = 0; round < MAX_RECV_ROUNDS; ++round) {
    std::string reason;
    switch (conn_->receive(&reason)) {
      case Io::WouldBlock:
        return true;
      case Io::Closed:
        lost(CLOSED_BY_SERVER);
        return false;
      case Io::Error:
        lost(reason);
        return false;
      case Io::Ok:
        break;
    }
    const std::size_t before = inflight_.size();
    if (!process_replies()) return false;
    // A finished request opened the window: go and send before reading on.
    if (inflight_.size() != before && !unsent_.empty()) return true;
  }
  return true;
}

bool Worker::process_replies() {
  Reader& reader = conn_->reader();
  while (!inflight_.empty()) {
    const InFlight& f = inflight_.front();
    const Batch& b = *f.tile->batch;
    if (b.op == Op::Get) {
      reader.set_target(b.data[f.index], b.lengths[f.index]);
    } else {
      reader.clear_target();
    }
    bool got = false;
    try {
      got = reader.gets(reply_);
    } catch (const ProtocolError& e) {
      drop(Status::ProtocolError, e.what());
      return false;
    }
    if (!got) return true;
    const InFlight done = f;
    inflight_.pop_front();
    inflight_bytes_ -= done.bytes;
    if (done.large) --inflight_large_;
    on_reply(done, reply_);
  }
  if (reader.buffered() > 0) {
    // Bytes no request asked for: the stream can no longer be trusted.
    conn_.reset();
    return false;
  }
  return true;
}

void Worker::on_reply(const InFlight& f, const Reply& r) {
  using Kind = Reply::Kind;
  TileState& t = *f.tile;
  const Batch& b = *t.batch;
  if (r.kind == Kind::Error) {
    finish(t, f.index, Status::ServerError, r.text);
    return;
  }
  switch (b.op) {
    case Op::Set:
      if ((r.kind == Kind::Simple || r.kind == Kind::Bulk) && r.text == "OK") {
        return finish(t, f.index, Status::Ok, {});
      }
      break;
    case Op::Get:
      if (r.kind == Kind::Filled) return finish(t, f.index, Status::Ok, {});
      if (r.kind == Kind::Nil) return finish(t, f.index, Status::Miss, {});
      if (r.kind == Kind::SizeMismatch) {
        return finish(t, f.index, Status::SizeMismatch,
                      "value is " + std::to_string(r.integer) + " bytes, buffer is " +
                          std::to_string(b.lengths[f.index]) + " bytes");
      }
      break;
    case Op::Exists:
    case Op::Delete:
      if (r.kind == Kind::Integer && r.integer == 1) return finish(t, f.index, Status::Ok, {});
      if (r.kind == Kind::Integer && r.integer == 0) return finish(t, f.index, Status::Miss, {});
      break;
  }
  // f"unexpected reply: {reply!r:.80}", as the pure engine words it.
  finish(t, f.index, Status::ServerError,
         std::string(UNEXPECTED_TEXT) + ": " + reply_repr(r).substr(0, UNEXPECTED_REPR_CHARS));
}

void Worker::lost(const std::string& reason) {
  if (inflight_.empty()) {
    conn_.reset();
    return;
  }
  drop(Status::IoError, "connection to " + address_ + " lost: " + reason);
}

void Worker::drop(Status status, const std::string& message) {
  std::deque<InFlight> failed;
  failed.swap(inflight_);
  inflight_bytes_ = 0;
  inflight_large_ = 0;
  conn_.reset();
  schedule_backoff();
  for (const InFlight& f : failed) finish(*f.tile, f.index, status, message);
}

void Worker::fail_unsent(Status status, const std::string& message) {
  std::deque<TileState*> pending;
  pending.swap(unsent_);
  for (TileState* t : pending) {
    const std::size_t first = t->next;
    const std::size_t last = t->end;
    t->next = last;
    // The last finish() may free *t; nothing touches it afterwards.
    for (std::size_t i = first; i < last; ++i) finish(*t, i, status, message);
  }
}

void Worker::finish(TileState& t, std::size_t i, Status status, const std::string& message) {
  Batch& b = *t.batch;
  b.statuses[i] = static_cast<std::uint8_t>(status);
  if (!message.empty()) b.errors[i] = message;
  if (--t.remaining > 0) return;
  std::shared_ptr<Batch> batch = std::move(t.batch);
  tiles_.erase(t.self);
  // acq_rel: this worker's writes are released to, and every other worker's writes
  // acquired by, whichever worker brings the count to zero and publishes the batch.
  if (batch->tiles_left.fetch_sub(1, std::memory_order_acq_rel) == 1) {
    engine_.complete(std::move(batch));
  }
}

// ------------------------------------------------------------------------------ Engine

Engine::Engine(EngineOptions options) : options_(std::move(options)) {
  if (options_.num_workers < 1) throw std::invalid_argument("num_workers must be >= 1");
  workers_.reserve(options_.num_workers);
  for (std::size_t i = 0; i < options_.num_workers; ++i) {
    workers_.push_back(std::make_unique<Worker>(*this, i));
  }
  try {
    for (auto& w : workers_) w->start();
  } catch (...) {
    close();
    throw;
  }
}

Engine::~Engine() { close(); }

std::uint64_t Engine::submit(std::shared_ptr<Batch> batch) {
  if (batch->size == 0) throw std::invalid_argument("empty batch: keys must contain at least one key");
  std::vector<std::uint64_t> weights;
  if (batch->op == Op::Set || batch->op == Op::Get) {
    weights.assign(batch->lengths.begin(), batch->lengths.end());
  }
  const auto tiles = tile(batch->size, workers_.size(), weights.empty() ? nullptr : weights.data());
  std::lock_guard<std::mutex> lock(submit_mu_);
  if (closed_) return 0;
  const std::uint64_t id = next_id_++;
  batch->id = id;
  batch->tiles_left.store(tiles.size(), std::memory_order_relaxed);
  for (std::size_t i = 0; i < tiles.size(); ++i) {
    workers_[(rr_ + i) % workers_.size()]->push(batch, tiles[i].first, tiles[i].second);
  }
  rr_ = (rr_ + 1) % workers_.size();
  return id;
}

void Engine::complete(std::shared_ptr<Batch> batch) {
  std::lock_guard<std::mutex> lock(done_mu_);
  done_.push_back(std::move(batch));
  if (!signalled_) {
    signalled_ = true;
    completions_fd_.signal();
  }
}

std::vector<std::shared_ptr<Batch>> Engine::drain() {
  std::lock_guard<std::mutex> lock(done_mu_);
  if (signalled_) {
    completions_fd_.reset();
    signalled_ = false;
  }
  return std::exchange(done_, {});
}

void Engine::close() {
  {
    std::lock_guard<std::mutex> lock(submit_mu_);
    closed_ = true;
  }
  closing_.store(true, std::memory_order_release);
  for (auto& w : workers_) w->wake();
  {
    std::lock_guard<std::mutex> lock(close_mu_);
    for (auto& w : workers_) w->join();
  }
  // Readable after close (as the pure engine does), so event-loop waiters wake up.
  std::lock_guard<std::mutex> lock(done_mu_);
  if (!signalled_) {
    signalled_ = true;
    completions_fd_.signal();
  }
}

}  // namespace respkv
