#include "store/local/temp_roots.hpp"

#include "store/io/error.hpp"
#include "store/io/file_lock.hpp"
#include "store/io/file_ops.hpp"
#include "store/io/unix_socket.hpp"

#include <cerrno>
#include <fcntl.h>
#include <memory>
#include <sys/socket.h>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>

namespace kiln {

std::string gc_lock_path(const std::string& state_dir) {
  return state_dir + "/gc.lock";
}

std::string gc_socket_path(const std::string& state_dir) {
  return state_dir + "/gc-socket/socket";
}

temp_roots& temp_roots::for_store(const std::string& state_dir, const std::string& store_dir) {
  static std::mutex registry_mutex;
  static std::map<std::string, std::unique_ptr<temp_roots>> registry;
  std::lock_guard<std::mutex> g(registry_mutex);
  auto& slot = registry[state_dir];
  if (slot && slot->pid_ != ::getpid())
    slot.release(); // a forked child: the file and its lock are the parent's; leave them
  if (!slot)
    slot = std::make_unique<temp_roots>(state_dir, store_dir);
  return *slot;
}

temp_roots::temp_roots(std::string state_dir, std::string store_dir, const std::string& owner)
  : pid_(::getpid()), state_dir_(std::move(state_dir)), store_dir_(std::move(store_dir)),
    file_(state_dir_ + "/temproots/" + std::to_string(pid_) + (owner.empty() ? "" : "-" + owner)) {}

temp_roots::~temp_roots() {
  if (file_fd_ && pid_ == ::getpid())
    ::unlink(file_.c_str());
}

void temp_roots::open_file() {
  for (;;) {
    // A file with our pid can only be left over from a dead process.
    if (::unlink(file_.c_str()) != 0 && errno != ENOENT)
      throw_errno("removing the stale temp-roots file '" + file_ + "'");
    file_fd_ = open_lock_file(file_);
    lock_file(file_fd_.get(), lock_kind::exclusive, true, file_);
    struct stat st;
    if (::fstat(file_fd_.get(), &st) != 0)
      throw_errno("getting the status of '" + file_ + "'");
    if (st.st_size == 0)
      return;
    // A collector took it for a dead process's file between our open and
    // our lock, and marked it; start again with a new file.
  }
}

bool temp_roots::tell_collector(const std::string& line) {
  if (!socket_fd_) {
    try {
      socket_fd_ = connect_unix(gc_socket_path(state_dir_));
    } catch (const sys_error& e) {
      if (e.code() != ECONNREFUSED && e.code() != ENOENT)
        throw;
      return false; // the collector is starting or has just finished
    }
  }
  // send() rather than write(): a collector that just exited must not
  // kill this process with SIGPIPE.
  bool sent = true;
  for (std::size_t done = 0; sent && done < line.size();) {
    ssize_t n = ::send(socket_fd_.get(), line.data() + done, line.size() - done, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && errno != EPIPE && errno != ECONNRESET)
      throw_errno("writing to the GC socket");
    sent = n > 0;
    done += n > 0 ? static_cast<std::size_t>(n) : 0;
  }
  char answer = 0;
  if (sent) {
    ssize_t n;
    while ((n = ::recv(socket_fd_.get(), &answer, 1, 0)) < 0 && errno == EINTR) {
    }
    if (n < 0 && errno != ECONNRESET)
      throw_errno("reading from the GC socket");
    if (n == 1 && answer == '1')
      return true;
  }
  socket_fd_.reset(); // that collector is gone
  if (answer != 0)
    throw error("the garbage collector answered '" + std::string(1, answer) +
                "' instead of '1' to a temp root");
  return false;
}

void temp_roots::add(const store_path& p) {
  add(std::vector<store_path>{p});
}

void temp_roots::add(const std::vector<store_path>& paths) {
  if (paths.empty())
    return;
  std::lock_guard<std::mutex> g(mutex_);
  if (!file_fd_)
    open_file();
  std::string lock_path = gc_lock_path(state_dir_);
  if (!gc_lock_fd_)
    gc_lock_fd_ = open_lock_file(lock_path);
  // The file first: a collector that starts after this write reads it. One
  // already running (it holds gc.lock, so our shared lock fails) read the
  // files before, and must hear of the roots over its socket. (Writing after
  // the socket's answer, a collector starting in between would miss them.)
  std::string entries;
  for (auto& p : paths)
    entries += p.full(store_dir_) + '\0';
  write_all(file_fd_.get(), entries.data(), entries.size(), file_);
  std::size_t told = 0;
  for (int attempt = 0;; ++attempt) {
    if (lock_file(gc_lock_fd_.get(), lock_kind::shared, false, lock_path)) {
      lock_file(gc_lock_fd_.get(), lock_kind::none, true, lock_path);
      return;
    }
    while (told < paths.size() && tell_collector(paths[told].full(store_dir_) + "\n"))
      ++told;
    if (told == paths.size())
      return;
    std::this_thread::sleep_for(std::chrono::milliseconds(attempt < 20 ? 1 : 10));
  }
}

namespace {

unique_fd open_temproots_dir(const std::string& temproots_dir) {
  unique_fd dir(::open(temproots_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir && errno != ENOENT)
    throw_errno("opening '" + temproots_dir + "'");
  return dir;
}

// Opens temp-roots file `name`; if its owner is gone (only a dead owner
// lets go of its lock), deletes and marks it and returns no descriptor.
unique_fd open_live_roots_file(int dir, const std::string& temproots_dir, const std::string& name) {
  std::string file = temproots_dir + "/" + name;
  unique_fd fd(::openat(dir, name.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW));
  if (!fd) {
    if (errno == ENOENT)
      return fd;
    throw_errno("opening the temp-roots file '" + file + "'");
  }
  if (!lock_file(fd.get(), lock_kind::exclusive, false, file))
    return fd;
  // Unlink only if the name is still this file: a new process with the
  // same pid may have replaced it since we opened it.
  struct stat mine, named;
  if (::fstat(fd.get(), &mine) == 0 && ::fstatat(dir, name.c_str(), &named, AT_SYMLINK_NOFOLLOW) == 0 &&
      mine.st_ino == named.st_ino && mine.st_dev == named.st_dev)
    ::unlinkat(dir, name.c_str(), 0);
  write_all(fd.get(), "d", 1, file);
  return unique_fd();
}

} // namespace

void remove_stale_temp_roots(const std::string& temproots_dir, long pid) {
  unique_fd dir = open_temproots_dir(temproots_dir);
  if (!dir)
    return;
  std::string own = std::to_string(pid);
  for (auto& name : read_directory(dir.get(), temproots_dir))
    if (!name.empty() && name[0] != '.' && (pid < 0 || name == own || name.rfind(own + "-", 0) == 0))
      open_live_roots_file(dir.get(), temproots_dir, name);
}

std::map<store_path, std::set<long>> read_temp_roots(const std::string& temproots_dir,
                                                    const std::string& store_dir) {
  std::map<store_path, std::set<long>> roots;
  unique_fd dir = open_temproots_dir(temproots_dir);
  if (!dir)
    return roots;
  for (auto& name : read_directory(dir.get(), temproots_dir)) {
    if (name.empty() || name[0] == '.')
      continue;
    std::string file = temproots_dir + "/" + name;
    unique_fd fd = open_live_roots_file(dir.get(), temproots_dir, name);
    if (!fd)
      continue;
    long pid = std::strtol(name.c_str(), nullptr, 10);
    std::string contents;
    char buf[65536];
    while (std::size_t n = read_some(fd.get(), buf, sizeof buf, file))
      contents.append(buf, n);
    for (std::size_t pos = 0, end; (end = contents.find('\0', pos)) != std::string::npos;
         pos = end + 1) {
      try {
        roots[parse_store_path(contents.substr(pos, end - pos), store_dir)].insert(pid);
      } catch (const format_error&) {
        // Not a store path: nothing it could keep alive.
      }
    }
  }
  return roots;
}

} // namespace kiln
