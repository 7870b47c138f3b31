#include "store/io/background_sink.hpp"

namespace kiln {

background_sink::background_sink(sink& inner, std::size_t chunk, std::size_t depth)
  : inner_(inner), chunk_(chunk), depth_(depth), thread_([this] { run(); }) {
  current_.reserve(chunk_);
}

background_sink::~background_sink() {
  {
    std::lock_guard<std::mutex> lock(m_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void background_sink::rethrow_if_failed() {
  if (error_)
    std::rethrow_exception(error_);
}

void background_sink::push_current() {
  std::unique_lock<std::mutex> lock(m_);
  cv_.wait(lock, [&] { return queue_.size() < depth_ || error_; });
  rethrow_if_failed();
  queue_.push_back(std::move(current_));
  current_ = std::string();
  if (!free_.empty()) {
    current_ = std::move(free_.back());
    free_.pop_back();
  }
  lock.unlock();
  cv_.notify_all();
  current_.clear();
  current_.reserve(chunk_);
}

void background_sink::write(const char* data, std::size_t n) {
  while (n > 0) {
    std::size_t take = std::min(n, chunk_ - current_.size());
    current_.append(data, take);
    data += take;
    n -= take;
    if (current_.size() == chunk_)
      push_current();
  }
}

void background_sink::flush() {
  if (!current_.empty())
    push_current();
  std::unique_lock<std::mutex> lock(m_);
  cv_.wait(lock, [&] { return (queue_.empty() && !busy_) || error_; });
  rethrow_if_failed();
}

void background_sink::run() {
  std::unique_lock<std::mutex> lock(m_);
  for (;;) {
    cv_.wait(lock, [&] { return !queue_.empty() || stop_; });
    if (queue_.empty())
      return; // stopping, and everything was handed over
    std::string chunk = std::move(queue_.front());
    queue_.pop_front();
    busy_ = true;
    lock.unlock();
    cv_.notify_all();
    try {
      inner_.write(chunk.data(), chunk.size());
    } catch (...) {
      lock.lock();
      error_ = std::current_exception();
      busy_ = false;
      queue_.clear();
      cv_.notify_all();
      continue;
    }
    lock.lock();
    busy_ = false;
    free_.push_back(std::move(chunk));
    cv_.notify_all();
  }
}

} // namespace kiln
