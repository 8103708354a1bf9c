// One worker thread; see worker.hpp for the plan.
#include "worker.hpp"

#include <poll.h>
#include <pthread.h>

#include <algorithm>
#include <cerrno>
#include <exception>
#include <new>
#include <utility>
#include <vector>

#include "engine.hpp"

namespace respkv {

namespace {

// Bounds one burst of reads, so a fast sender cannot keep a worker from sending.
constexpr int MAX_RECV_ROUNDS = 64;
// An unexpected reply is described by its first line, cut to this many characters
// (respkv._failure: "at most 80 characters").
constexpr std::size_t UNEXPECTED_REPLY_CHARS = 80;

}  // namespace

Worker::Worker(Engine& engine, std::size_t index)
    : engine_(engine),
      opt_(engine.options()),
      op_timeout_(seconds(opt_.op_timeout)),
      backoff_(opt_.reconnect_backoff_min),
      index_(index) {}

void Worker::start() {
  thread_ = std::thread([this] {
#ifdef __linux__
    // Named like the pure engine's threads (Linux allows 15 characters).
    const std::string name = "respkv-w" + std::to_string(index_);
    pthread_setname_np(pthread_self(), name.c_str());
#endif
    run();
  });
}

void Worker::push(std::shared_ptr<Batch> batch, std::size_t begin, std::size_t end) {
  std::lock_guard<std::mutex> lock(mu_);
  inbox_.push_back(TileWork{std::move(batch), begin, end});
  if (!wake_pending_) {
    wake_pending_ = true;
    wake_.signal();
  }
}

void Worker::close_fds_in_child() {
  // The socket number was published before it could be closed (see set_connection), so
  // it is a descriptor the child inherited, or -1.
  const int fd = socket_fd_.exchange(-1);
  if (fd >= 0) ::close(fd);
  wake_.close_fds();
}

// ------------------------------------------------------------------------- the loop

void Worker::run() {
  for (;;) {
    try {
      if (!step()) break;
    } catch (const std::exception& e) {
      fail_everything(e.what());
    } catch (...) {
      fail_everything("unknown exception");
    }
  }
  drop_connection();
  if (opt_.test_exit_delay > 0) std::this_thread::sleep_for(seconds(opt_.test_exit_delay));
}

// One round; false when the worker is done (closing, nothing left).
bool Worker::step() {
  // The inbox is pulled (a lock and an eventfd read) only when the last poll saw the
  // wake-up descriptor readable: every push, wake() and cancel() makes it so, and it
  // stays readable until pulled, so the next poll reports anything missed here.
  if (woken_) {
    woken_ = false;
    pull_inbox();
  }
  const bool closing = engine_.closing();
  if (closing) {
    // Every submit that got in before close is in the inbox by now. Everything ends
    // now, kind CLOSED, the keys in flight too (their connection is dropped): a stalled
    // server must not hold close() for op_timeout.
    pull_inbox();
    Failure closed;
    closed.kind = ErrorKind::Closed;
    if (!inflight_.empty()) fail_inflight(closed, false);
    fail_unsent(closed);
  }
  end_batches(Clock::now());
  if (unsent_.empty() && inflight_.empty()) {
    if (closing) return false;
    idle_wait();
    return true;
  }
  if (!conn_) {
    if (Clock::now() < retry_at_) {
      wait_until(retry_at_);
    } else {
      connect();
    }
    return true;
  }
  fill();
  if (flush()) wait_io();
  return true;
}

void Worker::pull_inbox() {
  std::deque<TileWork> got;
  {
    std::lock_guard<std::mutex> lock(mu_);
    got.swap(inbox_);
    wake_pending_ = false;
    wake_.reset();
  }
  while (!got.empty()) {
    TileWork& w = got.front();
    try {
      tiles_.push_back(TileState{w.batch, w.begin, w.end, w.end - w.begin, {}});
      auto it = std::prev(tiles_.end());
      it->self = it;
      try {
        unsent_.push_back(&*it);
      } catch (...) {
        tiles_.erase(it);
        throw;
      }
    } catch (const std::exception& e) {
      abandon(w, e.what());
    }
    const Batch& b = *w.batch;
    if (b.has_deadline) next_deadline_ = std::min(next_deadline_, b.deadline);
    if (b.ending_kind() != ErrorKind::None) check_ending_.store(true, std::memory_order_relaxed);
    got.pop_front();
  }
}

// A tile that could not even be registered: fail its keys here and now.
void Worker::abandon(const TileWork& w, const char* detail) {
  Batch& b = *w.batch;
  for (std::size_t i = w.begin; i < w.end; ++i) {
    Failure f;
    f.kind = ErrorKind::Internal;
    try {
      f.detail = detail;
    } catch (...) {
    }
    b.record_failure(i, std::move(f));
  }
  if (b.tiles_left.fetch_sub(1, std::memory_order_acq_rel) == 1) engine_.complete(w.batch);
}

// Batches whose deadline passed or that were cancelled: end their keys here (see the
// plan in worker.hpp). Cheap unless a deadline is due or cancel() flagged this worker.
void Worker::end_batches(Clock::time_point now) {
  const bool flagged = check_ending_.exchange(false, std::memory_order_acq_rel);
  if (!flagged && now < next_deadline_) return;
  Clock::time_point next = Clock::time_point::max();
  bool any = false;
  for (TileState& t : tiles_) {
    Batch& b = *t.batch;
    ErrorKind kind = b.ending_kind();
    if (kind == ErrorKind::None && b.has_deadline) {
      if (now >= b.deadline) {
        kind = b.end_with(ErrorKind::Deadline);
      } else {
        next = std::min(next, b.deadline);
      }
    }
    any = any || kind != ErrorKind::None;
  }
  next_deadline_ = next;
  if (!any) return;
  for (const InFlight& f : inflight_) {
    if (f.tile->batch->ending_kind() != ErrorKind::None) {
      drop_for_ending();
      break;
    }
  }
  for (auto it = tiles_.begin(); it != tiles_.end();) {
    TileState& t = *it++;  // finishing t's last key erases t, never another tile
    if (t.next == t.end || t.batch->ending_kind() == ErrorKind::None) continue;
    const Failure why = ending_failure(*t.batch, false);
    unsent_.erase(std::find(unsent_.begin(), unsent_.end(), &t));
    for (;;) {
      const std::size_t i = t.next++;
      const bool last = t.next >= t.end;
      finish_failed(t, i, why);  // the last one frees t
      if (last) break;
    }
  }
}

Failure Worker::ending_failure(const Batch& b, bool in_flight) const {
  Failure f;
  f.kind = b.ending_kind();
  if (f.kind == ErrorKind::Deadline) f.timeout = b.timeout;
  f.in_flight = in_flight;
  return f;
}

void Worker::idle_wait() {
  pollfd fds[2] = {{wake_.fd(), POLLIN, 0}, {conn_ ? conn_->fd() : -1, POLLIN, 0}};
  const int rc = ::poll(fds, conn_ ? 2 : 1, -1);
  note_wake(rc, fds[0]);
  if (rc <= 0 || !conn_ || fds[1].revents == 0) return;
  // An idle connection became readable: the server closed it, or sent something no
  // request asked for, which would desynchronise the next reply. Drop it quietly; the
  // next batch connects again. (A TLS session ticket reads as WouldBlock: kept.)
  if (conn_->receive() != Io::WouldBlock) {
    dropped_.fetch_add(1, std::memory_order_relaxed);
    drop_connection();
  }
}

void Worker::wait_until(Clock::time_point t) {
  const Clock::time_point until = std::min(t, next_deadline_);
  pollfd fd = {wake_.fd(), POLLIN, 0};
  note_wake(::poll(&fd, 1, poll_ms_until(until, Clock::now())), fd);
}

void Worker::note_wake(int poll_rc, const pollfd& wake) {
  // A failed poll (EINTR) says nothing: pull anyway.
  if (poll_rc < 0 || (poll_rc > 0 && wake.revents != 0)) woken_ = true;
}

void Worker::wait_io() {
  short events = POLLIN;
  if (conn_->wants_write()) events |= POLLOUT;
  pollfd fds[2] = {{conn_->fd(), events, 0}, {wake_.fd(), POLLIN, 0}};
  Clock::time_point until = next_deadline_;
  if (!inflight_.empty()) until = std::min(until, inflight_.front().deadline);
  // Bytes already decrypted inside a TLS session do not make the socket readable.
  const bool pending = conn_->pending();
  const int rc = ::poll(fds, 2, pending ? 0 : poll_ms_until(until, Clock::now()));
  note_wake(rc, fds[1]);
  if (pending || (rc > 0 && (fds[0].revents & (POLLIN | POLLERR | POLLHUP)))) {
    if (!receive()) return;
  }
  if (!inflight_.empty() && Clock::now() >= inflight_.front().deadline) {
    Failure f;
    f.kind = ErrorKind::TimedOut;
    f.timeout = opt_.op_timeout;
    drop(f);
  }
}

// ------------------------------------------------------------------- connecting

void Worker::connect() {
  const TlsContext* tls = nullptr;
  if (opt_.tls) {
    if (!tls_) {
      TlsError e;
      tls_ = engine_.tls_context(&e);
      if (!tls_) {
        Failure f;
        f.kind = ErrorKind::TlsFailed;
        f.err = e.err;
        f.detail = e.detail;
        connect_failures_.fetch_add(1, std::memory_order_relaxed);
        schedule_backoff();
        fail_unsent(f);
        return;
      }
    }
    tls = tls_.get();
  }
  Interrupt interrupt;
  interrupt.wake_fd = wake_.fd();
  interrupt.interrupted = [this] {
    // Reading the wake-up here is safe as long as the next round pulls the inbox.
    wake_.reset();
    woken_ = true;
    return engine_.closing() || check_ending_.load(std::memory_order_acquire);
  };
  interrupt.stop_at = next_deadline_;
  ConnectResult r = Connection::open(opt_.connect, opt_.connection, tls, interrupt);
  if (r.connection) {
    set_connection(std::move(*r.connection));
    backoff_ = opt_.reconnect_backoff_min;
    return;
  }
  if (r.interrupted) return;  // the next round ends what has to end, then connects again
  connect_failures_.fetch_add(1, std::memory_order_relaxed);
  schedule_backoff();
  fail_unsent(r.failure);
}

void Worker::schedule_backoff() {
  retry_at_ = Clock::now() + seconds(backoff_);
  backoff_ = std::min(backoff_ * 2, opt_.reconnect_backoff_max);
}

void Worker::set_connection(Connection&& c) {
  conn_.emplace(std::move(c));
  opened_.fetch_add(1, std::memory_order_relaxed);
  conn_->reader().set_keep_items(false);  // every array is an unexpected reply here
  socket_fd_.store(conn_->fd(), std::memory_order_release);
}

void Worker::drop_connection() {
  // Unpublished before it is closed: a fork in between leaves the child a descriptor
  // it leaks, never a number that may since have been reused.
  socket_fd_.store(-1, std::memory_order_release);
  conn_.reset();
}

// ------------------------------------------------------------------------ sending

void Worker::fill() {
  while (!unsent_.empty()) {
    TileState& t = *unsent_.front();
    const std::size_t i = t.next;
    const std::size_t bytes = t.batch->payload(i);
    const bool large = bytes >= opt_.large_value_bytes;
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
  const std::uint64_t start = c.queued();
  std::string& out = c.copy_buffer_for_append();
  switch (b.op) {
    case Op::Set: {
      const std::size_t len = b.lengths[i];
      append_command_header(out, "SET", b.key(i), &len, b.ttl_ms ? 2 : 0);  // [PX <ms>]
      if (len < opt_.inline_value_bytes) {
        if (len) out.append(reinterpret_cast<const char*>(b.data[i]), len);
        append_set_tail(out, b.ttl_ms);
        c.commit_copy();
      } else {
        c.commit_copy();
        c.queue_ref(b.data[i], len);
        append_set_tail(c.copy_buffer_for_append(), b.ttl_ms);
        c.commit_copy();
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
  const bool large = bytes >= opt_.large_value_bytes;
  inflight_.push_back(InFlight{&t, i, bytes, large, start, Clock::now() + op_timeout_});
  inflight_bytes_ += bytes;
  if (large) ++inflight_large_;
}

bool Worker::flush() {
  if (!conn_->has_unsent()) return true;
  if (conn_->flush() == Io::Error) {
    lost(conn_->error());
    return false;
  }
  return true;
}

bool Worker::written(const InFlight& f) const { return conn_ && conn_->sent() > f.start; }

// ---------------------------------------------------------------------- receiving

bool Worker::receive() {
  for (int round = 0; round < MAX_RECV_ROUNDS; ++round) {
    if (!inflight_.empty()) arm_reader(inflight_.front());
    switch (conn_->receive()) {
      case Io::WouldBlock:
        return true;
      case Io::Closed:
      case Io::Error:
        lost(conn_->error());
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
    if (!written(f) && !reader.idle()) return desync("unsolicited bytes before its request was sent");
    arm_reader(f);
    const ReadStatus got = reader.read(reply_);
    if (got == ReadStatus::NeedData) return true;
    if (got == ReadStatus::Error) {
      Failure why;
      why.kind = ErrorKind::ProtocolError;
      why.detail = protocol_fault_text(reader.fault());
      drop(why);
      return false;
    }
    if (opt_.test_throw_at_reply != 0 && ++replies_read_ == opt_.test_throw_at_reply) {
      throw std::bad_alloc();
    }
    // The key stays in flight until it is finished, so an exception in between leaves
    // it to fail_everything() instead of losing it.
    const InFlight done = f;
    on_reply(done, reply_);
    inflight_.pop_front();
    inflight_bytes_ -= done.bytes;
    if (done.large) --inflight_large_;
  }
  // Bytes no request asked for: the stream can no longer be trusted.
  if (!reader.idle()) return desync("unsolicited bytes with no request in flight");
  return true;
}

// Where the reply to `f` goes (ignored by the reader once that reply is under way): a
// GET's value into the caller's buffer, a large one's header received alone so that its
// payload is not copied; any other bulk is no answer and is drained (a zero-byte target
// takes none), so an unexpected one costs no memory.
void Worker::arm_reader(const InFlight& f) {
  const Batch& b = *f.tile->batch;
  Reader& reader = conn_->reader();
  if (b.op == Op::Get) {
    reader.set_target(b.data[f.index], b.lengths[f.index], f.large ? opt_.header_recv : 0);
  } else {
    reader.set_target(nullptr, 0);
  }
}

// The stream is out of step with the requests: drop it (keys in flight: PROTOCOL_ERROR).
bool Worker::desync(const char* what) {
  Failure why;
  why.kind = ErrorKind::ProtocolError;
  why.detail = what;
  drop(why);
  return false;
}

void Worker::on_reply(const InFlight& f, const Reply& r) {
  using Kind = Reply::Kind;
  TileState& t = *f.tile;
  const Batch& b = *t.batch;
  Failure why;
  if (r.kind == Kind::Error) {
    why.kind = ErrorKind::ServerError;
    why.reply = r.text;
    return finish_failed(t, f.index, std::move(why));
  }
  switch (b.op) {
    case Op::Set:
      if (r.kind == Kind::Simple && r.text == "OK") return finish(t, f.index, Answer::Ok);
      break;
    case Op::Get:
      if (r.kind == Kind::Filled) return finish(t, f.index, Answer::Ok);
      if (r.kind == Kind::Nil) return finish(t, f.index, Answer::Miss);  // $-1 only
      if (r.kind == Kind::SizeMismatch) {
        why.kind = ErrorKind::SizeMismatch;
        why.expected = b.lengths[f.index];
        why.actual = static_cast<std::uint64_t>(r.integer);
        return finish_failed(t, f.index, std::move(why));
      }
      break;
    case Op::Exists:
    case Op::Delete:
      if (r.kind == Kind::Integer && r.integer == 1) return finish(t, f.index, Answer::Ok);
      if (r.kind == Kind::Integer && r.integer == 0) return finish(t, f.index, Answer::Miss);
      break;
  }
  why.kind = ErrorKind::UnexpectedReply;
  why.reply = first_line(r, UNEXPECTED_REPLY_CHARS);
  finish_failed(t, f.index, std::move(why));
}

// ------------------------------------------------------------------ ending keys

void Worker::lost(const Failure& why) {
  if (inflight_.empty()) {
    if (conn_) dropped_.fetch_add(1, std::memory_order_relaxed);
    drop_connection();
    return;
  }
  drop(why);
}

// Fail every key in flight with `why`, drop the connection, back off.
void Worker::drop(const Failure& why) {
  fail_inflight(why, false);
  schedule_backoff();
}

// Drop the connection to end batches with keys in flight on it: theirs end DEADLINE or
// CANCELLED, the others ABORTED. Nothing failed, so no backoff.
void Worker::drop_for_ending() {
  Failure aborted;
  aborted.kind = ErrorKind::Aborted;
  fail_inflight(aborted, true);
}

// Drop the connection and fail every key in flight: with `why`, or (`ending`) with its
// batch's ending kind where that batch is ending. Keys leave inflight_ one by one as
// they are finished, so an exception half way loses none.
void Worker::fail_inflight(const Failure& why, bool ending) {
  std::vector<char> sent(inflight_.size());
  for (std::size_t k = 0; k < sent.size(); ++k) sent[k] = written(inflight_[k]) ? 1 : 0;
  if (conn_ && why.kind != ErrorKind::Closed) dropped_.fetch_add(1, std::memory_order_relaxed);
  drop_connection();
  for (std::size_t k = 0; !inflight_.empty(); ++k) {
    const InFlight f = inflight_.front();
    const Batch& b = *f.tile->batch;
    const bool in_flight = k < sent.size() && sent[k] != 0;
    Failure out = ending && b.ending_kind() != ErrorKind::None ? ending_failure(b, in_flight) : why;
    out.in_flight = in_flight;
    inflight_.pop_front();
    inflight_bytes_ -= f.bytes;
    if (f.large) --inflight_large_;
    finish_failed(*f.tile, f.index, std::move(out));
  }
}

// Fail every unsent key with `why`. Keys leave their tile one by one (see above).
void Worker::fail_unsent(const Failure& why) {
  while (!unsent_.empty()) {
    TileState* t = unsent_.front();
    for (;;) {
      const std::size_t i = t->next;
      Failure f = why;
      const bool last = i + 1 >= t->end;
      if (last) unsent_.pop_front();
      t->next = i + 1;
      finish_failed(*t, i, std::move(f));  // the tile's last key may free *t
      if (last) break;
    }
  }
}

// After an exception: fail everything this worker holds (INTERNAL, the exception's
// text) and start afresh. Every key is in flight or unsent, never both, so every key
// still ends exactly once. Should that need memory that is not there, the keys end
// without records (finish_unrecorded) and Python reports them INTERNAL.
void Worker::fail_everything(const char* detail) noexcept {
  try {
    Failure why;
    why.kind = ErrorKind::Internal;
    why.detail = detail;
    fail_inflight(why, false);
    schedule_backoff();
    fail_unsent(why);
    return;
  } catch (...) {
  }
  drop_connection();
  while (!inflight_.empty()) {
    const InFlight f = inflight_.front();
    inflight_.pop_front();
    finish_unrecorded(*f.tile, f.index);
  }
  inflight_bytes_ = 0;
  inflight_large_ = 0;
  while (!unsent_.empty()) {
    TileState* t = unsent_.front();
    for (;;) {
      const std::size_t i = t->next;
      const bool last = i + 1 >= t->end;
      if (last) unsent_.pop_front();
      t->next = i + 1;
      finish_unrecorded(*t, i);
      if (last) break;
    }
  }
}

void Worker::finish_unrecorded(TileState& t, std::size_t i) noexcept {
  t.batch->answers[i] = static_cast<std::uint8_t>(Answer::Failed);
  key_done(t);
}

void Worker::finish(TileState& t, std::size_t i, Answer answer) noexcept {
  t.batch->answers[i] = static_cast<std::uint8_t>(answer);
  key_done(t);
}

void Worker::finish_failed(TileState& t, std::size_t i, Failure f) noexcept {
  t.batch->record_failure(i, std::move(f));
  key_done(t);
}

void Worker::key_done(TileState& t) noexcept {
  if (--t.remaining > 0) return;
  std::shared_ptr<Batch> batch = std::move(t.batch);
  tiles_.erase(t.self);
  // acq_rel: this worker's writes are released to, and every other worker's writes
  // acquired by, whichever worker brings the count to zero and publishes the batch.
  if (batch->tiles_left.fetch_sub(1, std::memory_order_acq_rel) == 1) {
    engine_.complete(std::move(batch));
  }
}

}  // namespace respkv
