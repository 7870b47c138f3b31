// A binary cache in a directory. Files are opened without following
// symlinks (the cache's owner is not trusted with the reader's files), and
// written to a temporary name in the cache, then renamed into place.
#include "store/cache/cache_transport.hpp"

#include "store/io/error.hpp"
#include "store/io/fd.hpp"
#include "store/io/file_ops.hpp"

#include <cerrno>
#include <fcntl.h>
#include <unistd.h>

namespace kiln {

namespace {

class file_transport : public cache_transport {
public:
  file_transport(std::string uri, std::string dir) : uri_(std::move(uri)), dir_(std::move(dir)) {}
  const std::string& uri() const override { return uri_; }

  std::optional<std::string> get(const std::string& name, std::size_t limit) override {
    unique_fd fd = open_file(name);
    if (!fd) {
      if (errno == ENOENT)
        return std::nullopt;
      throw_errno("reading '" + path_of(name) + "'");
    }
    owned_fd_source in(std::move(fd), path_of(name));
    string_sink out;
    std::vector<char> buf(1 << 16);
    while (std::size_t got = in.read(buf.data(), buf.size())) {
      if (out.s.size() + got > limit)
        throw format_error("'" + path_of(name) + "' is larger than " + std::to_string(limit) + " bytes");
      out.write(buf.data(), got);
    }
    return out.s;
  }

  // A file's length is checked by its reader (FileSize): a file cannot grow forever.
  std::unique_ptr<source> open(const std::string& name, uint64_t) override {
    unique_fd fd = open_file(name);
    if (!fd)
      throw_errno("opening '" + path_of(name) + "'");
    return std::make_unique<owned_fd_source>(std::move(fd), path_of(name));
  }

  bool has(const std::string& name) override { return ::access(path_of(name).c_str(), F_OK) == 0; }

  std::string scratch_dir() override { return dir_; }

  void put_file(const std::string& name, const std::string& scratch_path) override {
    std::string to = path_of(name);
    make_directories(split_path(to).first);
    if (::rename(scratch_path.c_str(), to.c_str()) != 0)
      throw_errno("moving '" + scratch_path + "' to '" + to + "'");
  }

  void put(const std::string& name, std::string_view contents) override {
    std::string to = path_of(name);
    make_directories(split_path(to).first);
    std::string tmp = split_path(to).first + "/.tmp-" + std::to_string(::getpid()) + "-" + split_path(to).second;
    {
      unique_fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644));
      if (!fd)
        throw_errno("creating '" + tmp + "'");
      write_all(fd.get(), contents.data(), contents.size(), tmp);
    }
    if (::rename(tmp.c_str(), to.c_str()) != 0) {
      int saved = errno;
      ::unlink(tmp.c_str());
      errno = saved;
      throw_errno("moving '" + tmp + "' to '" + to + "'");
    }
  }

private:
  std::string path_of(const std::string& name) const { return dir_ + "/" + name; }
  unique_fd open_file(const std::string& name) const {
    return unique_fd(::open(path_of(name).c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  }

  std::string uri_, dir_;
};

} // namespace

std::unique_ptr<cache_transport> make_file_transport(std::string uri, std::string dir) {
  return std::make_unique<file_transport>(std::move(uri), std::move(dir));
}

} // namespace kiln
