// `kiln build` and `kiln log`: the build engine from the command line,
// embedded (no daemon), and the logs it leaves.
#include "actors/build_settings.hpp"
#include "actors/engine.hpp"
#include "messages/build_json.hpp"
#include "store/daemon/client_store.hpp"
#include "store/local/build_log.hpp"
#include "store/io/error.hpp"
#include "tools/kiln/commands.hpp"
#include "tools/kiln/store_cli.hpp"

#include <nlohmann/json.hpp>

#include <unistd.h>

#include <algorithm>
#include <iostream>
#include <sstream>
#include <thread>

namespace kiln::cmd {

// The outcome of a run as `kiln build` reports it (paths or JSON, errors);
// its exit status.
int report(const engine_run& run, bool json);

namespace {

const char* status_usage = R"(Usage: kiln status [--store STORE] [--json] ID

What kilnd knows of detached build ID (`kiln build --detach`): whether it is
done and, once it is, how it ended. Does not wait (`kiln build --attach ID`
does, and reports the results as a build does).

Options:
  --store STORE   the daemon (default: as for kiln build)
  --json          the whole record: {"id", "paths", "done", "submitted",
                  "finished", "results": [as kiln build --json prints them]}
)";

const char* build_usage = R"(Usage: kiln build [OPTIONS] DRV[^OUTPUTS]...

Realises derivations in the local store with the embedded build engine (no
daemon needed): inputs first, each derivation once, up to -j builds at a time.
With --store daemon (or unix:///PATH) the daemon builds them instead, with
these options as the client's settings, and its progress is shown here.
DRV is a .drv store path (or its real location); ^out,dev picks outputs, ^* all.
Prints the output paths of the derivations asked for, one per line.

Options:
  --store STORE          local:DIR, /DIR, daemon, unix:///PATH (default: the
                         daemon if its socket exists and you are not root,
                         else the user's local store)
  -j, --max-jobs N       builds at once (default 1; 'auto' = cores)
  --keep-going, -k       build what can be built when something fails
  --keep-failed, -K      keep the build directory of a failed build
  --check                rebuild valid outputs and compare (NotDeterministic)
  --repair               rebuild the valid outputs that are missing or whose
                         contents no longer match their hash
  --fallback             build when a substituter fails to deliver a path
                         (without it such a failure fails the derivation)
  --hash                 fixed-output derivations: register what was fetched
                         at its content's path, whatever the declared hash
  --repeat N             build N more times and compare the rounds
  --max-silent-time S    kill a build silent for S seconds (TimedOut)
  --timeout S            kill a build running longer than S seconds (TimedOut)
  --max-log-size BYTES   kill a build that logs more (LogLimitExceeded)
  -L, --print-build-logs show build output as it comes
  --json                 print every goal's result as JSON instead of paths
  --stdin                also read DRV[^OUTPUTS] arguments from standard input
                         (separated by white space; for graphs too big for argv)
  --detach               kilnd only: queue the build in kilnd's durable queue
                         and print its id at once (with --json, {"id": N});
                         it runs with this command's settings (--option, -j,
                         ...) as kilnd lets a client have them, goes on when
                         this command ends, and runs again if kilnd restarts
                         first
  --attach ID            kilnd only: wait for detached build ID and report its
                         results as this command reports a build's
  --option NAME VALUE    any kiln.conf setting (max-jobs, cores, log-lines,
                         compress-build-log, secret-key-files, post-build-hook,
                         substituters, trusted-public-keys, require-sigs, ...)
                         substituters: other stores, local:DIR, and binary
                         caches, file:///DIR, http(s)://HOST/PATH (each
                         ?trusted=1 to skip signatures), whose signed paths
                         are copied instead of built (download-attempts,
                         stalled-download-timeout, netrc-file, ssl-cert-file
                         for HTTP)
                         sandbox true|false|relaxed (default true): builds see
                         only their inputs, /dev, /proc, /build and the
                         sandbox-paths (e.g. '/bin /lib /lib64 /usr'), with
                         no network unless fixed-output
                         build-memory-max, build-pids-max, build-cpu-max
                         (percent of one CPU): limits per build;
                         build-pids-max is 'auto' by default: 2048 processes
                         where a pids control group can enforce it (0: none)
                         build-size-max BYTES (K/M/G/T): a build whose
                         directory and outputs take more disk fails (0: none)
                         fallback true: as --fallback

Exit status: 0 all built; 100 a build failed, +1 one timed out, +2 a fixed
output's hash did not match, +4 --check found a different output; 1 other
errors (--repeat finding one included, as Nix; SIGINT/SIGTERM: interrupted).
)";

