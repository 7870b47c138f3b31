// Makes a large derivation graph whose outputs are all valid, for the
// "plan and finish an all-valid graph" benchmark: building 100,000 trivial
// derivations first would take minutes, so the outputs are written and
// registered directly, in batches (one transaction per batch).
//
// Usage: kiln-bench-valid-graph STORE_ROOT N [WIDTH]
// The graph has layers of WIDTH derivations (default 1000); each derivation
// after the first layer depends on two of the layer before, and one top
// derivation depends on the whole last layer. Prints every .drv path, one
// per line, the top one last.
#include "store/format/derivation.hpp"
#include "store/format/derivation_json.hpp"
#include "store/format/derivation_hash.hpp"
#include "store/io/error.hpp"
#include "store/io/fd.hpp"
#include "store/local/local_store.hpp"
#include "store/format/nar.hpp"
#include "store/io/stream.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

using namespace kiln;

namespace {

void write_file(const std::string& path, const std::string& contents, mode_t mode) {
  unique_fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode));
  if (!fd || ::write(fd.get(), contents.data(), contents.size()) != static_cast<ssize_t>(contents.size()))
    throw_errno("writing '" + path + "'");
}

// Path info of a regular file with `contents`, as a NAR.
void set_nar(path_info& info, const std::string& contents) {
  hash_sink h(hash_algo::sha256);
  dump_string_as_file(contents, false, h);
  info.nar_hash = h.finish();
  info.nar_size = h.size();
}

class graph_maker {
public:
  explicit graph_maker(local_store& store)
      : store_(store), hasher_(directory_loader(store.layout().store_dir())) {}

  // Adds one derivation (and its valid output) to the pending batch.
  std::string add(const std::string& name, const std::vector<std::string>& deps) {
    derivation d;
    d.platform = "x86_64-linux";
    d.builder = "/bin/sh";
    d.args = {"-c", "echo x > $out"};
    d.outputs["out"] = {};
    for (auto& dep : deps)
      d.input_drvs[dep] = {"out"};
    fill_output_paths(d, name, hasher_);

    std::string text = print_derivation(d);
    store_path drv_path = derivation_store_path(d, name);
    path_info drv_info(drv_path);
    for (auto& dep : deps)
      drv_info.references.insert(parse_store_path(dep));
    drv_info.ca = text_ca(hash_string(hash_algo::sha256, text));
    set_nar(drv_info, text);
    write_file(store_.real_path(drv_path), text, 0444);

    store_path out = parse_store_path(d.outputs.at("out").path);
    path_info out_info(out);
    out_info.deriver = drv_path;
    out_info.ultimate = true;
    set_nar(out_info, "x\n");
    write_file(store_.real_path(out), "x\n", 0444);

    batch_.push_back(std::move(drv_info));
    batch_.push_back(std::move(out_info));
    outputs_[drv_path].emplace("out", out);
    if (batch_.size() >= 10000)
      flush();
    return drv_path.full();
  }

  void flush() {
    store_.db().register_valid_paths(batch_, outputs_);
    batch_.clear();
    outputs_.clear();
  }

private:
  local_store& store_;
  derivation_hasher hasher_;
  std::vector<path_info> batch_;
  derivation_outputs_map outputs_;
};

} // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::cerr << "usage: kiln-bench-valid-graph STORE_ROOT N [WIDTH]\n";
    return 1;
  }
  try {
    local_store store(store_layout::from_uri(std::string("local:") + argv[1]));
    std::size_t n = std::stoul(argv[2]);
    std::size_t width = argc > 3 ? std::stoul(argv[3]) : 1000;
    graph_maker maker(store);
    std::vector<std::string> previous, layer;
    for (std::size_t i = 0; i < n; ++i) {
      std::size_t j = i % width;
      std::vector<std::string> deps;
      if (!previous.empty())
        deps = {previous[j % previous.size()], previous[(j * 7 + 1) % previous.size()]};
      layer.push_back(maker.add("valid-" + std::to_string(i), deps));
      std::cout << layer.back() << '\n';
      if (layer.size() == width || i + 1 == n)
        previous = std::move(layer), layer.clear();
    }
    std::cout << maker.add("valid-top", previous) << '\n';
    maker.flush();
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << '\n';
    return 1;
  }
}
