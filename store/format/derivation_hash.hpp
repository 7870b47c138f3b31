// hashDerivationModulo and output paths (nix-formats.md §6).
//
// A derivation's output paths depend on its inputs only through their
// "modulo" hashes, in which a fixed-output input counts by its declared hash
// rather than its recipe. Computing them needs the whole input graph; the
// hasher loads each input .drv once and memoises its unmasked hash.
#pragma once

#include "store/format/derivation.hpp"

#include <functional>
#include <map>
#include <string>

namespace kiln {

using output_hashes = std::map<std::string, hash>; // output name -> sha256

class derivation_hasher {
public:
  // Loads an input derivation by its full .drv path.
  using loader = std::function<derivation(const std::string& drv_path)>;
  explicit derivation_hasher(loader load) : load_(std::move(load)) {}

  // HDM(drv, mask). Inputs are always hashed unmasked and memoised.
  output_hashes hash_modulo(const derivation& drv, bool mask_outputs);
  // The memoised unmasked hash of the derivation stored at `drv_path`.
  const output_hashes& input_hash(const std::string& drv_path);

private:
  // Assumes every input's hash is already memoised.
  output_hashes hash_with_known_inputs(const derivation& drv, bool mask_outputs);
  void memoise_closure(const std::string& drv_path);

  loader load_;
  std::map<std::string, output_hashes> memo_;
};

// The output paths the derivation's content implies: fixed outputs from their
// declared hash, input-addressed ones from the masked modulo hash. `name` is
// the derivation name (see derivation_name()).
std::map<std::string, store_path> compute_output_paths(const derivation& drv,
                                                       std::string_view name,
                                                       derivation_hasher& hasher);

// Loader that finds input .drv files by base name in a directory.
derivation_hasher::loader directory_loader(std::string dir);

} // namespace kiln
