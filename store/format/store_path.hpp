// Store paths: `<store dir>/<32 base32 chars>-<name>`, and the way Nix derives
// every kind of them from a digest (nix-formats.md §4).
#pragma once

#include "store/format/hash.hpp"

#include <set>
#include <vector>
#include <string>
#include <string_view>

namespace kiln {

inline constexpr std::string_view default_store_dir = "/nix/store";
inline constexpr std::size_t store_path_hash_length = 32;
inline constexpr std::size_t max_store_path_name_length = 211;

// A store path without its directory: the base name `<hash>-<name>`.
// Constructed only through the parsers and makers below, so always valid.
class store_path {
public:
  std::string_view base_name() const { return base_; }
  std::string_view hash_part() const { return std::string_view(base_).substr(0, store_path_hash_length); }
  std::string_view name() const { return std::string_view(base_).substr(store_path_hash_length + 1); }
  std::string full(std::string_view store_dir = default_store_dir) const;
  bool is_derivation() const;

  bool operator<(const store_path& o) const { return base_ < o.base_; }
  bool operator==(const store_path& o) const { return base_ == o.base_; }
  bool operator!=(const store_path& o) const { return base_ != o.base_; }

  // Throws format_error naming what is wrong with the base name.
  static store_path from_base_name(std::string_view base_name);

private:
  explicit store_path(std::string base) : base_(std::move(base)) {}
  std::string base_;
};

using store_path_set = std::set<store_path>;

// The paths as text (/nix/store/...), in the set's order.
std::vector<std::string> full_paths(const store_path_set& paths);

// Throws format_error if `name` is empty, longer than 211 characters, or has
// a character outside [A-Za-z0-9+-._?=].
void check_store_path_name(std::string_view name);

// Parses a full path that must lie directly inside `store_dir`.
store_path parse_store_path(std::string_view path, std::string_view store_dir = default_store_dir);

// The generic construction: fingerprint `type:sha256:<hex>:<dir>:<name>`,
// SHA-256 of it folded to 20 bytes. `inner` must be a SHA-256.
store_path make_store_path(std::string_view type, const hash& inner, std::string_view name,
                           std::string_view store_dir = default_store_dir);
// The fingerprint string itself, for diagnostics and tests.
std::string store_path_fingerprint(std::string_view type, const hash& inner, std::string_view name,
                                   std::string_view store_dir = default_store_dir);

// How a fixed-output or added path's content was hashed.
enum class ingestion_method { flat, recursive };

// builtins.toFile / .drv files: the hash is SHA-256 of the contents.
store_path make_text_path(std::string_view name, const hash& content_sha256,
                          const store_path_set& references,
                          std::string_view store_dir = default_store_dir);
// nix-store --add: the hash is SHA-256 of the NAR.
store_path make_source_path(std::string_view name, const hash& nar_sha256,
                            const store_path_set& references, bool self_reference = false,
                            std::string_view store_dir = default_store_dir);
// Fixed-output paths; recursive SHA-256 coincides with a source path.
store_path make_fixed_output_path(std::string_view name, ingestion_method method, const hash& h,
                                  std::string_view store_dir = default_store_dir);
// Input-addressed derivation outputs, from the masked hashDerivationModulo.
store_path make_output_path(std::string_view drv_name, std::string_view output_name,
                            const hash& drv_hash, std::string_view store_dir = default_store_dir);
// `name` for output "out", `name-output` otherwise.
std::string output_path_name(std::string_view drv_name, std::string_view output_name);

// Content-address strings as recorded in path info (`fixed:r:sha256:<base32>`).
std::string fixed_output_ca(ingestion_method method, const hash& h);
std::string text_ca(const hash& content_sha256);

} // namespace kiln
