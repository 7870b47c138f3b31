#include "store/local/missing.hpp"

#include "store/format/derivation.hpp"
#include "store/io/error.hpp"
#include "store/local/sqlite.hpp"

namespace kiln {
namespace {

class planner {
public:
  planner(local_store& store, const substitutable_query& substituters)
    : store_(store), substituters_(substituters) {}

  void want(const wanted_path& w) { todo_.push_back(w); }
  void want_target(const wanted_path& w) {
    if (w.outputs)
      targets_.insert(w.path);
    want(w);
  }

  // A worklist rather than recursion: dependency chains can be very long.
  void run() {
    while (!todo_.empty()) {
      wanted_path w = std::move(todo_.back());
      todo_.pop_back();
      // A derivation is visited once per distinct set of wanted outputs.
      if (!seen_.insert({w.path, w.outputs.value_or(std::set<std::string>{"<opaque>"})}).second)
        continue;
      if (w.outputs)
        want_outputs(w.path, *w.outputs);
      else
        want_opaque(w.path);
    }
  }

  missing_plan plan;

private:
  std::map<store_path, substitutable_info> ask(const store_path_set& paths) {
    if (!substituters_ || paths.empty())
      return {};
    return substituters_(paths);
  }

  void substitute(const store_path& p, const substitutable_info& info) {
    if (!plan.will_substitute.insert(p).second)
      return;
    plan.download_size += info.download_size;
    plan.nar_size += info.nar_size;
    for (auto& r : info.references)
      if (r != p)
        want(wanted_path::opaque(r));
  }

  void want_opaque(const store_path& p) {
    if (store_.db().is_valid(p))
      return;
    auto found = ask({p});
    if (found.count(p))
      substitute(p, found.at(p));
    else
      plan.unknown.insert(p);
  }

  void want_outputs(const store_path& drv_path, const std::set<std::string>& wanted) {
    if (!store_.db().is_valid(drv_path)) {
      plan.unknown.insert(drv_path);
      return;
    }
    derivation drv = read_derivation_file(store_.real_path(drv_path));
    store_path_set invalid;
    for (auto& [name, out] : drv.outputs) {
      if (!wanted.empty() && !wanted.count(name))
        continue;
      if (out.path.empty()) { // floating: nothing to look up, it must be built
        build(drv_path, drv);
        return;
      }
      store_path p = parse_store_path(out.path);
      if (!store_.db().is_valid(p))
        invalid.insert(p);
    }
    for (auto& name : wanted)
      if (!drv.outputs.count(name))
        throw error("derivation '" + drv_path.full() + "' has no output '" + name + "'");
    if (invalid.empty()) {
      if (targets_.count(drv_path))
        for (auto& [name, out] : drv.outputs)
          if (!out.path.empty())
            plan.satisfied[drv_path].emplace(name, parse_store_path(out.path));
      return;
    }
    auto found = ask(invalid);
    if (found.size() == invalid.size()) {
      for (auto& [p, info] : found)
        substitute(p, info);
      return;
    }
    build(drv_path, drv);
  }

  void build(const store_path& drv_path, const derivation& drv) {
    if (!plan.will_build.insert(drv_path).second)
      return;
    for (auto& [input, outputs] : drv.input_drvs)
      want(wanted_path::built(parse_store_path(input), outputs));
    for (auto& src : drv.input_srcs)
      want(wanted_path::opaque(parse_store_path(src)));
  }

  local_store& store_;
  const substitutable_query& substituters_;
  std::vector<wanted_path> todo_;
  store_path_set targets_;
  std::set<std::pair<store_path, std::set<std::string>>> seen_;
};

} // namespace

missing_plan query_missing(local_store& store, const std::vector<wanted_path>& targets,
                           const substitutable_query& substituters) {
  planner p(store, substituters);
  for (auto& t : targets)
    p.want_target(t);
  sqlite_read_txn snapshot(store.db().db());
  p.run();
  return p.plan;
}

} // namespace kiln
