#include "store/local/gc_root_server.hpp"

#include "store/io/error.hpp"
#include "store/io/unix_socket.hpp"

#include <cerrno>
#include <map>
#include <fcntl.h>
#include <optional>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <vector>

namespace kiln {

gc_root_server::gc_root_server(std::string socket_path, std::string store_dir,
                               std::set<std::string> roots)
  : socket_path_(std::move(socket_path)), store_dir_(std::move(store_dir)),
    roots_(std::move(roots)) {
  listen_fd_ = listen_unix(socket_path_);
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0)
    throw_errno("creating a pipe for the GC socket thread");
  wake_read_.reset(fds[0]);
  wake_write_.reset(fds[1]);
  thread_ = std::thread([this] { serve(); });
}

gc_root_server::~gc_root_server() {
  (void)!::write(wake_write_.get(), "x", 1);
  thread_.join();
  ::unlink(socket_path_.c_str());
}

bool gc_root_server::claim_for_deletion(const store_path& p) {
  std::lock_guard<std::mutex> g(mutex_);
  std::string h(p.hash_part());
  if (roots_.count(h))
    return false;
  pending_ = h;
  return true;
}

void gc_root_server::finish_deletion() {
  {
    std::lock_guard<std::mutex> g(mutex_);
    pending_.clear();
  }
  deletion_done_.notify_all();
}

bool gc_root_server::is_root(const store_path& p) {
  std::lock_guard<std::mutex> g(mutex_);
  return roots_.count(std::string(p.hash_part())) > 0;
}

std::size_t gc_root_server::received() const {
  std::lock_guard<std::mutex> g(mutex_);
  return received_;
}

std::size_t gc_root_server::rejected() const {
  std::lock_guard<std::mutex> g(mutex_);
  return rejected_;
}

void gc_root_server::answer_lines(int client, std::string& buffer) {
  for (std::size_t nl; (nl = buffer.find('\n')) != std::string::npos;) {
    std::string line = buffer.substr(0, nl);
    buffer.erase(0, nl + 1);
    std::optional<store_path> p;
    try {
      p = parse_store_path(line, store_dir_);
    } catch (const format_error&) {
    }
    {
      std::unique_lock<std::mutex> g(mutex_);
      if (p) {
        std::string h(p->hash_part());
        roots_.insert(h);
        ++received_;
        deletion_done_.wait(g, [&] { return pending_ != h; });
      } else {
        ++rejected_; // Nix answers these too; the sender learns nothing from silence
      }
    }
    (void)::send(client, "1", 1, MSG_NOSIGNAL);
  }
}

void gc_root_server::serve() {
  std::map<int, std::pair<unique_fd, std::string>> clients; // fd -> (fd, partial line)
  for (;;) {
    std::vector<pollfd> fds{{wake_read_.get(), POLLIN, 0}, {listen_fd_.get(), POLLIN, 0}};
    for (auto& [fd, c] : clients)
      fds.push_back({fd, POLLIN, 0});
    if (::poll(fds.data(), fds.size(), -1) < 0) {
      if (errno == EINTR)
        continue;
      return; // cannot happen with valid descriptors; stop serving rather than spin
    }
    if (fds[0].revents)
      return;
    if (fds[1].revents & POLLIN) {
      int c = ::accept4(listen_fd_.get(), nullptr, nullptr, SOCK_CLOEXEC);
      if (c >= 0)
        clients[c] = {unique_fd(c), std::string()};
    }
    for (std::size_t i = 2; i < fds.size(); ++i) {
      if (!fds[i].revents)
        continue;
      auto& [fd, buffer] = clients[fds[i].fd];
      char buf[4096];
      ssize_t n = ::recv(fd.get(), buf, sizeof buf, 0);
      if (n <= 0 || buffer.size() > 65536) { // closed, failed, or not sending lines
        if (n < 0 && errno == EINTR)
          continue;
        clients.erase(fds[i].fd);
        continue;
      }
      buffer.append(buf, static_cast<std::size_t>(n));
      answer_lines(fd.get(), buffer);
    }
  }
}

} // namespace kiln