const char* log_usage = R"(Usage: kiln log [--store STORE] PATH

Prints the build log of PATH: a .drv, or an output path (its deriver's log),
whichever compression it was written with (zstd, bzip2 as Nix writes, none).
)";

build_options options_from(settings s, const cli::parsed_args& a) {
  // A flag is its setting given on the command line: one parser, one range.
  for (auto [flag, name] : {std::pair{"--max-jobs", "max-jobs"}, {"--repeat", "repeat"},
                            {"--max-silent-time", "max-silent-time"}, {"--timeout", "timeout"},
                            {"--max-log-size", "max-log-size"}})
    if (a.values.count(flag))
      s.set(name, a.values.at(flag), flag);
  build_options o = build_options_from(s);
  o.keep_going |= a.has("--keep-going");
  o.keep_failed |= a.has("--keep-failed");
  o.print_build_logs = a.has("--print-build-logs");
  o.fallback |= a.has("--fallback");
  int modes = a.has("--check") + a.has("--repair") + a.has("--hash");
  if (modes > 1)
    throw cli::usage_error("--check, --repair and --hash exclude each other");
  o.mode = a.has("--check") ? build_mode::check : a.has("--repair") ? build_mode::repair
         : a.has("--hash") ? build_mode::hash : build_mode::normal;
  if (o.repeat && o.mode != build_mode::normal)
    throw cli::usage_error("--repeat cannot be combined with --check, --repair or --hash");
  return o;
}

goal_request parse_goal(kiln::store& store, const std::string& text) {
  goal_request g;
  std::string path = text;
  auto caret = text.rfind('^');
  if (caret != std::string::npos) {
    path = text.substr(0, caret);
    std::string outs = text.substr(caret + 1);
    if (outs.empty())
      throw cli::usage_error("'" + text + "': no outputs after '^'");
    if (outs != "*") {
      std::istringstream in(outs);
      for (std::string o; std::getline(in, o, ',');) {
        if (o.empty())
          throw cli::usage_error("'" + text + "': an empty output name");
        g.outputs.insert(o);
      }
    }
  }
  store_path p = parse_any_path(store, path);
  if (!p.is_derivation())
    throw cli::usage_error("'" + path + "' is not a derivation (.drv)");
  g.drv_path = p.full();
  return g;
}

// Events to stderr: a live status line on a terminal, plain lines otherwise.
event_sink progress_printer(bool json) {
  bool tty = ::isatty(2);
  return [tty, json](const engine_event& e) {
    if (e.kind == engine_event::notice) {
      std::cerr << (tty ? "\r\033[K" : "") << e.text << '\n';
      return;
    }
    if (e.kind == engine_event::hook_started || e.kind == engine_event::hook_output) {
      std::cerr << (tty ? "\r\033[K" : "")
                << (e.kind == engine_event::hook_started ? "running post-build-hook '" + e.text + "'..."
                                                         : "post-build-hook: " + e.text)
                << '\n';
      return;
    }
    if (e.kind == engine_event::copied) {
      if (!json)
        std::cerr << (tty ? "\r\033[K" : "") << "copying path '" << e.drv_path << "' from '" << e.text << "'...\n";
      return;
    }
    if (e.kind == engine_event::log_line) {
      // -L: each line after the derivation's name ("hello> "), as Nix's.
      std::string_view name = parse_store_path(e.drv_path).name();
      std::cerr << (tty ? "\r\033[K" : "") << name.substr(0, name.size() - 4) << "> " << e.text << '\n';
      return;
    }
    if (tty) {
      std::string line = "[" + std::to_string(e.built) + " built, " + std::to_string(e.running) + " running, " +
                         std::to_string(e.queued) + " queued, " + std::to_string(e.failed) + " failed]";
      if (e.kind == engine_event::building)
        line += " " + e.text;
      if (line.size() > 160)
        line.resize(160);
      std::cerr << "\r\033[K" << line << std::flush;
    } else if (e.kind == engine_event::building && !json) {
      std::cerr << e.text << "...\n";
    }
  };
}

