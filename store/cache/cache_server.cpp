#include "store/cache/cache_server.hpp"

#include "store/format/encoding.hpp"
#include "store/format/nar.hpp"
#include "store/format/nar_listing.hpp"
#include "store/format/narinfo.hpp"
#include "store/io/compress.hpp"
#include "store/io/error.hpp"
#include "store/io/pipe_source.hpp"
#include "store/local/verify.hpp"

namespace kiln {

namespace {

http_response not_found(const std::string& what) { return http_response::text(404, what + " is not here\n"); }

bool is_hash_part(std::string_view s) {
  if (s.size() != store_path_hash_length)
    return false;
  for (char c : s)
    if (!is_nix_base32_char(c))
      return false;
  return true;
}

// The path whose hash part `hash_part` is, if it is valid.
std::optional<path_info> find(local_store& store, std::string_view hash_part) {
  if (!is_hash_part(hash_part))
    return std::nullopt;
  auto p = store.query_path_from_hash_part(hash_part);
  if (!p)
    return std::nullopt;
  return store.query_path_info(*p);
}

std::string nar_url(const path_info& info, const std::string& compression) {
  return "nar/" + std::string(info.path.hash_part()) + "-" + info.nar_hash.base32() + ".nar" +
         compression_extension(compression);
}

http_response narinfo_of(const path_info& info, const cache_server_options& o) {
  narinfo n = narinfo::of(info);
  n.url = nar_url(info, o.compression);
  n.compression = o.compression;
  if (o.compression == "none") { // the file is the NAR
    n.file_hash = info.nar_hash;
    n.file_size = info.nar_size;
  }
  if (o.key)
    n.sigs.insert(o.key->sign(fingerprint_of(info)));
  return http_response::text(200, print_narinfo(n), "text/x-nix-narinfo");
}

http_response nar_of(local_store& store, const path_info& info, const cache_server_options& o) {
  http_response r;
  r.content_type = "application/x-nix-nar";
  std::string real = store.real_path(info.path);
  if (o.compression == "none") {
    r.length = info.nar_size;
    r.produce = [real](sink& out) { dump_path(real, out); };
  } else {
    // Level 1: on the fly, speed matters more than the last bytes. With
    // long-distance matching, the NAR's size bounds the window (a stream's
    // memory) for paths smaller than it.
    zstd_tuning tuning;
    if (o.long_distance)
      tuning = {true, info.nar_size};
    r.produce = [real, method = o.compression, tuning](sink& out) {
      auto packed = make_compressing_sink(out, method, 1, "the NAR of '" + real + "'", tuning);
      dump_path(real, *packed);
      packed->finish();
    };
  }
  return r;
}

} // namespace

http_response answer_cache_request(local_store& store, const cache_server_options& o, const http_request& req) {
  std::string target = req.target.substr(0, req.target.find('?'));
  if (target == "/nix-cache-info")
    return http_response::text(200,
                               "StoreDir: " + std::string(default_store_dir) + "\nWantMassQuery: 1\nPriority: " +
                                   std::to_string(o.priority) + "\n",
                               "text/x-nix-cache-info");
  auto ends_with = [&](std::string_view suffix) {
    return target.size() >= suffix.size() && target.compare(target.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  if (target.size() == 1 + store_path_hash_length + 8 && ends_with(".narinfo")) {
    auto info = find(store, std::string_view(target).substr(1, store_path_hash_length));
    return info ? narinfo_of(*info, o) : not_found(target);
  }
  if (target.size() == 1 + store_path_hash_length + 3 && ends_with(".ls")) {
    auto info = find(store, std::string_view(target).substr(1, store_path_hash_length));
    if (!info)
      return not_found(target);
    std::string real = store.real_path(info->path);
    pipe_source nar([&](sink& out) { dump_path(real, out); });
    return http_response::text(200, "{\"version\":1,\"root\":" + nar_listing_json(nar) + "}", "application/json");
  }
  if (target.rfind("/nar/", 0) == 0) {
    // nar/<hash part>-<NAR hash>.nar<extension>: the hash must be the
    // path's as it is now, and the extension the one served.
    std::string name = target.substr(5);
    auto info = find(store, std::string_view(name).substr(0, std::min(name.size(), store_path_hash_length)));
    if (!info || name != nar_url(*info, o.compression).substr(4))
      return not_found(target);
    return nar_of(store, *info, o);
  }
  if (target.rfind("/log/", 0) == 0) {
    std::string base = target.substr(5);
    try {
      auto log = store.build_log(store_path::from_base_name(base));
      if (log)
        return http_response::text(200, *log);
    } catch (const format_error&) {
    }
    return not_found(target);
  }
  return not_found(target);
}

} // namespace kiln
