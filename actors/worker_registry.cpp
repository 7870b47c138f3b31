#include "actors/worker_registry.hpp"

#include "sandbox/cgroup.hpp"
#include "store/io/fd.hpp"
#include "store/io/file_ops.hpp"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

namespace kiln {

namespace {

struct record {
  uint64_t started = 0;
  pid_t kilnd = 0;
  uint64_t kilnd_started = 0;
};

bool all_digits(const std::string& s) {
  return !s.empty() && s.find_first_not_of("0123456789") == std::string::npos;
}

void say(const std::string& line) { std::cerr << "kilnd: " << line << std::endl; }

} // namespace

uint64_t process_start_time(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  // The command name, in parentheses, may hold spaces and parentheses.
  auto close = stat.rfind(')');
  if (close == std::string::npos)
    return 0;
  std::istringstream fields(stat.substr(close + 1));
  std::string state, field;
  fields >> state; // field 3; the start time is field 22
  for (int i = 4; i < 22 && fields >> field;)
    ++i;
  uint64_t started = 0;
  if (state == "Z" || state == "X" || !(fields >> started))
    return 0;
  return started;
}

void worker_registry::add(pid_t worker) const {
  if (dir_.empty())
    return;
  std::string file = dir_ + "/" + std::to_string(worker);
  std::string line = std::to_string(process_start_time(worker)) + " " + std::to_string(::getpid()) + " " +
                     std::to_string(process_start_time(::getpid())) + "\n";
  try {
    make_directories(dir_, 0700);
    unique_fd fd(::open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!fd || ::write(fd.get(), line.data(), line.size()) != static_cast<ssize_t>(line.size()))
      throw std::runtime_error(std::string(std::strerror(errno)));
  } catch (const std::exception& e) {
    say("warning: could not record worker " + std::to_string(worker) + " in '" + file + "': " + e.what());
  }
}

void worker_registry::remove(pid_t worker) const {
  if (dir_.empty())
    return;
  std::string file = dir_ + "/" + std::to_string(worker);
  if (::unlink(file.c_str()) != 0 && errno != ENOENT)
    say("warning: could not remove '" + file + "': " + std::strerror(errno));
}

std::vector<pid_t> worker_registry::kill_orphans() const {
  std::vector<pid_t> killed;
  if (dir_.empty())
    return killed;
  unique_fd dir(::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!dir)
    return killed; // none recorded yet
  for (auto& name : read_directory(dir.get(), dir_)) {
    if (!all_digits(name) || name.size() > 9) {
      say("warning: '" + dir_ + "/" + name + "' is no worker's record: left alone");
      continue;
    }
    auto pid = static_cast<pid_t>(std::stol(name));
    record r;
    std::ifstream(dir_ + "/" + name) >> r.started >> r.kilnd >> r.kilnd_started;
    bool same_worker = r.started != 0 && process_start_time(pid) == r.started;
    bool kilnd_alive = r.kilnd > 0 && r.kilnd_started != 0 && process_start_time(r.kilnd) == r.kilnd_started;
    if (same_worker && kilnd_alive)
      continue; // another kilnd's, serving the same store
    if (same_worker) {
      ::kill(pid, SIGKILL);
      sandbox::kill_build_groups_of(pid);
      auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
      while (process_start_time(pid) == r.started && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      killed.push_back(pid);
    }
    remove(pid);
  }
  return killed;
}

} // namespace kiln
