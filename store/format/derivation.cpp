#include "store/format/derivation.hpp"

#include "store/io/error.hpp"
#include "store/io/fd.hpp"

#include <fcntl.h>

namespace kiln {

ingestion_method derivation_output::method() const {
  return hash_algo.rfind("r:", 0) == 0 ? ingestion_method::recursive : ingestion_method::flat;
}

hash derivation_output::fixed_hash() const {
  std::string_view algo = hash_algo;
  if (method() == ingestion_method::recursive)
    algo.remove_prefix(2);
  auto a = parse_hash_algo(algo);
  if (hash.size() != base16_length(digest_size(a)))
    throw format_error("fixed-output hash '" + hash + "' is not a base16 " + std::string(algo) +
                       " digest");
  auto raw = base16_decode(hash);
  return hash::from_bytes(a, raw.data(), raw.size());
}

bool derivation::is_fixed_output() const {
  return outputs.size() == 1 && outputs.begin()->first == "out" &&
         outputs.begin()->second.is_fixed();
}

bool derivation::operator==(const derivation& o) const {
  return outputs == o.outputs && input_drvs == o.input_drvs && input_srcs == o.input_srcs &&
         platform == o.platform && builder == o.builder && args == o.args && env == o.env;
}

namespace {

void print_string(std::string& out, std::string_view s) {
  out += '"';
  for (char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default: out += c;
    }
  }
  out += '"';
}

template <class Range, class F>
void print_list(std::string& out, const Range& items, F&& print_item) {
  out += '[';
  bool first = true;
  for (auto& item : items) {
    if (!first)
      out += ',';
    first = false;
    print_item(item);
  }
  out += ']';
}

} // namespace

std::string print_derivation(const derivation& drv, bool mask_outputs,
                             const std::map<std::string, std::set<std::string>>* input_drvs) {
  std::string out;
  out.reserve(1024);
  auto str = [&](std::string_view s) { print_string(out, s); };
  out += "Derive(";
  print_list(out, drv.outputs, [&](auto& o) {
    out += '(';
    str(o.first);
    out += ',';
    str(mask_outputs ? "" : o.second.path);
    out += ',';
    str(o.second.hash_algo);
    out += ',';
    str(o.second.hash);
    out += ')';
  });
  out += ',';
  print_list(out, input_drvs ? *input_drvs : drv.input_drvs, [&](auto& i) {
    out += '(';
    str(i.first);
    out += ',';
    print_list(out, i.second, str);
    out += ')';
  });
  out += ',';
  print_list(out, drv.input_srcs, str);
  out += ',';
  str(drv.platform);
  out += ',';
  str(drv.builder);
  out += ',';
  print_list(out, drv.args, str);
  out += ',';
  print_list(out, drv.env, [&](auto& e) {
    out += '(';
    str(e.first);
    out += ',';
    str(mask_outputs && drv.outputs.count(e.first) ? "" : e.second);
    out += ')';
  });
  out += ')';
  return out;
}

store_path derivation_store_path(const derivation& drv, std::string_view name,
                                 std::string_view store_dir) {
  store_path_set refs;
  for (auto& src : drv.input_srcs)
    refs.insert(parse_store_path(src, store_dir));
  for (auto& in : drv.input_drvs)
    refs.insert(parse_store_path(in.first, store_dir));
  return make_text_path(std::string(name) + ".drv",
                        hash_string(hash_algo::sha256, print_derivation(drv)), refs, store_dir);
}

std::string derivation_name(const derivation& drv, std::string_view file_name) {
  auto slash = file_name.rfind('/');
  if (slash != std::string_view::npos)
    file_name.remove_prefix(slash + 1);
  if (file_name.size() > store_path_hash_length + 5 &&
      file_name.substr(file_name.size() - 4) == ".drv") {
    try {
      auto p = store_path::from_base_name(file_name);
      auto n = p.name();
      return std::string(n.substr(0, n.size() - 4));
    } catch (const format_error&) {
      // Not named like a store path; fall back to the env.
    }
  }
  auto it = drv.env.find("name");
  if (it == drv.env.end())
    throw format_error("cannot tell the name of derivation '" + std::string(file_name) +
                       "': the file is not named <hash>-<name>.drv and the env has no 'name'");
  check_store_path_name(it->second);
  return it->second;
}

derivation read_derivation_file(const std::string& path) {
  return parse_derivation(read_whole_file(path, 64u << 20, "derivation"), path);
}

} // namespace kiln
