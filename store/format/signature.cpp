#include "store/format/signature.hpp"

#include "store/io/error.hpp"
#include "store/io/fd.hpp"

#include <sodium.h>

#include <cctype>
#include <cstring>
#include <vector>

namespace kiln {
namespace {

void init_sodium() {
  static const bool ok = sodium_init() >= 0;
  if (!ok)
    throw error("libsodium failed to initialise");
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front())))
    s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back())))
    s.remove_suffix(1);
  return s;
}

// Splits "name:base64" and decodes the key bytes, which must be `size` long.
std::pair<std::string, bytes> split_key(std::string_view text, std::size_t size, const char* kind) {
  text = trim(text);
  auto colon = text.find(':');
  if (colon == std::string_view::npos || colon == 0)
    throw format_error(std::string(kind) + " key is not of the form 'name:base64'");
  std::string name(text.substr(0, colon));
  bytes raw;
  try {
    raw = base64_decode(text.substr(colon + 1));
  } catch (const format_error& e) {
    throw format_error(std::string(kind) + " key '" + name + "': " + e.what());
  }
  if (raw.size() != size)
    throw format_error(std::string(kind) + " key '" + name + "' has " + std::to_string(raw.size()) +
                       " bytes, expected " + std::to_string(size));
  return {name, raw};
}

template <class Key, class Parse>
Key read_key_file(const std::string& path, Parse parse) {
  std::string text = read_whole_file(path, 65536, "key file");
  try {
    return parse(text);
  } catch (const format_error& e) {
    throw format_error("key file '" + path + "': " + e.what());
  }
}

} // namespace

std::string public_key::to_string() const {
  return name + ":" + base64_encode(key.data(), key.size());
}

bool public_key::verify(std::string_view message, std::string_view signature) const {
  init_sodium();
  auto colon = signature.find(':');
  if (colon == std::string_view::npos || signature.substr(0, colon) != name)
    return false;
  bytes sig;
  try {
    sig = base64_decode(signature.substr(colon + 1));
  } catch (const format_error&) {
    return false;
  }
  if (sig.size() != crypto_sign_BYTES)
    return false;
  return crypto_sign_verify_detached(sig.data(),
                                     reinterpret_cast<const unsigned char*>(message.data()),
                                     message.size(), key.data()) == 0;
}

std::string secret_key::to_string() const {
  return name + ":" + base64_encode(key.data(), key.size());
}

public_key secret_key::to_public() const {
  public_key pk;
  pk.name = name;
  std::memcpy(pk.key.data(), key.data() + 32, 32);
  return pk;
}

std::string secret_key::sign(std::string_view message) const {
  init_sodium();
  unsigned char sig[crypto_sign_BYTES];
  crypto_sign_detached(sig, nullptr, reinterpret_cast<const unsigned char*>(message.data()),
                       message.size(), key.data());
  return name + ":" + base64_encode(sig, sizeof sig);
}

secret_key parse_secret_key(std::string_view text) {
  auto [name, raw] = split_key(text, 64, "secret");
  secret_key k;
  k.name = name;
  std::memcpy(k.key.data(), raw.data(), 64);
  // The public half must be the one the seed implies, or every signature
  // made with this key would fail verification elsewhere.
  init_sodium();
  unsigned char pk[32], sk[64];
  crypto_sign_seed_keypair(pk, sk, k.key.data());
  if (std::memcmp(pk, k.key.data() + 32, 32) != 0)
    throw format_error("secret key '" + name + "' is corrupt: its public half does not match its seed");
  return k;
}

public_key parse_public_key(std::string_view text) {
  auto [name, raw] = split_key(text, 32, "public");
  public_key k;
  k.name = name;
  std::memcpy(k.key.data(), raw.data(), 32);
  return k;
}

secret_key read_secret_key_file(const std::string& path) {
  return read_key_file<secret_key>(path, parse_secret_key);
}

public_key read_public_key_file(const std::string& path) {
  return read_key_file<public_key>(path, parse_public_key);
}

secret_key generate_secret_key(std::string_view name) {
  if (name.empty() || name.find(':') != std::string_view::npos)
    throw format_error("key name '" + std::string(name) + "' must be non-empty and without ':'");
  init_sodium();
  secret_key k;
  k.name = std::string(name);
  unsigned char pk[32];
  crypto_sign_keypair(pk, k.key.data());
  return k;
}

std::string path_fingerprint(std::string_view full_path, const hash& nar_hash, uint64_t nar_size,
                             const std::set<std::string>& references) {
  if (nar_hash.algo != hash_algo::sha256)
    throw error("cannot fingerprint '" + std::string(full_path) + "': its NAR hash is not SHA-256");
  if (nar_size == 0)
    throw error("cannot fingerprint '" + std::string(full_path) + "': its NAR size is unknown");
  std::string fp = "1;" + std::string(full_path) + ";" + nar_hash.to_prefixed(hash_format::base32) +
                   ";" + std::to_string(nar_size) + ";";
  bool first = true;
  for (auto& r : references) {
    if (!first)
      fp += ',';
    fp += r;
    first = false;
  }
  return fp;
}

trusted_keys make_trusted_keys(const std::vector<std::string>& key_texts) {
  trusted_keys keys;
  for (auto& text : key_texts) {
    auto k = parse_public_key(text);
    keys[k.name] = k;
  }
  return keys;
}

bool has_valid_signature(std::string_view fingerprint, const std::set<std::string>& sigs,
                         const trusted_keys& trusted) {
  for (auto& sig : sigs) {
    auto name = sig.substr(0, sig.find(':'));
    auto it = trusted.find(name);
    if (it != trusted.end() && it->second.verify(fingerprint, sig))
      return true;
  }
  return false;
}

} // namespace kiln
