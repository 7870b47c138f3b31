// A Nix daemon client for benchmarks, the same for kilnd and nix-daemon
// (tests/bench/daemon_bench.py drives it):
//   kiln-bench-daemon connect SOCKET N            N connections, each handshake + SetOptions; µs p50, p99
//   kiln-bench-daemon query SOCKET OP N CLIENTS PATH  N calls of OP (1 IsValidPath, 26 QueryPathInfo)
//                                                 spread over CLIENTS connections; calls per second
//   kiln-bench-daemon idle SOCKET N SECONDS       N connections held open for SECONDS
//   kiln-bench-daemon floor N                     N round trips to a process that only echoes
//                                                 (a socketpair): what a daemon doing nothing would reach
// Written with Kiln's protocol codec, so both daemons see the same client.
#include "store/daemon/protocol.hpp"
#include "store/daemon/replies.hpp"
#include "store/daemon/requests.hpp"
#include "store/format/wire.hpp"
#include "store/io/fd.hpp"
#include "store/io/stream.hpp"
#include "store/io/unix_socket.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <string>
#include <thread>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <vector>

using namespace kiln;
using namespace kiln::daemon;
using clock_type = std::chrono::steady_clock;

namespace {

class connection {
public:
  explicit connection(const std::string& socket)
    : fd_(connect_unix(socket)), raw_(fd_.get(), "daemon"), buffered_(raw_), in_(buffered_, "daemon reply") {
    std::string hello;
    wire::append_u64(hello, worker_magic_1);
    send(hello);
    in_.u64(); // magic 2
    uint64_t daemon = in_.u64();
    client_hello as_nix_2_8; // 1.34
    uint64_t version = std::min(daemon, as_nix_2_8.version);
    send(encode_client_hello(as_nix_2_8, daemon).substr(8) + encode_client_hello_rest(as_nix_2_8, version));
    read_daemon_welcome(in_, version);
    expect_last();
    client_options o;
    send(encode_request(set_options_request(o)));
    expect_last();
  }

  void call(op code, const std::string& path) {
    request r;
    r.code = code;
    r.args = {path};
    send(encode_request(r));
    expect_last();
    read_reply(in_, code);
  }

private:
  void send(const std::string& bytes) {
    if (::write(fd_.get(), bytes.data(), bytes.size()) != static_cast<ssize_t>(bytes.size()))
      throw std::runtime_error("short write to the daemon");
  }
  void expect_last() {
    for (;;) {
      auto m = read_stderr_message(in_);
      if (m.code == stderr_code::last)
        return;
      if (m.code == stderr_code::error)
        throw std::runtime_error("the daemon said: " + m.text);
    }
  }
  unique_fd fd_;
  fd_source raw_;
  buffered_source buffered_;
  wire::reader in_;
};

double micros(clock_type::duration d) { return std::chrono::duration<double, std::micro>(d).count(); }

int connect_bench(const std::string& socket, int n) {
  std::vector<double> us;
  for (int i = 0; i < n; ++i) {
    auto t = clock_type::now();
    { connection c(socket); }
    us.push_back(micros(clock_type::now() - t));
  }
  std::sort(us.begin(), us.end());
  std::printf("connect+setoptions p50 %.0f us p99 %.0f us (n=%d)\n", us[us.size() / 2], us[us.size() * 99 / 100], n);
  return 0;
}

int query_bench(const std::string& socket, op code, int n, int clients, const std::string& path) {
  std::vector<connection*> conns;
  for (int i = 0; i < clients; ++i)
    conns.push_back(new connection(socket));
  auto t = clock_type::now();
  std::vector<std::thread> threads;
  for (int i = 0; i < clients; ++i)
    threads.emplace_back([&, i] {
      for (int k = i; k < n; k += clients)
        conns[i]->call(code, path);
    });
  for (auto& th : threads)
    th.join();
  double secs = micros(clock_type::now() - t) / 1e6;
  std::printf("op %d x%d from %d clients: %.0f calls/s\n", static_cast<int>(code), n, clients, n / secs);
  for (auto* c : conns)
    delete c;
  return 0;
}

// The round trip's own cost on this machine: a request of a call's size
// to a child that answers at once with a reply of a call's size.
int floor_bench(int n) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
    throw std::runtime_error("socketpair failed");
  pid_t child = ::fork();
  if (child == 0) {
    ::close(sv[0]);
    char buf[256];
    while (::read(sv[1], buf, sizeof buf) > 0)
      if (::write(sv[1], buf, 24) != 24)
        break;
    ::_exit(0);
  }
  ::close(sv[1]);
  char buf[256] = {};
  auto t = clock_type::now();
  for (int i = 0; i < n; ++i)
    if (::write(sv[0], buf, 96) != 96 || ::read(sv[0], buf, sizeof buf) <= 0)
      throw std::runtime_error("the echoing child went away");
  double secs = micros(clock_type::now() - t) / 1e6;
  ::close(sv[0]);
  ::waitpid(child, nullptr, 0);
  std::printf("round-trip floor x%d: %.0f round trips/s (%.1f us each)\n", n, n / secs, secs / n * 1e6);
  return 0;
}

} // namespace

int main(int argc, char** argv) {
  std::vector<std::string> a(argv + 1, argv + argc);
  try {
    if (a.size() == 3 && a[0] == "connect")
      return connect_bench(a[1], std::stoi(a[2]));
    if (a.size() == 6 && a[0] == "query")
      return query_bench(a[1], static_cast<op>(std::stoi(a[2])), std::stoi(a[3]), std::stoi(a[4]), a[5]);
    if (a.size() == 2 && a[0] == "floor")
      return floor_bench(std::stoi(a[1]));
    if (a.size() == 4 && a[0] == "idle") {
      std::vector<connection*> held;
      for (int i = 0; i < std::stoi(a[2]); ++i)
        held.push_back(new connection(a[1]));
      std::printf("holding %zu connections\n", held.size());
      std::fflush(stdout);
      std::this_thread::sleep_for(std::chrono::seconds(std::stoi(a[3])));
      return 0;
    }
  } catch (const std::exception& e) {
    std::cerr << "kiln-bench-daemon: " << e.what() << '\n';
    return 1;
  }
  std::cerr << "usage: kiln-bench-daemon connect SOCKET N | query SOCKET OP N CLIENTS PATH | idle SOCKET N SECONDS"
               " | floor N\n";
  return 2;
}
