// Digests, streaming hashing and the text forms Nix writes them in.
//
// SHA-256 is on the hot path of every NAR and build output, so hashing goes
// through OpenSSL's libcrypto (SHA-NI where the CPU has it). MD5 and SHA-1
// exist only for legacy fixed-output hashes.
#pragma once

#include "store/format/encoding.hpp"

#include <array>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace kiln {

enum class hash_algo { md5, sha1, sha256, sha512 };

std::string_view to_string(hash_algo algo);
// Throws format_error for an unknown name ("sha256", "sha512", "sha1", "md5").
hash_algo parse_hash_algo(std::string_view name);
std::optional<hash_algo> try_parse_hash_algo(std::string_view name);
std::size_t digest_size(hash_algo algo);

enum class hash_format { base16, base32, base64, sri };
// Throws format_error for anything but base16, base32, base64, sri.
hash_format parse_hash_format(std::string_view name);

struct hash {
  hash_algo algo = hash_algo::sha256;
  std::array<uint8_t, 64> digest{};

  std::size_t size() const { return digest_size(algo); }
  const uint8_t* data() const { return digest.data(); }

  // Bare digest in the given form; sri always carries its "algo-" prefix.
  std::string to_string(hash_format format) const;
  // "algo:digest" (or SRI for hash_format::sri).
  std::string to_prefixed(hash_format format) const;

  std::string base16() const { return to_string(hash_format::base16); }
  std::string base32() const { return to_string(hash_format::base32); }

  bool operator==(const hash& other) const;
  bool operator!=(const hash& other) const { return !(*this == other); }

  static hash from_bytes(hash_algo algo, const uint8_t* data, std::size_t n);
};

// Parses "algo:digest", "algo-base64" (SRI), or a bare digest when `algo` is
// given. The encoding of a digest is told apart by its length alone, as Nix
// does. A prefix that disagrees with `algo` is an error.
hash parse_hash(std::string_view text, std::optional<hash_algo> algo = std::nullopt);

// Incremental hashing. Not copyable; finish() may be called once.
class hasher {
public:
  explicit hasher(hash_algo algo);
  ~hasher();
  hasher(const hasher&) = delete;
  hasher& operator=(const hasher&) = delete;

  void update(const void* data, std::size_t n);
  void update(std::string_view s) { update(s.data(), s.size()); }
  hash finish();
  hash_algo algo() const { return algo_; }

private:
  hash_algo algo_;
  struct impl;
  std::unique_ptr<impl> impl_;
};

hash hash_string(hash_algo algo, std::string_view data);
// Flat hash of a regular file's bytes; anything else is refused.
hash hash_file(hash_algo algo, const std::string& path);

// XOR-folds a digest into `size` bytes (nix-formats.md §3): how a SHA-256
// becomes the 20-byte hash part of a store path.
bytes compress_hash(const hash& h, std::size_t size);

} // namespace kiln
