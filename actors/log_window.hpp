// Back-pressure for build logs: the thread reading a builder's output may
// have at most `limit` bytes on their way to the logger. Past that it
// waits, so it stops reading the pipe and the builder blocks in write():
// Kiln's memory stays bounded by the window whatever the log's size (before,
// 1 GiB of output grew the process by 2 GiB, outside the build's cgroup).
// Bytes are returned when the logger has written them, or when the build is
// over and nobody will write them (close).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>

namespace kiln {

// The logger writes to a local file; an answer later than this means it is
// stuck, and the bytes are given back so the build is not stuck with it.
constexpr auto log_write_timeout = std::chrono::minutes(5);

class log_window {
public:
  explicit log_window(uint64_t limit) : limit_(limit) {}

  // Waits until `n` more bytes fit (a chunk is let through alone when
  // nothing is outstanding, whatever its size) or the window is closed.
  void acquire(uint64_t n) {
    std::unique_lock<std::mutex> lock(m_);
    room_.wait(lock, [&] { return closed_ || outstanding_ == 0 || outstanding_ + n <= limit_; });
    outstanding_ += n;
  }

  void release(uint64_t n) {
    std::lock_guard<std::mutex> lock(m_);
    outstanding_ -= n < outstanding_ ? n : outstanding_;
    room_.notify_all();
  }

  // From now on acquire never waits.
  void close() {
    std::lock_guard<std::mutex> lock(m_);
    closed_ = true;
    room_.notify_all();
  }

private:
  std::mutex m_;
  std::condition_variable room_;
  const uint64_t limit_;
  uint64_t outstanding_ = 0;
  bool closed_ = false;
};

} // namespace kiln
