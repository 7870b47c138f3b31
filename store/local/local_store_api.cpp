// The local store behind the store interface (store/store.hpp): each call
// is one of the local store's own operations.
#include "store/local/local_store.hpp"

#include "store/format/nar.hpp"
#include "store/io/error.hpp"
#include "store/io/fd.hpp"
#include "store/local/build_log.hpp"
#include "store/local/gc.hpp"
#include "store/local/gc_roots.hpp"
#include "store/local/missing.hpp"
#include "store/local/optimise.hpp"
#include "store/local/temp_roots.hpp"
#include "store/local/verify.hpp"

#include <fcntl.h>
#include <unistd.h>

namespace kiln {

namespace {

// A file with no name in `dir` for data that must be read twice (hashed to
// name its path, then copied in): gone with its descriptor, crash or not.
unique_fd anonymous_file(const std::string& dir) {
  unique_fd fd(::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600));
  if (!fd)
    throw_errno("making a temporary file in '" + dir + "'");
  return fd;
}

// The spooled file from its start.
fd_source rewound(int fd) {
  if (::lseek(fd, 0, SEEK_SET) != 0)
    throw_errno("rewinding a temporary file");
  return fd_source(fd, "a temporary file");
}

// Copies `in` to `out` to its end, hashing it; returns the hash and size.
std::pair<hash, uint64_t> spool(source& in, int out, hash_algo algo) {
  hashing_source h(in, algo);
  fd_sink to(out);
  copy_all(h, to);
  to.flush();
  return {h.finish(), h.size()};
}

// Text paths hold .drv files and builtins.toFile results: small.
constexpr std::size_t max_text_bytes = 64u << 20;

} // namespace

bool local_store::is_valid(const store_path& p) { return db_.is_valid(p); }

std::optional<path_info> local_store::query_path_info(const store_path& p) { return db_.query_path_info(p); }

store_path_set local_store::query_referrers(const store_path& p) { return db_.query_referrers(p); }

store_path_set local_store::query_valid_derivers(const store_path& p) { return db_.query_valid_derivers(p); }

std::map<std::string, store_path> local_store::query_derivation_outputs(const store_path& drv) {
  return db_.query_derivation_outputs(drv);
}

std::vector<store_path> local_store::query_all_valid_paths() { return db_.query_all_valid_paths(); }

std::optional<store_path> local_store::query_path_from_hash_part(std::string_view hash_part) {
  return db_.query_path_from_hash_part(hash_part);
}

missing_plan local_store::query_missing(const std::vector<wanted_path>& targets) {
  return kiln::query_missing(*this, targets);
}

path_info local_store::add_to_store(std::string_view name, content_method method, hash_algo algo, source& data,
                                    const store_path_set& references) {
  check_store_path_name(name);
  if (method == content_method::text) {
    if (algo != hash_algo::sha256)
      throw format_error("a text path is hashed with sha256, not " + std::string(to_string(algo)));
    std::string text;
    char buf[65536];
    for (std::size_t n; (n = data.read(buf, sizeof buf)) > 0;) {
      if (text.size() + n > max_text_bytes)
        throw format_error("the text for '" + std::string(name) + "' is larger than 64 MiB");
      text.append(buf, n);
    }
    return add_text(name, text, references);
  }
  if (!references.empty())
    throw format_error("only a text path can be added with references");
  auto file = anonymous_file(layout_.kiln_dir());
  auto [h, size] = spool(data, file.get(), algo);
  ingestion_method im = method == content_method::flat ? ingestion_method::flat : ingestion_method::recursive;
  path_info info(make_fixed_output_path(name, im, h));
  info.ca = fixed_output_ca(im, h);
  if (method == content_method::recursive) {
    // The NAR's own hash; the same bytes again when the path was named by sha256.
    if (algo == hash_algo::sha256) {
      info.nar_hash = h;
      info.nar_size = size;
    } else {
      hash_sink sha256(hash_algo::sha256);
      fd_source again = rewound(file.get());
      copy_all(again, sha256);
      info.nar_hash = sha256.finish();
      info.nar_size = sha256.size();
    }
    fd_source nar = rewound(file.get());
    return add_nar(nar, info);
  }
  hash_sink nar_hash(hash_algo::sha256);
  {
    fd_source contents = rewound(file.get());
    dump_file_as_nar(contents, size, false, nar_hash);
  }
  info.nar_hash = nar_hash.finish();
  info.nar_size = nar_hash.size();
  return materialise(info, [&](sink& out) {
    fd_source contents = rewound(file.get());
    dump_file_as_nar(contents, size, false, out);
  });
}

void local_store::nar_from_path(const store_path& p, sink& out) {
  if (!db_.is_valid(p))
    throw error("path '" + p.full() + "' is not valid");
  dump_path(real_path(p), out);
}

void local_store::add_signatures(const store_path& p, const std::set<std::string>& sigs) {
  auto info = db_.query_path_info(p);
  if (!info)
    throw error("cannot add signatures to '" + p.full() + "': it is not valid");
  info->sigs.insert(sigs.begin(), sigs.end());
  db_.register_valid_paths({*info});
}

void local_store::add_indirect_root(const std::string& link) { kiln::add_indirect_root(*this, link); }

gc_root_map local_store::find_roots() {
  // Listing roots needs no collector's lock (Nix's findRoots takes none):
  // a running collection does not hold it up.
  return with_temp_roots(*this, find_permanent_roots(*this),
                         read_temp_roots(layout_.temproots_dir(), std::string(default_store_dir)));
}

gc_result local_store::collect_garbage(const gc_options& options, const gc_progress& progress) {
  return kiln::collect_garbage(*this, options, progress);
}

optimise_result local_store::optimise() { return optimise_store(*this); }

std::vector<verify_problem> local_store::verify(bool check_contents) {
  return verify_paths(*this, db_.query_all_valid_paths(), check_contents);
}

std::optional<std::string> local_store::build_log(const store_path& drv) {
  return read_build_log(layout_, drv.base_name());
}

} // namespace kiln
