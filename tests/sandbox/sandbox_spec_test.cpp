// The sandbox plan and the cgroup layout, as pure functions: no system call.
#include <boost/test/unit_test.hpp>

#include "sandbox/cgroup.hpp"
#include "sandbox/sandbox_spec.hpp"
#include "sandbox/system_features.hpp"
#include "store/io/error.hpp"

#include <algorithm>
#include <set>

using namespace kiln;
using namespace kiln::sandbox;

namespace {

derivation sample(bool fixed = false) {
  derivation d;
  d.builder = "/bin/sh";
  d.platform = "x86_64-linux";
  derivation_output o;
  o.path = "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-out";
  if (fixed) {
    o.hash_algo = "sha256";
    o.hash = std::string(64, '0');
  }
  d.outputs["out"] = o;
  return d;
}

sandbox_spec base_spec() {
  sandbox_spec s;
  s.store_real_dir = "/var/k/nix/store";
  s.chroot_store_dir = "/var/k/nix/store/x.drv.chroot/store";
  s.build_dir = "/tmp/kiln-build-x/build";
  return s;
}

// Every host path is a directory except those named *.file; "/missing*" is missing.
host_view fake_host() {
  return {[](const std::string& p) -> std::optional<bool> {
    if (p.rfind("/missing", 0) == 0)
      return std::nullopt;
    return p.size() < 5 || p.compare(p.size() - 5, 5, ".file") != 0;
  }};
}

const mount_step* find(const sandbox_spec& s, const std::string& target) {
  for (auto& m : s.mounts)
    if (m.target == target)
      return &m;
  return nullptr;
}

std::size_t index_of(const sandbox_spec& s, const std::string& target) {
  for (std::size_t i = 0; i < s.mounts.size(); ++i)
    if (s.mounts[i].target == target)
      return i;
  return s.mounts.size();
}

} // namespace

BOOST_AUTO_TEST_SUITE(sandbox_spec_tests)

BOOST_AUTO_TEST_CASE(off_means_no_isolation) {
  auto s = base_spec();
  sandbox_settings set;
  set.mode = sandbox_mode::off;
  plan_sandbox(s, sample(), {}, set, fake_host());
  BOOST_TEST(!s.isolated);
  BOOST_TEST(s.mounts.empty());
}

BOOST_AUTO_TEST_CASE(the_store_holds_only_the_closure_read_only) {
  auto s = base_spec();
  std::vector<std::string> closure{"/nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-dep",
                                   "/nix/store/cccccccccccccccccccccccccccccccc-file.file"};
  plan_sandbox(s, sample(), closure, {}, fake_host());
  BOOST_TEST(s.isolated);
  BOOST_TEST(!s.network);
  BOOST_TEST(s.cwd == "/build");
  auto* store = find(s, "/nix/store");
  BOOST_REQUIRE(store);
  // The directory step for /nix/store comes first, then its bind.
  auto bind = std::find_if(s.mounts.begin(), s.mounts.end(),
                           [](auto& m) { return m.target == "/nix/store" && m.kind == mount_step::bind; });
  BOOST_REQUIRE(bind != s.mounts.end());
  BOOST_TEST(bind->source == s.chroot_store_dir);
  auto* dep = find(s, closure[0]);
  BOOST_REQUIRE(dep);
  BOOST_TEST(dep->kind == mount_step::bind_ro);
  BOOST_TEST(dep->source == "/var/k/nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-dep");
  BOOST_TEST(dep->source_is_dir);
  BOOST_TEST(!find(s, closure[1])->source_is_dir);
  // Inputs are bound after the store directory they go into.
  BOOST_TEST(index_of(s, closure[0]) > static_cast<std::size_t>(bind - s.mounts.begin()));
}

BOOST_AUTO_TEST_CASE(dev_proc_etc_and_the_build_dir) {
  auto s = base_spec();
  plan_sandbox(s, sample(), {}, {}, fake_host());
  for (auto* d : {"/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty"})
    BOOST_TEST(find(s, d), d);
  BOOST_TEST(find(s, "/dev/shm"));
  BOOST_TEST(find(s, "/dev/ptmx")->source == "pts/ptmx");
  BOOST_TEST(index_of(s, "/proc") < s.mounts.size());
  BOOST_TEST(find(s, "/etc/passwd")->source.find("nixbld:x:1000:100:") != std::string::npos);
  BOOST_TEST(find(s, "/etc/group")->source.find("nixbld:!:100:") != std::string::npos);
  BOOST_TEST(find(s, "/etc/hosts")->source == "127.0.0.1 localhost\n::1 localhost\n");
  BOOST_TEST(!find(s, "/etc/resolv.conf")); // no network, no resolver
  auto bind = std::find_if(s.mounts.begin(), s.mounts.end(),
                           [](auto& m) { return m.target == "/build" && m.kind == mount_step::bind; });
  BOOST_REQUIRE(bind != s.mounts.end());
  BOOST_TEST(bind->source == s.build_dir);
  BOOST_TEST(s.hostname == "localhost");
}

