#include "store/format/hash.hpp"

#include "store/io/error.hpp"
#include "store/io/fd.hpp"

#include <openssl/evp.h>

#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

namespace kiln {

std::string_view to_string(hash_algo algo) {
  switch (algo) {
    case hash_algo::md5: return "md5";
    case hash_algo::sha1: return "sha1";
    case hash_algo::sha256: return "sha256";
    case hash_algo::sha512: return "sha512";
  }
  return "?";
}

std::optional<hash_algo> try_parse_hash_algo(std::string_view name) {
  for (auto a : {hash_algo::md5, hash_algo::sha1, hash_algo::sha256, hash_algo::sha512})
    if (name == to_string(a))
      return a;
  return std::nullopt;
}

hash_algo parse_hash_algo(std::string_view name) {
  if (auto a = try_parse_hash_algo(name))
    return *a;
  throw format_error("unknown hash algorithm '" + std::string(name) +
                     "' (expected md5, sha1, sha256 or sha512)");
}

std::size_t digest_size(hash_algo algo) {
  switch (algo) {
    case hash_algo::md5: return 16;
    case hash_algo::sha1: return 20;
    case hash_algo::sha256: return 32;
    case hash_algo::sha512: return 64;
  }
  return 0;
}

hash_format parse_hash_format(std::string_view name) {
  if (name == "base16")
    return hash_format::base16;
  if (name == "base32")
    return hash_format::base32;
  if (name == "base64")
    return hash_format::base64;
  if (name == "sri")
    return hash_format::sri;
  throw format_error("unknown hash format '" + std::string(name) +
                     "' (expected base16, base32, base64 or sri)");
}

std::string hash::to_string(hash_format format) const {
  switch (format) {
    case hash_format::base16: return base16_encode(data(), size());
    case hash_format::base32: return nix_base32_encode(data(), size());
    case hash_format::base64: return base64_encode(data(), size());
    case hash_format::sri:
      return std::string(kiln::to_string(algo)) + "-" + base64_encode(data(), size());
  }
  return {};
}

std::string hash::to_prefixed(hash_format format) const {
  if (format == hash_format::sri)
    return to_string(format);
  return std::string(kiln::to_string(algo)) + ":" + to_string(format);
}

bool hash::operator==(const hash& other) const {
  return algo == other.algo && std::memcmp(data(), other.data(), size()) == 0;
}

hash hash::from_bytes(hash_algo algo, const uint8_t* data, std::size_t n) {
  if (n != digest_size(algo))
    throw format_error("a " + std::string(kiln::to_string(algo)) + " digest has " +
                       std::to_string(digest_size(algo)) + " bytes, got " + std::to_string(n));
  hash h;
  h.algo = algo;
  std::memcpy(h.digest.data(), data, n);
  return h;
}

namespace {

hash decode_digest(std::string_view body, hash_algo algo, bool sri, std::string_view whole) {
  std::size_t n = digest_size(algo);
  bytes raw;
  try {
    if (sri) {
      raw = base64_decode(body);
    } else if (body.size() == base16_length(n)) {
      raw = base16_decode(body);
    } else if (body.size() == nix_base32_length(n)) {
      raw = nix_base32_decode(body, n);
    } else if (body.size() == base64_length(n)) {
      raw = base64_decode(body);
    } else {
      throw format_error("a " + std::string(to_string(algo)) + " digest is " +
                         std::to_string(base16_length(n)) + " (base16), " +
                         std::to_string(nix_base32_length(n)) + " (base32) or " +
                         std::to_string(base64_length(n)) + " (base64) characters long, got " +
                         std::to_string(body.size()));
    }
    if (raw.size() != n)
      throw format_error("digest decodes to " + std::to_string(raw.size()) + " bytes, expected " +
                         std::to_string(n));
  } catch (const format_error& e) {
    throw format_error("invalid hash '" + std::string(whole) + "': " + e.what());
  }
  return hash::from_bytes(algo, raw.data(), raw.size());
}

} // namespace

hash parse_hash(std::string_view text, std::optional<hash_algo> algo) {
  auto check_algo = [&](hash_algo found) {
    if (algo && *algo != found)
      throw format_error("hash '" + std::string(text) + "' is " + std::string(to_string(found)) +
                         ", expected " + std::string(to_string(*algo)));
    return found;
  };
  auto colon = text.find(':');
  if (colon != std::string_view::npos) {
    auto a = try_parse_hash_algo(text.substr(0, colon));
    if (!a)
      throw format_error("invalid hash '" + std::string(text) + "': unknown algorithm '" +
                         std::string(text.substr(0, colon)) + "'");
    return decode_digest(text.substr(colon + 1), check_algo(*a), false, text);
  }
  auto dash = text.find('-');
  if (dash != std::string_view::npos) {
    if (auto a = try_parse_hash_algo(text.substr(0, dash)))
      return decode_digest(text.substr(dash + 1), check_algo(*a), true, text);
  }
  if (!algo)
    throw format_error("hash '" + std::string(text) +
                       "' has no algorithm prefix and none was given (use algo:digest or SRI)");
  return decode_digest(text, *algo, false, text);
}

struct hasher::impl {
  EVP_MD_CTX* ctx = nullptr;
  ~impl() { EVP_MD_CTX_free(ctx); }
};

namespace {
const EVP_MD* evp_for(hash_algo algo) {
  switch (algo) {
    case hash_algo::md5: return EVP_md5();
    case hash_algo::sha1: return EVP_sha1();
    case hash_algo::sha256: return EVP_sha256();
    case hash_algo::sha512: return EVP_sha512();
  }
  return nullptr;
}
} // namespace

hasher::hasher(hash_algo algo) : algo_(algo), impl_(std::make_unique<impl>()) {
  impl_->ctx = EVP_MD_CTX_new();
  if (!impl_->ctx || EVP_DigestInit_ex(impl_->ctx, evp_for(algo), nullptr) != 1)
    throw error("cannot initialise " + std::string(to_string(algo)) + " in libcrypto");
}

hasher::~hasher() = default;

void hasher::update(const void* data, std::size_t n) {
  if (n > 0 && EVP_DigestUpdate(impl_->ctx, data, n) != 1)
    throw error("libcrypto digest update failed");
}

hash hasher::finish() {
  hash h;
  h.algo = algo_;
  unsigned int len = 0;
  if (EVP_DigestFinal_ex(impl_->ctx, h.digest.data(), &len) != 1 || len != h.size())
    throw error("libcrypto digest finalisation failed");
  return h;
}

hash hash_string(hash_algo algo, std::string_view data) {
  hasher h(algo);
  h.update(data);
  return h.finish();
}

hash hash_file(hash_algo algo, const std::string& path) {
  // O_NONBLOCK: opening a FIFO must not hang before the type check refuses it.
  unique_fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
  if (!fd)
    throw_errno("opening '" + path + "'");
  struct stat st;
  if (::fstat(fd.get(), &st) != 0)
    throw_errno("getting the status of '" + path + "'");
  if (!S_ISREG(st.st_mode))
    throw error("'" + path + "' is not a regular file; flat hashing needs one");
  hasher h(algo);
  std::vector<char> buf(1 << 20);
  for (;;) {
    std::size_t n = read_some(fd.get(), buf.data(), buf.size(), path);
    if (n == 0)
      break;
    h.update(buf.data(), n);
  }
  return h.finish();
}

bytes compress_hash(const hash& h, std::size_t size) {
  bytes out(size, 0);
  for (std::size_t i = 0; i < h.size(); ++i)
    out[i % size] ^= h.digest[i];
  return out;
}

} // namespace kiln
