// A binary cache as a store (nix-formats.md §11): paths are narinfo files
// and compressed NARs, reached through a transport. Read as Nix reads one
// (its StoreDir must be ours; every NAR is checked against its narinfo),
// written as Nix writes one (NAR under nar/<file hash>.nar.<ext>, then the
// narinfo, signed when a secret key is given), so Nix reads what Kiln
// writes and the other way round. What a cache cannot do (referrers, roots,
// collection, building) is an error saying so.
#pragma once

#include "store/cache/cache_transport.hpp"
#include "store/cache/narinfo_cache.hpp"
#include "store/format/narinfo.hpp"
#include "store/format/signature.hpp"
#include "store/store.hpp"

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

namespace kiln {

// The parameters of a cache's URI (`?compression=zstd&secret-key=FILE`).
struct cache_params {
  std::string compression = "xz"; // what is written (Nix's default)
  int compression_level = -1;     // the method's default
  std::string secret_key_file;    // signs what is written
  // Where lookups are remembered (remote caches), under `lookup_key`.
  std::shared_ptr<narinfo_cache> lookups;
  std::string lookup_key;
  uint64_t positive_ttl = 0, negative_ttl = 0;
};

class binary_cache_store : public store {
public:
  // Reads nix-cache-info; with `create`, makes one if there is none
  // (writing), else a cache without one is an error (reading).
  binary_cache_store(std::unique_ptr<cache_transport> transport, cache_params params, bool create);
  const std::string& uri() const { return transport_->uri(); }
  const cache_info& info() const { return info_; }

  // The size of the file a path's NAR comes in (its narinfo's FileSize),
  // if the cache has the path and says.
  std::optional<uint64_t> download_size(const store_path& p);

  bool is_valid(const store_path& p) override;
  std::optional<path_info> query_path_info(const store_path& p) override;
  store_path_set query_referrers(const store_path& p) override;
  store_path_set query_valid_derivers(const store_path& p) override;
  std::map<std::string, store_path> query_derivation_outputs(const store_path& drv) override;
  std::vector<store_path> query_all_valid_paths() override;
  std::optional<store_path> query_path_from_hash_part(std::string_view hash_part) override;
  missing_plan query_missing(const std::vector<wanted_path>& targets) override;

  path_info add_to_store(std::string_view name, content_method method, hash_algo algo, source& data,
                         const store_path_set& references) override;
  // Compresses and stores the NAR, then publishes its narinfo; a NAR that
  // does not match `info` leaves nothing behind. A path the cache has is
  // left as it is.
  path_info add_nar(source& nar, path_info info) override;
  // The NAR, decompressed. Its last bytes are held back until the whole
  // file has matched the narinfo's FileSize and FileHash and the NAR its
  // NarSize, so a consumer never sees a complete NAR from a bad file.
  void nar_from_path(const store_path& p, sink& out) override;
  void add_signatures(const store_path& p, const std::set<std::string>& sigs) override;

  void add_temp_root(const store_path&) override {} // nothing is ever collected from a cache
  void add_indirect_root(const std::string& link) override;
  gc_root_map find_roots() override { return {}; }
  gc_result collect_garbage(const gc_options& options, const gc_progress& progress) override;
  optimise_result optimise() override;
  std::vector<verify_problem> verify(bool check_contents) override;
  std::optional<std::string> build_log(const store_path& drv) override;

private:
  std::optional<narinfo> read_narinfo(std::string_view hash_part);
  const narinfo& narinfo_of(const store_path& p);
  void publish_narinfo(const narinfo& n);
  [[noreturn]] void unsupported(const std::string& what) const;

  std::unique_ptr<cache_transport> transport_;
  cache_params params_;
  std::optional<secret_key> key_;
  cache_info info_;
  std::mutex mutex_;
  std::map<store_path, narinfo> narinfos_; // read or written, for later calls
};

} // namespace kiln
