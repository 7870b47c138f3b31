// Nix's framing, shared by NARs, export streams and (later) the daemon
// protocol: unsigned 64-bit little-endian integers, and strings as their
// length, their bytes, and zero bytes up to the next multiple of 8.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace kiln::wire {

inline std::size_t padding(uint64_t len) {
  return static_cast<std::size_t>((8 - len % 8) % 8);
}

inline void append_u64(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; ++i)
    out += static_cast<char>((v >> (8 * i)) & 0xff);
}

inline void append_padding(std::string& out, uint64_t len) {
  out.append(padding(len), '\0');
}

inline void append_string(std::string& out, std::string_view s) {
  append_u64(out, s.size());
  out.append(s.data(), s.size());
  append_padding(out, s.size());
}

inline uint64_t decode_u64(const unsigned char* b) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i)
    v = (v << 8) | b[i];
  return v;
}

} // namespace kiln::wire
