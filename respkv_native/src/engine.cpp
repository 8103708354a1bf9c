// The engine: submit, cancel, completion queue, close; see engine.hpp for the plan.
#include "engine.hpp"

#include <unistd.h>

#include <stdexcept>
#include <utility>

#include "tiling.hpp"
#include "worker.hpp"

namespace respkv {

Engine::Engine(EngineOptions options) : options_(std::move(options)), owner_pid_(::getpid()) {
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

Engine::~Engine() {
  if (forked()) {
    close_in_child();
    return;
  }
  close();
}

bool Engine::forked() const { return ::getpid() != owner_pid_; }

Engine::Counters Engine::counters() const {
  Counters sum;
  for (const auto& w : workers_) {
    const Worker::Counters c = w->counters();
    sum.opened += c.opened;
    sum.reconnects += c.opened > 0 ? c.opened - 1 : 0;
    sum.connect_failures += c.connect_failures;
    sum.dropped += c.dropped;
  }
  return sum;
}

std::uint64_t Engine::submit(std::shared_ptr<Batch> batch, double timeout) {
  if (batch->size == 0) throw std::invalid_argument("empty batch: keys must contain at least one key");
  std::vector<std::uint64_t> weights;
  if (batch->op == Op::Set || batch->op == Op::Get) {
    weights.assign(batch->lengths.begin(), batch->lengths.end());
  }
  const auto tiles = tile(batch->size, workers_.size(), weights.empty() ? nullptr : weights.data());
  if (timeout > 0) {
    batch->has_deadline = true;
    batch->timeout = timeout;
    batch->deadline = Clock::now() + seconds(timeout);
  }
  std::lock_guard<std::mutex> lock(submit_mu_);
  if (closed_) return 0;
  const std::uint64_t id = next_id_++;
  batch->id = id;
  batch->tiles_left.store(tiles.size(), std::memory_order_relaxed);
  batch->workers.reserve(tiles.size());
  for (std::size_t i = 0; i < tiles.size(); ++i) batch->workers.push_back((rr_ + i) % workers_.size());
  {
    // Findable by cancel() before any worker can finish it.
    std::lock_guard<std::mutex> running(running_mu_);
    running_.emplace(id, batch);
  }
  for (std::size_t i = 0; i < tiles.size(); ++i) {
    workers_[batch->workers[i]]->push(batch, tiles[i].first, tiles[i].second);
  }
  rr_ = (rr_ + 1) % workers_.size();
  return id;
}

bool Engine::cancel(std::uint64_t batch_id) {
  // Held while the workers are signalled: close() releases their wake-up descriptors
  // under this lock once every batch has completed (and left running_), so a cancel
  // racing close() either signals open descriptors or finds nothing to cancel; it never
  // writes to a closed number another open may have reused.
  std::lock_guard<std::mutex> lock(running_mu_);
  auto it = running_.find(batch_id);
  if (it == running_.end()) return false;
  const std::shared_ptr<Batch> batch = it->second;
  batch->end_with(ErrorKind::Cancelled);
  for (std::size_t w : batch->workers) workers_[w]->check_ending();
  return true;
}

int Engine::event_fd() const {
  std::lock_guard<std::mutex> lock(done_mu_);
  return completions_fd_.fd();
}

void Engine::complete(std::shared_ptr<Batch> batch) noexcept {
  {
    std::lock_guard<std::mutex> lock(running_mu_);
    running_.erase(batch->id);
  }
  std::lock_guard<std::mutex> lock(done_mu_);
  Batch* raw = batch.get();
  if (done_tail_ == nullptr) {
    done_head_ = std::move(batch);
  } else {
    done_tail_->next_done = std::move(batch);
  }
  done_tail_ = raw;
  if (!signalled_) {
    signalled_ = true;
    completions_fd_.signal();
  }
}

std::vector<std::shared_ptr<Batch>> Engine::drain() {
  std::shared_ptr<Batch> head;
  {
    std::lock_guard<std::mutex> lock(done_mu_);
    if (signalled_) {
      completions_fd_.reset();
      signalled_ = false;
    }
    head = std::move(done_head_);
    done_tail_ = nullptr;
  }
  std::vector<std::shared_ptr<Batch>> out;
  while (head) {
    std::shared_ptr<Batch> next = std::move(head->next_done);
    out.push_back(std::move(head));
    head = std::move(next);
  }
  return out;
}

std::shared_ptr<TlsContext> Engine::tls_context(TlsError* error) {
  std::lock_guard<std::mutex> lock(tls_mu_);
  if (!tls_ctx_ && options_.tls) tls_ctx_ = TlsContext::create(*options_.tls, error);
  return tls_ctx_;
}

void Engine::close() {
  if (forked()) {
    close_in_child();
    return;
  }
  {
    std::lock_guard<std::mutex> lock(submit_mu_);
    closed_ = true;
  }
  closing_.store(true, std::memory_order_release);
  for (auto& w : workers_) w->wake();
  {
    std::lock_guard<std::mutex> lock(close_mu_);
    for (auto& w : workers_) w->join();
    // Every batch has completed now; see cancel() for why this lock.
    std::lock_guard<std::mutex> running(running_mu_);
    for (auto& w : workers_) w->close_wake();
  }
  // Signalled, so that a thread already waiting in poll on it wakes up, then closed:
  // close() gives back every descriptor, as the pure engine's does (callers unregister
  // the event fd from their loops first; event_fd() is -1 from now on).
  std::lock_guard<std::mutex> lock(done_mu_);
  if (!signalled_) {
    signalled_ = true;
    completions_fd_.signal();
  }
  completions_fd_.close_fds();
}

// In a forked child. No lock is taken (a thread of the parent may have held one at the
// fork, and it does not exist here), no thread is joined (none exists here), and no
// object a parent thread may have been changing is destroyed: the workers, the running
// and completed batches and the TLS context are leaked on purpose. Only descriptors are
// closed, which is all a child can and should give back.
void Engine::close_in_child() {
  if (child_closed_) return;
  child_closed_ = true;
  closed_ = true;
  completions_fd_.close_fds();
  for (auto& w : workers_) {
    Worker* leaked = w.release();
    leaked->close_fds_in_child();
  }
  new std::unordered_map<std::uint64_t, std::shared_ptr<Batch>>(std::move(running_));
  new std::shared_ptr<Batch>(std::move(done_head_));
  new std::shared_ptr<TlsContext>(std::move(tls_ctx_));
}

}  // namespace respkv
