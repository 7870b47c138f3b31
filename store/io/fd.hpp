// File descriptors and the few I/O loops every module needs.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace kiln {

// Owns a file descriptor; closes it on destruction.
class unique_fd {
public:
  unique_fd() = default;
  explicit unique_fd(int fd) : fd_(fd) {}
  ~unique_fd() { reset(); }
  unique_fd(unique_fd&& o) noexcept : fd_(o.release()) {}
  unique_fd& operator=(unique_fd&& o) noexcept {
    if (this != &o)
      reset(o.release());
    return *this;
  }
  unique_fd(const unique_fd&) = delete;
  unique_fd& operator=(const unique_fd&) = delete;

  int get() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }
  int release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void reset(int fd = -1);

private:
  int fd_ = -1;
};

// open(path, O_RDONLY | O_CLOEXEC); throws sys_error naming the path.
unique_fd open_read_only(const std::string& path);

// Reads a whole (small) file. A file larger than `max_size` bytes is
// refused with a format_error naming `what` it was supposed to be.
std::string read_whole_file(const std::string& path, std::size_t max_size, std::string_view what);

// One read(2), retried on EINTR; returns 0 at end of file. `what` names the
// file in the error message.
std::size_t read_some(int fd, void* buf, std::size_t n, std::string_view what);
// Writes everything, retrying on EINTR and short writes.
void write_all(int fd, const void* buf, std::size_t n, std::string_view what);

} // namespace kiln
