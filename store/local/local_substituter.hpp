// A substituter that is another local store (`local:DIR`, optionally
// `local:DIR?trusted=1`): paths are copied from it as NARs checked
// against the hash and size it records.
#pragma once

#include "store/local/substituter.hpp"

#include <memory>
#include <string>

namespace kiln {

class local_substituter : public substituter {
public:
  // Throws format_error for a URI that is not local:DIR[?trusted=1].
  explicit local_substituter(const std::string& uri);
  void open() override { source(); }

protected:
  std::optional<path_info> query(const store_path& p) override;
  void copy(local_store& dest, const path_info& info) override;

private:
  local_store& source();

  std::string root_;
  std::unique_ptr<local_store> source_; // opened on first use
};

} // namespace kiln
