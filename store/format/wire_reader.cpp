#include "store/format/wire_reader.hpp"

#include "store/format/wire.hpp"
#include "store/io/error.hpp"

namespace kiln::wire {

void reader::fail(const std::string& problem, uint64_t at) const {
  throw format_error("invalid " + noun_ + ": at byte " + std::to_string(at) + ": " + problem);
}

void reader::read(char* data, std::size_t n) {
  std::size_t got = 0;
  while (got < n) {
    std::size_t r = in_.read(data + got, n - got);
    if (r == 0)
      fail("input ended unexpectedly (truncated " + noun_ + ")", offset_ + got);
    got += r;
  }
  offset_ += n;
}

uint64_t reader::u64() {
  unsigned char b[8];
  read(reinterpret_cast<char*>(b), 8);
  return decode_u64(b);
}

void reader::padding(uint64_t len) {
  std::size_t n = wire::padding(len);
  if (n == 0)
    return;
  char pad[8];
  uint64_t at = offset_;
  read(pad, n);
  for (std::size_t i = 0; i < n; ++i)
    if (pad[i] != 0)
      fail("non-zero padding byte", at + i);
}

std::string reader::str(std::size_t max, const char* field) {
  uint64_t at = offset_;
  uint64_t len = u64();
  if (len > max)
    fail(std::string(field) + " is " + std::to_string(len) + " bytes long, the limit is " + std::to_string(max), at);
  std::string s(static_cast<std::size_t>(len), '\0');
  read(s.data(), s.size());
  padding(len);
  return s;
}

bool reader::at_end() {
  char c;
  return in_.read(&c, 1) == 0;
}

} // namespace kiln::wire