BOOST_AUTO_TEST_CASE(a_kvm_build_gets_dev_kvm_and_no_other_build_does) {
  auto s = base_spec();
  plan_sandbox(s, sample(), {}, {}, fake_host());
  BOOST_TEST(!find(s, "/dev/kvm"));
  auto d = sample();
  d.env["requiredSystemFeatures"] = "big-parallel kvm";
  auto k = base_spec();
  plan_sandbox(k, d, {}, {}, fake_host());
  auto* kvm = find(k, "/dev/kvm");
  BOOST_REQUIRE(kvm);
  BOOST_TEST(kvm->kind == mount_step::bind);
  BOOST_TEST(kvm->source == "/dev/kvm");
}

BOOST_AUTO_TEST_CASE(system_features_and_platform_decide_where_a_derivation_builds) {
  auto d = sample();
  std::vector<std::string> host{"benchmark", "big-parallel", "nixos-test"};
  BOOST_TEST(!host_refusal(d, "/nix/store/x.drv", host));
  d.env["requiredSystemFeatures"] = "kvm big-parallel kvm";
  BOOST_TEST(*host_refusal(d, "/nix/store/x.drv", host) ==
             "a 'x86_64-linux' with features {big-parallel, kvm} is required to build '/nix/store/x.drv', "
             "but I am a 'x86_64-linux' with features {benchmark, big-parallel, nixos-test}");
  host.push_back("kvm");
  BOOST_TEST(!host_refusal(d, "/nix/store/x.drv", host));
  d.platform = "aarch64-linux";
  BOOST_TEST(host_refusal(d, "/nix/store/x.drv", host)->find("a 'aarch64-linux' with features") == 0);
  d.platform = "i686-linux";
  BOOST_TEST(!host_refusal(d, "/nix/store/x.drv", host));
  BOOST_TEST(default_system_features(false) == "benchmark big-parallel nixos-test");
  BOOST_TEST(default_system_features(true) == "benchmark big-parallel kvm nixos-test");
}

BOOST_AUTO_TEST_CASE(fixed_outputs_keep_the_network_and_the_resolver) {
  auto s = base_spec();
  plan_sandbox(s, sample(true), {}, {}, fake_host());
  BOOST_TEST(s.network);
  BOOST_TEST(find(s, "/etc/resolv.conf"));
}

BOOST_AUTO_TEST_CASE(sandbox_paths_with_targets_and_optional_ones) {
  auto s = base_spec();
  sandbox_settings set;
  set.paths = parse_sandbox_paths("/bin /usr/lib/x=/opt/y /missing-one? /bin/sh", "test");
  plan_sandbox(s, sample(), {}, set, fake_host());
  BOOST_TEST(find(s, "/bin")->source == "/bin");
  BOOST_TEST(find(s, "/usr/lib/x")->source == "/opt/y");
  BOOST_TEST(!find(s, "/missing-one"));
  BOOST_TEST(!find(s, "/bin/sh")); // already visible through /bin
  set.paths = parse_sandbox_paths("/missing-two", "test");
  auto t = base_spec();
  BOOST_CHECK_THROW(plan_sandbox(t, sample(), {}, set, fake_host()), sandbox_refused);
}

// The child walks the parents of a target only where no earlier step made
// them: every step of the standard plan has its directory already; a
// sandbox path deep in a directory nothing made does not.
BOOST_AUTO_TEST_CASE(parents_come_before_their_children) {
  auto s = base_spec();
  sandbox_settings set;
  set.paths = parse_sandbox_paths("/bin /usr/lib/x=/opt/y /usr/lib/x/inner.file", "test");
  plan_sandbox(s, sample(), {"/nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-in"}, set, fake_host());
  auto made = parents_made_earlier(s.mounts);
  BOOST_REQUIRE_EQUAL(made.size(), s.mounts.size());
  for (std::size_t i = 0; i < s.mounts.size(); ++i) {
    const std::string& t = s.mounts[i].target;
    bool deep = t == "/usr/lib/x";
    BOOST_TEST(made[i] == !deep, t);
  }
  // Inside a bound directory: its parent is there (the host's).
  BOOST_REQUIRE(find(s, "/usr/lib/x/inner.file"));
  BOOST_TEST(made[index_of(s, "/usr/lib/x/inner.file")]);
  // A file is no parent.
  std::vector<mount_step> steps(2);
  steps[0].kind = mount_step::file;
  steps[0].target = "/f";
  steps[1].kind = mount_step::dir;
  steps[1].target = "/f/g";
  BOOST_TEST(parents_made_earlier(steps) == (std::vector<bool>{true, false}));
}

