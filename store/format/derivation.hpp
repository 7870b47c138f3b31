// Store derivations (`.drv` files) and their ATerm text form
// (nix-formats.md §5). Paths are kept as the exact strings of the file so
// that printing a parsed derivation reproduces the file byte for byte.
#pragma once

#include "store/format/store_path.hpp"

#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace kiln {

struct derivation_output {
  std::string path;      // full store path; empty for deferred / floating outputs
  std::string hash_algo; // "" (input-addressed), or "[r:]algo" for fixed outputs
  std::string hash;      // lowercase base16 digest of a fixed output, else ""

  bool is_fixed() const { return !hash.empty(); }
  // Decodes hash_algo/hash of a fixed output; throws format_error if malformed.
  ingestion_method method() const;
  kiln::hash fixed_hash() const;
  bool operator==(const derivation_output& o) const {
    return path == o.path && hash_algo == o.hash_algo && hash == o.hash;
  }
};

struct derivation {
  std::map<std::string, derivation_output> outputs;
  std::map<std::string, std::set<std::string>> input_drvs; // .drv path -> wanted outputs
  std::set<std::string> input_srcs;
  std::string platform;
  std::string builder;
  std::vector<std::string> args;
  std::map<std::string, std::string> env;

  // Exactly one output "out" with a fixed hash.
  bool is_fixed_output() const;
  bool operator==(const derivation& o) const;
};

// Parses ATerm text. Strict: every store path is checked, duplicate keys and
// trailing bytes are refused, and errors give the byte offset and what was
// expected there. `where` names the source (a file path) in messages.
derivation parse_derivation(std::string_view text, std::string_view where = "derivation");
derivation read_derivation_file(const std::string& path);

// Prints ATerm text. With `mask_outputs`, output paths and the env vars named
// after outputs are blanked (for hashDerivationModulo). `input_drvs`, when
// given, replaces the input derivation list (keys are then modulo hashes).
std::string print_derivation(const derivation& drv, bool mask_outputs = false,
                             const std::map<std::string, std::set<std::string>>* input_drvs = nullptr);

// The store path of a .drv with these contents: a text path named
// `<name>.drv` whose references are the input sources and input derivations.
store_path derivation_store_path(const derivation& drv, std::string_view name,
                                 std::string_view store_dir = default_store_dir);

// The derivation's name: from a `<hash>-<name>.drv` file name if it is one,
// otherwise from the `name` env var. Throws if neither gives a valid name.
std::string derivation_name(const derivation& drv, std::string_view file_name);

} // namespace kiln
