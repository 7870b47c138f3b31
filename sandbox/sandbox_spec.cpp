#include "sandbox/sandbox_spec.hpp"

#include "store/io/error.hpp"

#include <nlohmann/json.hpp>

#include <sys/personality.h>

#include <algorithm>
#include <set>
#include <sstream>

namespace kiln::sandbox {

sandbox_mode parse_sandbox_mode(const std::string& value, const std::string& what) {
  if (value == "true")
    return sandbox_mode::on;
  if (value == "false")
    return sandbox_mode::off;
  if (value == "relaxed")
    return sandbox_mode::relaxed;
  throw format_error(what + ": expected 'true', 'false' or 'relaxed', got '" + value + "'");
}

namespace {

std::optional<nlohmann::json> structured_attrs(const derivation& drv) {
  auto it = drv.env.find("__json");
  if (it == drv.env.end())
    return std::nullopt;
  try {
    auto j = nlohmann::json::parse(it->second);
    if (j.is_object())
      return j;
  } catch (const std::exception&) {
  }
  throw format_error("derivation attribute '__json' is not a valid JSON object");
}

// "/a/b/../c" is refused rather than normalised: a sandbox target with
// ".." could climb out of the new root before pivot_root.
void check_target(const std::string& t, const std::string& what) {
  if (t.empty() || t[0] != '/')
    throw format_error(what + ": '" + t + "' is not an absolute path");
  std::istringstream in(t);
  for (std::string part; std::getline(in, part, '/');)
    if (part == "..")
      throw format_error(what + ": '" + t + "' contains '..'");
}

bool inside(const std::string& path, const std::string& dir) {
  return path == dir || (path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 &&
                         (dir == "/" || path[dir.size()] == '/'));
}

} // namespace

std::vector<std::string> derivation_string_list(const derivation& drv, const std::string& name) {
  std::vector<std::string> out;
  if (auto j = structured_attrs(drv)) {
    auto it = j->find(name);
    if (it == j->end() || it->is_null())
      return out;
    if (!it->is_array())
      throw format_error("derivation attribute '" + name + "' must be a list of strings");
    for (auto& v : *it) {
      if (!v.is_string())
        throw format_error("derivation attribute '" + name + "' must be a list of strings");
      out.push_back(v.get<std::string>());
    }
    return out;
  }
  auto it = drv.env.find(name);
  if (it == drv.env.end())
    return out;
  std::istringstream in(it->second);
  for (std::string w; in >> w;)
    out.push_back(w);
  return out;
}

bool derivation_flag(const derivation& drv, const std::string& name) {
  if (auto j = structured_attrs(drv)) {
    auto it = j->find(name);
    return it != j->end() && it->is_boolean() && it->get<bool>();
  }
  auto it = drv.env.find(name);
  return it != drv.env.end() && it->second == "1";
}

std::vector<bool> parents_made_earlier(const std::vector<mount_step>& mounts) {
  std::set<std::string> dirs{"/"};
  std::vector<bool> made;
  made.reserve(mounts.size());
  for (auto& m : mounts) {
    auto slash = m.target.rfind('/');
    std::string parent = slash == 0 || slash == std::string::npos ? "/" : m.target.substr(0, slash);
    made.push_back(dirs.count(parent) > 0);
    bool is_dir = m.kind == mount_step::dir || m.kind == mount_step::tmpfs || m.kind == mount_step::proc ||
                  m.kind == mount_step::devpts ||
                  ((m.kind == mount_step::bind || m.kind == mount_step::bind_ro) && m.source_is_dir);
    if (is_dir)
      dirs.insert(m.target);
  }
  return made;
}

std::string sandbox_passwd(const sandbox_spec& spec, const std::string& build_dir_inside) {
  return "root:x:0:0:Nix build user:" + build_dir_inside + ":/noshell\n" + "nixbld:x:" +
         std::to_string(spec.sandbox_uid) + ":" + std::to_string(spec.sandbox_gid) + ":Nix build user:" +
         build_dir_inside + ":/noshell\n" + "nobody:x:65534:65534:Nobody:/:/noshell\n";
}

std::string sandbox_group(const sandbox_spec& spec) {
  return "root:x:0:\nnixbld:!:" + std::to_string(spec.sandbox_gid) + ":\nnogroup:x:65534:\n";
}

bool sandbox_isolates(const derivation& drv, sandbox_mode mode) {
  if (mode == sandbox_mode::off)
    return false;
  bool no_chroot = derivation_flag(drv, "__noChroot");
  if (no_chroot && mode == sandbox_mode::on)
    throw sandbox_refused("derivation has '__noChroot' set, but that is not allowed when 'sandbox' is 'true'");
  return !no_chroot;
}

void plan_sandbox(sandbox_spec& spec, const derivation& drv, const std::vector<std::string>& input_closure,
                  const sandbox_settings& settings, const host_view& host) {
  spec.limits = settings.limits;
  spec.mounts.clear();
  spec.isolated = sandbox_isolates(drv, settings.mode);
  if (!spec.isolated)
    return;

  const bool fixed = drv.is_fixed_output();
  spec.network = fixed;
  spec.cwd = settings.build_dir_inside;
  spec.personality = ADDR_NO_RANDOMIZE;
  if (drv.platform == "i686-linux")
    spec.personality |= PER_LINUX32;
  check_target(settings.build_dir_inside, "sandbox-build-dir");
  if (inside(settings.build_dir_inside, spec.store_dir) || inside(spec.store_dir, settings.build_dir_inside))
    throw format_error("the sandbox build directory '" + settings.build_dir_inside +
                       "' must not overlap the store '" + spec.store_dir + "'");

  auto step = [&](uint8_t kind, std::string source, std::string target, uint32_t mode = 0755) {
    mount_step m;
    m.kind = kind;
    m.source = std::move(source);
    m.target = std::move(target);
    m.mode = mode;
    spec.mounts.push_back(std::move(m));
    return &spec.mounts.back();
  };
  auto bind = [&](uint8_t kind, const std::string& source, const std::string& target, bool optional) {
    // Already visible through an enclosing bind of the same host directory.
    for (auto& m : spec.mounts)
      if ((m.kind == mount_step::bind || m.kind == mount_step::bind_ro) && m.source == m.target &&
          source == target && target != m.target && inside(target, m.target))
        return;
    auto d = host.is_directory(source);
    if (!d && !optional)
      throw sandbox_refused("path '" + source + "' for the sandbox does not exist");
    if (!d)
      return;
    mount_step* m = step(kind, source, target);
    m->source_is_dir = *d;
    m->optional = optional;
  };

  // The store first: a writable directory of the build's own, then every
  // input path bound read-only into it, and nothing else of the store.
  step(mount_step::dir, "", "/nix", 0755);
  step(mount_step::dir, "", spec.store_dir, 0755);
  step(mount_step::bind, spec.chroot_store_dir, spec.store_dir)->source_is_dir = true;
  std::vector<std::string> inputs = input_closure;
  std::sort(inputs.begin(), inputs.end());
  inputs.erase(std::unique(inputs.begin(), inputs.end()), inputs.end());
  for (auto& p : inputs) {
    if (!inside(p, spec.store_dir) || p == spec.store_dir)
      throw format_error("input '" + p + "' is not in the store '" + spec.store_dir + "'");
    std::string base = p.substr(spec.store_dir.size() + 1);
    bind(mount_step::bind_ro, spec.store_real_dir + "/" + base, p, false);
  }

  // A minimal /dev: device nodes bound from the host, private pts and shm.
  step(mount_step::dir, "", "/dev", 0755);
  for (const char* d : {"null", "zero", "full", "random", "urandom", "tty"})
    bind(mount_step::bind, std::string("/dev/") + d, std::string("/dev/") + d, std::string(d) == "tty");
  auto features = derivation_string_list(drv, "requiredSystemFeatures");
  if (std::find(features.begin(), features.end(), "kvm") != features.end())
    bind(mount_step::bind, "/dev/kvm", "/dev/kvm", false); // the feature is only offered where it exists
  step(mount_step::dir, "", "/dev/shm", 01777);
  step(mount_step::tmpfs, "mode=1777,size=50%", "/dev/shm");
  step(mount_step::dir, "", "/dev/pts", 0755);
  step(mount_step::devpts, "newinstance,ptmxmode=0666,mode=0620", "/dev/pts");
  step(mount_step::symlink, "pts/ptmx", "/dev/ptmx");
  step(mount_step::symlink, "/proc/self/fd", "/dev/fd");
  step(mount_step::symlink, "/proc/self/fd/0", "/dev/stdin");
  step(mount_step::symlink, "/proc/self/fd/1", "/dev/stdout");
  step(mount_step::symlink, "/proc/self/fd/2", "/dev/stderr");
  step(mount_step::dir, "", "/proc", 0555);
  step(mount_step::proc, "", "/proc");

  step(mount_step::dir, "", settings.build_dir_inside, 0700);
  step(mount_step::bind, spec.build_dir, settings.build_dir_inside)->source_is_dir = true;
  step(mount_step::dir, "", "/tmp", 01777);

  step(mount_step::dir, "", "/etc", 0755);
  step(mount_step::file, sandbox_passwd(spec, settings.build_dir_inside), "/etc/passwd", 0444);
  step(mount_step::file, sandbox_group(spec), "/etc/group", 0444);
  step(mount_step::file, "127.0.0.1 localhost\n::1 localhost\n", "/etc/hosts", 0444);
  if (fixed) {
    // A fixed-output build reaches the network, so it gets the host's
    // resolver configuration (its output is checked by hash anyway).
    bind(mount_step::bind_ro, "/etc/resolv.conf", "/etc/resolv.conf", true);
    bind(mount_step::bind_ro, "/etc/services", "/etc/services", true);
  }

  std::set<std::string> targets;
  for (auto& p : settings.paths) {
    check_target(p.target, "sandbox-paths");
    if (inside(p.target, spec.store_dir) || inside(p.target, settings.build_dir_inside) || p.target == "/" ||
        p.target == "/proc" || inside(p.target, "/proc") || p.target == "/dev")
      throw format_error("sandbox-paths: '" + p.target + "' would hide part of the sandbox");
    if (!targets.insert(p.target).second)
      continue;
    // Writable as the host's permissions allow (as Nix binds them): the
    // build user owns nothing there unless made so.
    bind(mount_step::bind, p.source, p.target, p.optional);
  }

  // __impureHostDeps: host paths a derivation asks for, granted only under
  // a prefix in allowed-impure-host-deps; missing ones are skipped.
  for (auto& dep : derivation_string_list(drv, "__impureHostDeps")) {
    check_target(dep, "__impureHostDeps");
    bool allowed = false;
    for (auto& a : settings.allowed_impure_host_deps)
      allowed = allowed || inside(dep, a);
    if (!allowed)
      throw sandbox_refused("derivation requested impure path '" + dep +
                            "', but it is not in 'allowed-impure-host-deps'");
    if (inside(dep, spec.store_dir) || inside(dep, settings.build_dir_inside))
      throw sandbox_refused("impure path '" + dep + "' would hide part of the sandbox");
    if (targets.insert(dep).second)
      bind(mount_step::bind_ro, dep, dep, true);
  }
}

std::vector<sandbox_path> parse_pre_build_hook_output(const std::string& text) {
  std::vector<sandbox_path> out;
  std::istringstream in(text);
  enum { start, paths } state = start;
  std::size_t n = 0;
  for (std::string line; std::getline(in, line);) {
    ++n;
    std::string where = "pre-build-hook output line " + std::to_string(n);
    if (state == start) {
      if (line.empty())
        continue;
      if (line != "extra-sandbox-paths" && line != "extra-chroot-dirs")
        throw format_error(where + ": unknown instruction '" + line + "'");
      state = paths;
    } else {
      if (line.empty()) {
        state = start;
        continue;
      }
      out.push_back(parse_sandbox_path(line, where));
    }
  }
  return out;
}

} // namespace kiln::sandbox
