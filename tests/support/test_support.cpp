#include "tests/support/test_support.hpp"

#include "store/format/encoding.hpp"
#include "store/io/error.hpp"
#include "store/io/file_ops.hpp"
#include "store/format/nar.hpp"

#include <algorithm>
#include <cstdlib>
#include <dirent.h>
#include <fstream>
#include <sstream>
#include <sys/stat.h>
#include <unistd.h>

namespace kiln::test {

std::string vectors_dir() {
  if (const char* env = std::getenv("KILN_VECTORS_DIR"))
    return env;
  return KILN_VECTORS_DIR;
}

const nlohmann::json& manifest() {
  static const nlohmann::json m = nlohmann::json::parse(read_file(vectors_dir() + "/manifest.json"));
  return m;
}

const nlohmann::json& vector_case(const std::string& section, const std::string& name) {
  for (auto& c : manifest()[section]["cases"])
    if (c["case"] == name)
      return c;
  throw error("no " + section + " vector case '" + name + "'");
}

void add_built_output(local_store& store, const store_path& p, const std::optional<store_path>& deriver) {
  string_sink nar;
  dump_string_as_file("built", false, nar);
  path_info info(p);
  info.deriver = deriver;
  info.nar_hash = hash_string(hash_algo::sha256, nar.s);
  info.nar_size = nar.s.size();
  string_source src(nar.s);
  store.add_nar(src, info);
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw error("cannot read test file '" + path + "'");
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

void write_file(const std::string& path, const std::string& contents, int mode) {
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << contents;
    if (!out)
      throw error("cannot write test file '" + path + "'");
  }
  ::chmod(path.c_str(), static_cast<mode_t>(mode));
}

std::string tree_contents(const nlohmann::json& c) {
  if (c.contains("text"))
    return c["text"].get<std::string>();
  if (c.contains("b64")) {
    auto b = base64_decode(c["b64"].get<std::string>());
    return std::string(b.begin(), b.end());
  }
  auto& p = c["pattern"];
  std::size_t len = p["len"], mod = p["mod"], offset = p.value("offset", 0);
  std::string s(len, '\0');
  for (std::size_t i = 0; i < len; ++i)
    s[i] = static_cast<char>((i + offset) % mod);
  return s;
}

void make_tree(const nlohmann::json& tree, const std::string& path) {
  std::string type = tree["type"];
  if (type == "regular") {
    write_file(path, tree_contents(tree.value("contents", nlohmann::json{{"text", ""}})),
               tree.value("executable", false) ? 0755 : 0644);
  } else if (type == "symlink") {
    if (::symlink(tree["target"].get<std::string>().c_str(), path.c_str()) != 0)
      throw_errno("symlink " + path);
  } else {
    if (::mkdir(path.c_str(), 0755) != 0)
      throw_errno("mkdir " + path);
    auto& entries = tree["entries"];
    if (entries.is_object()) {
      for (auto& [name, sub] : entries.items())
        make_tree(sub, path + "/" + name);
    } else {
      for (auto& e : entries)
        make_tree(e.contains("node") ? e["node"] : e, path + "/" + e["name"].get<std::string>());
    }
  }
}

temp_dir::temp_dir() {
  const char* base = std::getenv("TMPDIR");
  std::string templ = std::string(base ? base : "/tmp") + "/kiln-test-XXXXXX";
  if (!::mkdtemp(templ.data()))
    throw_errno("mkdtemp");
  path_ = templ;
}

temp_dir::~temp_dir() {
  try {
    remove_tree(path_);
  } catch (...) {
  }
}

bool exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

std::vector<std::string> list_dir(const std::string& path) {
  std::vector<std::string> out;
  DIR* d = ::opendir(path.c_str());
  if (!d)
    throw_errno("opendir " + path);
  while (auto* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..")
      out.push_back(n);
  }
  ::closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

} // namespace kiln::test
