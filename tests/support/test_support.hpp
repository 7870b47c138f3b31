// Helpers shared by the store tests: the golden vectors from real Nix,
// temporary directories, and building file trees from their JSON description.
#pragma once

#include "store/local/local_store.hpp"

#include <nlohmann/json.hpp>

#include <exception>
#include <functional>
#include <iostream>
#include <optional>

#include <string>

namespace kiln::test {

// The directory holding manifest.json (tests/vectors, a copy of ../shared/vectors).
std::string vectors_dir();
const nlohmann::json& manifest();
// The case named `name` in a manifest section ("nar", "derivations", ...).
const nlohmann::json& vector_case(const std::string& section, const std::string& name);
std::string read_file(const std::string& path);

// A predicate for BOOST_CHECK_EXCEPTION: the error's text contains
// `fragment` (if it does not, the text is printed, to show what came).
inline std::function<bool(const std::exception&)> mentions(std::string fragment) {
  return [fragment](const std::exception& e) {
    bool ok = std::string(e.what()).find(fragment) != std::string::npos;
    if (!ok)
      std::cerr << "wanted '" << fragment << "', got: " << e.what() << '\n';
    return ok;
  };
}
void write_file(const std::string& path, const std::string& contents, int mode = 0644);

// Contents of a vector tree node: {"text": ...} | {"b64": ...} | {"pattern": {...}}.
std::string tree_contents(const nlohmann::json& contents);
// Creates the tree described by a vector ("regular"/"symlink"/"directory").
void make_tree(const nlohmann::json& tree, const std::string& path);

// A fresh directory under $TMPDIR, removed (through kiln's own remove_tree)
// when the object goes away.
class temp_dir {
public:
  temp_dir();
  ~temp_dir();
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

private:
  std::string path_;
};

bool exists(const std::string& path);

// Makes `p` valid with a one-file NAR ("built"), as if a build had made it
// (optionally recording its deriver).
void add_built_output(local_store& store, const store_path& p,
                      const std::optional<store_path>& deriver = std::nullopt);
// Entries of a directory, sorted, without . and ..
std::vector<std::string> list_dir(const std::string& path);

} // namespace kiln::test
