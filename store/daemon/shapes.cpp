#include "store/daemon/shapes.hpp"

#include "store/format/wire.hpp"

namespace kiln::daemon {

namespace {

constexpr std::size_t max_string = 1 << 20;
constexpr uint64_t max_count = 1 << 20;

uint64_t count(wire::reader& in, const char* what) {
  uint64_t at = in.offset();
  uint64_t n = in.u64();
  if (n > max_count)
    in.fail(std::string(what) + " of " + std::to_string(n) + " entries, the limit is " + std::to_string(max_count), at);
  return n;
}

} // namespace

void read_parts(wire::reader& in, const std::vector<part>& parts, std::vector<argument>& out) {
  for (const part& p : parts) {
    switch (p.k) {
    case kind::u64: out.emplace_back(in.u64()); break;
    case kind::str: out.emplace_back(in.str(max_string, "a string")); break;
    case kind::strings: {
      std::vector<std::string> list(count(in, "a list"));
      for (auto& s : list)
        s = in.str(max_string, "a list entry");
      out.emplace_back(std::move(list));
      break;
    }
    case kind::pairs: {
      string_pairs map(count(in, "a map"));
      for (auto& [key, value] : map) {
        key = in.str(max_string, "a map key");
        value = in.str(max_string, "a map value");
      }
      out.emplace_back(std::move(map));
      break;
    }
    case kind::records: {
      uint64_t n = count(in, "a list of records");
      out.emplace_back(n);
      for (uint64_t i = 0; i < n; ++i)
        read_parts(in, p.record, out);
      break;
    }
    case kind::optional: {
      uint64_t present = in.u64();
      out.emplace_back(present);
      if (present)
        read_parts(in, p.record, out);
      break;
    }
    }
  }
}

void append_arguments(std::string& out, const std::vector<argument>& args) {
  for (auto& a : args) {
    if (auto* v = std::get_if<uint64_t>(&a)) {
      wire::append_u64(out, *v);
    } else if (auto* s = std::get_if<std::string>(&a)) {
      wire::append_string(out, *s);
    } else if (auto* list = std::get_if<std::vector<std::string>>(&a)) {
      wire::append_u64(out, list->size());
      for (auto& e : *list)
        wire::append_string(out, e);
    } else {
      auto& map = std::get<string_pairs>(a);
      wire::append_u64(out, map.size());
      for (auto& [key, value] : map) {
        wire::append_string(out, key);
        wire::append_string(out, value);
      }
    }
  }
}

} // namespace kiln::daemon
