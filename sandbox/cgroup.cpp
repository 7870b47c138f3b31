#include "sandbox/cgroup.hpp"

#include "sandbox/made_ahead.hpp"
#include "store/io/error.hpp"
#include "store/io/file_ops.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cerrno>
#include <chrono>
#include <sstream>
#include <thread>

namespace kiln::sandbox {

namespace {

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::istringstream in(s);
  for (std::string part; std::getline(in, part, sep);)
    out.push_back(part);
  return out;
}

// The directory of group `own` (a path in the hierarchy) under a mount of
// that hierarchy whose root is `mount_root`; "" if the mount cannot see it.
std::string group_dir(const std::string& mount_point, const std::string& mount_root, const std::string& own) {
  if (mount_root == "/")
    return mount_point + (own == "/" ? "" : own);
  if (own == mount_root)
    return mount_point;
  if (own.compare(0, mount_root.size() + 1, mount_root + "/") == 0)
    return mount_point + own.substr(mount_root.size());
  return "";
}

std::string read_small(const std::string& path) {
  unique_fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd)
    return "";
  char buf[4096];
  ssize_t n = ::read(fd.get(), buf, sizeof buf);
  return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : "";
}

bool write_small(const std::string& path, const std::string& text) {
  unique_fd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  return fd && ::write(fd.get(), text.data(), text.size()) == static_cast<ssize_t>(text.size());
}

uint64_t stat_field(const std::string& text, const std::string& key) {
  std::istringstream in(text);
  for (std::string k, v; in >> k >> v;)
    if (k == key)
      return std::stoull(v);
  return 0;
}

} // namespace

cgroup_layout parse_cgroup_layout(const std::string& mountinfo, const std::string& self_cgroup) {
  // /proc/self/cgroup: "ID:CONTROLLERS:PATH"; ID 0 with no controllers is v2.
  std::string own_unified;
  std::map<std::string, std::string> own_v1; // controller -> path
  for (auto& line : split(self_cgroup, '\n')) {
    auto a = line.find(':'), b = line.find(':', a == std::string::npos ? a : a + 1);
    if (a == std::string::npos || b == std::string::npos)
      continue;
    std::string controllers = line.substr(a + 1, b - a - 1), path = line.substr(b + 1);
    if (line.compare(0, a, "0") == 0 && controllers.empty())
      own_unified = path;
    for (auto& c : split(controllers, ','))
      own_v1[c] = path;
  }
  cgroup_layout l;
  // mountinfo: "ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [TAGS] - TYPE SOURCE SUPEROPTIONS"
  for (auto& line : split(mountinfo, '\n')) {
    std::istringstream in(line);
    std::vector<std::string> f;
    for (std::string w; in >> w;)
      f.push_back(w);
    auto dash = std::find(f.begin(), f.end(), "-");
    if (f.size() < 5 || dash == f.end() || dash + 3 > f.end())
      continue;
    const std::string &root = f[3], &point = f[4], &type = *(dash + 1), &super = *(dash + 3);
    if (type == "cgroup2" && !own_unified.empty() && l.unified.empty()) {
      l.unified = group_dir(point, root, own_unified);
    } else if (type == "cgroup") {
      for (auto& opt : split(super, ',')) {
        std::string* slot = opt == "memory" ? &l.memory_v1 : opt == "pids" ? &l.pids_v1 : opt == "cpu" ? &l.cpu_v1 : nullptr;
        if (slot && slot->empty() && own_v1.count(opt))
          *slot = group_dir(point, root, own_v1[opt]);
      }
    }
  }
  return l;
}

// Whether Kiln may make build groups in `dir` (made here if missing): an
// unprivileged daemon usually may not, unless the group was delegated.
static bool usable_group(const std::string& dir) {
  if (::mkdir(dir.c_str(), 0755) == 0)
    return true;
  return errno == EEXIST && ::access(dir.c_str(), W_OK) == 0;
}

const cgroup_layout& host_cgroup_layout() {
  static const cgroup_layout layout = [] {
    cgroup_layout l = parse_cgroup_layout(read_whole_file("/proc/self/mountinfo", 1 << 24, "mount table"),
                                          read_whole_file("/proc/self/cgroup", 1 << 20, "cgroup membership"));
    for (std::string* v1 : {&l.memory_v1, &l.pids_v1, &l.cpu_v1})
      if (!v1->empty() && !usable_group(*v1 + "/kiln"))
        v1->clear();
    if (l.unified.empty())
      return l;
    // Controllers for the builds' groups: enabled below our own group if
    // it may have them (a group holding processes may not, except the
    // root; then the v1 hierarchies, if any, are used instead).
    std::string kiln = l.unified + "/kiln";
    if (!usable_group(kiln)) {
      l.unified.clear(); // not writable: no cgroups
      return l;
    }
    auto available = split(read_small(l.unified + "/cgroup.controllers"), ' ');
    for (auto c : {"memory", "pids", "cpu"}) {
      if (std::find_if(available.begin(), available.end(), [&](auto& a) { return a.rfind(c, 0) == 0; }) ==
          available.end())
        continue;
      std::string enable = std::string("+") + c;
      if (write_small(l.unified + "/cgroup.subtree_control", enable) && write_small(kiln + "/cgroup.subtree_control", enable))
        l.unified_controllers.push_back(c);
    }
    l.unified = kiln;
    return l;
  }();
  return layout;
}

