// The sandbox's part of build_host: where a sandboxed build's root, store
// and build user come from, and how its outputs leave the sandbox.
#include "actors/build_host.hpp"

#include "sandbox/builder_process.hpp"
#include "sandbox/builtin_builders.hpp"
#include "sandbox/run_capture.hpp"
#include "sandbox/sandbox_spec.hpp"
#include "sandbox/sandbox_store.hpp"
#include "store/io/error.hpp"
#include "store/io/fd.hpp"
#include "store/io/file_ops.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

extern char** environ;

namespace kiln {

// Runs the pre-build-hook (DRV, and the sandbox's root if there is one) and
// returns the extra sandbox paths it answers with.
// A store path among them is bound from where this store keeps it (as
// Nix, the hook's paths bring no closure along).
std::vector<sandbox_path> build_host::pre_build_hook_paths(const build_request& req, const std::string& root) {
  const std::string& hook = req.options.pre_build_hook;
  if (hook.empty())
    return {};
  std::vector<std::string> args{req.run.drv_path};
  if (!root.empty())
    args.push_back(root);
  auto r = sandbox::run_capture(hook, args, environ, "the pre-build-hook");
  if (r.status != 0)
    throw error("the pre-build-hook '" + hook + "' " + sandbox::describe_wait_status(r.status));
  auto paths = sandbox::parse_pre_build_hook_output(r.output);
  const std::string prefix = std::string(default_store_dir) + "/";
  for (auto& p : paths)
    if (p.source.compare(0, prefix.size(), prefix) == 0)
      p.source = req.store_real_dir + "/" + p.source.substr(prefix.size());
  return paths;
}

// Where every sandbox's new root is mounted: one empty directory, made once.
// Each builder mounts its root there inside its own mount namespace, so
// builds share it without seeing each other and none makes or removes a
// directory for it.
// Made (if missing) for every round: a host serves many stores over its
// life, and a store may be wiped and made again under it.
std::string build_host::sandbox_root_dir(const build_request& r) {
  std::string dir = r.kiln_dir + "/sandbox-root";
  make_directories(r.kiln_dir, 0755);
  make_directories(dir, 0700);
  return dir;
}

// The build directory. A root daemon's sandboxed build takes its build user
// first and uses that user's own directory (emptied after every build; see
// sandbox/sandbox_store.hpp for why directories are reused); any other
// build gets a fresh one.
void build_host::make_build_dir(prepared_build& b, const std::string& name, bool isolate, const store_path& dp,
                                const build_request& r) {
  if (isolate && ::geteuid() == 0) {
    auto user = sandbox::acquire_build_user(r.options.build_users_group, r.state_dir);
    b.build_top = private_dir() + "/build-" + std::to_string(user.uid);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      users_[dp.full()] = std::move(user);
    }
    make_directories(b.build_top, 0700);
    b.reused_build_dir = true;
    unique_fd dir = open_directory(b.build_top);
    for (auto& entry : read_directory(dir.get(), b.build_top))
      remove_tree_at(dir.get(), entry); // normally empty already
    // The last builder owned it and may have opened it up.
    if (::fchmod(dir.get(), 0700) != 0)
      throw_errno("preparing the build directory '" + b.build_top + "'");
  } else {
    std::string tmpl = private_dir() + "/kiln-build-" + name + "-XXXXXX";
    if (!::mkdtemp(tmpl.data()))
      throw_errno("creating a build directory under '" + private_dir() + "'");
    b.build_top = tmpl;
  }
  b.job.process.build_dir = b.build_top;
}

// A failed build's directory that --keep-failed keeps: a build user's own
// one is renamed to a name of its own first (the user's next build makes a
// new one).
void build_host::keep_build_dir(prepared_build& b, const std::string& name) {
  if (!b.reused_build_dir)
    return;
  std::string kept = private_dir() + "/kiln-build-" + name + "-XXXXXX";
  if (!::mkdtemp(kept.data()))
    throw_errno("creating a directory to keep the build directory in under '" + private_dir() + "'");
  if (::rename(b.build_top.c_str(), kept.c_str()) != 0)
    throw_errno("keeping the build directory '" + b.build_top + "' as '" + kept + "'");
  b.build_top = b.job.process.build_dir = kept;
  b.reused_build_dir = false;
}

// Where a root daemon keeps its build users' sandbox stores: beside the
// store's database, if that is on the store's file system (outputs leave a
// sandbox store by rename); "" if not, and then each build makes
// <drv>.chroot in the store, as Nix names the sandbox's directory.
std::string build_host::reusable_store_dirs(const build_request& r) {
  std::string dir = r.kiln_dir + "/sandbox-stores";
  make_directories(r.kiln_dir, 0755);
  make_directories(dir, 0700);
  struct stat a, s;
  if (::stat(dir.c_str(), &a) != 0 || ::stat(r.store_real_dir.c_str(), &s) != 0)
    throw_errno("looking at '" + dir + "'");
  return a.st_dev == s.st_dev ? dir : "";
}

