#include "store/format/store_path.hpp"

#include "store/io/error.hpp"

namespace kiln {
namespace {

bool valid_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         c == '+' || c == '-' || c == '.' || c == '_' || c == '?' || c == '=';
}

std::string references_type(std::string type, const store_path_set& references,
                            std::string_view store_dir) {
  for (auto& ref : references)
    type += ":" + ref.full(store_dir);
  return type;
}

} // namespace

std::string store_path::full(std::string_view store_dir) const {
  std::string out(store_dir);
  out += '/';
  out += base_;
  return out;
}

bool store_path::is_derivation() const {
  auto n = name();
  return n.size() >= 4 && n.substr(n.size() - 4) == ".drv";
}

void check_store_path_name(std::string_view name) {
  if (name.empty())
    throw format_error("store path name is empty");
  if (name.size() > max_store_path_name_length)
    throw format_error("store path name '" + std::string(name.substr(0, 40)) + "...' is " +
                       std::to_string(name.size()) + " characters long, the limit is " +
                       std::to_string(max_store_path_name_length));
  for (std::size_t i = 0; i < name.size(); ++i)
    if (!valid_name_char(name[i]))
      throw format_error("store path name '" + std::string(name) + "' has invalid character '" +
                         std::string(1, name[i]) + "' at position " + std::to_string(i) +
                         " (allowed: A-Z a-z 0-9 + - . _ ? =)");
}

store_path store_path::from_base_name(std::string_view base) {
  if (base.size() < store_path_hash_length + 2 || base[store_path_hash_length] != '-')
    throw format_error("'" + std::string(base) +
                       "' is not a store path base name (expected 32 base32 characters, '-', name)");
  for (std::size_t i = 0; i < store_path_hash_length; ++i)
    if (!is_nix_base32_char(base[i]))
      throw format_error("store path '" + std::string(base) + "' has invalid hash character '" +
                         std::string(1, base[i]) + "' at position " + std::to_string(i));
  check_store_path_name(base.substr(store_path_hash_length + 1));
  return store_path(std::string(base));
}

std::vector<std::string> full_paths(const store_path_set& paths) {
  std::vector<std::string> out;
  for (auto& p : paths)
    out.push_back(p.full());
  return out;
}

store_path parse_store_path(std::string_view path, std::string_view store_dir) {
  if (path.size() <= store_dir.size() + 1 || path.substr(0, store_dir.size()) != store_dir ||
      path[store_dir.size()] != '/')
    throw format_error("path '" + std::string(path) + "' is not in the Nix store " +
                       std::string(store_dir));
  auto base = path.substr(store_dir.size() + 1);
  if (base.find('/') != std::string_view::npos)
    throw format_error("path '" + std::string(path) +
                       "' is inside a store path, not a store path itself");
  return store_path::from_base_name(base);
}

std::string store_path_fingerprint(std::string_view type, const hash& inner, std::string_view name,
                                   std::string_view store_dir) {
  std::string s(type);
  s += ":sha256:";
  s += inner.base16();
  s += ':';
  s += store_dir;
  s += ':';
  s += name;
  return s;
}

store_path make_store_path(std::string_view type, const hash& inner, std::string_view name,
                           std::string_view store_dir) {
  if (inner.algo != hash_algo::sha256)
    throw error("store paths are made from SHA-256 digests, got " +
                std::string(to_string(inner.algo)));
  check_store_path_name(name);
  auto fp = hash_string(hash_algo::sha256, store_path_fingerprint(type, inner, name, store_dir));
  auto folded = compress_hash(fp, 20);
  return store_path::from_base_name(nix_base32_encode(folded.data(), folded.size()) + "-" +
                                    std::string(name));
}

store_path make_text_path(std::string_view name, const hash& content_sha256,
                          const store_path_set& references, std::string_view store_dir) {
  return make_store_path(references_type("text", references, store_dir), content_sha256, name,
                         store_dir);
}

store_path make_source_path(std::string_view name, const hash& nar_sha256,
                            const store_path_set& references, bool self_reference,
                            std::string_view store_dir) {
  auto type = references_type("source", references, store_dir);
  if (self_reference)
    type += ":self";
  return make_store_path(type, nar_sha256, name, store_dir);
}

store_path make_fixed_output_path(std::string_view name, ingestion_method method, const hash& h,
                                  std::string_view store_dir) {
  if (method == ingestion_method::recursive && h.algo == hash_algo::sha256)
    return make_source_path(name, h, {}, false, store_dir);
  std::string inner = "fixed:out:";
  if (method == ingestion_method::recursive)
    inner += "r:";
  inner += to_string(h.algo);
  inner += ':';
  inner += h.base16();
  inner += ':';
  return make_store_path("output:out", hash_string(hash_algo::sha256, inner), name, store_dir);
}

std::string output_path_name(std::string_view drv_name, std::string_view output_name) {
  std::string n(drv_name);
  if (output_name != "out") {
    n += '-';
    n += output_name;
  }
  return n;
}

store_path make_output_path(std::string_view drv_name, std::string_view output_name,
                            const hash& drv_hash, std::string_view store_dir) {
  return make_store_path("output:" + std::string(output_name), drv_hash,
                         output_path_name(drv_name, output_name), store_dir);
}

std::string fixed_output_ca(ingestion_method method, const hash& h) {
  return std::string("fixed:") + (method == ingestion_method::recursive ? "r:" : "") +
         h.to_prefixed(hash_format::base32);
}

std::string text_ca(const hash& content_sha256) {
  return "text:" + content_sha256.to_prefixed(hash_format::base32);
}

} // namespace kiln
