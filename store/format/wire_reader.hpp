// Reading Nix's framing (format/wire.hpp) from a source of untrusted bytes:
// NARs, and the daemon protocol's frames. Every read is bounded and
// counted, and every error is a format_error "invalid <noun>: at byte N: <problem>".
#pragma once

#include "store/io/stream.hpp"

#include <cstdint>
#include <string>

namespace kiln::wire {

class reader {
public:
  // `noun` names what is read in errors ("NAR", "daemon message").
  reader(source& in, std::string noun) : in_(in), noun_(std::move(noun)) {}

  [[noreturn]] void fail(const std::string& problem, uint64_t at) const;

  // Exactly n bytes, or a "truncated" error.
  void read(char* data, std::size_t n);
  uint64_t u64();
  // Zero bytes after a string of `len` bytes; anything else is an error.
  void padding(uint64_t len);
  // A length-prefixed string of at most `max` bytes; `field` names it in errors.
  std::string str(std::size_t max, const char* field);

  uint64_t offset() const { return offset_; }
  // True if the source has nothing more (consumes a byte otherwise).
  bool at_end();

private:
  source& in_;
  std::string noun_;
  uint64_t offset_ = 0;
};

} // namespace kiln::wire
