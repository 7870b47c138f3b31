#include "actors/build_host.hpp"

#include "sandbox/builder_env.hpp"
#include "sandbox/builtin_builders.hpp"
#include "sandbox/sandbox_spec.hpp"
#include "sandbox/sandbox_store.hpp"
#include "store/io/error.hpp"
#include "store/io/fd.hpp"
#include "store/io/file_ops.hpp"
#include "store/io/leftovers.hpp"
#include "store/local/build_outputs.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <set>
#include <sstream>

namespace kiln {

namespace {

std::string temp_parent(const std::string& configured) {
  if (!configured.empty())
    return configured;
  const char* t = std::getenv("TMPDIR");
  return t && *t ? t : "/tmp";
}

constexpr const char* private_dir_prefix = "kiln-builds-";

// Private directories of this user's engines that are gone (killed: their
// destructor never ran) lose everything but the build directories they
// kept for the user; an emptied one is removed.
void sweep_private_dirs_of_dead_engines(const std::string& parent) {
  unique_fd dir(::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir)
    return;
  for (auto& name : read_directory(dir.get(), parent)) {
    struct stat st;
    if (!process_gone(pid_in_name(name, private_dir_prefix)) ||
        ::fstatat(dir.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISDIR(st.st_mode) ||
        st.st_uid != ::geteuid())
      continue;
    std::string path = parent + "/" + name;
    try {
      unique_fd d = open_directory(path);
      std::set<std::string> kept{"kept"};
      if (::faccessat(d.get(), "kept", F_OK, 0) == 0) {
        std::istringstream list(read_whole_file(path + "/kept", 1 << 20, "list of kept build directories"));
        for (std::string k; std::getline(list, k);)
          kept.insert(k);
      }
      bool left = false;
      for (auto& entry : read_directory(d.get(), path)) {
        if (kept.count(entry))
          left = left || entry != "kept";
        else
          remove_tree_at(d.get(), entry);
      }
      if (!left) {
        ::unlinkat(d.get(), "kept", 0);
        ::rmdir(path.c_str());
      }
    } catch (const error&) {
      // not ours to clean after all, or busy: the next engine tries again
    }
  }
}

std::string real_path_of(const build_request& r, const store_path& p) {
  return r.store_real_dir + "/" + std::string(p.base_name());
}

} // namespace

build_host::build_host(std::string build_dir_parent) : parent_(temp_parent(build_dir_parent)) {}

build_host::~build_host() {
  if (private_dir_.empty())
    return;
  // The build users' directories are empty between builds; the private
  // directory stays only while it holds a kept build directory.
  try {
    unique_fd dir = open_directory(private_dir_);
    for (auto& name : read_directory(dir.get(), private_dir_))
      if (name.rfind("build-", 0) == 0)
        ::unlinkat(dir.get(), name.c_str(), AT_REMOVEDIR);
  } catch (const error&) {
  }
  ::rmdir(private_dir_.c_str());
}

// Build directories live in one private (0700) directory of the engine's,
// made once, so no other local user reaches them (CVE-2024-38531) and each
// build makes and removes just its own directory. Its name carries the
// engine's pid, so the next engine can clean up after one that was killed.
std::string build_host::private_dir() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (private_dir_.empty()) {
    sweep_private_dirs_of_dead_engines(parent_);
    std::string tmpl = parent_ + "/" + private_dir_prefix + std::to_string(::getpid()) + "-XXXXXX";
    if (!::mkdtemp(tmpl.data()))
      throw_errno("creating a private directory for builds under '" + parent_ + "'");
    private_dir_ = tmpl;
  }
  return private_dir_;
}

// --keep-failed's directories are the user's: listed, so a sweep keeps them.
void build_host::note_kept(const std::string& name) {
  std::string list = private_dir() + "/kept";
  std::lock_guard<std::mutex> lock(mutex_);
  unique_fd fd(::open(list.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
  std::string line = name + "\n";
  if (fd)
    write_all(fd.get(), line.data(), line.size(), list);
}

prepared_build build_host::prepare(const build_request& r) {
  prepared_build b;
  try {
    prepare_into(b, r);
  } catch (...) {
    // Nothing of a build that cannot start is left behind.
    release(r, b, false);
    throw;
  }
  return b;
}

void build_host::prepare_into(prepared_build& b, const build_request& r) {
  const derivation& drv = r.run.drv;
  const build_options& options = r.options;
  const uint32_t round = r.run.round;
  store_path dp = parse_store_path(r.run.drv_path);
  std::string name = derivation_name(drv, dp.base_name());
  b.job.drv_path = dp.full();
  sandbox::sandbox_spec& j = b.job.process;

  // Sandboxed unless off, or relaxed for a __noChroot derivation, or the
  // host cannot (then sandbox-fallback decides).
  bool isolate;
  try {
    isolate = sandbox::sandbox_isolates(drv, static_cast<sandbox::sandbox_mode>(options.sandbox));
  } catch (const sandbox::sandbox_refused& e) {
    throw error("cannot build '" + dp.full() + "': " + e.what());
  }
  if (isolate && !sandbox::sandbox_unavailable_reason().empty()) {
    if (!options.sandbox_fallback)
      throw error("cannot build '" + dp.full() + "' in a sandbox: " + sandbox::sandbox_unavailable_reason() +
                  " (set 'sandbox = false', or 'sandbox-fallback = true' to build without one)");
    b.job.notice = "warning: building without a sandbox: " + sandbox::sandbox_unavailable_reason();
    isolate = false;
  }

  make_build_dir(b, name, isolate, dp, r);

  sandbox::builder_env_options eo;
  eo.build_dir = isolate ? options.sandbox_build_dir : j.build_dir;
  eo.cores = options.cores;
  eo.host_env = [](const std::string& n) -> std::optional<std::string> {
    const char* v = std::getenv(n.c_str());
    return v ? std::optional<std::string>(v) : std::nullopt;
  };
  // Answered by the store's side when it described the round.
  eo.export_references = [&](const std::vector<std::string>& paths, bool json) {
    auto it = r.exported_references.find(export_key(paths, json));
    if (it == r.exported_references.end())
      throw error("the description of '" + dp.full() + "' lacks the references exported for exportReferencesGraph");
    return it->second;
  };
  sandbox::builder_env env = sandbox::plan_builder_env(drv, eo);
  j.env = env.vars;
  for (auto& [file, contents] : env.files) {
    std::string p = j.build_dir + "/" + file;
    unique_fd fd(::open(p.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    if (!fd)
      throw_errno("writing '" + p + "' for the builder");
    write_all(fd.get(), contents.data(), contents.size(), p);
  }

  if (auto builtin = sandbox::builtin_command(drv.builder)) {
    j.program = (*builtin)[0];
    j.args.assign(builtin->begin() + 1, builtin->end());
  } else {
    j.program = drv.builder;
    j.args = drv.args;
  }
  j.store_dir = std::string(default_store_dir);
  j.store_real_dir = r.store_real_dir;
  j.limits = {options.memory_max, options.pids_max, options.cpu_max_percent, options.pids_default};
  j.file_size_max = options.size_max;

  // Outputs already on disk (valid, or left over).
  std::vector<std::string> existing;
  for (auto& [oname, out] : drv.outputs) {
    struct stat st;
    store_path op = parse_store_path(out.path);
    if (::lstat(real_path_of(r, op).c_str(), &st) == 0)
      existing.emplace_back(op.base_name());
  }
  // Check and repair rebuild outputs that exist, and later rounds must not
  // disturb the first round's: their outputs stay apart from the store (in
  // the sandbox's own store directory, or an overlay without a sandbox).
  b.isolated_outputs = round > 1 || (r.run.mode != build_mode::normal && !existing.empty());

  if (isolate) {
    plan_isolation(b, dp, r);
  } else if (b.isolated_outputs) {
    std::string base = r.kiln_dir + "/builds";
    make_directories(r.kiln_dir, 0755);
    make_directories(base, 0700);
    std::string dir = base + "/" + std::string(dp.base_name()) + "-" + std::to_string(::getpid()) + "-" +
                      std::to_string(round);
    remove_tree(dir);
    make_directories(dir, 0700);
    j.overlay_upper = dir + "/upper";
    j.overlay_work = dir + "/work";
    make_directories(j.overlay_upper, 0755);
    make_directories(j.overlay_work, 0700);
    j.overlay_hide = existing;
  }
  for (auto& [oname, out] : drv.outputs) {
    store_path op = parse_store_path(out.path);
    std::string real = real_path_of(r, op);
    if (isolate)
      b.output_locations[oname] = j.chroot_store_dir + "/" + std::string(op.base_name());
    else if (b.isolated_outputs)
      b.output_locations[oname] = j.overlay_upper + "/" + std::string(op.base_name());
    else
      b.output_locations[oname] = real;
    b.job.output_locations.push_back(b.output_locations[oname]);
    // An invalid leftover from an earlier attempt (its goal holds the lock).
    auto valid = r.output_valid.find(oname);
    if (!b.isolated_outputs && (valid == r.output_valid.end() || !valid->second))
      remove_tree(real);
  }

  b.job.max_silent_time = options.max_silent_time;
  b.job.timeout = options.timeout;
  b.job.max_log_size = options.max_log_size;
  b.job.size_max = options.size_max;
  b.job.log_lines = options.log_lines;
}

build_report build_host::report(const build_request& r, prepared_build& b, const builder_outcome& outcome) {
  build_report rep;
  rep.outcome = outcome;
  rep.isolated_outputs = b.isolated_outputs;
  if (outcome.limit != builder_outcome::none || outcome.wait_status != 0)
    return rep;
  try {
    if (!b.chroot_dir.empty() && !b.isolated_outputs)
      move_sandbox_outputs(b, r);
    const derivation& drv = r.run.drv;
    store_path dp = parse_store_path(r.run.drv_path);
    store_path_set candidates;
    for (auto& p : r.input_closure)
      candidates.insert(parse_store_path(p));
    for (auto& [name, out] : drv.outputs)
      candidates.insert(parse_store_path(out.path));
    for (auto& [name, loc] : b.output_locations)
      rep.outputs.push_back(
          scan_build_output(dp, drv, {name, parse_store_path(drv.outputs.at(name).path), loc}, candidates));
  } catch (const output_rejected& e) {
    rep.rejected = e.what();
  } catch (const std::exception& e) {
    rep.failure = e.what();
  }
  return rep;
}

// Everything a round holds outside its result. The build user's own
// directories are emptied, not removed, and before the user is given back:
// whoever takes it next uses them.
std::string build_host::release(const build_request& r, prepared_build& b, bool keep) {
  if (b.released)
    return {};
  b.released = true;
  auto give_back_user = [&] {
    std::lock_guard<std::mutex> lock(mutex_);
    users_.erase(b.job.drv_path);
  };
  std::string note;
  try {
    if (!b.job.process.overlay_upper.empty())
      remove_tree(split_path(b.job.process.overlay_upper).first);
    if (keep && !b.build_top.empty()) {
      keep_build_dir(b, derivation_name(r.run.drv, parse_store_path(r.run.drv_path).base_name()));
      // Handed to the user who asked, by handles, once nothing of the build
      // runs any more (its control group and PID namespace are gone).
      chown_tree(b.build_top, ::getuid(), ::getgid());
      note_kept(split_path(b.build_top).second);
      note = "note: keeping build directory '" + b.job.process.build_dir + "'";
    }
    if (b.reused_store_dir)
      sandbox::sweep_sandbox_store(b.chroot_dir);
    else if (!b.chroot_dir.empty())
      remove_tree(b.chroot_dir);
    if (b.reused_build_dir && !keep)
      empty_directory(b.build_top);
    else if (!b.build_top.empty() && !keep)
      remove_tree(b.build_top);
  } catch (...) {
    give_back_user(); // its next build empties what is left
    throw;
  }
  give_back_user();
  return note;
}

} // namespace kiln
