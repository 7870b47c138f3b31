// The store-side steps of a derivation goal, as plain functions on a local
// store: load a derivation, prepare a builder run, and judge and register
// what it produced. No CAF here: the store actor calls these on its own
// thread, and tests call them directly.
#pragma once

#include "messages/build_types.hpp"
#include "sandbox/build_users.hpp"
#include "store/format/derivation.hpp"
#include "store/local/local_store.hpp"
#include "store/format/signature.hpp"

#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace kiln {

class build_steps {
public:
  build_steps(local_store& store, build_options options);
  ~build_steps(); // removes private_dir_ if empty

  // Reads and parses a valid .drv; throws kiln::error naming it otherwise.
  loaded_derivation load(const std::string& drv_path);
  // load() of the derivation and of its inputs, transitively, not below a
  // derivation whose outputs are all valid, nor of inputs an earlier call
  // returned (so many top-level goals over one graph read it once); the
  // derivation comes first.
  std::vector<loaded_derivation> load_closure(const std::string& drv_path);
  // The store paths among these that are not valid.
  std::vector<std::string> invalid(const std::vector<std::string>& paths);

  // Creates the private build directory and plans the builder's run.
  // `round` counts from 1; rounds after the first (and check and repair
  // builds of existing outputs) write into an overlay, not the store.
  // With `recheck` (output names) it first looks which outputs are still
  // invalid; if none of those named is, nothing is prepared and the result
  // says already_valid.
  prepared_build prepare(const build_round& r, const std::set<std::string>& recheck = {});

  // The valid ones among `paths` whose contents do not match their record.
  std::vector<std::string> damaged(const std::vector<std::string>& paths);

  // Judges the run: status, registration (in the last round), comparison
  // with earlier rounds or the registered outputs; removes the build
  // directory unless --keep-failed keeps a failed one.
  build_result finish(const build_round& r, prepared_build& build, const builder_outcome& outcome);

  const build_options& options() const { return options_; }

private:
  build_result judge(const build_round& run, prepared_build& build, const builder_outcome& outcome);
  void prepare_into(prepared_build& b, const build_round& r);
  void make_build_dir(prepared_build& b, const std::string& name, bool isolate, const store_path& drv_path);
  void plan_isolation(prepared_build& b, const store_path& drv_path, const derivation& drv);
  const std::string& reusable_store_dirs();
  void keep_build_dir(prepared_build& b, const std::string& name);
  std::vector<sandbox_path> pre_build_hook_paths(const std::string& drv_path, const std::string& root);
  void move_sandbox_outputs(prepared_build& b, const derivation& drv);
  void release(prepared_build& b, bool keep_build_dir);
  std::vector<store_path> input_closure(const derivation& drv);
  std::vector<store_path> store_sandbox_path_closure(std::vector<sandbox_path>& paths);
  const std::string& private_dir();
  void note_kept(const std::string& build_dir_name);
  const std::string& sandbox_root_dir();

  local_store& store_;
  build_options options_;
  std::vector<secret_key> keys_;
  // Round 1's outputs, compared with each later round's.
  std::map<std::string, std::vector<path_info>> first_round_;
  std::set<std::string> read_ahead_; // derivations load_closure has returned
  std::map<std::string, sandbox::build_user> users_; // by .drv, held while it builds
  std::string private_dir_;      // 0700, holds this engine's build directories
  std::string sandbox_root_dir_; // mount point of every sandbox's new root
  std::optional<std::string> reusable_store_dirs_; // "" if not on the store's file system
};

} // namespace kiln