// What a daemon says while it builds, as `kiln build` prints the engine's
// events: "building '...'...", its messages, and with -L the log lines.
daemon::client_store::log_sink daemon_log_printer(bool print_build_logs) {
  auto building = std::make_shared<std::map<uint64_t, std::string>>(); // activity -> drv
  return [print_build_logs, building](const daemon::stderr_message& m) {
    using daemon::stderr_code;
    if (m.code == stderr_code::next) {
      std::cerr << m.text << std::flush;
    } else if (m.code == stderr_code::start_activity && m.type == 105) {
      std::cerr << m.text << "...\n";
      if (!m.fields.empty())
        if (auto* drv = std::get_if<std::string>(&m.fields[0]))
          (*building)[m.id] = *drv;
    } else if (m.code == stderr_code::result && m.type == 101 && print_build_logs && !m.fields.empty()) {
      auto it = building->find(m.id);
      auto* line = std::get_if<std::string>(&m.fields[0]);
      if (it != building->end() && line) {
        std::string_view name = parse_store_path(it->second).name();
        std::cerr << name.substr(0, name.size() - 4) << "> " << *line << '\n';
      }
    }
  };
}

// DRV!outputs (DRV!* for all), as a daemon is asked.
std::vector<std::string> derived_paths(const std::vector<goal_request>& goals) {
  std::vector<std::string> derived;
  for (auto& g : goals) {
    std::string outs;
    for (auto& o : g.outputs)
      outs += (outs.empty() ? "" : ",") + o;
    derived.push_back(g.drv_path + "!" + (outs.empty() ? "*" : outs));
  }
  return derived;
}

// A detached build's state from kilnd, as JSON (waiting for it to end if
// `wait`); throws if kilnd has no such build.
nlohmann::json detached_status(const cli::parsed_args& a, uint64_t id, bool wait) {
  auto any = open_any_store(a);
  auto* client = dynamic_cast<daemon::client_store*>(any.get());
  if (!client)
    throw cli::usage_error("detached builds are kilnd's: use --store daemon or unix:///PATH");
  auto status = nlohmann::json::parse(client->detached_status(id, wait), nullptr, false);
  if (!status.is_object())
    throw error("kilnd's answer about detached build " + std::to_string(id) + " is not JSON");
  return status;
}

uint64_t build_id(const std::string& text) {
  if (text.empty() || text.size() > 18 || text.find_first_not_of("0123456789") != std::string::npos)
    throw cli::usage_error("'" + text + "' is not a detached build's id");
  return std::stoull(text);
}

// --attach ID: the detached build's results once it has ended, reported as
// a build of this command's own.
int attach_command(const cli::parsed_args& a) {
  if (!a.positional.empty())
    throw cli::usage_error("--attach takes no derivations");
  uint64_t id = build_id(a.values.at("--attach"));
  auto status = detached_status(a, id, true);
  if (!status.value("done", false))
    throw error("kilnd stopped before detached build " + std::to_string(id) +
                " ended; it runs again when kilnd starts: attach again then");
  engine_run run;
  for (auto& j : status["results"]) {
    build_result r = build_result_from_json(j);
    run.all.push_back(r);
    if (r.top_level)
      run.top_level.push_back(r);
  }
  return report(run, a.has("--json"));
}

// The same request sent to a daemon (BuildPathsWithResults) with this
// command's settings as the client's options; its results as the engine's.
engine_run build_through_daemon(daemon::client_store& client, const build_options& options,
                                const std::vector<goal_request>& goals) {
  if (options.mode == build_mode::hash)
    throw cli::usage_error("--hash works on a local store only");
  std::vector<std::string> derived = derived_paths(goals);
  uint64_t mode = options.mode == build_mode::repair ? 1 : options.mode == build_mode::check ? 2 : 0;
  engine_run run;
  auto results = client.build_paths(derived, mode);
  for (std::size_t i = 0; i < results.size() && i < goals.size(); ++i) {
    build_result r;
    r.path = goals[i].drv_path;
    r.status = from_nix_status_number(results[i].status);
    r.error = results[i].error;
    r.times_built = static_cast<uint32_t>(results[i].times_built);
    r.start_time = static_cast<int64_t>(results[i].start_time);
    r.stop_time = static_cast<int64_t>(results[i].stop_time);
    r.cpu_user_us = results[i].cpu_user_us.value_or(0);
    r.cpu_system_us = results[i].cpu_system_us.value_or(0);
    r.top_level = true;
    if (is_success(r.status))
      for (auto& [name, path] : client.query_derivation_outputs(parse_store_path(r.path)))
        if (goals[i].outputs.empty() || goals[i].outputs.count(name))
          r.outputs.emplace(name, path.full());
    run.all.push_back(r);
    run.top_level.push_back(r);
  }
  return run;
}

} // namespace