// The sandbox's own store: the builder sees it as the store and writes its
// outputs there; it is on the store's file system, so outputs move out by
// rename.
void build_host::plan_isolation(prepared_build& b, const store_path& dp, const build_request& r) {
  const derivation& drv = r.run.drv;
  const build_options& options = r.options;
  sandbox::sandbox_spec& j = b.job.process;
  const bool root = ::geteuid() == 0;
  if (root) {
    std::lock_guard<std::mutex> lock(mutex_);
    const auto& user = users_.at(dp.full());
    j.host_uid = user.uid;
    j.host_gid = user.gid;
  } else {
    j.host_uid = ::geteuid();
    j.host_gid = ::getegid();
  }
  if (root && !reusable_store_dirs(r).empty()) {
    b.chroot_dir = reusable_store_dirs(r) + "/" + std::to_string(j.host_uid);
    b.reused_store_dir = true;
  } else {
    b.chroot_dir = r.store_real_dir + "/" + std::string(dp.base_name()) + ".chroot";
    remove_tree(b.chroot_dir);
  }
  make_directories(b.chroot_dir, 0755);
  j.root_dir = sandbox_root_dir(r);
  j.chroot_store_dir = b.chroot_dir;
  if (root) {
    // The build user may create its outputs here and nothing else.
    if (::chown(j.chroot_store_dir.c_str(), 0, j.host_gid) != 0 || ::chmod(j.chroot_store_dir.c_str(), 01775) != 0)
      throw_errno("preparing '" + j.chroot_store_dir + "' for the build user");
    chown_tree(j.build_dir, j.host_uid, j.host_gid);
  }

  sandbox::sandbox_settings ss;
  ss.mode = static_cast<sandbox::sandbox_mode>(options.sandbox);
  ss.build_dir_inside = options.sandbox_build_dir;
  ss.allowed_impure_host_deps = options.allowed_impure_host_deps;
  ss.paths = r.sandbox_paths;
  for (auto& p : pre_build_hook_paths(r, b.chroot_dir))
    ss.paths.push_back(p);
  if (sandbox::builtin_command(drv.builder)) {
    for (auto& f : sandbox::builtin_sandbox_files())
      ss.paths.push_back({f, f, false});
    ss.paths.push_back({"/etc/ssl/certs", "/etc/ssl/certs", true}); // https
  }
  ss.limits = j.limits;

  std::vector<std::string> closure = r.input_closure;
  closure.insert(closure.end(), r.sandbox_closure.begin(), r.sandbox_closure.end());
  sandbox::host_view host;
  host.is_directory = [](const std::string& p) -> std::optional<bool> {
    struct stat st;
    if (::stat(p.c_str(), &st) != 0)
      return std::nullopt;
    return S_ISDIR(st.st_mode);
  };
  try {
    sandbox::plan_sandbox(j, drv, closure, ss, host);
  } catch (const sandbox::sandbox_refused& e) {
    throw error("cannot build '" + dp.full() + "': " + e.what());
  }
  if (b.reused_store_dir)
    sandbox::prepare_mount_points(b.chroot_dir, sandbox::store_mount_points(j));
}

// A sandboxed build's outputs move from its own store directory into the
// store. A fixed output is copied instead, into new inodes through a fresh
// directory in the store (never inside the sandbox, where the builder
// could have planted a symlink): a descriptor another process kept to the
// file the builder wrote cannot change what gets registered (CVE-2024-27297,
// without CVE-2026-39860's mistake).
void build_host::move_sandbox_outputs(prepared_build& b, const build_request& r) {
  const derivation& drv = r.run.drv;
  unique_fd from = open_directory(b.job.process.chroot_store_dir);
  for (auto& [oname, loc] : b.output_locations) {
    store_path op = parse_store_path(drv.outputs.at(oname).path);
    std::string base(op.base_name()), real = r.store_real_dir + "/" + base;
    struct stat st;
    if (::fstatat(from.get(), base.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      loc = real; // not produced: judged missing there
      continue;
    }
    if (!drv.is_fixed_output()) {
      if (::renameat(from.get(), base.c_str(), AT_FDCWD, real.c_str()) != 0)
        throw_errno("moving '" + op.full() + "' out of the sandbox");
    } else {
      std::string tmp = r.store_real_dir + "/" + std::string(op.hash_part()) + "-kiln-fresh-" +
                        std::to_string(::getpid());
      remove_tree(tmp);
      if (::mkdir(tmp.c_str(), 0700) != 0)
        throw_errno("creating '" + tmp + "'");
      unique_fd to = open_directory(tmp);
      copy_tree_fresh_at(from.get(), base, to.get(), base);
      if (::renameat(to.get(), base.c_str(), AT_FDCWD, real.c_str()) != 0)
        throw_errno("moving the copy of '" + op.full() + "' into the store");
      remove_tree(tmp);
    }
    loc = real;
  }
}

} // namespace kiln
