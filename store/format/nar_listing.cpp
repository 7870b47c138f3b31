#include "store/format/nar_listing.hpp"

#include <nlohmann/json.hpp>

#include <cstdio>

namespace kiln {
namespace {

// A JSON string, invalid UTF-8 replaced (names are bytes, JSON is text).
void append_json_string(std::string& out, std::string_view s) {
  out += nlohmann::json(std::string(s)).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

class json_lister : public nar_visitor {
public:
  std::string out;

  void begin_directory(std::string_view path, std::string_view name) override {
    key(path, name);
    out += R"({"type":"directory","entries":{)";
    first_ = true;
  }
  void end_directory() override {
    out += "}}";
    first_ = false;
  }
  void begin_regular(std::string_view path, std::string_view name, bool executable, uint64_t size,
                     uint64_t offset) override {
    key(path, name);
    out += R"({"type":"regular","size":)" + std::to_string(size);
    if (executable)
      out += R"(,"executable":true)";
    out += R"(,"narOffset":)" + std::to_string(offset) + "}";
    first_ = false;
  }
  void symlink(std::string_view path, std::string_view name, std::string_view target) override {
    key(path, name);
    out += R"({"type":"symlink","target":)";
    append_json_string(out, target);
    out += "}";
    first_ = false;
  }

private:
  // The entry's key in its directory's "entries" (none for the root).
  void key(std::string_view path, std::string_view name) {
    if (path.empty())
      return;
    if (!first_)
      out += ',';
    append_json_string(out, name);
    out += ':';
  }
  bool first_ = true; // the next entry is its directory's first
};

class text_lister : public nar_visitor {
public:
  std::string out;

  void begin_directory(std::string_view path, std::string_view) override { line("dr-xr-xr-x", 0, path); }
  void begin_regular(std::string_view path, std::string_view, bool executable, uint64_t size, uint64_t) override {
    line(executable ? "-r-xr-xr-x" : "-r--r--r--", size, path);
  }
  void symlink(std::string_view path, std::string_view, std::string_view target) override {
    line("lrwxrwxrwx", 0, path, target);
  }

private:
  void line(const char* mode, uint64_t size, std::string_view path, std::string_view target = {}) {
    char head[64];
    std::snprintf(head, sizeof head, "%s %12llu ", mode, static_cast<unsigned long long>(size));
    out += head;
    out += '.';
    if (!path.empty())
      (out += '/') += path;
    if (!target.empty())
      (out += " -> ") += target;
    out += '\n';
  }
};

template <class Lister>
std::string listing(source& nar, const nar_limits& limits) {
  Lister l;
  buffered_source buffered(nar);
  parse_nar(buffered, l, true, limits);
  return std::move(l.out);
}

} // namespace

std::string nar_listing_json(source& nar, const nar_limits& limits) { return listing<json_lister>(nar, limits); }

std::string nar_listing_text(source& nar, const nar_limits& limits) { return listing<text_lister>(nar, limits); }

} // namespace kiln
