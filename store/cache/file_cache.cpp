#include "store/cache/file_cache.hpp"

#include "store/io/decompress.hpp"
#include "store/io/error.hpp"
#include "store/io/fd.hpp"
#include "store/io/file_ops.hpp"
#include "store/io/stream.hpp"

#include <fcntl.h>

namespace kiln {

namespace {

unique_fd open_in_cache(const std::string& path) {
  return unique_fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
}

} // namespace

file_cache_substituter::file_cache_substituter(const std::string& uri)
  : substituter(uri, parse_directory_uri(uri, "file://").second), dir_(parse_directory_uri(uri, "file://").first) {}

void file_cache_substituter::open() {
  std::string info_file = dir_ + "/nix-cache-info";
  if (!path_exists(info_file))
    throw error("binary cache '" + uri() + "' has no nix-cache-info");
  cache_info c = parse_cache_info(read_whole_file(info_file, 1 << 16, "nix-cache-info"), info_file);
  if (c.store_dir != default_store_dir)
    throw error("binary cache '" + uri() + "' is for a store in '" + c.store_dir + "', not '" +
                std::string(default_store_dir) + "'");
}

std::optional<path_info> file_cache_substituter::query(const store_path& p) {
  std::string file = dir_ + "/" + std::string(p.hash_part()) + ".narinfo";
  unique_fd fd = open_in_cache(file);
  if (!fd) {
    if (errno == ENOENT)
      return std::nullopt;
    throw_errno("reading '" + file + "'");
  }
  fd.reset();
  narinfo n = parse_narinfo(read_whole_file(file, 1 << 20, "narinfo"), file);
  if (n.path != p)
    throw format_error("narinfo '" + file + "' is for '" + n.path.full() + "', not '" + p.full() + "'");
  path_info info = n.info();
  narinfos_.insert_or_assign(p, std::move(n));
  return info;
}

void file_cache_substituter::copy(local_store& dest, const path_info& info) {
  const narinfo& n = narinfos_.at(info.path);
  std::string file = dir_ + "/" + n.url;
  auto open_nar = [&] {
    unique_fd fd = open_in_cache(file);
    if (!fd)
      throw_errno("opening '" + file + "'");
    return fd;
  };
  // The file as the narinfo describes it, before any of it is unpacked.
  if (n.file_hash || n.file_size) {
    unique_fd fd = open_nar();
    fd_source raw(fd.get(), file);
    hashing_source hashed(raw, n.file_hash ? n.file_hash->algo : hash_algo::sha256);
    discard_sink nothing;
    copy_all(hashed, nothing);
    if (n.file_size && hashed.size() != n.file_size)
      throw error("'" + file + "' has " + std::to_string(hashed.size()) + " bytes, its narinfo says " +
                  std::to_string(n.file_size));
    if (n.file_hash && hashed.finish() != *n.file_hash)
      throw error("'" + file + "' does not have the FileHash its narinfo gives");
  }
  unique_fd fd = open_nar();
  fd_source raw(fd.get(), file);
  buffered_source buffered(raw);
  auto nar = decompressing_source(buffered, n.compression, "'" + file + "'");
  dest.add_nar(*nar, info); // checks NarHash and NarSize before the path is valid
}

} // namespace kiln
