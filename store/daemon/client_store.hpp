// The daemon-client store (`--store daemon`, `unix:///PATH`): the store
// interface spoken over the worker protocol to kilnd or nix-daemon, one
// request at a time on one connection. No actors: the codec and a socket.
// What the daemon logs while it works (STDERR_NEXT lines, activities) goes
// to a callback; its errors are thrown as kiln::error with its text.
#pragma once

#include "store/daemon/build_results.hpp"
#include "store/daemon/protocol.hpp"
#include "store/daemon/replies.hpp"
#include "store/daemon/requests.hpp"
#include "store/io/fd.hpp"
#include "store/store.hpp"

#include <functional>
#include <memory>
#include <string>

namespace kiln::daemon {

// Nix's BuildResult as a daemon reports it (op 46).
// A result of BuildPathsWithResults: the derived path asked for ("X.drv!out",
// or a plain path) and what became of it.
struct remote_build_result : wire_build_result {
  std::string path;
};

class client_store : public store {
public:
  using log_sink = std::function<void(const stderr_message&)>;

  // Connects to the socket, shakes hands and sends `options`.
  client_store(const std::string& socket_path, const client_options& options = {}, log_sink log = {});
  ~client_store() override;

  const std::string& daemon_nix_version() const { return welcome_.nix_version; }
  trust_flag trust() const { return welcome_.trust; }
  uint64_t protocol() const { return version_; }
  const feature_set& features() const { return features_; }

  bool is_valid(const store_path& p) override;
  std::optional<path_info> query_path_info(const store_path& p) override;
  store_path_set query_valid_paths(const store_path_set& paths) override;
  store_path_set query_referrers(const store_path& p) override;
  store_path_set query_valid_derivers(const store_path& p) override;
  std::map<std::string, store_path> query_derivation_outputs(const store_path& drv) override;
  std::vector<store_path> query_all_valid_paths() override;
  std::optional<store_path> query_path_from_hash_part(std::string_view hash_part) override;
  missing_plan query_missing(const std::vector<wanted_path>& targets) override;
  path_info add_to_store(std::string_view name, content_method method, hash_algo algo, source& data,
                         const store_path_set& references) override;
  path_info add_nar(source& nar, path_info info) override;
  void nar_from_path(const store_path& p, sink& out) override;
  void add_signatures(const store_path& p, const std::set<std::string>& sigs) override;
  void add_temp_root(const store_path& p) override;
  void add_indirect_root(const std::string& link) override;
  gc_root_map find_roots() override;
  gc_result collect_garbage(const gc_options& options, const gc_progress& progress = {}) override;
  optimise_result optimise() override;
  std::vector<verify_problem> verify(bool check_contents) override;
  // There is no operation for it: read where the daemon writes logs, as
  // Nix's own client does (/nix/var/log/nix/drvs).
  std::optional<std::string> build_log(const store_path& drv) override;

  // Builds on the daemon (BuildPathsWithResults); mode 0 normal, 1 repair, 2 check.
  std::vector<remote_build_result> build_paths(const std::vector<std::string>& derived_paths, uint64_t mode);
  // kilnd only (Kiln's own operations): queues a build that does not end
  // with the connection, and returns its id; a queued build's state and
  // results as JSON ({"id", "paths", "done", "submitted", "finished",
  // "results": [...]}), waiting for them with `wait`.
  uint64_t submit_detached(const std::vector<std::string>& derived_paths);
  std::string detached_status(uint64_t id, bool wait);

private:
  struct connection;
  // Sends a request (and an upload, framed, if given), reads the stderr
  // stream to its end and returns the reply.
  std::vector<argument> call(op code, std::vector<argument> args, source* upload = nullptr,
                             uint64_t upload_bytes = UINT64_MAX);
  // call(), also collecting the daemon's plain log lines (STDERR_NEXT),
  // which is where some operations report what they found.
  std::vector<argument> call_keeping_lines(op code, std::vector<argument> args, std::vector<std::string>& lines);
  void read_stream();
  std::string derived(const wanted_path& w) const;

  std::unique_ptr<connection> conn_;
  log_sink log_;
  uint64_t version_ = 0;
  feature_set features_; // both sides have them (1.38)
  daemon_welcome welcome_;
};

// Where `daemon` and `unix://` point: NIX_DAEMON_SOCKET_PATH, else Nix's
// /nix/var/nix/daemon-socket/socket.
std::string default_daemon_socket();

} // namespace kiln::daemon
