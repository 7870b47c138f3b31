#include "store/cache/binary_cache_store.hpp"

#include "store/io/compress.hpp"
#include "store/io/decompress.hpp"
#include "store/io/error.hpp"
#include "store/io/fd.hpp"
#include "store/local/verify.hpp"

#include <cstdlib>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

namespace kiln {

namespace {

constexpr std::size_t narinfo_limit = 1 << 20;

std::string narinfo_name(std::string_view hash_part) { return std::string(hash_part) + ".narinfo"; }

// A file in the cache's scratch directory, removed unless published.
struct scratch_file {
  std::string path;
  unique_fd fd;
  explicit scratch_file(const std::string& dir) : path(dir + "/.kiln-nar-XXXXXX") {
    fd.reset(::mkostemp(path.data(), O_CLOEXEC));
    if (!fd)
      throw_errno("creating a file in '" + dir + "'");
    // Readable by whoever serves the cache, as every other file in it.
    mode_t mask = ::umask(0);
    ::umask(mask);
    ::fchmod(fd.get(), 0666 & ~mask);
  }
  ~scratch_file() {
    if (!path.empty())
      ::unlink(path.c_str());
  }
  // It has been moved away: nothing to remove.
  void published() { path.clear(); }
};

} // namespace

binary_cache_store::binary_cache_store(std::unique_ptr<cache_transport> transport, cache_params params, bool create)
  : transport_(std::move(transport)), params_(std::move(params)) {
  // Checked now, so a bad parameter fails before anything is written (a
  // reader never compresses: no encoder is made for it).
  if (create) {
    string_sink nowhere;
    make_compressing_sink(nowhere, params_.compression, params_.compression_level, "binary cache '" + uri() + "'");
  }
  if (!params_.secret_key_file.empty())
    key_ = read_secret_key_file(params_.secret_key_file);

  auto text = transport_->get("nix-cache-info", 1 << 16);
  if (!text) {
    if (!create)
      throw error("binary cache '" + uri() + "' has no nix-cache-info");
    transport_->put("nix-cache-info", "StoreDir: " + std::string(default_store_dir) + "\n");
    return;
  }
  info_ = parse_cache_info(*text, uri() + "/nix-cache-info");
  if (info_.store_dir != default_store_dir)
    throw error("binary cache '" + uri() + "' is for a store in '" + info_.store_dir + "', not '" +
                std::string(default_store_dir) + "'");
}

// Written, and remembered as written: a lookup made before it (the copy's
// own "is it there?") must not hide it for the negative TTL.
void binary_cache_store::publish_narinfo(const narinfo& n) {
  std::string text = print_narinfo(n);
  transport_->put(narinfo_name(n.path.hash_part()), text);
  if (params_.lookups)
    params_.lookups->record(params_.lookup_key, n.path.hash_part(), text);
}

void binary_cache_store::unsupported(const std::string& what) const {
  throw error("binary cache '" + uri() + "' cannot " + what + " (it is not a local store)");
}

std::optional<narinfo> binary_cache_store::read_narinfo(std::string_view hash_part) {
  std::string name = narinfo_name(hash_part);
  std::optional<std::string> text;
  auto& lookups = params_.lookups;
  auto known = lookups ? lookups->lookup(params_.lookup_key, hash_part, params_.positive_ttl, params_.negative_ttl)
                       : narinfo_cache::answer{};
  if (known.what == narinfo_cache::known::absent)
    return std::nullopt;
  if (known.what == narinfo_cache::known::present) {
    text = std::move(known.text);
  } else {
    text = transport_->get(name, narinfo_limit);
    if (text)
      parse_narinfo(*text, uri() + "/" + name); // only what parses is remembered
    if (lookups)
      lookups->record(params_.lookup_key, hash_part, text);
  }
  if (!text)
    return std::nullopt;
  return parse_narinfo(*text, uri() + "/" + name);
}

const narinfo& binary_cache_store::narinfo_of(const store_path& p) {
  if (!query_path_info(p))
    throw error("binary cache '" + uri() + "' does not have '" + p.full() + "'");
  std::lock_guard<std::mutex> g(mutex_);
  return narinfos_.at(p);
}

bool binary_cache_store::is_valid(const store_path& p) { return query_path_info(p).has_value(); }

std::optional<uint64_t> binary_cache_store::download_size(const store_path& p) {
  if (!query_path_info(p))
    return std::nullopt;
  std::lock_guard<std::mutex> g(mutex_);
  uint64_t size = narinfos_.at(p).file_size;
  return size ? std::optional<uint64_t>(size) : std::nullopt;
}

// One GET: a missing narinfo is a 404 (or ENOENT), not a separate question.
std::optional<path_info> binary_cache_store::query_path_info(const store_path& p) {
  {
    std::lock_guard<std::mutex> g(mutex_);
    if (auto it = narinfos_.find(p); it != narinfos_.end())
      return it->second.info();
  }
  auto n = read_narinfo(p.hash_part());
  if (!n)
    return std::nullopt;
  if (n->path != p)
    throw format_error("narinfo '" + uri() + "/" + narinfo_name(p.hash_part()) + "' is for '" + n->path.full() +
                       "', not '" + p.full() + "'");
  std::lock_guard<std::mutex> g(mutex_);
  return narinfos_.insert_or_assign(p, std::move(*n)).first->second.info();
}

store_path_set binary_cache_store::query_referrers(const store_path&) { unsupported("tell a path's referrers"); }
store_path_set binary_cache_store::query_valid_derivers(const store_path&) { return {}; }
std::map<std::string, store_path> binary_cache_store::query_derivation_outputs(const store_path&) {
  unsupported("tell a derivation's outputs");
}
std::vector<store_path> binary_cache_store::query_all_valid_paths() { unsupported("list its paths"); }

std::optional<store_path> binary_cache_store::query_path_from_hash_part(std::string_view hash_part) {
  auto n = read_narinfo(hash_part);
  if (!n || n->path.hash_part() != hash_part)
    return std::nullopt;
  return n->path;
}

missing_plan binary_cache_store::query_missing(const std::vector<wanted_path>&) {
  unsupported("plan builds");
}

path_info binary_cache_store::add_to_store(std::string_view, content_method, hash_algo, source&,
                                           const store_path_set&) {
  unsupported("add files by themselves (copy paths into it with 'kiln copy --to')");
}

path_info binary_cache_store::add_nar(source& nar, path_info info) {
  if (info.nar_size == 0)
    throw error("cannot add '" + info.path.full() + "' from a NAR without its expected size");
  if (is_valid(info.path)) {
    discard_sink skipped; // the caller's stream goes on past this NAR (an export)
    copy_exact(nar, skipped, info.nar_size, "NAR of '" + info.path.full() + "'");
    return *query_path_info(info.path);
  }
  scratch_file file(transport_->scratch_dir());
  hash_sink file_hash(hash_algo::sha256);
  hash_sink nar_hash(hash_algo::sha256);
  {
    fd_sink written(file.fd.get(), file.path);
    tee_sink file_side(written, file_hash);
    auto compressed = make_compressing_sink(file_side, params_.compression, params_.compression_level,
                                            "the NAR of '" + info.path.full() + "'");
    tee_sink nar_side(*compressed, nar_hash);
    copy_exact(nar, nar_side, info.nar_size, "NAR of '" + info.path.full() + "'");
    compressed->finish();
  }
  hash got = nar_hash.finish();
  if (got != info.nar_hash)
    throw_nar_mismatch(info, got, nar_hash.size());

  narinfo n = narinfo::of(info);
  n.file_hash = file_hash.finish();
  n.file_size = file_hash.size();
  n.url = "nar/" + n.file_hash->base32() + ".nar" + compression_extension(params_.compression);
  n.compression = params_.compression;
  if (key_)
    n.sigs.insert(key_->sign(fingerprint_of(info)));
  // The NAR first: a narinfo is never published before what it points to.
  if (!transport_->has(n.url)) {
    transport_->put_file(n.url, file.path);
    file.published();
  }
  publish_narinfo(n);
  std::lock_guard<std::mutex> g(mutex_);
  return narinfos_.insert_or_assign(info.path, std::move(n)).first->second.info();
}

void binary_cache_store::nar_from_path(const store_path& p, sink& out) {
  const narinfo n = narinfo_of(p);
  std::string what = "'" + uri() + "/" + n.url + "'";
  auto raw = transport_->open(n.url, n.file_size);
  hashing_source file(*raw, n.file_hash ? n.file_hash->algo : hash_algo::sha256);
  buffered_source buffered(file);
  auto nar = decompressing_source(buffered, n.compression, what);
  std::vector<char> buf(1 << 16), held(1 << 16);
  std::size_t held_size = 0;
  uint64_t total = 0;
  while (std::size_t got = nar->read(buf.data(), buf.size())) {
    if (held_size)
      out.write(held.data(), held_size);
    std::swap(buf, held);
    held_size = got;
    total += got;
    if (total > n.nar_size)
      throw error(what + " holds more than the " + std::to_string(n.nar_size) + " bytes of NAR its narinfo says");
  }
  // Whatever follows the compressed stream still counts for the file.
  discard_sink rest;
  copy_all(buffered, rest);
  if (n.file_size && file.size() != n.file_size)
    throw error(what + " has " + std::to_string(file.size()) + " bytes, its narinfo says " +
                std::to_string(n.file_size));
  if (n.file_hash && file.finish() != *n.file_hash)
    throw error(what + " does not have the FileHash its narinfo gives");
  if (total != n.nar_size)
    throw error(what + " holds " + std::to_string(total) + " bytes of NAR, its narinfo says " +
                std::to_string(n.nar_size));
  out.write(held.data(), held_size);
  out.flush();
}

void binary_cache_store::add_signatures(const store_path& p, const std::set<std::string>& sigs) {
  narinfo n = narinfo_of(p);
  n.sigs.insert(sigs.begin(), sigs.end());
  publish_narinfo(n);
  std::lock_guard<std::mutex> g(mutex_);
  narinfos_.insert_or_assign(p, std::move(n));
}

void binary_cache_store::add_indirect_root(const std::string&) { unsupported("hold garbage collector roots"); }
gc_result binary_cache_store::collect_garbage(const gc_options&, const gc_progress&) {
  unsupported("collect garbage");
}
optimise_result binary_cache_store::optimise() { unsupported("be optimised"); }
std::vector<verify_problem> binary_cache_store::verify(bool) { unsupported("be verified as a whole"); }

std::optional<std::string> binary_cache_store::build_log(const store_path& drv) {
  return transport_->get("log/" + std::string(drv.base_name()), 1u << 30);
}

} // namespace kiln
