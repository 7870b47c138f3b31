#include "store/io/fd.hpp"

#include "store/io/error.hpp"

#include <cerrno>
#include <fcntl.h>
#include <unistd.h>

namespace kiln {

void unique_fd::reset(int fd) {
  if (fd_ >= 0)
    ::close(fd_);
  fd_ = fd;
}

unique_fd open_read_only(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    throw_errno("opening '" + path + "'");
  return unique_fd(fd);
}

std::string read_whole_file(const std::string& path, std::size_t max_size, std::string_view what) {
  unique_fd fd = open_read_only(path);
  std::string text;
  char buf[65536];
  while (std::size_t n = read_some(fd.get(), buf, sizeof buf, "'" + path + "'")) {
    text.append(buf, n);
    if (text.size() > max_size)
      throw format_error(std::string(what) + " '" + path + "' is larger than " +
                         std::to_string(max_size) + " bytes");
  }
  return text;
}

std::size_t read_some(int fd, void* buf, std::size_t n, std::string_view what) {
  for (;;) {
    ssize_t r = ::read(fd, buf, n);
    if (r >= 0)
      return static_cast<std::size_t>(r);
    if (errno != EINTR)
      throw_errno("reading " + std::string(what));
  }
}

void write_all(int fd, const void* buf, std::size_t n, std::string_view what) {
  auto p = static_cast<const char*>(buf);
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      throw_errno("writing " + std::string(what));
    }
    p += w;
    n -= static_cast<std::size_t>(w);
  }
}

} // namespace kiln
