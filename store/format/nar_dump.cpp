#include "store/io/background_sink.hpp"
#include "store/io/error.hpp"
#include "store/io/fd.hpp"
#include "store/io/file_ops.hpp"
#include "store/format/nar.hpp"
#include "store/io/tree_walk.hpp"
#include "store/format/wire.hpp"

#include <algorithm>
#include <cerrno>
#include <fcntl.h>
#include <memory>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

namespace kiln {
namespace {

// Frames NAR tokens. Small tokens gather in a local buffer so the sink sees
// few, large writes; file contents go straight through.
class nar_writer {
public:
  explicit nar_writer(sink& out) : out_(out) {}
  ~nar_writer() = default;

  void u64(uint64_t v) { wire::append_u64(buf_, v); }
  void padding(uint64_t len) { wire::append_padding(buf_, len); }
  void str(std::string_view s) {
    wire::append_string(buf_, s);
    if (buf_.size() >= 4096)
      flush();
  }
  void raw(const char* data, std::size_t n) {
    flush();
    out_.write(data, n);
  }
  void flush() {
    if (!buf_.empty()) {
      out_.write(buf_.data(), buf_.size());
      buf_.clear();
    }
  }

private:
  sink& out_;
  std::string buf_;
};

// Dumps a tree as it is walked: directories open a node that their
// entries fill and leave() closes; anything else is a whole node.
class dumper : public tree_visitor {
public:
  explicit dumper(sink& out) : w_(out) {}

  void dump_root(int dirfd, const std::string& name, const std::string& shown) {
    w_.str(nar_magic);
    walk_tree(dirfd, name, shown, *this);
    w_.flush();
  }

  unique_fd visit(const tree_entry& e) override {
    w_.str("(");
    w_.str("type");
    if (S_ISREG(e.st.st_mode)) {
      dump_regular(e.dirfd, e.name.c_str(), e.path);
    } else if (S_ISLNK(e.st.st_mode)) {
      w_.str("symlink");
      w_.str("target");
      w_.str(read_link(e.dirfd, e.name.c_str(), e.path));
    } else if (S_ISDIR(e.st.st_mode)) {
      w_.str("directory");
      return open_walked_directory(e);
    } else {
      throw error("file '" + e.path + "' has an unsupported type (only regular files, " +
                  "directories and symlinks can be archived)");
    }
    w_.str(")");
    return {};
  }
  void leave(const tree_entry&, int) override { w_.str(")"); }
  void order(std::vector<std::string>& names) override {
    std::sort(names.begin(), names.end()); // std::string compares bytes as unsigned
  }
  void begin_entry(const std::string& name) override {
    w_.str("entry");
    w_.str("(");
    w_.str("name");
    w_.str(name);
    w_.str("node");
  }
  void end_entry() override { w_.str(")"); }

private:
  void dump_regular(int dirfd, const char* name, const std::string& shown) {
    unique_fd fd(::openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
    if (!fd)
      throw_errno("opening '" + shown + "'");
    struct stat st;
    if (::fstat(fd.get(), &st) != 0)
      throw_errno("getting the status of '" + shown + "'");
    if (!S_ISREG(st.st_mode))
      throw error("file '" + shown + "' changed type while being archived");
    uint64_t size = static_cast<uint64_t>(st.st_size), left = size;
    if (size > max_buffer)
      ::posix_fadvise(fd.get(), 0, 0, POSIX_FADV_SEQUENTIAL);
    reserve_buffer(static_cast<std::size_t>(std::min<uint64_t>(size + 1, max_buffer)));
    w_.str("regular");
    if (st.st_mode & S_IXUSR) {
      w_.str("executable");
      w_.str("");
    }
    w_.str("contents");
    w_.u64(size);
    // Asking for one byte more than is left detects growth without an extra
    // read at the end: a short read of a regular file means end of file.
    for (;;) {
      std::size_t want = static_cast<std::size_t>(std::min<uint64_t>(left + 1, buf_size_));
      std::size_t n = read_some(fd.get(), buf_.get(), want, "'" + shown + "'");
      if (n > left)
        throw error("file '" + shown + "' grew while being archived");
      w_.raw(buf_.get(), n);
      left -= n;
      if (n < want)
        break;
    }
    if (left != 0)
      throw error("file '" + shown + "' shrank while being archived");
    w_.padding(size);
  }

  std::string read_link(int dirfd, const char* name, const std::string& shown) {
    std::string target(256, '\0');
    for (;;) {
      ssize_t n = ::readlinkat(dirfd, name, target.data(), target.size());
      if (n < 0)
        throw_errno("reading the symlink '" + shown + "'");
      if (static_cast<std::size_t>(n) < target.size()) {
        target.resize(static_cast<std::size_t>(n));
        return target;
      }
      target.resize(target.size() * 2);
    }
  }

  // Sized to the largest file seen so far (up to max_buffer) and never
  // zero-filled: outputs are mostly tiny, and touching a fresh megabyte per
  // dump cost more than hashing them.
  void reserve_buffer(std::size_t n) {
    if (n > buf_size_) {
      buf_.reset(new char[n]);
      buf_size_ = n;
    }
  }

  static constexpr std::size_t max_buffer = 1 << 20;
  nar_writer w_;
  std::unique_ptr<char[]> buf_;
  std::size_t buf_size_ = 0;
};

} // namespace

void dump_path(const std::string& path, sink& out) {
  dumper(out).dump_root(AT_FDCWD, path, path);
}

void dump_path_at(int dirfd, const std::string& name, const std::string& shown, sink& out) {
  dumper(out).dump_root(dirfd, name, shown);
}

nar_digest hash_path(const std::string& path, hash_algo algo) {
  hash_sink hashed(algo);
  {
    background_sink pipelined(hashed); // dump on this thread, hash on another
    dump_path(path, pipelined);
    pipelined.flush();
  }
  return {hashed.finish(), hashed.size()};
}

void dump_file_as_nar(source& contents, uint64_t size, bool executable, sink& out) {
  nar_writer w(out);
  w.str(nar_magic);
  w.str("(");
  w.str("type");
  w.str("regular");
  if (executable) {
    w.str("executable");
    w.str("");
  }
  w.str("contents");
  w.u64(size);
  w.flush(); // the contents go straight to `out`, after what is buffered
  copy_exact(contents, out, size, "file contents");
  w.padding(size);
  w.str(")");
  w.flush();
}

void dump_string_as_file(std::string_view contents, bool executable, sink& out) {
  string_source in{contents};
  dump_file_as_nar(in, contents.size(), executable, out);
}

} // namespace kiln
