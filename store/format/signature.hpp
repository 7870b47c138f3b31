// Ed25519 signatures on store paths, as Nix makes them (nix-formats.md §12).
// Keys are `name:base64` strings: 64 secret bytes (seed || public key) or
// 32 public bytes. A signature is `keyname:base64(64 bytes)` over the path's
// fingerprint `1;<path>;<narHash>;<narSize>;<refs>`.
#pragma once

#include "store/format/hash.hpp"

#include <array>
#include <map>
#include <set>
#include <string>
#include <string_view>

namespace kiln {

struct public_key {
  std::string name;
  std::array<uint8_t, 32> key{};

  std::string to_string() const;
  // True iff `signature` ("name:base64") is by this key and valid for `message`.
  bool verify(std::string_view message, std::string_view signature) const;
};

struct secret_key {
  std::string name;
  std::array<uint8_t, 64> key{}; // seed || public key, as libsodium keeps it

  std::string to_string() const;
  public_key to_public() const;
  // "name:base64(signature)"; deterministic, as Ed25519 is.
  std::string sign(std::string_view message) const;
};

// Parse key text (a key file's contents; surrounding whitespace is ignored).
// Throw format_error naming what is wrong: no name, bad base64, wrong size.
secret_key parse_secret_key(std::string_view text);
public_key parse_public_key(std::string_view text);
// Reads and parses a key file, naming the file in errors.
secret_key read_secret_key_file(const std::string& path);
public_key read_public_key_file(const std::string& path);

secret_key generate_secret_key(std::string_view name);

// The message Nix signs for a store path. References are full paths; the
// set keeps them sorted. Throws if nar_size is 0 or the hash not SHA-256,
// as Nix refuses those too.
std::string path_fingerprint(std::string_view full_path, const hash& nar_hash, uint64_t nar_size,
                             const std::set<std::string>& references);

using trusted_keys = std::map<std::string, public_key>; // by key name
trusted_keys make_trusted_keys(const std::vector<std::string>& key_texts);

// True iff some signature in `sigs` is valid under the trusted key it names.
bool has_valid_signature(std::string_view fingerprint, const std::set<std::string>& sigs,
                         const trusted_keys& trusted);

} // namespace kiln
