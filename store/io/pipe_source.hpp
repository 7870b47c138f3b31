// Turns a producer that writes to a sink into a source another piece of
// code reads from: the producer runs on its own thread, handing chunks over
// through a small bounded queue. How a tree is dumped straight into a NAR
// restore without a temporary file or an OS pipe (no SIGPIPE, no fds).
#pragma once

#include "store/io/stream.hpp"

#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>

namespace kiln {

class pipe_source : public source {
public:
  using producer = std::function<void(sink&)>;
  explicit pipe_source(producer produce, std::size_t depth = 8);
  // Stops the producer (its next write throws) if it is still running.
  ~pipe_source() override;
  // Returns 0 once the producer has finished; rethrows its error.
  std::size_t read(char* data, std::size_t n) override;

private:
  class queue_sink;
  void run(producer produce);

  std::size_t depth_;
  std::deque<std::string> queue_;
  std::string current_;
  std::size_t pos_ = 0;
  bool finished_ = false, cancelled_ = false;
  std::exception_ptr error_;
  std::mutex m_;
  std::condition_variable cv_;
  std::thread thread_;
};

} // namespace kiln
