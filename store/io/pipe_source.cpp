#include "store/io/pipe_source.hpp"

#include "store/io/error.hpp"

#include <algorithm>
#include <cstring>

namespace kiln {

// Gathers the producer's small writes into 256 KiB chunks for the queue.
// Each chunk's room is made once: grown by appending, a chunk was copied
// again at every doubling (measured: a third of a download's CPU).
class pipe_source::queue_sink : public sink {
public:
  static constexpr std::size_t chunk = 256u << 10;
  explicit queue_sink(pipe_source& p) : p_(p) {}
  void write(const char* data, std::size_t n) override {
    if (buf_.capacity() < chunk)
      buf_.reserve(std::max(chunk, n));
    buf_.append(data, n);
    if (buf_.size() >= chunk)
      flush();
  }
  void flush() override {
    if (buf_.empty())
      return;
    std::unique_lock<std::mutex> lock(p_.m_);
    p_.cv_.wait(lock, [&] { return p_.queue_.size() < p_.depth_ || p_.cancelled_; });
    if (p_.cancelled_)
      throw error("the reader stopped reading");
    p_.queue_.push_back(std::move(buf_));
    buf_.clear();
    p_.cv_.notify_all();
  }

private:
  pipe_source& p_;
  std::string buf_;
};

pipe_source::pipe_source(producer produce, std::size_t depth)
  : depth_(depth), thread_([this, produce = std::move(produce)] { run(produce); }) {
}

pipe_source::~pipe_source() {
  {
    std::lock_guard<std::mutex> lock(m_);
    cancelled_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void pipe_source::run(producer produce) {
  std::exception_ptr err;
  try {
    queue_sink s(*this);
    produce(s);
    s.flush();
  } catch (...) {
    err = std::current_exception();
  }
  std::lock_guard<std::mutex> lock(m_);
  finished_ = true;
  if (!cancelled_)
    error_ = err;
  cv_.notify_all();
}

std::size_t pipe_source::read(char* data, std::size_t n) {
  if (pos_ == current_.size()) {
    std::unique_lock<std::mutex> lock(m_);
    cv_.wait(lock, [&] { return !queue_.empty() || finished_; });
    if (queue_.empty()) {
      if (error_)
        std::rethrow_exception(error_);
      return 0;
    }
    current_ = std::move(queue_.front());
    queue_.pop_front();
    pos_ = 0;
    cv_.notify_all();
  }
  n = std::min(n, current_.size() - pos_);
  std::memcpy(data, current_.data() + pos_, n);
  pos_ += n;
  return n;
}

} // namespace kiln
