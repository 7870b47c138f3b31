// Inside a kilnd session (daemon_session.hpp is the front door): the
// connection's two directions and the session's state, shared by the loop
// (daemon_session.cpp), the store operations (session_ops.cpp) and the
// builds (session_builds.cpp).
#pragma once

#include "actors/daemon_session.hpp"
#include "actors/engine.hpp"
#include "store/cache/substituter.hpp"
#include "store/daemon/protocol.hpp"
#include "store/daemon/replies.hpp"
#include "store/daemon/requests.hpp"
#include "store/local/local_store.hpp"
#include "store/local/temp_roots.hpp"

#include <memory>
#include <string>
#include <vector>

namespace kiln::daemon {

// The version kilnd announces: 1.38, so clients from Nix 2.8 (1.34) to
// today's meet it at their own version.
constexpr uint64_t daemon_version = protocol_1_38;

// Nix's verbosity levels (SetOptions, log messages).
enum level : uint64_t {
  lvl_error = 0, lvl_warn = 1, lvl_notice = 2, lvl_info = 3, lvl_talkative = 4, lvl_chatty = 5, lvl_debug = 6
};

// Nix's activity and result types (worker-protocol.md §3).
enum activity_type : uint64_t {
  act_unknown = 0, act_copy_path = 100, act_file_transfer = 101, act_realise = 102, act_copy_paths = 103,
  act_builds = 104, act_build = 105, act_optimise_store = 106, act_verify_paths = 107, act_post_build_hook = 110
};
enum result_type : uint64_t {
  res_build_log_line = 101, res_progress = 105, res_set_expected = 106, res_post_build_log_line = 107
};

// Thrown when writing to the client fails: it has gone.
struct client_gone : std::runtime_error {
  client_gone() : std::runtime_error("the client has gone") {}
};

// A request refused before its work starts (an untrusted client asking to
// repair): Nix reports it and closes the connection.
struct refused_request : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Reads the socket through a buffer; can tell a clean end (between
// requests) from data without consuming any.
class socket_source : public source {
public:
  // The buffer is not cleared first: an idle connection costs only the
  // pages its requests touched.
  explicit socket_source(int fd) : fd_(fd), buf_(new char[buffer_size]) {}
  std::size_t read(char* data, std::size_t n) override;
  // False once the client has closed its side and everything sent was read.
  bool more();

private:
  static constexpr std::size_t buffer_size = 1 << 16;
  int fd_;
  std::unique_ptr<char[]> buf_;
  std::size_t pos_ = 0, end_ = 0;
};

// What goes to the client: the stderr stream and the replies.
class client_stream {
public:
  explicit client_stream(int fd) : fd_(fd) {}
  void set_verbosity(uint64_t v) { verbosity_ = v; }
  // A log line (STDERR_NEXT) if `lvl` is within the client's verbosity.
  void message(uint64_t lvl, const std::string& text);
  uint64_t start_activity(uint64_t type, const std::string& text, std::vector<field> fields = {},
                          uint64_t lvl = lvl_info);
  void result(uint64_t activity, uint64_t type, std::vector<field> fields);
  void stop_activity(uint64_t activity);
  // "copying path P from URI", as Nix's copy activity, told once the copy
  // is done (Nix tells it as it starts; nothing comes between).
  void copied(const std::string& path, const std::string& from);
  // STDERR_LAST, then the reply.
  void last(const std::vector<argument>& reply = {});
  void error(const std::string& text);
  void raw(std::string_view bytes) { buffer_.append(bytes); }
  sink& raw_sink();
  // Sends what is buffered; throws client_gone if the client has gone.
  void flush();

private:
  void put(const stderr_message& m);
  int fd_;
  uint64_t verbosity_ = lvl_info;
  std::string buffer_;
  std::unique_ptr<sink> raw_sink_;
};

// "X.drv!out,dev", "X.drv!*" (all outputs) or a plain path (DerivedPath).
wanted_path parse_derived_path(const std::string& text);
// Whether the client on `fd` has hung up (without reading from it).
bool hung_up(int fd);
// Whether both directions of `fd` are closed: the client has gone even
// though this side shut its reading (kilnd draining).
bool closed_by_peer(int fd);

class session {
public:
  // Requests come on `in`, answers go to `out` (one socket, or stdin and
  // stdout for --stdio).
  session(int in, int out, daemon_context& ctx, const settings& config, const peer_info& peer, bool trusted);
  void run();

private:
  // Does one request; false when the connection must close.
  bool serve(const request& r);
  void set_options(const client_options& o);
  local_store& store();

  // session_ops.cpp: one function per operation, each ending with
  // out_.last(reply) (an error is thrown and reported by serve()).
  void store_op(const request& r);
  void add_to_store(const request& r);
  void add_to_store_nar(const request& r);
  void add_multiple_to_store(const request& r);
  void add_build_log(const request& r);
  void collect_garbage(const request& r);
  void verify_store(const request& r);
  void repair_path(const store_path& p);
  void query_missing(const request& r);
  void query_substitutable(const request& r);
  // The client's substituters (as its settings filtered them), opened once.
  substituter_set& substituters();
  void add_perm_root(const request& r);
  // A path argument of the request: a store path, or an error naming it.
  store_path path_arg(const std::string& text) const;

  // session_builds.cpp: BuildPaths, BuildPathsWithResults, BuildDerivation, EnsurePath.
  void build_paths(const request& r);
  void build_derivation(const request& r);
  void ensure_path(const request& r);
  // Runs goals on the daemon's engine, forwarding its events to the client
  // until the run ends; cancels the run if the client hangs up.
  engine_run run_goals(const build_options& o, const std::vector<goal_request>& goals);
  // The daemon's build settings with this client's, for a build in `mode`.
  build_options client_build_options(build_mode mode) const;
  // This client's settings where they differ from the daemon's (what a
  // detached request keeps).
  std::map<std::string, std::string> changed_settings() const;

  int in_fd_;
  daemon_context& ctx_;
  peer_info peer_;
  bool trusted_;
  socket_source raw_;
  wire::reader in_;
  client_stream out_;
  uint64_t client_version_ = daemon_version;
  feature_set features_; // both sides have them (1.38)
  settings daemon_config_; // the daemon's, as this connection found it
  settings config_;        // the same with this client's overrides
  client_options options_;
  std::shared_ptr<temp_roots> roots_;
  std::shared_ptr<local_store> store_; // opened at the first request that needs it
  std::unique_ptr<substituter_set> substituters_;
};

} // namespace kiln::daemon
