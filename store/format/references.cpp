#include "store/format/references.hpp"

#include "store/io/error.hpp"
#include "store/format/nar.hpp"
#include "store/format/store_path.hpp"

#include <array>
#include <cstring>

namespace kiln {
namespace {

constexpr std::size_t window = store_path_hash_length;

const std::array<bool, 256> base32_byte = [] {
  std::array<bool, 256> t{};
  for (char c : nix_base32_alphabet)
    t[static_cast<unsigned char>(c)] = true;
  return t;
}();

inline bool b32(char c) {
  return base32_byte[static_cast<unsigned char>(c)];
}

inline uint64_t key_of(const char* p) {
  uint64_t k;
  std::memcpy(&k, p, 8);
  return k;
}

inline uint64_t mix(uint64_t key) {
  return key * 0x9E3779B97F4A7C15ull;
}

inline uint64_t slot_of(uint64_t key, uint64_t mask) {
  return (mix(key) >> 17) & mask;
}

inline uint64_t filter_bit(uint64_t key) {
  return mix(key) >> 48; // 16 bits
}

} // namespace

reference_scanner::reference_scanner(const std::set<std::string>& hash_parts)
  : candidates_(hash_parts.begin(), hash_parts.end()), seen_(hash_parts.size(), false) {
  for (auto& h : candidates_) {
    if (h.size() != window)
      throw error("reference candidate '" + h + "' is not a 32-character hash part");
    for (char c : h)
      if (!b32(c))
        throw error("reference candidate '" + h + "' is not Nix base32");
  }
  std::size_t size = 16;
  while (size < 4 * candidates_.size())
    size *= 2;
  filter_.assign((1 << 16) / 64, 0);
  keys_.assign(size, 0);
  slots_.assign(size, 0);
  mask_ = size - 1;
  for (std::size_t i = 0; i < candidates_.size(); ++i) {
    uint64_t k = key_of(candidates_[i].data());
    uint64_t s = slot_of(k, mask_);
    while (slots_[s] != 0)
      s = (s + 1) & mask_;
    keys_[s] = k;
    slots_[s] = static_cast<uint32_t>(i + 1);
    filter_[filter_bit(k) / 64] |= 1ull << (filter_bit(k) % 64);
  }
}

void reference_scanner::check_window(const char* p) {
  uint64_t k = key_of(p);
  uint64_t bit = filter_bit(k);
  if (!(filter_[bit / 64] >> (bit % 64) & 1))
    return;
  for (uint64_t s = slot_of(k, mask_); slots_[s] != 0; s = (s + 1) & mask_) {
    if (keys_[s] != k)
      continue;
    std::size_t i = slots_[s] - 1;
    if (!seen_[i] && std::memcmp(candidates_[i].data(), p, window) == 0)
      seen_[i] = true;
  }
}

void reference_scanner::scan(const char* p, std::size_t n) {
  std::size_t i = 0;
  while (i + window <= n) {
    // Find the last non-base32 byte in the window; every window containing
    // it is hopeless, so jump past it.
    std::size_t j = window;
    while (j > 0 && b32(p[i + j - 1]))
      --j;
    if (j > 0) {
      i += j;
      continue;
    }
    check_window(p + i);
    while (i + window < n && b32(p[i + window])) {
      ++i;
      check_window(p + i);
    }
    i += window + 1;
  }
}

void reference_scanner::write(const char* data, std::size_t n) {
  if (candidates_.empty() || n == 0)
    return;
  if (!tail_.empty()) {
    // Windows that straddle the previous chunk and this one.
    std::string joint = tail_;
    joint.append(data, std::min(n, window - 1));
    scan(joint.data(), joint.size());
  }
  scan(data, n);
  if (n >= window - 1) {
    tail_.assign(data + n - (window - 1), window - 1);
  } else {
    tail_.append(data, n);
    if (tail_.size() > window - 1)
      tail_.erase(0, tail_.size() - (window - 1));
  }
}

std::set<std::string> reference_scanner::found() const {
  std::set<std::string> out;
  for (std::size_t i = 0; i < candidates_.size(); ++i)
    if (seen_[i])
      out.insert(candidates_[i]);
  return out;
}

std::set<std::string> scan_path_for_references(const std::string& path,
                                               const std::set<std::string>& hash_parts) {
  reference_scanner scanner(hash_parts);
  dump_path(path, scanner);
  return scanner.found();
}

} // namespace kiln
