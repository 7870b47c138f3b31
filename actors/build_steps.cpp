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

std::string temp_parent(const build_options& o) {
  if (!o.build_dir_parent.empty())
    return o.build_dir_parent;
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

} // namespace

build_steps::~build_steps() {
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
const std::string& build_steps::private_dir() {
  if (private_dir_.empty()) {
    sweep_private_dirs_of_dead_engines(temp_parent(options_));
    std::string tmpl = temp_parent(options_) + "/" + private_dir_prefix + std::to_string(::getpid()) + "-XXXXXX";
    if (!::mkdtemp(tmpl.data()))
      throw_errno("creating a private directory for builds under '" + temp_parent(options_) + "'");
    private_dir_ = tmpl;
  }
  return private_dir_;
}

// --keep-failed's directories are the user's: listed, so a sweep keeps them.
void build_steps::note_kept(const std::string& name) {
  std::string list = private_dir() + "/kept";
  unique_fd fd(::open(list.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
  std::string line = name + "\n";
  if (fd)
    write_all(fd.get(), line.data(), line.size(), list);
}

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

prepared_build build_steps::prepare(const build_round& r, const std::set<std::string>& recheck) {
  const derivation& drv = r.drv;
  prepared_build b;
  if (!recheck.empty()) {
    std::vector<std::string> outputs;
    for (auto& [name, out] : drv.outputs)
      if (!out.path.empty())
        outputs.push_back(out.path);
    b.invalid_outputs = invalid(outputs);
    b.already_valid = std::all_of(recheck.begin(), recheck.end(), [&](const std::string& name) {
      auto it = drv.outputs.find(name);
      return it != drv.outputs.end() && !it->second.path.empty() &&
             std::find(b.invalid_outputs.begin(), b.invalid_outputs.end(), it->second.path) == b.invalid_outputs.end();
    });
    if (b.already_valid)
      return b;
  }
  try {
    prepare_into(b, r);
  } catch (...) {
    // Nothing of a build that cannot start is left behind.
    release(b, false);
    throw;
  }
  return b;
}

void build_steps::prepare_into(prepared_build& b, const build_round& r) {
  const std::string& drv_path = r.drv_path;
  const derivation& drv = r.drv;
  const uint32_t round = r.round;
  store_path dp = store_.parse_path(drv_path);
  std::string name = derivation_name(drv, dp.base_name());
  b.job.drv_path = dp.full();
  sandbox::sandbox_spec& j = b.job.process;

  // Sandboxed unless off, or relaxed for a __noChroot derivation, or the
  // host cannot (then sandbox-fallback decides).
  bool isolate;
  try {
    isolate = sandbox::sandbox_isolates(drv, static_cast<sandbox::sandbox_mode>(options_.sandbox));
  } catch (const sandbox::sandbox_refused& e) {
    throw error("cannot build '" + dp.full() + "': " + e.what());
  }
  if (isolate && !sandbox::sandbox_unavailable_reason().empty()) {
    if (!options_.sandbox_fallback)
      throw error("cannot build '" + dp.full() + "' in a sandbox: " + sandbox::sandbox_unavailable_reason() +
                  " (set 'sandbox = false', or 'sandbox-fallback = true' to build without one)");
    b.job.notice = "warning: building without a sandbox: " + sandbox::sandbox_unavailable_reason();
    isolate = false;
  }

  make_build_dir(b, name, isolate, dp);

  sandbox::builder_env_options eo;
  eo.build_dir = isolate ? options_.sandbox_build_dir : j.build_dir;
  eo.cores = options_.cores;
  eo.host_env = [](const std::string& n) -> std::optional<std::string> {
    const char* v = std::getenv(n.c_str());
    return v ? std::optional<std::string>(v) : std::nullopt;
  };
  eo.export_references = [&](const std::vector<std::string>& paths, bool json) {
    store_path_set asked, inputs;
    for (auto& p : paths)
      asked.insert(store_.parse_path(p));
    for (auto& p : input_closure(drv))
      inputs.insert(p);
    auto exported = export_references(store_.db(), asked, inputs);
    return json ? reference_graph_json(store_.db(), exported) : reference_graph_text(store_.db(), exported);
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
  j.store_real_dir = store_.layout().store_dir();
  j.limits = {options_.memory_max, options_.pids_max, options_.cpu_max_percent, options_.pids_default};
  j.file_size_max = options_.size_max;

  // Outputs already on disk (valid, or left over).
  std::vector<std::string> existing;
  for (auto& [oname, out] : drv.outputs) {
    struct stat st;
    store_path op = parse_store_path(out.path);
    if (::lstat(store_.real_path(op).c_str(), &st) == 0)
      existing.emplace_back(op.base_name());
  }
  // Check and repair rebuild outputs that exist, and later rounds must not
  // disturb the first round's: their outputs stay apart from the store (in
  // the sandbox's own store directory, or an overlay without a sandbox).
  b.isolated_outputs = round > 1 || (r.mode != build_mode::normal && !existing.empty());

  if (isolate) {
    plan_isolation(b, dp, drv);
  } else if (b.isolated_outputs) {
    std::string base = store_.layout().kiln_dir() + "/builds";
    make_directories(store_.layout().kiln_dir(), 0755);
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
    std::string real = store_.real_path(op);
    if (isolate) {
      b.output_locations[oname] = j.chroot_store_dir + "/" + std::string(op.base_name());
    } else if (b.isolated_outputs) {
      b.output_locations[oname] = j.overlay_upper + "/" + std::string(op.base_name());
    } else {
      b.output_locations[oname] = real;
    }
    b.job.output_locations.push_back(b.output_locations[oname]);
    // An invalid leftover from an earlier attempt (we hold its lock).
    if (!b.isolated_outputs && !store_.db().is_valid(op))
      remove_tree(real);
  }

  if (round == 1)
    b.job.log_path = build_log_path(store_.layout(), dp.base_name(), parse_log_compression(options_.compress_build_log));
  b.job.log_compression = options_.compress_build_log;
  b.job.max_silent_time = options_.max_silent_time;
  b.job.timeout = options_.timeout;
  b.job.max_log_size = options_.max_log_size;
  b.job.size_max = options_.size_max;
  b.job.log_lines = options_.log_lines;
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

// Everything a build run holds outside its result: the sandbox's
// directory, the build directory (unless kept), the build user. The build
// user's own directories are emptied, not removed, and before the user is
// given back: whoever takes it next uses them.
void build_steps::release(prepared_build& b, bool keep_build_dir) {
  try {
    if (b.reused_store_dir)
      sandbox::sweep_sandbox_store(b.chroot_dir);
    else if (!b.chroot_dir.empty())
      remove_tree(b.chroot_dir);
    if (b.reused_build_dir && !keep_build_dir)
      empty_directory(b.build_top);
    else if (!b.build_top.empty() && !keep_build_dir)
      remove_tree(b.build_top);
  } catch (...) {
    users_.erase(b.job.drv_path); // its next build empties what is left
    throw;
  }
  users_.erase(b.job.drv_path);
}

build_result build_steps::finish(const build_round& run, prepared_build& build, const builder_outcome& outcome) {
  const std::string& drv_path = run.drv_path;
  const derivation& drv = run.drv;
  build_result r;
  try {
    if (!build.chroot_dir.empty() && !build.isolated_outputs && outcome.limit == builder_outcome::none &&
        outcome.wait_status == 0)
      move_sandbox_outputs(build, drv);
    r = judge(run, build, outcome);
  } catch (const error& e) {
    r.status = build_status::misc_failure;
    r.error = e.what();
  }
  r.path = drv_path;
  r.cpu_user_us = outcome.cpu_user_us;
  r.cpu_system_us = outcome.cpu_system_us;
  r.peak_memory = outcome.peak_memory;
  bool failed = !is_success(r.status);
  if (!build.job.process.overlay_upper.empty())
    remove_tree(split_path(build.job.process.overlay_upper).first);
  bool keep = failed && options_.keep_failed;
  if (keep) {
    keep_build_dir(build, derivation_name(drv, store_.parse_path(drv_path).base_name()));
    // Handed to the user who asked, by handles, once nothing of the build
    // runs any more (its control group and PID namespace are gone).
    chown_tree(build.build_top, ::getuid(), ::getgid());
    note_kept(split_path(build.build_top).second);
    r.error += "\nnote: keeping build directory '" + build.job.process.build_dir + "'";
  }
  if (failed && !build.isolated_outputs)
    for (auto& [name, loc] : build.output_locations)
      if (!store_.db().is_valid(parse_store_path(drv.outputs.at(name).path)))
        remove_tree(loc);
  release(build, keep);
  return r;
}

} // namespace kiln
