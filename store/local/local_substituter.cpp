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

local_substituter::local_substituter(const std::string& uri) : uri_(uri) {
  constexpr std::string_view scheme = "local:";
  if (uri.compare(0, scheme.size(), scheme) != 0)
    throw format_error("substituter '" + uri + "' is not supported yet (only local:DIR stores are)");
  root_ = uri.substr(scheme.size());
  if (auto q = root_.find('?'); q != std::string::npos) {
    std::string query = root_.substr(q + 1);
    root_.resize(q);
    if (query == "trusted=1")
      trusted_ = true;
    else if (query != "trusted=0")
      throw format_error("substituter '" + uri + "': unknown parameter '" + query + "' (only trusted=1)");
  }
  if (root_.empty() || root_[0] != '/')
    throw format_error("substituter '" + uri + "': expected an absolute directory after 'local:'");
}

local_store& local_substituter::source() {
  if (!source_) {
    // Opening creates a store's directories: refuse to do that to a
    // directory that holds no store.
    if (!path_exists(root_ + "/nix/var/nix/db/db.sqlite"))
      throw error("substituter '" + uri_ + "' has no store database under '" + root_ + "'");
    source_ = std::make_unique<local_store>(store_layout::from_uri("local:" + root_));
  }
  return *source_;
}

substitute_outcome local_substituter::substitute(local_store& dest, const store_path& path, const trusted_keys& keys,
                                          bool require_sigs) {
  local_store& src = source();
  // The closure of `path` that `dest` lacks, references before referrers.
  std::vector<path_info> order;
  std::set<store_path> seen;
  std::vector<std::pair<store_path, bool>> stack{{path, false}};
  std::map<store_path, path_info> infos;
  while (!stack.empty()) {
    auto [p, expanded] = stack.back();
    stack.pop_back();
    if (expanded) {
      order.push_back(infos.at(p));
      continue;
    }
    if (!seen.insert(p).second)
      continue;
    dest.add_temp_root(p);
    if (dest.db().is_valid(p))
      continue;
    auto info = src.db().query_path_info(p);
    if (!info)
      return {substitute_outcome::absent,
              p == path ? "'" + uri_ + "' does not have '" + p.full() + "'"
                        : "'" + uri_ + "' does not have '" + p.full() + "', which '" + path.full() + "' refers to"};
    if (require_sigs && !trusted_ && !info->ca) {
      std::set<std::string> refs;
      for (auto& r : info->references)
        refs.insert(r.full());
      if (!has_valid_signature(path_fingerprint(p.full(), info->nar_hash, info->nar_size, refs), info->sigs, keys))
        return {substitute_outcome::untrusted, "the substitute for '" + p.full() + "' from '" + uri_ +
                                                   "' is not signed by any of the keys in 'trusted-public-keys'"};
    }
    stack.push_back({p, true});
    for (auto& r : info->references)
      if (r != p)
        stack.push_back({r, false});
    infos.emplace(p, std::move(*info));
  }
  for (auto& info : order) {
    if (dest.db().is_valid(info.path))
      continue;
    path_info copy = info;
    copy.ultimate = false;
    copy.registration_time = 0;
    copy_path(dest, src.real_path(info.path), copy);
  }
  return {};
}

} // namespace kiln
