// A kilnd session's builds: BuildPaths, BuildPathsWithResults and
// EnsurePath run on the daemon's engine with this client's settings. The
// engine's events are queued by its threads and written to the client by
// the session's own, so a slow client never holds up an actor; a client
// that hangs up has its builds cancelled.
#include "actors/session.hpp"

#include "actors/build_settings.hpp"
#include "store/daemon/build_results.hpp"
#include "store/format/derivation.hpp"
#include "store/format/derivation_hash.hpp"
#include "store/format/encoding.hpp"
#include "store/io/error.hpp"

#include <deque>
#include <mutex>
#include <poll.h>
#include <sstream>

namespace kiln::daemon {

namespace {

// Engine events on their way to the session's thread. Log lines beyond
// the bound are dropped (and counted) rather than held: a client that
// does not read must not grow the daemon.
class event_queue {
public:
  void push(const engine_event& e) {
    std::lock_guard<std::mutex> g(mutex_);
    if (e.kind == engine_event::log_line && events_.size() >= max_events) {
      ++dropped_;
      return;
    }
    events_.push_back(e);
  }
  std::deque<engine_event> take(uint64_t& dropped) {
    std::lock_guard<std::mutex> g(mutex_);
    dropped = dropped_;
    dropped_ = 0;
    return std::move(events_);
  }

private:
  static constexpr std::size_t max_events = 100000;
  std::mutex mutex_;
  std::deque<engine_event> events_;
  uint64_t dropped_ = 0;
};

// Writes engine events as Nix's daemon writes a build's: its worker's
// activities (realise, builds, copy paths) with their progress (builds
// done, expected, running, failed; nothing is fetched or copied, so those
// stay 0), then an actBuild activity per derivation ("building '...'",
// fields drv, machine, round, rounds) with its log lines as results.
// Expected builds are the top-level goals at first, then what
// queryMissing says will be built; a build that fails leaves them.
class build_activities {
public:
  build_activities(client_stream& out, std::size_t top_level) : out_(out), expected_(top_level) {
    realise_ = out_.start_activity(act_realise, "", {}, lvl_error);
    builds_ = out_.start_activity(act_builds, "", {}, lvl_error);
    copies_ = out_.start_activity(act_copy_paths, "", {}, lvl_error);
    progress();
  }
  ~build_activities() {
    for (auto* running : {&open_, &hooks_})
      for (auto& [drv, id] : *running)
        out_.stop_activity(id);
    for (uint64_t id : {copies_, builds_, realise_})
      out_.stop_activity(id);
  }
  void expect(std::set<std::string> will_build) {
    will_build_ = std::move(will_build);
    if (will_build_.size() != expected_) {
      expected_ = will_build_.size();
      progress();
    }
  }
  void forward(std::deque<engine_event> events, uint64_t dropped) {
    for (auto& e : events) {
      switch (e.kind) {
      case engine_event::building:
        if (e.text.rfind("waiting for", 0) == 0)
          out_.message(lvl_info, e.text);
        else
          activity(e.drv_path, e.text);
        break;
      case engine_event::log_line: out_.result(activity(e.drv_path, ""), res_build_log_line, {e.text}); break;
      case engine_event::notice: out_.message(lvl_error, e.text); break;
      case engine_event::finished: finished(e); break;
      case engine_event::copied: out_.copied(e.drv_path, e.text); break;
      case engine_event::hook_started:
        hooks_[e.drv_path] = out_.start_activity(act_post_build_hook, "running post-build-hook '" + e.text + "'",
                                                 {e.drv_path});
        break;
      case engine_event::hook_output:
        out_.result(hooks_[e.drv_path], res_post_build_log_line, {e.text});
        break;
      case engine_event::hook_ended:
        out_.stop_activity(hooks_[e.drv_path]);
        hooks_.erase(e.drv_path);
        break;
      case engine_event::status: break;
      }
    }
    if (dropped)
      out_.message(lvl_warn, "kilnd: " + std::to_string(dropped) + " log lines not sent (the client read too slowly)");
  }

private:
  uint64_t activity(const std::string& drv, const std::string& text) {
    auto it = open_.find(drv);
    if (it != open_.end())
      return it->second;
    uint64_t id = out_.start_activity(act_build, text.empty() ? "building '" + drv + "'" : text,
                                      {drv, std::string(), uint64_t{1}, uint64_t{1}});
    open_.emplace(drv, id);
    if (will_build_.insert(drv).second) // built though queryMissing did not expect it (--check)
      ++expected_;
    progress();
    return id;
  }
  void finished(const engine_event& e) {
    if (will_build_.count(e.drv_path)) {
      if (e.result == build_status::built)
        ++done_;
      else if (expected_ > 0) {
        --expected_;
        if (e.result != build_status::dependency_failed && open_.count(e.drv_path))
          ++failed_;
      }
      will_build_.erase(e.drv_path);
    }
    auto it = open_.find(e.drv_path);
    if (it == open_.end())
      return;
    uint64_t id = it->second;
    open_.erase(it);
    progress();
    out_.stop_activity(id);
  }
  void progress() {
    uint64_t running = open_.size();
    out_.result(builds_, res_progress, {uint64_t{done_}, uint64_t{expected_}, running, uint64_t{failed_}});
    out_.result(copies_, res_progress, {uint64_t{0}, uint64_t{0}, uint64_t{0}, uint64_t{0}});
    out_.result(realise_, res_set_expected, {uint64_t{act_file_transfer}, uint64_t{0}});
    out_.result(realise_, res_set_expected, {uint64_t{act_copy_path}, uint64_t{0}});
  }
  client_stream& out_;
  uint64_t realise_ = 0, builds_ = 0, copies_ = 0;
  std::size_t expected_ = 0, done_ = 0, failed_ = 0;
  std::set<std::string> will_build_;
  std::map<std::string, uint64_t> open_;
  std::map<std::string, uint64_t> hooks_; // post-build hooks running, by derivation
};

// DrvOutput ids as Nix 2.8 names built outputs: "sha256:<hash modulo>!<output>".
// `hasher` memoises the inputs' hashes across the results of one reply.
string_pairs built_outputs(const build_result& r, const derivation& drv, derivation_hasher& hasher) {
  string_pairs out;
  auto hashes = hasher.hash_modulo(drv, true);
  for (auto& [name, path] : r.outputs) {
    auto h = hashes.find(name);
    if (h == hashes.end())
      continue;
    std::string id = "sha256:" + h->second.base16() + "!" + name;
    std::string base(parse_store_path(path).base_name());
    out.emplace_back(id, "{\"dependentRealisations\":{},\"id\":\"" + id + "\",\"outPath\":\"" + base +
                             "\",\"signatures\":[]}");
  }
  return out;
}

derivation stored_derivation(const std::string& drv_path, const store_layout& layout) {
  std::string base(parse_store_path(drv_path).base_name());
  return parse_derivation(read_whole_file(layout.store_dir() + "/" + base, 64u << 20, "derivation"), drv_path);
}

// A result as the protocol carries it. CPU times go only where a build
// ran and they were measured (its control group).
wire_build_result wire_result(const build_result& res, string_pairs outputs) {
  wire_build_result w;
  w.status = nix_status_number(res.status);
  w.error = res.error;
  w.times_built = res.times_built;
  w.non_deterministic = res.status == build_status::not_deterministic;
  w.start_time = static_cast<uint64_t>(res.start_time);
  w.stop_time = static_cast<uint64_t>(res.stop_time);
  if (res.cpu_user_us || res.cpu_system_us) {
    w.cpu_user_us = res.cpu_user_us;
    w.cpu_system_us = res.cpu_system_us;
  }
  w.built_outputs = std::move(outputs);
  return w;
}

build_mode build_mode_arg(uint64_t mode, bool trusted) {
  if (mode > 2)
    throw refused_request("unknown build mode " + std::to_string(mode));
  if (mode == 1 && !trusted)
    throw refused_request("repairing is not allowed because you are not in 'trusted-users'");
  return mode == 1 ? build_mode::repair : mode == 2 ? build_mode::check : build_mode::normal;
}

} // namespace

bool hung_up(int fd) {
  pollfd p{fd, POLLRDHUP, 0};
  return ::poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

bool closed_by_peer(int fd) {
  pollfd p{fd, 0, 0};
  return ::poll(&p, 1, 0) > 0 && (p.revents & (POLLHUP | POLLERR));
}

wanted_path parse_derived_path(const std::string& text) {
  auto bang = text.find('!');
  auto path = [&](const std::string& t) {
    try {
      return parse_store_path(t);
    } catch (const format_error& e) {
      throw format_error("'" + text + "' is not a store path: " + e.what());
    }
  };
  if (bang == std::string::npos)
    return wanted_path::opaque(path(text));
  std::set<std::string> outputs;
  std::string list = text.substr(bang + 1);
  if (list != "*") {
    std::istringstream names(list);
    for (std::string n; std::getline(names, n, ',');)
      outputs.insert(n);
  }
  return wanted_path::built(path(text.substr(0, bang)), outputs);
}

engine_run session::run_goals(const build_options& o, const std::vector<goal_request>& goals) {
  if (!ctx_.engine)
    throw error("this daemon does not build");
  auto queue = std::make_shared<event_queue>();
  build_activities acts(out_, goals.size());
  {
    uint64_t asking = out_.start_activity(act_unknown, "querying info about missing paths", {}, lvl_debug);
    std::set<std::string> will_build;
    try {
      std::vector<wanted_path> targets;
      for (auto& g : goals)
        targets.push_back(wanted_path::built(parse_store_path(g.drv_path), g.outputs));
      for (auto& p : store().query_missing(targets).will_build)
        will_build.insert(p.full());
    } catch (const std::exception&) {
      // A derivation given with the request is not in the store to ask about.
      for (auto& g : goals)
        will_build.insert(g.drv_path);
    }
    out_.stop_activity(asking);
    acts.expect(std::move(will_build));
  }
  // The engine's own store: its actor owns that connection while it runs.
  auto job = ctx_.engine->start(std::make_shared<local_store>(ctx_.layout, roots_), o, goals,
                                [queue](const engine_event& e) { queue->push(e); });
  bool cancelled = false;
  uint64_t dropped = 0;
  while (!job->wait_for(std::chrono::milliseconds(50))) {
    acts.forward(queue->take(dropped), dropped);
    out_.flush();
    // Nobody is left to want these builds, or kilnd's stop has reached its
    // deadline. (While kilnd drains, its own side's reading is shut: only a
    // client that closed the connection has gone.)
    int stopping = ctx_.stopping;
    if (!cancelled && (stopping == 2 || (stopping == 0 ? hung_up(in_fd_) : closed_by_peer(in_fd_)))) {
      job->cancel();
      cancelled = true;
    }
  }
  acts.forward(queue->take(dropped), dropped);
  return job->result();
}

std::map<std::string, std::string> session::changed_settings() const {
  std::map<std::string, std::string> changed;
  for (auto& [name, value] : config_.all())
    if (daemon_config_.get(name) != value)
      changed[name] = value;
  return changed;
}

build_options session::client_build_options(build_mode mode) const {
  build_options o = build_options_from(config_);
  o.mode = mode;
  o.print_build_logs = true; // the client decides what to show
  o.log_hint = true;
  return o;
}

void session::build_paths(const request& r) {
  bool with_results = r.code == op::build_paths_with_results;
  build_mode mode = build_mode_arg(u64_at(r.args, 1), trusted_);
  auto& asked = strs_at(r.args, 0);
  std::vector<wanted_path> targets;
  for (auto& t : asked)
    targets.push_back(parse_derived_path(t));
  auto& s = store();

  std::vector<goal_request> goals;
  for (auto& t : targets)
    if (t.outputs)
      goals.push_back({t.path.full(), *t.outputs});
  engine_run run;
  if (!goals.empty())
    run = run_goals(client_build_options(mode), goals);

  std::map<std::string, const build_result*> by_drv;
  for (auto& res : run.top_level)
    by_drv.emplace(res.path, &res);
  std::vector<build_result> results;
  for (auto& t : targets) {
    if (t.outputs) {
      auto it = by_drv.find(t.path.full());
      results.push_back(it != by_drv.end() ? *it->second : cancelled_result(t.path.full()));
      continue;
    }
    build_result res;
    res.path = t.path.full();
    res.status = s.is_valid(t.path) ? build_status::already_valid : build_status::misc_failure;
    if (res.status != build_status::already_valid)
      res.error = "path '" + t.path.full() + "' does not exist and cannot be created";
    results.push_back(res);
  }

  if (!with_results) {
    std::vector<const build_result*> failed;
    for (auto& res : results)
      if (!is_success(res.status))
        failed.push_back(&res);
    if (failed.size() == 1)
      throw error(failed[0]->error);
    if (!failed.empty()) {
      std::string names;
      for (auto* f : failed)
        names += (names.empty() ? "'" : ", '") + f->path + "'";
      throw error("build of " + names + " failed");
    }
    return out_.last({uint64_t{1}});
  }
  std::vector<argument> reply{uint64_t{results.size()}};
  derivation_hasher hasher(directory_loader(ctx_.layout.store_dir()));
  for (std::size_t i = 0; i < results.size(); ++i) {
    auto& res = results[i];
    string_pairs outputs;
    if (is_success(res.status) && !res.outputs.empty())
      outputs = built_outputs(res, stored_derivation(res.path, ctx_.layout), hasher);
    reply.emplace_back(asked[i]);
    append_build_result(reply, wire_result(res, std::move(outputs)), client_version_);
  }
  out_.last(reply);
}

// BuildDerivation: what a Nix sends the machine it builds on remotely. The
// derivation comes with the request, its inputs already copied here and
// named as sources; it is built as given, under the path given, without
// being written to the store (as Nix's daemon builds it). An untrusted
// client may only build a fixed-output derivation, whose output is checked
// by its content; it gets the derivation's own path, not the one it named.
void session::build_derivation(const request& r) {
  std::size_t pos = 0;
  store_path named = path_arg(str_at(r.args, pos++));
  if (!named.is_derivation())
    throw error("'" + named.full() + "' is not a derivation path");
  derivation drv;
  for (uint64_t i = 0, n = u64_at(r.args, pos++); i < n; ++i) {
    std::string name = str_at(r.args, pos++);
    derivation_output out;
    out.path = str_at(r.args, pos++);
    out.hash_algo = str_at(r.args, pos++);
    out.hash = str_at(r.args, pos++);
    drv.outputs.emplace(std::move(name), std::move(out));
  }
  for (auto& p : strs_at(r.args, pos++))
    drv.input_srcs.insert(path_arg(p).full());
  drv.platform = str_at(r.args, pos++);
  drv.builder = str_at(r.args, pos++);
  drv.args = strs_at(r.args, pos++);
  for (auto& [key, value] : pairs_at(r.args, pos++))
    drv.env[key] = value;
  build_mode mode = build_mode_arg(u64_at(r.args, pos++), trusted_);
  // Printed and parsed again: the same strict checks as a .drv file.
  std::string text = print_derivation(drv);
  drv = parse_derivation(text, "the derivation of '" + named.full() + "'");

  std::string drv_path = named.full();
  if (!trusted_) {
    if (!drv.is_fixed_output())
      throw error("you are not privileged to build input-addressed derivations");
    drv_path = derivation_store_path(drv, named.name().substr(0, named.name().size() - 4)).full();
  }
  build_options o = client_build_options(mode);
  o.given_derivations[drv_path] = text;
  engine_run run = run_goals(o, {{drv_path, {}}});
  build_result res = run.top_level.empty() ? cancelled_result(drv_path) : run.top_level.front();
  string_pairs outputs;
  if (is_success(res.status) && !res.outputs.empty()) {
    derivation_hasher hasher(directory_loader(ctx_.layout.store_dir()));
    outputs = built_outputs(res, drv, hasher);
  }
  std::vector<argument> reply;
  append_build_result(reply, wire_result(res, std::move(outputs)), client_version_);
  out_.last(reply);
}

void session::ensure_path(const request& r) {
  store_path p = path_arg(str_at(r.args, 0));
  if (!store().is_valid(p))
    throw error("path '" + p.full() + "' does not exist and cannot be created");
  out_.last({uint64_t{1}});
}

} // namespace kiln::daemon