namespace {

bool has_controller(const cgroup_layout& l, const char* c) {
  return std::find(l.unified_controllers.begin(), l.unified_controllers.end(), c) != l.unified_controllers.end();
}

// Build groups are named "build-PID-N" after the process that made them.
std::string next_group_name() {
  static std::atomic<uint64_t> made{0};
  return "build-" + std::to_string(::getpid()) + "-" + std::to_string(++made);
}

// Where build groups are made: in v2's hierarchy and v1's "kiln" groups.
std::vector<std::string> group_bases(const cgroup_layout& l) {
  std::vector<std::string> bases;
  if (!l.unified.empty())
    bases.push_back(l.unified);
  for (const std::string* v1 : {&l.memory_v1, &l.pids_v1, &l.cpu_v1})
    if (!v1->empty())
      bases.push_back(*v1 + "/kiln");
  return bases;
}

// SIGKILL to every process in the group `dir`: cgroup.kill where v2 has it,
// else what is listed until nothing is (a process forking meanwhile shows
// up in the next pass).
void kill_group(const std::string& dir, bool unified) {
  if (unified && write_small(dir + "/cgroup.kill", "1"))
    return;
  for (int pass = 0; pass < 100; ++pass) {
    std::istringstream in(read_small(dir + "/cgroup.procs"));
    bool any = false;
    for (long pid; in >> pid;) {
      any = true;
      ::kill(static_cast<pid_t>(pid), SIGKILL);
    }
    if (!any)
      break;
  }
}

// Removes the empty build groups of processes that are gone (a daemon
// killed with builds running, or with groups made ahead): once per process.
void sweep_stale_groups(const cgroup_layout& l) {
  for (auto& base : group_bases(l)) {
    unique_fd dir;
    std::vector<std::string> names;
    try {
      dir = open_directory(base);
      names = read_directory(dir.get(), base);
    } catch (const std::exception&) {
      continue; // nothing to sweep there
    }
    for (auto& n : names) {
      long pid = 0;
      if (std::sscanf(n.c_str(), "build-%ld-", &pid) != 1 || pid <= 0 || pid == ::getpid())
        continue;
      if (::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH)
        ::unlinkat(dir.get(), n.c_str(), AT_REMOVEDIR); // fails, harmlessly, if something still runs there
    }
  }
}

} // namespace

build_cgroup build_cgroup::make_base(const cgroup_layout& l) {
  build_cgroup g;
  g.name_ = next_group_name();
  if (!l.unified.empty())
    g.unified_ = g.make(l, l.unified);
  // Memory: v2's controller if enabled, else v1's (also for the peak).
  if (!has_controller(l, "memory") && !l.memory_v1.empty())
    g.memory_v1_ = g.make(l, l.memory_v1);
  return g;
}

std::string build_cgroup::make(const cgroup_layout& l, const std::string& parent) {
  std::string base = parent + (parent == l.unified ? "" : "/kiln");
  std::string dir = base + "/" + name_;
  // Kiln's own group was made with the layout; made again only if
  // something removed it since.
  bool made = ::mkdir(dir.c_str(), 0755) == 0;
  if (!made && errno == ENOENT && (::mkdir(base.c_str(), 0755) == 0 || errno == EEXIST))
    made = ::mkdir(dir.c_str(), 0755) == 0;
  if (!made)
    throw_errno("creating the control group '" + dir + "'");
  dirs_.push_back(dir);
  unique_fd procs(::open((dir + "/cgroup.procs").c_str(), O_WRONLY | O_CLOEXEC));
  if (!procs)
    throw_errno("opening '" + dir + "/cgroup.procs'");
  procs_.push_back(std::move(procs));
  return dir;
}

