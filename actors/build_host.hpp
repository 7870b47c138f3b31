// The builder's side of a build round, as plain functions on the host the
// build runs on (design.md: a build is described where the store's
// database is and applied here): the build directory, the build user, the
// sandbox, and then the outputs moved out and scanned. No SQLite and no
// CAF: a builder actor calls these on its own thread, in kilnd's process
// or a worker's. Shared by the builders of one engine, so it locks.
#pragma once

#include "messages/build_types.hpp"
#include "sandbox/build_users.hpp"

#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace kiln {

// A round being run: the builder's job and where its outputs go.
struct prepared_build {
  builder_job job;
  std::map<std::string, std::string> output_locations; // name -> where the builder writes it
  bool isolated_outputs = false; // check/repair/later rounds: outputs land apart from the store
  std::string chroot_dir;  // sandboxed: the store the builder writes into (removed after)
  std::string build_top;   // the build directory on the host (in the private directory)
  // The build user's own directories (a root daemon's sandboxed build),
  // emptied after the build instead of removed.
  bool reused_build_dir = false, reused_store_dir = false;
  bool released = false;
};

class build_host {
public:
  // `build_dir_parent` as the build_dir_parent setting ("" = $TMPDIR or /tmp).
  explicit build_host(std::string build_dir_parent);
  ~build_host(); // removes the private directory if nothing is kept there
  build_host(const build_host&) = delete;
  build_host& operator=(const build_host&) = delete;

  // Makes the build directory (taking a build user for a root sandboxed
  // build), plans the builder's run and its sandbox. Throws kiln::error;
  // nothing of a round that cannot start is left behind.
  prepared_build prepare(const build_request& r);

  // After the run: a successful sandboxed build's outputs moved into the
  // store (non-isolated rounds), then every output scanned. The outcome is
  // the builder's; the rest is filled in here.
  build_report report(const build_request& r, prepared_build& b, const builder_outcome& outcome);

  // Everything the round holds outside its result: the sandbox's store,
  // the overlay, the build directory (unless `keep`: then handed to the
  // user, and the returned note says where), the build user. Failed
  // outputs left in the store are the store's side to remove.
  std::string release(const build_request& r, prepared_build& b, bool keep);

private:
  void prepare_into(prepared_build& b, const build_request& r);
  void make_build_dir(prepared_build& b, const std::string& name, bool isolate, const store_path& drv_path,
                      const build_request& r);
  void plan_isolation(prepared_build& b, const store_path& drv_path, const build_request& r);
  std::vector<sandbox_path> pre_build_hook_paths(const build_request& r, const std::string& root);
  void move_sandbox_outputs(prepared_build& b, const build_request& r);
  void keep_build_dir(prepared_build& b, const std::string& name);
  void note_kept(const std::string& build_dir_name);
  std::string private_dir();
  // The mount point of every sandbox's new root, in the store's state.
  std::string sandbox_root_dir(const build_request& r);
  // Where a root host keeps its build users' sandbox stores ("" if not on
  // the store's file system).
  std::string reusable_store_dirs(const build_request& r);

  std::string parent_;
  std::mutex mutex_; // guards what follows (builders prepare and release at once)
  std::map<std::string, sandbox::build_user> users_; // by .drv, held while it builds
  std::string private_dir_; // 0700, holds this host's build directories
};

} // namespace kiln
