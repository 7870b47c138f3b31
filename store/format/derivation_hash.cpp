#include "store/format/derivation_hash.hpp"

#include "store/io/error.hpp"

#include <vector>

namespace kiln {

output_hashes derivation_hasher::hash_with_known_inputs(const derivation& drv, bool mask_outputs) {
  output_hashes result;
  if (drv.is_fixed_output()) {
    auto& out = drv.outputs.begin()->second;
    result["out"] = hash_string(hash_algo::sha256,
                                "fixed:out:" + out.hash_algo + ":" + out.hash + ":" + out.path);
    return result;
  }
  std::map<std::string, std::set<std::string>> modulo_inputs;
  for (auto& [path, wanted] : drv.input_drvs) {
    auto& hashes = memo_.at(path);
    for (auto& o : wanted) {
      auto it = hashes.find(o);
      if (it == hashes.end())
        throw format_error("input derivation '" + path + "' has no output '" + o + "'");
      modulo_inputs[it->second.base16()].insert(o);
    }
  }
  auto h = hash_string(hash_algo::sha256, print_derivation(drv, mask_outputs, &modulo_inputs));
  for (auto& o : drv.outputs)
    result[o.first] = h;
  return result;
}

// Iterative post-order walk, so a long chain of inputs cannot exhaust the stack.
// `in_progress` holds the expanded frames still on the stack: exactly the
// ancestors of the frame being visited, so meeting one again is a cycle.
void derivation_hasher::memoise_closure(const std::string& root) {
  struct frame {
    std::string path;
    derivation drv;
    bool expanded = false;
  };
  std::vector<frame> stack;
  std::set<std::string> in_progress;
  stack.push_back({root, {}, false});
  while (!stack.empty()) {
    auto& top = stack.back();
    if (memo_.count(top.path) && !top.expanded) {
      stack.pop_back();
    } else if (top.expanded) {
      memo_[top.path] = hash_with_known_inputs(top.drv, false);
      in_progress.erase(top.path);
      stack.pop_back();
    } else {
      if (!in_progress.insert(top.path).second)
        throw format_error("derivation graph has a cycle through '" + top.path + "'");
      top.drv = load_(top.path);
      top.expanded = true;
      std::vector<std::string> inputs;
      for (auto& in : top.drv.input_drvs)
        if (!memo_.count(in.first))
          inputs.push_back(in.first);
      for (auto& p : inputs) // `top` is invalid from here on
        stack.push_back({p, {}, false});
    }
  }
}

const output_hashes& derivation_hasher::input_hash(const std::string& drv_path) {
  auto it = memo_.find(drv_path);
  if (it != memo_.end())
    return it->second;
  memoise_closure(drv_path);
  return memo_.at(drv_path);
}

output_hashes derivation_hasher::hash_modulo(const derivation& drv, bool mask_outputs) {
  for (auto& in : drv.input_drvs)
    input_hash(in.first);
  return hash_with_known_inputs(drv, mask_outputs);
}

std::map<std::string, store_path> compute_output_paths(const derivation& drv,
                                                       std::string_view name,
                                                       derivation_hasher& hasher) {
  std::map<std::string, store_path> paths;
  if (drv.is_fixed_output()) {
    auto& out = drv.outputs.begin()->second;
    paths.emplace("out", make_fixed_output_path(name, out.method(), out.fixed_hash()));
    return paths;
  }
  for (auto& o : drv.outputs)
    if (o.second.is_fixed())
      throw format_error("output '" + o.first +
                         "' has a fixed hash, but only a lone output 'out' may be fixed");
  auto hashes = hasher.hash_modulo(drv, true);
  for (auto& o : drv.outputs)
    paths.emplace(o.first, make_output_path(name, o.first, hashes.at(o.first)));
  return paths;
}

derivation_hasher::loader directory_loader(std::string dir) {
  return [dir = std::move(dir)](const std::string& drv_path) {
    auto slash = drv_path.rfind('/');
    auto file = dir + "/" + drv_path.substr(slash == std::string::npos ? 0 : slash + 1);
    try {
      return read_derivation_file(file);
    } catch (const sys_error& e) {
      throw error("cannot load input derivation '" + drv_path + "': " + e.what());
    }
  };
}

} // namespace kiln
