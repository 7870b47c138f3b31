#include "store/local/local_substituter.hpp"

#include "store/io/error.hpp"
#include "store/io/fd.hpp"
#include "store/io/file_ops.hpp"
#include "store/format/nar.hpp"
#include "store/io/stream.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <exception>
#include <set>
#include <thread>
#include <vector>

namespace kiln {

namespace {

// A sink writing to a pipe; the reader (add_nar) runs on the other end.
class fd_sink : public sink {
public:
  explicit fd_sink(int fd) : fd_(fd) {}
  void write(const char* data, std::size_t n) override { write_all(fd_, data, n, "the substitution pipe"); }

private:
  int fd_;
};

// Streams the NAR of `from` into `dest` as `info`, dumping on a thread.
void copy_path(local_store& dest, const std::string& from, const path_info& info) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0)
    throw_errno("creating a pipe for substitution");
  unique_fd read_end(fds[0]), write_end(fds[1]);
  std::exception_ptr dump_error;
  std::thread dumper([&] {
    try {
      fd_sink out(write_end.get());
      dump_path(from, out);
    } catch (...) {
      dump_error = std::current_exception();
    }
    write_end.reset(); // end of the NAR for the reader
  });
  try {
    fd_source in(read_end.get(), "the NAR of '" + from + "'");
    buffered_source buffered(in);
    dest.add_nar(buffered, info);
  } catch (...) {
    read_end.reset(); // unblocks the dumper
    dumper.join();
    throw;
  }
  dumper.join();
  if (dump_error)
    std::rethrow_exception(dump_error);
}

} // namespace

local_substituter::local_substituter(const std::string& uri)
  : substituter(uri, parse_directory_uri(uri, "local:").second), root_(parse_directory_uri(uri, "local:").first) {}

local_store& local_substituter::source() {
  if (!source_) {
    // Opening creates a store's directories: refuse to do that to a
    // directory that holds no store.
    if (!path_exists(root_ + "/nix/var/nix/db/db.sqlite"))
      throw error("substituter '" + uri() + "' has no store database under '" + root_ + "'");
    source_ = std::make_unique<local_store>(store_layout::from_uri("local:" + root_));
  }
  return *source_;
}

std::optional<path_info> local_substituter::query(const store_path& p) { return source().db().query_path_info(p); }

void local_substituter::copy(local_store& dest, const path_info& info) {
  copy_path(dest, source().real_path(info.path), info);
}

} // namespace kiln
