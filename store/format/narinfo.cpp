#include "store/format/narinfo.hpp"

#include "store/io/error.hpp"

#include <charconv>
#include <map>
#include <sstream>

namespace kiln {

namespace {

// "Key: value" lines, each with its number, in order.
struct line {
  std::size_t number;
  std::string key, value;
};

std::vector<line> split_lines(std::string_view text, std::string_view where, std::string_view what) {
  std::vector<line> lines;
  std::size_t number = 0;
  for (std::size_t pos = 0; pos < text.size();) {
    ++number;
    std::size_t end = text.find('\n', pos);
    std::string_view l = text.substr(pos, end == std::string_view::npos ? std::string_view::npos : end - pos);
    pos = end == std::string_view::npos ? text.size() : end + 1;
    if (l.empty())
      continue;
    auto colon = l.find(": ");
    if (colon == std::string_view::npos || colon == 0)
      throw format_error(std::string(what) + " " + std::string(where) + ", line " + std::to_string(number) +
                         ": expected 'Key: value', got '" + std::string(l.substr(0, 80)) + "'");
    for (char c : l)
      if (static_cast<unsigned char>(c) < 0x20)
        throw format_error(std::string(what) + " " + std::string(where) + ", line " + std::to_string(number) +
                           ": a control character");
    lines.push_back({number, std::string(l.substr(0, colon)), std::string(l.substr(colon + 2))});
  }
  return lines;
}

uint64_t parse_size(const line& l, const std::string& at) {
  uint64_t v = 0;
  auto [end, ec] = std::from_chars(l.value.data(), l.value.data() + l.value.size(), v);
  if (ec != std::errc() || end != l.value.data() + l.value.size() || l.value.empty())
    throw format_error(at + "'" + l.value + "' is not a size in bytes");
  return v;
}

} // namespace

narinfo narinfo::of(const path_info& info) {
  narinfo n(info.path);
  n.nar_hash = info.nar_hash;
  n.nar_size = info.nar_size;
  n.references = info.references;
  n.deriver = info.deriver;
  n.sigs = info.sigs;
  n.ca = info.ca;
  return n;
}

path_info narinfo::info() const {
  path_info i(path);
  i.deriver = deriver;
  i.nar_hash = nar_hash;
  i.nar_size = nar_size;
  i.references = references;
  i.sigs = sigs;
  i.ca = ca;
  return i;
}

narinfo parse_narinfo(std::string_view text, std::string_view where, std::string_view store_dir) {
  auto lines = split_lines(text, where, "narinfo");
  std::map<std::string, const line*> seen;
  for (auto& l : lines) {
    if (l.key == "Sig")
      continue; // one line per signature
    if (!seen.emplace(l.key, &l).second)
      throw format_error("narinfo " + std::string(where) + ", line " + std::to_string(l.number) + ": " + l.key +
                         " is given twice");
  }
  auto at = [&](const line& l) {
    return "narinfo " + std::string(where) + ", line " + std::to_string(l.number) + ", " + l.key + ": ";
  };
  auto required = [&](const char* key) -> const line& {
    auto it = seen.find(key);
    if (it == seen.end())
      throw format_error("narinfo " + std::string(where) + ": no " + key + " line");
    return *it->second;
  };
  auto guarded = [&](const line& l, auto parse) {
    try {
      return parse();
    } catch (const format_error& e) {
      throw format_error(at(l) + e.what());
    }
  };

  const line& path_line = required("StorePath");
  narinfo n(guarded(path_line, [&] { return parse_store_path(path_line.value, store_dir); }));

  const line& url = required("URL");
  n.url = url.value;
  std::istringstream parts(n.url);
  for (std::string part; std::getline(parts, part, '/');)
    if (part == "..")
      throw format_error(at(url) + "'" + n.url + "' leaves the cache (..)");

  const line& nar_hash = required("NarHash");
  n.nar_hash = guarded(nar_hash, [&] { return parse_hash(nar_hash.value); });
  const line& nar_size = required("NarSize");
  n.nar_size = parse_size(nar_size, at(nar_size));
  if (n.nar_size == 0)
    throw format_error(at(nar_size) + "a NAR is never empty");

  for (auto& l : lines) {
    if (l.key == "Compression") {
      n.compression = l.value;
    } else if (l.key == "FileHash") {
      n.file_hash = guarded(l, [&] { return parse_hash(l.value); });
    } else if (l.key == "FileSize") {
      n.file_size = parse_size(l, at(l));
    } else if (l.key == "References") {
      std::istringstream words(l.value);
      for (std::string w; words >> w;)
        n.references.insert(guarded(l, [&] {
          if (w.find('/') != std::string::npos)
            throw format_error("'" + w + "' is not the name of a store path");
          return store_path::from_base_name(w);
        }));
    } else if (l.key == "Deriver") {
      if (l.value != "unknown-deriver") {
        n.deriver = guarded(l, [&] { return store_path::from_base_name(l.value); });
        if (!n.deriver->is_derivation())
          throw format_error(at(l) + "'" + l.value + "' is not a derivation");
      }
    } else if (l.key == "System") {
      n.system = l.value;
    } else if (l.key == "Sig") {
      if (l.value.find(':') == std::string::npos || l.value.find(' ') != std::string::npos)
        throw format_error(at(l) + "'" + l.value + "' is not 'keyname:signature'");
      n.sigs.insert(l.value);
    } else if (l.key == "CA") {
      n.ca = l.value;
    }
  }
  return n;
}

std::string print_narinfo(const narinfo& n) {
  std::string out = "StorePath: " + n.path.full() + "\nURL: " + n.url + "\nCompression: " + n.compression + "\n";
  if (n.file_hash)
    out += "FileHash: " + n.file_hash->to_prefixed(hash_format::base32) + "\n";
  if (n.file_size)
    out += "FileSize: " + std::to_string(n.file_size) + "\n";
  out += "NarHash: " + n.nar_hash.to_prefixed(hash_format::base32) + "\nNarSize: " + std::to_string(n.nar_size) +
         "\nReferences:";
  for (auto& r : n.references)
    out += " " + std::string(r.base_name());
  out += n.references.empty() ? " \n" : "\n";
  if (n.deriver)
    out += "Deriver: " + std::string(n.deriver->base_name()) + "\n";
  if (!n.system.empty())
    out += "System: " + n.system + "\n";
  for (auto& s : n.sigs)
    out += "Sig: " + s + "\n";
  if (n.ca)
    out += "CA: " + *n.ca + "\n";
  return out;
}

cache_info parse_cache_info(std::string_view text, std::string_view where) {
  cache_info c;
  for (auto& l : split_lines(text, where, "nix-cache-info")) {
    std::string at = "nix-cache-info " + std::string(where) + ", line " + std::to_string(l.number) + ", " + l.key + ": ";
    if (l.key == "StoreDir") {
      if (l.value.empty() || l.value[0] != '/')
        throw format_error(at + "'" + l.value + "' is not an absolute path");
      c.store_dir = l.value;
    } else if (l.key == "WantMassQuery") {
      if (l.value != "0" && l.value != "1")
        throw format_error(at + "'" + l.value + "' is neither 0 nor 1");
      c.want_mass_query = l.value == "1";
    } else if (l.key == "Priority") {
      int v = 0;
      auto [end, ec] = std::from_chars(l.value.data(), l.value.data() + l.value.size(), v);
      if (ec != std::errc() || end != l.value.data() + l.value.size() || l.value.empty())
        throw format_error(at + "'" + l.value + "' is not a number");
      c.priority = v;
    }
  }
  return c;
}

} // namespace kiln
