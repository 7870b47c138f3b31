#include "actors/build_steps.hpp"

#include "sandbox/builder_env.hpp"
#include "sandbox/builder_process.hpp"
#include "sandbox/run_capture.hpp"
#include "sandbox/sandbox_spec.hpp"
#include "sandbox/sandbox_store.hpp"
#include "sandbox/builtin_builders.hpp"
#include "store/local/build_log.hpp"
#include "store/local/build_outputs.hpp"
#include "store/local/closure.hpp"
#include "store/io/error.hpp"
#include "store/io/fd.hpp"
#include "store/io/file_ops.hpp"
#include "store/io/leftovers.hpp"
#include "store/format/nar.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <set>
#include <sstream>
#include <cstdlib>
#include <ctime>
#include <algorithm>

namespace kiln {

namespace {

std::string words_of(const std::vector<std::string>& v) {
  std::string out;
  for (auto& w : v)
    out += (out.empty() ? "" : " ") + w;
  return out;
}

} // namespace

build_steps::build_steps(local_store& store, build_options options)
    : store_(store), options_(std::move(options)) {
  for (auto& f : options_.secret_key_files)
    try {
      keys_.push_back(read_secret_key_file(f));
    } catch (const error& e) {
      throw error(std::string("setting 'secret-key-files': ") + e.what());
    }
}

loaded_derivation build_steps::load(const std::string& drv_path) {
  store_path p = store_.parse_path(drv_path);
  if (!p.is_derivation())
    throw format_error("'" + drv_path + "' is not a derivation (.drv) path");
  loaded_derivation l;
  l.drv_path = p.full();
  if (auto given = options_.given_derivations.find(p.full()); given != options_.given_derivations.end()) {
    l.drv = parse_derivation(given->second, p.full());
  } else {
    store_.add_temp_root(p);
    if (!store_.db().is_valid(p))
      throw error("derivation '" + p.full() + "' is not valid in this store (add it with 'kiln drv add')");
    std::string text = read_whole_file(store_.real_path(p), std::size_t(1) << 30, "derivation");
    l.drv = parse_derivation(text, p.full());
  }
  for (auto& [name, out] : l.drv.outputs) {
    bool ok = false;
    if (!out.path.empty()) {
      store_path op = parse_store_path(out.path);
      store_.add_temp_root(op);
      ok = store_.db().is_valid(op);
    }
    l.output_valid[name] = ok;
  }
  return l;
}

std::vector<loaded_derivation> build_steps::load_closure(const std::string& drv_path) {
  std::vector<loaded_derivation> all;
  all.push_back(load(drv_path));
  read_ahead_.insert(all.front().drv_path);
  for (std::size_t i = 0; i < all.size(); ++i) {
    bool all_valid = std::all_of(all[i].output_valid.begin(), all[i].output_valid.end(),
                                 [](const auto& o) { return o.second; });
    if (all_valid)
      continue;
    std::vector<std::string> inputs; // all[i] moves as all grows
    for (auto& [input, outputs] : all[i].drv.input_drvs)
      if (read_ahead_.insert(input).second) // read before: its goal has it, or will
        inputs.push_back(input);
    for (auto& input : inputs)
      all.push_back(load(input));
  }
  return all;
}

std::vector<std::string> build_steps::invalid(const std::vector<std::string>& paths) {
  std::vector<std::string> out;
  for (auto& s : paths) {
    store_path p = store_.parse_path(s);
    store_.add_temp_root(p);
    if (!store_.db().is_valid(p))
      out.push_back(s);
  }
  return out;
}

std::vector<std::string> build_steps::damaged(const std::vector<std::string>& paths) {
  std::vector<std::string> out;
  for (auto& s : paths) {
    store_path p = store_.parse_path(s);
    auto info = store_.db().query_path_info(p);
    if (!info)
      continue;
    bool good = false;
    try {
      auto got = hash_path(store_.real_path(p));
      good = got.nar_hash == info->nar_hash && got.nar_size == info->nar_size;
    } catch (const error&) {
      // missing or unreadable: damaged
    }
    if (!good)
      out.push_back(s);
  }
  return out;
}

build_request build_steps::describe(const build_round& r, const std::set<std::string>& recheck) {
  const derivation& drv = r.drv;
  build_request q;
  q.run = r;
  if (!recheck.empty()) {
    std::vector<std::string> outputs;
    for (auto& [name, out] : drv.outputs)
      if (!out.path.empty())
        outputs.push_back(out.path);
    q.invalid_outputs = invalid(outputs);
    q.already_valid = std::all_of(recheck.begin(), recheck.end(), [&](const std::string& name) {
      auto it = drv.outputs.find(name);
      return it != drv.outputs.end() && !it->second.path.empty() &&
             std::find(q.invalid_outputs.begin(), q.invalid_outputs.end(), it->second.path) == q.invalid_outputs.end();
    });
    if (q.already_valid)
      return q;
  }
  store_path dp = store_.parse_path(r.drv_path);
  q.options = options_;
  // What a builder has no use for stays here.
  q.options.secret_key_files.clear();
  q.options.substituters.clear();
  q.options.trusted_public_keys.clear();
  q.options.netrc_file.clear();
  q.options.given_derivations.clear();
  q.store_real_dir = store_.layout().store_dir();
  q.state_dir = store_.layout().state_dir();
  q.kiln_dir = store_.layout().kiln_dir();
  if (r.round == 1)
    q.log_path = build_log_path(store_.layout(), dp.base_name(), parse_log_compression(options_.compress_build_log));

  std::vector<store_path> closure = input_closure(drv);
  store_path_set inputs(closure.begin(), closure.end());
  for (auto& p : closure)
    q.input_closure.push_back(p.full());
  if (options_.sandbox != 0) {
    q.sandbox_paths = parse_sandbox_paths(words_of(options_.sandbox_paths), "sandbox-paths");
    for (auto& p : store_sandbox_path_closure(q.sandbox_paths))
      q.sandbox_closure.push_back(p.full());
  }
  // exportReferencesGraph needs the database: planned here once to learn
  // what it asks (the builder's side plans again with these answers).
  sandbox::builder_env_options eo;
  eo.export_references = [&](const std::vector<std::string>& paths, bool json) {
    store_path_set asked;
    for (auto& p : paths)
      asked.insert(store_.parse_path(p));
    auto exported = export_references(store_.db(), asked, inputs);
    std::string answer =
        json ? reference_graph_json(store_.db(), exported) : reference_graph_text(store_.db(), exported);
    q.exported_references[export_key(paths, json)] = answer;
    return answer;
  };
  sandbox::plan_builder_env(drv, eo);
  for (auto& [name, out] : drv.outputs)
    q.output_valid[name] = !out.path.empty() && store_.db().is_valid(parse_store_path(out.path));
  return q;
}

// The closure of the derivation's input sources and its inputs' valid
// outputs: what the sandbox shows and what its outputs may refer to.
std::vector<store_path> build_steps::input_closure(const derivation& drv) {
  store_path_set inputs;
  for (auto& s : drv.input_srcs)
    inputs.insert(parse_store_path(s));
  for (auto& [d, wanted] : drv.input_drvs)
    for (auto& [oname, op] : store_.db().query_derivation_outputs(parse_store_path(d)))
      if (store_.db().is_valid(op))
        inputs.insert(op);
  return compute_closure(store_.db(), inputs);
}

build_result build_steps::register_round(const build_request& q, const build_report& report) {
  const std::string& drv_path = q.run.drv_path;
  const derivation& drv = q.run.drv;
  build_result r;
  try {
    r = judge(q, report);
  } catch (const error& e) {
    r.status = build_status::misc_failure;
    r.error = e.what();
  }
  r.path = drv_path;
  r.cpu_user_us = report.outcome.cpu_user_us;
  r.cpu_system_us = report.outcome.cpu_system_us;
  r.peak_memory = report.outcome.peak_memory;
  if (!is_success(r.status) && !report.isolated_outputs)
    for (auto& [name, out] : drv.outputs) {
      store_path op = parse_store_path(out.path);
      if (!store_.db().is_valid(op))
        remove_tree(store_.real_path(op));
    }
  return r;
}

// A sandbox path whose source is in the store brings the closure of that
// store path along, as Nix's does, and is bound from where this store keeps
// it (a local:DIR store's paths are not at their store path on the host).
std::vector<store_path> build_steps::store_sandbox_path_closure(std::vector<sandbox_path>& paths) {
  const std::string prefix = std::string(default_store_dir) + "/";
  store_path_set roots;
  for (auto& p : paths) {
    if (p.source.compare(0, prefix.size(), prefix) != 0)
      continue;
    std::size_t end = p.source.find('/', prefix.size());
    std::string top = p.source.substr(0, end);
    store_path sp = [&] {
      try {
        return parse_store_path(top);
      } catch (const error& e) {
        throw error("sandbox path '" + p.source + "': " + e.what());
      }
    }();
    if (!store_.db().is_valid(sp)) {
      if (p.optional)
        continue;
      throw error("sandbox path '" + p.source + "' is in the store, but " +
                  (end == std::string::npos ? "is not valid" : "'" + sp.full() + "' is not valid"));
    }
    roots.insert(sp);
    p.source = store_.real_path(sp) + (end == std::string::npos ? "" : p.source.substr(end));
  }
  return roots.empty() ? std::vector<store_path>{} : compute_closure(store_.db(), roots);
}

} // namespace kiln
