// Text encodings of binary digests: base16, Nix's own base32, and base64.
//
// Nix base32 is not RFC 4648: it has its own alphabet (no e, o, u, t) and
// prints the digest as one little-endian bit string, most significant 5-bit
// group first. See ../shared/spec/nix-formats.md §2.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace kiln {

using bytes = std::vector<uint8_t>;

inline constexpr std::string_view nix_base32_alphabet = "0123456789abcdfghijklmnpqrsvwxyz";

std::size_t base16_length(std::size_t n);
std::size_t nix_base32_length(std::size_t n);
std::size_t base64_length(std::size_t n);

std::string base16_encode(const uint8_t* data, std::size_t n);
std::string nix_base32_encode(const uint8_t* data, std::size_t n);
std::string base64_encode(const uint8_t* data, std::size_t n);

// Decoders throw kiln::format_error naming the offending character and its
// position, or the bad length. Base16 accepts upper and lower case.
bytes base16_decode(std::string_view text);
// `n` is the number of bytes the text must decode to; extra set bits beyond
// 8*n are refused, as Nix refuses them.
bytes nix_base32_decode(std::string_view text, std::size_t n);
bytes base64_decode(std::string_view text);

// True when c is a character of the Nix base32 alphabet.
bool is_nix_base32_char(char c);

} // namespace kiln