int build_command(const std::vector<std::string>& args) {
  auto a = cli::parse(args,
                      {store_option, cli::setting_option, {"--max-jobs", true, "-j"}, {"--keep-going", false, "-k"},
                       {"--keep-failed", false, "-K"}, {"--check"}, {"--repair"}, {"--hash"}, {"--fallback"}, {"--repeat", true},
                       {"--max-silent-time", true}, {"--timeout", true}, {"--max-log-size", true},
                       {"--print-build-logs", false, "-L"}, {"--json"}, {"--stdin"}, {"--detach"},
                       {"--attach", true}},
                      build_usage);
  if (a.values.count("--attach"))
    return attach_command(a);
  std::vector<std::string> wanted = a.positional;
  if (a.has("--stdin"))
    for (std::string word; std::cin >> word;)
      wanted.push_back(word);
  if (wanted.empty())
    throw cli::usage_error("missing a derivation to build");
  build_options options = options_from(load_settings(a), a);
  bool json = a.has("--json");
  std::unique_ptr<kiln::store> any = open_any_store(a, daemon_log_printer(options.print_build_logs));
  std::vector<goal_request> goals;
  for (auto& p : wanted)
    goals.push_back(parse_goal(*any, p));
  auto* client = dynamic_cast<daemon::client_store*>(any.get());
  if (a.has("--detach")) {
    if (!client)
      throw cli::usage_error("--detach needs kilnd (--store daemon or unix:///PATH)");
    uint64_t id = client->submit_detached(derived_paths(goals));
    if (json)
      std::cout << nlohmann::ordered_json{{"id", id}}.dump() << '\n';
    else
      std::cout << id << '\n';
    return 0;
  }
  engine_run run;
  if (client)
    run = build_through_daemon(*client, options, goals);
  else
    run = run_builds(std::shared_ptr<local_store>(static_cast<local_store*>(any.release())), options, goals,
                     progress_printer(json));
  return report(run, json);
}

int report(const engine_run& run, bool json) {
  if (::isatty(2))
    std::cerr << "\r\033[K" << std::flush;

  if (json) {
    nlohmann::ordered_json all = nlohmann::ordered_json::array();
    for (auto& r : run.all)
      all.push_back(build_result_json(r));
    std::cout << all.dump(2) << '\n';
  } else if (exit_status(run.all) == 0 && !run.interrupted) {
    // As nix-store --realise: the outputs, and only when all of them are there.
    for (auto& r : run.top_level)
      for (auto& [name, path] : r.outputs)
        std::cout << path << '\n';
  }
  if (run.interrupted) {
    std::cerr << "error: interrupted by the user\n";
    return 1;
  }
  // Root causes first, then what failed because of them; a build that was
  // only stopped because of them is not a failure of its own.
  for (bool dependency : {false, true})
    for (auto& r : run.all)
      if (!is_success(r.status) && !r.cancelled && (r.status == build_status::dependency_failed) == dependency)
        std::cerr << "error: " << r.error << '\n';
  return exit_status(run.all);
}

int status_command(const std::vector<std::string>& args) {
  auto a = cli::parse(args, {store_option, {"--json"}}, status_usage);
  cli::expect_positional(a, 1, 1, "a detached build's id");
  uint64_t id = build_id(a.positional[0]);
  auto status = detached_status(a, id, false);
  if (a.has("--json")) {
    std::cout << status.dump(2) << '\n';
    return 0;
  }
  std::cout << "detached build " << id << ": ";
  if (!status.value("done", false)) {
    std::cout << "not done yet (" << status["paths"].size() << " derivations asked for)\n";
    return 0;
  }
  std::vector<build_result> all;
  for (auto& j : status["results"])
    all.push_back(build_result_from_json(j));
  std::size_t failed = std::count_if(all.begin(), all.end(), [](auto& r) { return !is_success(r.status); });
  std::cout << "done, " << all.size() << " results, " << failed << " failed (exit status " << exit_status(all)
            << "; 'kiln build --attach " << id << "' reports them)\n";
  return 0;
}

int log_command(const std::vector<std::string>& args) {
  auto a = cli::parse(args, {store_option}, log_usage);
  cli::expect_positional(a, 1, 1, "a store path");
  auto store = open_any_store(a);
  store_path p = parse_any_path(*store, a.positional[0]);
  std::vector<store_path> drvs;
  if (p.is_derivation()) {
    drvs.push_back(p);
  } else {
    for (auto& d : store->query_valid_derivers(p))
      drvs.push_back(d);
    if (auto info = store->query_path_info(p); info && info->deriver)
      drvs.push_back(*info->deriver);
  }
  for (auto& d : drvs)
    if (auto text = store->build_log(d)) {
      std::cout << *text << std::flush;
      return 0;
    }
  throw error("build log of '" + p.full() + "' is not available");
}


} // namespace kiln::cmd
