// The store-side steps of a derivation goal, as plain functions on a local
// store: load a derivation, describe a builder run (a build_request, for
// the builder's side: actors/build_host.hpp), and judge and register what
// the builder reports. No CAF here: the store actor calls these on its own
// thread, and tests call them directly.
#pragma once

#include "messages/build_types.hpp"
#include "store/format/derivation.hpp"
#include "store/local/local_store.hpp"
#include "store/format/signature.hpp"

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace kiln {

class build_steps {
public:
  build_steps(local_store& store, build_options options);

  // Reads and parses a valid .drv; throws kiln::error naming it otherwise.
  loaded_derivation load(const std::string& drv_path);
  // load() of the derivation and of its inputs, transitively, not below a
  // derivation whose outputs are all valid, nor of inputs an earlier call
  // returned (so many top-level goals over one graph read it once); the
  // derivation comes first.
  std::vector<loaded_derivation> load_closure(const std::string& drv_path);
  // The store paths among these that are not valid.
  std::vector<std::string> invalid(const std::vector<std::string>& paths);

  // Describes one round for the builder's side: the input closure, the
  // sandbox paths resolved, exportReferencesGraph's answers, which
  // outputs are valid. `round` counts from 1. With `recheck` (output
  // names) it first looks which outputs are still invalid; if none of
  // those named is, nothing else is described and already_valid is set.
  // Throws build_input_rejected for a derivation that cannot be built.
  build_request describe(const build_round& r, const std::set<std::string>& recheck = {});

  // The valid ones among `paths` whose contents do not match their record.
  std::vector<std::string> damaged(const std::vector<std::string>& paths);

  // Judges the builder's report: status, registration (in the last round),
  // comparison with earlier rounds or the registered outputs; a failed
  // run's invalid outputs removed from the store.
  build_result register_round(const build_request& r, const build_report& report);

  const build_options& options() const { return options_; }

private:
  build_result judge(const build_request& r, const build_report& report);
  std::vector<store_path> input_closure(const derivation& drv);
  std::vector<store_path> store_sandbox_path_closure(std::vector<sandbox_path>& paths);

  local_store& store_;
  build_options options_;
  std::vector<secret_key> keys_;
  // Round 1's outputs, compared with each later round's.
  std::map<std::string, std::vector<path_info>> first_round_;
  std::set<std::string> read_ahead_; // derivations load_closure has returned
};

} // namespace kiln
