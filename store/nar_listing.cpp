#include "store/nar_listing.hpp"

#include "store/json_append.hpp"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <vector>

namespace kiln {
namespace {

class lister : public nar_visitor {
public:
  nar_node root;

  void begin_directory(std::string_view, std::string_view name) override {
    nar_node& n = place(name);
    n.type = nar_node::kind::directory;
    open_.push_back(&n);
  }
  void end_directory() override { open_.pop_back(); }
  void begin_regular(std::string_view, std::string_view name, bool executable, uint64_t size,
                     uint64_t offset) override {
    nar_node& n = place(name);
    n.type = nar_node::kind::regular;
    n.executable = executable;
    n.size = size;
    n.nar_offset = offset;
  }
  void contents(const char*, std::size_t) override {}
  void end_regular() override {}
  void symlink(std::string_view, std::string_view name, std::string_view target) override {
    nar_node& n = place(name);
    n.type = nar_node::kind::symlink;
    n.target = std::string(target);
  }

private:
  nar_node& place(std::string_view name) {
    if (open_.empty())
      return root;
    return open_.back()->entries[std::string(name)];
  }
  std::vector<nar_node*> open_;
};

nlohmann::ordered_json to_json(const nar_node& n) {
  nlohmann::ordered_json j = nlohmann::ordered_json::object();
  switch (n.type) {
    case nar_node::kind::regular:
      j["type"] = "regular";
      j["size"] = n.size;
      if (n.executable)
        j["executable"] = true;
      j["narOffset"] = n.nar_offset;
      break;
    case nar_node::kind::symlink:
      j["type"] = "symlink";
      j["target"] = n.target;
      break;
    case nar_node::kind::directory:
      j["type"] = "directory";
    {
      auto entries = nlohmann::ordered_json::object();
      for (auto& [name, child] : n.entries) // sorted and unique in a NAR
        append_new_key(entries, name, to_json(child));
      j["entries"] = std::move(entries);
      break;
    }
  }
  return j;
}

void text_lines(const nar_node& n, const std::string& path, std::string& out) {
  char line[64];
  switch (n.type) {
    case nar_node::kind::regular:
      std::snprintf(line, sizeof line, "%s %12llu ", n.executable ? "-r-xr-xr-x" : "-r--r--r--",
                    static_cast<unsigned long long>(n.size));
      out += line + path + "\n";
      break;
    case nar_node::kind::symlink:
      std::snprintf(line, sizeof line, "lrwxrwxrwx %12d ", 0);
      out += line + path + " -> " + n.target + "\n";
      break;
    case nar_node::kind::directory:
      std::snprintf(line, sizeof line, "dr-xr-xr-x %12d ", 0);
      out += line + path + "\n";
      for (auto& [name, child] : n.entries)
        text_lines(child, path + "/" + name, out);
      break;
  }
}

} // namespace

nar_node list_nar(source& in, const nar_limits& limits) {
  lister l;
  buffered_source buffered(in);
  parse_nar(buffered, l, true, limits);
  return std::move(l.root);
}

std::string nar_listing_json(const nar_node& root) {
  return to_json(root).dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

std::string nar_listing_text(const nar_node& root) {
  std::string out;
  text_lines(root, ".", out);
  return out;
}

} // namespace kiln
