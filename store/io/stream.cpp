#include "store/io/stream.hpp"

#include "store/io/error.hpp"
#include "store/io/fd.hpp"

#include <cstring>

namespace kiln {

fd_sink::fd_sink(int fd, std::string name, std::size_t buffer)
  : fd_(fd), name_(std::move(name)), buf_(buffer) {
}

fd_sink::~fd_sink() {
  try {
    flush();
  } catch (...) {
    // Destructors must not throw; callers that care call flush() themselves.
  }
}

void fd_sink::write(const char* data, std::size_t n) {
  if (used_ + n > buf_.size()) {
    flush();
    if (n >= buf_.size()) { // large writes skip the copy
      write_all(fd_, data, n, name_);
      return;
    }
  }
  std::memcpy(buf_.data() + used_, data, n);
  used_ += n;
}

void fd_sink::flush() {
  if (used_ > 0) {
    std::size_t n = used_;
    used_ = 0;
    write_all(fd_, buf_.data(), n, name_);
  }
}

std::size_t fd_source::read(char* data, std::size_t n) {
  return read_some(fd_, data, n, name_);
}

std::size_t buffered_source::read(char* data, std::size_t n) {
  if (pos_ == end_) {
    if (n >= buf_.size())
      return inner_.read(data, n);
    pos_ = 0;
    end_ = inner_.read(buf_.data(), buf_.size());
    if (end_ == 0)
      return 0;
  }
  n = std::min(n, end_ - pos_);
  std::memcpy(data, buf_.data() + pos_, n);
  pos_ += n;
  return n;
}

void read_exact(source& in, char* data, std::size_t n, std::string_view what) {
  std::size_t got = 0;
  while (got < n) {
    std::size_t r = in.read(data + got, n - got);
    if (r == 0)
      throw format_error(std::string(what) + " truncated: input ended after " +
                         std::to_string(got) + " of " + std::to_string(n) + " bytes");
    got += r;
  }
}

void copy_exact(source& in, sink& out, uint64_t n, std::string_view what) {
  char buf[65536];
  for (uint64_t left = n; left > 0;) {
    std::size_t chunk = static_cast<std::size_t>(std::min<uint64_t>(left, sizeof buf));
    read_exact(in, buf, chunk, what);
    out.write(buf, chunk);
    left -= chunk;
  }
}

uint64_t copy_all(source& in, sink& out) {
  char buf[65536];
  uint64_t total = 0;
  for (std::size_t n; (n = in.read(buf, sizeof buf)) > 0; total += n)
    out.write(buf, n);
  return total;
}

std::size_t string_source::read(char* data, std::size_t n) {
  n = std::min(n, s_.size());
  std::memcpy(data, s_.data(), n);
  s_.remove_prefix(n);
  return n;
}

} // namespace kiln
