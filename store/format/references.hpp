// Reference scanning: which candidate store paths' 32-character hash parts
// occur in a byte stream (nix-formats.md §8). It runs over every byte of
// every build output, so it skips ahead on bytes outside the base32
// alphabet instead of testing every position.
#pragma once

#include "store/io/stream.hpp"

#include <set>
#include <string>
#include <vector>

namespace kiln {

// A sink: feed it the NAR of an output in chunks of any size; a hash part
// split across two chunks is still found.
class reference_scanner : public sink {
public:
  // Each candidate must be exactly 32 base32 characters.
  explicit reference_scanner(const std::set<std::string>& hash_parts);
  void write(const char* data, std::size_t n) override;
  // The candidates seen so far.
  std::set<std::string> found() const;

private:
  void scan(const char* p, std::size_t n);
  void check_window(const char* p);

  std::vector<std::string> candidates_;
  std::vector<bool> seen_;
  // Open-addressing table keyed by the first 8 bytes of a hash part;
  // slots hold candidate index + 1, 0 = empty.
  // A 64 Ki-bit filter in front of the table: in base32-heavy text nearly
  // every position is a window, and most must be rejected in one load.
  std::vector<uint64_t> filter_;
  std::vector<uint64_t> keys_;
  std::vector<uint32_t> slots_;
  uint64_t mask_ = 0;
  std::string tail_; // the last bytes of the previous chunk (< 32)
};

// Scans the NAR serialisation of `path` for the given hash parts.
std::set<std::string> scan_path_for_references(const std::string& path,
                                               const std::set<std::string>& hash_parts);

} // namespace kiln