BOOST_AUTO_TEST_CASE(bad_sandbox_paths_are_refused) {
  BOOST_CHECK_THROW(parse_sandbox_path("relative", "x"), format_error);
  BOOST_CHECK_THROW(parse_sandbox_path("/a=", "x"), format_error);
  BOOST_CHECK_THROW(parse_sandbox_path("=/b", "x"), format_error);
  auto p = parse_sandbox_path("/a=/b?", "x");
  BOOST_TEST((p == sandbox_path{"/a", "/b", true}));
  for (auto* hiding : {"/nix/store/x", "/build", "/proc", "/", "/a/../nix"}) {
    auto s = base_spec();
    sandbox_settings set;
    set.paths = {{hiding, "/bin", false}};
    BOOST_CHECK_THROW(plan_sandbox(s, sample(), {}, set, fake_host()), format_error);
  }
}

BOOST_AUTO_TEST_CASE(no_chroot_and_relaxed) {
  auto d = sample();
  d.env["__noChroot"] = "1";
  auto s = base_spec();
  BOOST_CHECK_THROW(plan_sandbox(s, d, {}, {}, fake_host()), sandbox_refused);
  sandbox_settings relaxed;
  relaxed.mode = sandbox_mode::relaxed;
  plan_sandbox(s, d, {}, relaxed, fake_host());
  BOOST_TEST(!s.isolated);
  plan_sandbox(s, sample(), {}, relaxed, fake_host());
  BOOST_TEST(s.isolated);
}

BOOST_AUTO_TEST_CASE(impure_host_deps_need_an_allowed_prefix) {
  auto d = sample();
  d.env["__impureHostDeps"] = "/etc/machine-id /usr/share/zoneinfo";
  auto s = base_spec();
  BOOST_CHECK_THROW(plan_sandbox(s, d, {}, {}, fake_host()), sandbox_refused);
  sandbox_settings set;
  set.allowed_impure_host_deps = {"/etc", "/usr/share"};
  plan_sandbox(s, d, {}, set, fake_host());
  BOOST_TEST(find(s, "/etc/machine-id")->optional);
  BOOST_TEST(find(s, "/usr/share/zoneinfo"));
  set.allowed_impure_host_deps = {"/et"}; // a prefix of the name is not a parent directory
  auto t = base_spec();
  BOOST_CHECK_THROW(plan_sandbox(t, d, {}, set, fake_host()), sandbox_refused);
}

BOOST_AUTO_TEST_CASE(i686_gets_its_personality) {
  auto d = sample();
  d.platform = "i686-linux";
  auto s = base_spec();
  plan_sandbox(s, d, {}, {}, fake_host());
  BOOST_TEST(s.personality == (0x0040000ul | 0x0008ul)); // ADDR_NO_RANDOMIZE | PER_LINUX32
  auto t = base_spec();
  plan_sandbox(t, sample(), {}, {}, fake_host());
  BOOST_TEST(t.personality == 0x0040000ul);
}

BOOST_AUTO_TEST_CASE(pre_build_hook_answers) {
  auto p = parse_pre_build_hook_output("extra-sandbox-paths\n/a\n/b=/c?\n\nextra-chroot-dirs\n/d\n");
  BOOST_TEST(p.size() == 3u);
  BOOST_TEST((p[1] == sandbox_path{"/b", "/c", true}));
  BOOST_TEST(p[2].target == "/d");
  BOOST_CHECK_THROW(parse_pre_build_hook_output("something-else\n"), format_error);
  BOOST_CHECK_THROW(parse_pre_build_hook_output("extra-sandbox-paths\nrelative\n"), format_error);
  BOOST_TEST(parse_pre_build_hook_output("").empty());
}

BOOST_AUTO_TEST_CASE(cgroup_layout_of_a_hybrid_host) {
  std::string mountinfo =
      "30 22 0:27 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
      "34 30 0:31 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
      "38 30 0:35 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids\n"
      "31 30 0:28 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct\n"
      "40 30 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
  std::string self = "8:pids:/\n4:memory:/process_api/ee73\n1:cpu,cpuacct:/\n0::/\n";
  auto l = parse_cgroup_layout(mountinfo, self);
  BOOST_TEST(l.unified == "/sys/fs/cgroup/unified");
  BOOST_TEST(l.memory_v1 == "/sys/fs/cgroup/memory/process_api/ee73");
  BOOST_TEST(l.pids_v1 == "/sys/fs/cgroup/pids");
  BOOST_TEST(l.cpu_v1 == "/sys/fs/cgroup/cpu,cpuacct");
}

BOOST_AUTO_TEST_CASE(cgroup_layout_of_a_v2_host_in_a_container) {
  std::string mountinfo = "29 23 0:26 /kubepods/pod1 /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw\n";
  auto l = parse_cgroup_layout(mountinfo, "0::/kubepods/pod1/ctr\n");
  BOOST_TEST(l.unified == "/sys/fs/cgroup/ctr");
  BOOST_TEST(l.memory_v1.empty());
  // A group the mount cannot see is not used.
  auto m = parse_cgroup_layout(mountinfo, "0::/elsewhere\n");
  BOOST_TEST(m.unified.empty());
}

BOOST_AUTO_TEST_SUITE_END()
