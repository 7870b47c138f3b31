#include "store/format/encoding.hpp"

#include "store/io/error.hpp"

#include <array>

namespace kiln {
namespace {

constexpr std::string_view hex_digits = "0123456789abcdef";
constexpr std::string_view base64_chars =
  "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

// Reverse table for the base32 alphabet: -1 for characters outside it.
constexpr std::array<int8_t, 256> make_base32_table() {
  std::array<int8_t, 256> t{};
  for (auto& v : t)
    v = -1;
  for (std::size_t i = 0; i < nix_base32_alphabet.size(); ++i)
    t[static_cast<uint8_t>(nix_base32_alphabet[i])] = static_cast<int8_t>(i);
  return t;
}
constexpr auto base32_table = make_base32_table();

std::string describe_char(char c, std::size_t pos) {
  auto u = static_cast<unsigned char>(c);
  std::string shown = (u >= 0x20 && u < 0x7f) ? std::string("'") + c + "'"
                                              : "byte 0x" + base16_encode(&u, 1);
  return shown + " at position " + std::to_string(pos);
}

int hex_value(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

int base64_value(char c) {
  auto pos = base64_chars.find(c);
  return pos == std::string_view::npos ? -1 : static_cast<int>(pos);
}

} // namespace

std::size_t base16_length(std::size_t n) {
  return 2 * n;
}

std::size_t nix_base32_length(std::size_t n) {
  return n == 0 ? 0 : (8 * n - 1) / 5 + 1;
}

std::size_t base64_length(std::size_t n) {
  return 4 * ((n + 2) / 3);
}

bool is_nix_base32_char(char c) {
  return base32_table[static_cast<uint8_t>(c)] >= 0;
}

std::string base16_encode(const uint8_t* data, std::size_t n) {
  std::string out(2 * n, '0');
  for (std::size_t i = 0; i < n; ++i) {
    out[2 * i] = hex_digits[data[i] >> 4];
    out[2 * i + 1] = hex_digits[data[i] & 15];
  }
  return out;
}

std::string nix_base32_encode(const uint8_t* data, std::size_t n) {
  std::size_t len = nix_base32_length(n);
  std::string out;
  out.reserve(len);
  for (std::size_t g = len; g-- > 0;) {
    std::size_t bit = g * 5, i = bit / 8, j = bit % 8;
    unsigned v = data[i] >> j;
    if (i + 1 < n)
      v |= static_cast<unsigned>(data[i + 1]) << (8 - j);
    out.push_back(nix_base32_alphabet[v & 31]);
  }
  return out;
}

std::string base64_encode(const uint8_t* data, std::size_t n) {
  std::string out;
  out.reserve(base64_length(n));
  for (std::size_t i = 0; i < n; i += 3) {
    uint32_t chunk = static_cast<uint32_t>(data[i]) << 16;
    if (i + 1 < n)
      chunk |= static_cast<uint32_t>(data[i + 1]) << 8;
    if (i + 2 < n)
      chunk |= data[i + 2];
    out.push_back(base64_chars[(chunk >> 18) & 63]);
    out.push_back(base64_chars[(chunk >> 12) & 63]);
    out.push_back(i + 1 < n ? base64_chars[(chunk >> 6) & 63] : '=');
    out.push_back(i + 2 < n ? base64_chars[chunk & 63] : '=');
  }
  return out;
}

bytes base16_decode(std::string_view text) {
  if (text.size() % 2 != 0)
    throw format_error("base16 text has odd length " + std::to_string(text.size()));
  bytes out(text.size() / 2);
  for (std::size_t i = 0; i < text.size(); ++i) {
    int v = hex_value(text[i]);
    if (v < 0)
      throw format_error("invalid base16 character " + describe_char(text[i], i));
    out[i / 2] = static_cast<uint8_t>(out[i / 2] | (v << (i % 2 == 0 ? 4 : 0)));
  }
  return out;
}

bytes nix_base32_decode(std::string_view text, std::size_t n) {
  if (text.size() != nix_base32_length(n))
    throw format_error("Nix base32 text has length " + std::to_string(text.size()) +
                       ", expected " + std::to_string(nix_base32_length(n)));
  bytes out(n, 0);
  for (std::size_t k = 0; k < text.size(); ++k) {
    std::size_t pos = text.size() - 1 - k; // k-th character from the end is group k
    int v = base32_table[static_cast<uint8_t>(text[pos])];
    if (v < 0)
      throw format_error("invalid Nix base32 character " + describe_char(text[pos], pos));
    std::size_t bit = k * 5, i = bit / 8, j = bit % 8;
    out[i] = static_cast<uint8_t>(out[i] | (v << j));
    unsigned carry = static_cast<unsigned>(v) >> (8 - j);
    if (i + 1 < n)
      out[i + 1] = static_cast<uint8_t>(out[i + 1] | carry);
    else if (carry != 0)
      throw format_error("Nix base32 text '" + std::string(text) +
                         "' has bits set beyond the digest length");
  }
  return out;
}

bytes base64_decode(std::string_view text) {
  if (text.size() % 4 != 0)
    throw format_error("base64 text has length " + std::to_string(text.size()) +
                       ", not a multiple of 4");
  bytes out;
  out.reserve(text.size() / 4 * 3);
  for (std::size_t i = 0; i < text.size(); i += 4) {
    uint32_t chunk = 0;
    int pad = 0;
    for (std::size_t k = 0; k < 4; ++k) {
      char c = text[i + k];
      int v;
      if (c == '=' && i + 4 == text.size() && k >= 2) {
        ++pad;
        v = 0;
      } else if (pad > 0 || (v = base64_value(c)) < 0) {
        throw format_error("invalid base64 character " + describe_char(c, i + k));
      }
      chunk = (chunk << 6) | static_cast<uint32_t>(v);
    }
    out.push_back(static_cast<uint8_t>(chunk >> 16));
    if (pad < 2)
      out.push_back(static_cast<uint8_t>(chunk >> 8));
    if (pad < 1)
      out.push_back(static_cast<uint8_t>(chunk));
  }
  return out;
}

} // namespace kiln