void build_cgroup::limit(const cgroup_layout& l, const cgroup_limits& limits) {
  auto set = [](const std::string& dir, const char* file, const std::string& value) {
    if (!write_small(dir + "/" + file, value))
      throw_errno("setting '" + dir + "/" + file + "' to " + value);
  };
  if (limits.memory_max) {
    if (has_controller(l, "memory"))
      set(unified_, "memory.max", std::to_string(limits.memory_max));
    else if (!memory_v1_.empty())
      set(memory_v1_, "memory.limit_in_bytes", std::to_string(limits.memory_max));
    else
      throw error("a build memory limit was set, but there is no memory control group Kiln may use to enforce it");
  }
  if (uint64_t pids = limits.pids_max ? limits.pids_max : limits.pids_default) {
    if (has_controller(l, "pids"))
      set(unified_, "pids.max", std::to_string(pids));
    else if (!l.pids_v1.empty())
      set(make(l, l.pids_v1), "pids.max", std::to_string(pids));
    else if (limits.pids_max)
      throw error("a build process limit was set, but there is no pids control group Kiln may use to enforce it");
  }
  if (limits.cpu_max_percent) {
    std::string quota = std::to_string(uint64_t(limits.cpu_max_percent) * 1000);
    if (has_controller(l, "cpu")) {
      set(unified_, "cpu.max", quota + " 100000");
    } else if (!l.cpu_v1.empty()) {
      cpu_v1_ = make(l, l.cpu_v1);
      set(cpu_v1_, "cpu.cfs_period_us", "100000");
      set(cpu_v1_, "cpu.cfs_quota_us", quota);
    } else {
      throw error("a build CPU limit was set, but there is no cpu control group Kiln may use to enforce it");
    }
  }
}

std::optional<build_cgroup> build_cgroup::create(const cgroup_limits& limits) {
  const cgroup_layout& l = host_cgroup_layout();
  const bool limited = limits.memory_max || limits.pids_max || limits.cpu_max_percent;
  // No group Kiln may use: nothing to make unless a limit asks for one, and
  // then the limit's own check refuses it.
  if (l.unified.empty() && l.memory_v1.empty() && l.pids_v1.empty() && l.cpu_v1.empty()) {
    if (!limited)
      return std::nullopt;
    build_cgroup none;
    none.limit(l, limits);
    return none;
  }
  // Made ahead: making the groups costs more than a tenth of a trivial
  // build here. Limits differ per build, so they are set only now.
  static made_ahead<build_cgroup>* pool = [&l] {
    sweep_stale_groups(l);
    auto* p = new made_ahead<build_cgroup>(4, [&l]() -> std::optional<build_cgroup> {
      try {
        return make_base(l);
      } catch (const std::exception&) {
        return std::nullopt; // the builds make their own, and report why it fails
      }
    });
    // Groups would outlive the process; a normal exit removes the ready ones.
    std::atexit([] { pool->drain(); });
    return p;
  }();
  std::optional<build_cgroup> g = pool->take();
  if (!g)
    g = make_base(l);
  g->limit(l, limits);
  return g;
}

void build_cgroup::kill_all() const {
  for (auto& dir : dirs_)
    kill_group(dir, dir == unified_);
}

void kill_build_groups_of(pid_t owner) {
  const cgroup_layout& l = host_cgroup_layout();
  std::string prefix = "build-" + std::to_string(owner) + "-";
  for (auto& base : group_bases(l)) {
    unique_fd dir(::open(base.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!dir)
      continue;
    std::vector<std::string> names;
    try {
      names = read_directory(dir.get(), base);
    } catch (const std::exception&) {
      continue;
    }
    for (auto& n : names)
      if (n.compare(0, prefix.size(), prefix) == 0)
        kill_group(base + "/" + n, base == l.unified);
  }
}

void build_cgroup::wait_empty() const {
  using namespace std::chrono;
  auto deadline = steady_clock::now() + seconds(5);
  for (auto& dir : dirs_)
    while (!read_small(dir + "/cgroup.procs").empty() && steady_clock::now() < deadline)
      std::this_thread::sleep_for(microseconds(200));
}

cgroup_usage build_cgroup::usage() const {
  cgroup_usage u;
  if (!unified_.empty()) {
    std::string cpu = read_small(unified_ + "/cpu.stat");
    u.cpu_user_us = stat_field(cpu, "user_usec");
    u.cpu_system_us = stat_field(cpu, "system_usec");
    std::string peak = read_small(unified_ + "/memory.peak");
    if (!peak.empty())
      u.peak_memory = std::stoull(peak);
  }
  if (!memory_v1_.empty()) {
    std::string peak = read_small(memory_v1_ + "/memory.max_usage_in_bytes");
    if (!peak.empty())
      u.peak_memory = std::stoull(peak);
  }
  return u;
}

build_cgroup::~build_cgroup() {
  if (dirs_.empty())
    return;
  kill_all();
  wait_empty();
  for (auto it = dirs_.rbegin(); it != dirs_.rend(); ++it)
    for (int i = 0; i < 50 && ::rmdir(it->c_str()) != 0 && errno == EBUSY; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
}

} // namespace kiln::sandbox
