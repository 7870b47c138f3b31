#include "sandbox/build_users.hpp"

#include "store/io/error.hpp"
#include "store/io/file_lock.hpp"
#include "store/io/file_ops.hpp"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sched.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <map>
#include <mutex>
#include <vector>

namespace kiln::sandbox {

namespace {

std::vector<uint32_t> group_member_uids(const std::string& group, uint32_t& gid) {
  std::vector<char> buf(1 << 16);
  struct group gr, *found = nullptr;
  if (::getgrnam_r(group.c_str(), &gr, buf.data(), buf.size(), &found) != 0 || !found)
    throw error("the build users group '" + group + "' does not exist");
  gid = gr.gr_gid;
  std::vector<uint32_t> uids;
  for (char** m = gr.gr_mem; *m; ++m) {
    std::vector<char> pbuf(1 << 14);
    struct passwd pw, *pfound = nullptr;
    if (::getpwnam_r(*m, &pw, pbuf.data(), pbuf.size(), &pfound) != 0 || !pfound)
      throw error("the build user '" + std::string(*m) + "' of group '" + group + "' does not exist");
    if (pw.pw_uid == 0)
      throw error("the build users group '" + group + "' must not contain root");
    uids.push_back(pw.pw_uid);
  }
  if (uids.empty())
    throw error("the build users group '" + group + "' has no members");
  return uids;
}

bool take(build_user& u, const std::string& lock_path) {
  unique_fd fd = open_lock_file(lock_path);
  if (!lock_file(fd.get(), lock_kind::exclusive, false, lock_path))
    return false;
  u.lock = std::move(fd);
  return true;
}

bool write_map(pid_t pid, const char* file, const std::string& text) {
  std::string path = "/proc/" + std::to_string(pid) + "/" + file;
  unique_fd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  return fd && ::write(fd.get(), text.data(), text.size()) == static_cast<ssize_t>(text.size());
}

} // namespace

build_user acquire_build_user(const std::string& group, const std::string& state_dir) {
  build_user u;
  if (!group.empty()) {
    std::vector<uint32_t> uids = group_member_uids(group, u.gid);
    make_directories(state_dir + "/userpool", 0755);
    for (uint32_t uid : uids)
      if (take(u, state_dir + "/userpool/" + std::to_string(uid))) {
        u.uid = uid;
        return u;
      }
    throw error("all " + std::to_string(uids.size()) + " build users of group '" + group + "' are busy");
  }
  make_directories(state_dir + "/userpool2", 0755);
  for (uint32_t slot = 0; slot < auto_uid_slots; ++slot)
    if (take(u, state_dir + "/userpool2/slot-" + std::to_string(slot))) {
      u.uid = u.gid = auto_uid_base + slot;
      return u;
    }
  throw error("all " + std::to_string(auto_uid_slots) + " automatic build uids are busy");
}

int user_namespace_for(uint32_t host_uid, uint32_t host_gid, uint32_t inside_uid, uint32_t inside_gid) {
  static std::mutex m;
  static std::map<std::pair<uint32_t, uint32_t>, unique_fd> cache;
  std::lock_guard<std::mutex> hold(m);
  auto& slot = cache[{host_uid, host_gid}];
  if (slot)
    return slot.get();
  // A child is born in a new user namespace and waits while we map it and
  // open the namespace; the open descriptor keeps it after the child exits.
  int go[2];
  if (::pipe2(go, O_CLOEXEC) != 0)
    throw_errno("creating a pipe");
  unique_fd go_r(go[0]), go_w(go[1]);
  pid_t pid = ::fork();
  if (pid < 0)
    throw_errno("forking to create a user namespace");
  if (pid == 0) {
    ::close(go[1]);
    if (::unshare(CLONE_NEWUSER) != 0)
      ::_exit(1);
    char c;
    ssize_t n = ::read(go[0], &c, 1); // until the parent is done (EOF)
    (void)n;
    ::_exit(0);
  }
  go_r.reset();
  // The namespace exists once /proc/PID/ns/user differs from ours.
  std::string ns_path = "/proc/" + std::to_string(pid) + "/ns/user";
  struct stat ours, theirs;
  ::stat("/proc/self/ns/user", &ours);
  for (int i = 0; i < 100000; ++i) {
    if (::stat(ns_path.c_str(), &theirs) == 0 && theirs.st_ino != ours.st_ino)
      break;
    ::sched_yield();
  }
  bool ok = theirs.st_ino != ours.st_ino &&
            write_map(pid, "uid_map", std::to_string(inside_uid) + " " + std::to_string(host_uid) + " 1\n") &&
            write_map(pid, "gid_map", std::to_string(inside_gid) + " " + std::to_string(host_gid) + " 1\n");
  int saved = errno;
  if (ok)
    slot = unique_fd(::open(ns_path.c_str(), O_RDONLY | O_CLOEXEC));
  saved = ok ? errno : saved;
  go_w.reset();
  int status;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!slot) {
    errno = saved;
    throw_errno("creating a user namespace for build uid " + std::to_string(host_uid));
  }
  return slot.get();
}

} // namespace kiln::sandbox
