// Hand-assembles NAR bytes token by token, so tests can write NARs that no
// honest dumper would produce.
#pragma once

#include "store/format/wire.hpp"

#include <cstdint>
#include <string>
#include <string_view>

namespace kiln::test {

class nar_builder {
public:
  nar_builder& u64(uint64_t v) {
    wire::append_u64(bytes, v);
    return *this;
  }
  nar_builder& str(std::string_view s) {
    wire::append_string(bytes, s);
    return *this;
  }
  nar_builder& magic() { return str("nix-archive-1"); }
  nar_builder& file(std::string_view contents, bool executable = false) {
    str("(").str("type").str("regular");
    if (executable)
      str("executable").str("");
    return str("contents").str(contents).str(")");
  }
  nar_builder& symlink(std::string_view target) {
    return str("(").str("type").str("symlink").str("target").str(target).str(")");
  }
  nar_builder& begin_dir() { return str("(").str("type").str("directory"); }
  nar_builder& begin_entry(std::string_view name) {
    return str("entry").str("(").str("name").str(name).str("node");
  }
  nar_builder& end_entry() { return str(")"); }
  nar_builder& end_dir() { return str(")"); }

  std::string bytes;
};

} // namespace kiln::test
