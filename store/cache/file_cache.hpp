// A binary cache in a directory (`file:///DIR`, optionally `?trusted=1`)
// as a substituter: its nix-cache-info must name this store directory; a
// path is found by its narinfo, and copied by reading its NAR file, whose
// size and hash are checked against the narinfo before the NAR (streamed
// through its decompression) is unpacked and checked in turn.
#pragma once

#include "store/format/narinfo.hpp"
#include "store/local/substituter.hpp"

#include <map>
#include <string>

namespace kiln {

class file_cache_substituter : public substituter {
public:
  // Throws format_error for a URI that is not file:///DIR[?trusted=0|1].
  explicit file_cache_substituter(const std::string& uri);
  void open() override;

protected:
  std::optional<path_info> query(const store_path& p) override;
  void copy(local_store& dest, const path_info& info) override;

private:
  std::string dir_;
  std::map<store_path, narinfo> narinfos_; // what query() read, for copy()
};

} // namespace kiln
