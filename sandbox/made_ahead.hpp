// Things every sandboxed build needs fresh and that take a while to make
// (a network namespace, a control group), made ahead of need on a thread
// of their own while builds run. Each is handed out once; when none is
// ready the caller makes its own as before, so a pool only ever saves time.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>

namespace kiln::sandbox {

template <class T>
class made_ahead {
public:
  // `make` runs on the filler thread; an empty result (a failure) stops
  // the filling for good. `ready_target` things are kept ready.
  made_ahead(std::size_t ready_target, std::function<std::optional<T>()> make)
      : target_(ready_target), make_(std::move(make)) {}
  ~made_ahead() { drain(); }
  made_ahead(const made_ahead&) = delete;
  made_ahead& operator=(const made_ahead&) = delete;

  // A ready one, if there is; starts the filler thread on first use.
  std::optional<T> take() {
    std::unique_lock<std::mutex> hold(m_);
    if (!started_ && !stopped_) {
      started_ = filling_ = true;
      std::thread([this] { fill(); }).detach();
    }
    if (ready_.empty())
      return std::nullopt;
    std::optional<T> got(std::move(ready_.front()));
    ready_.pop_front();
    changed_.notify_all();
    return got;
  }

  // Stops the filler (waiting for it to finish what it is making) and
  // destroys the ready ones, for things that would outlive the process
  // (control groups).
  void drain() {
    std::deque<T> dropped;
    {
      std::unique_lock<std::mutex> hold(m_);
      stopped_ = true;
      changed_.notify_all();
      changed_.wait(hold, [this] { return !filling_; });
      dropped.swap(ready_);
    }
  }

private:
  void fill() {
    for (;;) {
      {
        std::unique_lock<std::mutex> hold(m_);
        changed_.wait(hold, [this] { return stopped_ || ready_.size() < target_; });
        if (stopped_)
          return finished();
      }
      std::optional<T> fresh = make_();
      std::lock_guard<std::mutex> hold(m_);
      if (fresh && !stopped_) {
        ready_.push_back(std::move(*fresh));
      } else {
        fresh.reset(); // before drain can go on
        stopped_ = true;
        return finished();
      }
    }
  }

  // Called with m_ held, as the filler's last act.
  void finished() {
    filling_ = false;
    changed_.notify_all();
  }

  const std::size_t target_;
  const std::function<std::optional<T>()> make_;
  std::mutex m_;
  std::condition_variable changed_;
  std::deque<T> ready_;
  bool started_ = false, stopped_ = false, filling_ = false;
};

} // namespace kiln::sandbox
