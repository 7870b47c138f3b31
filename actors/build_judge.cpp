// The judging part of build_steps: how a builder's report becomes a build
// result — limits and exit status, the outputs' scans checked, compared
// with an earlier round or the registered outputs, registered. (The post-build hook
// is the goal's next step: actors/post_build_hook.cpp.)
#include "actors/build_steps.hpp"

#include "sandbox/builder_process.hpp"
#include "store/local/build_outputs.hpp"
#include "store/io/error.hpp"
#include "store/io/file_ops.hpp"

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>

namespace kiln {

namespace {

std::string with_log_tail(std::string msg, const std::vector<std::string>& tail, const std::string& hint_drv) {
  if (tail.empty())
    return msg;
  msg += ";\nlast " + std::to_string(tail.size()) + " log lines:";
  for (auto& l : tail)
    msg += "\n> " + l;
  if (!hint_drv.empty())
    msg += "\nFor full logs, run '\x1b[1mnix log " + hint_drv + "\x1b[0m'.";
  return msg;
}

// Where a report may say an output lies: at its place in the store, or
// (isolated) under a directory of its own in the store or in Kiln's state
// directory, under its own name. A report comes from a worker; nothing
// else is moved into the store or renamed.
bool plausible_location(const local_store& store, const store_path& path, const std::string& location,
                        bool isolated) {
  std::string real = store.real_path(path);
  if (!isolated)
    return location == real;
  std::string name = "/" + std::string(path.base_name());
  auto under = [&](const std::string& dir) { return location.compare(0, dir.size() + 1, dir + "/") == 0; };
  return location.size() > name.size() && location.compare(location.size() - name.size(), name.size(), name) == 0 &&
         location.find("/../") == std::string::npos &&
         (under(store.layout().store_dir()) || under(store.layout().kiln_dir()));
}

} // namespace

build_result build_steps::judge(const build_request& q, const build_report& report) {
  const build_round& run = q.run;
  const builder_outcome& outcome = report.outcome;
  const std::string& drv_path = run.drv_path;
  const derivation& drv = run.drv;
  const uint32_t round = run.round, rounds = run.rounds;
  build_result r;
  const bool fixed = drv.is_fixed_output();
  const std::string hint = options_.log_hint ? drv_path : std::string();
  switch (outcome.limit) {
  case builder_outcome::setup_failed:
    r.status = build_status::misc_failure;
    r.error = outcome.message;
    return r;
  case builder_outcome::cancelled:
    return cancelled_result(drv_path);
  case builder_outcome::silent:
    r.status = build_status::timed_out;
    r.error = with_log_tail("building of '" + drv_path + "' timed out after " +
                                std::to_string(options_.max_silent_time) + " seconds of silence",
                            outcome.log_tail, hint);
    return r;
  case builder_outcome::timeout:
    r.status = build_status::timed_out;
    r.error = with_log_tail("building of '" + drv_path + "' timed out after " + std::to_string(options_.timeout) +
                                " seconds",
                            outcome.log_tail, hint);
    return r;
  case builder_outcome::disk_size:
    r.status = build_status::permanent_failure;
    r.error = with_log_tail("builder for '" + drv_path + "' killed: " + outcome.message + " (build-size-max is " +
                                std::to_string(options_.size_max) + " bytes)",
                            outcome.log_tail, hint);
    return r;
  case builder_outcome::log_size:
    r.status = build_status::log_limit_exceeded;
    r.error = "builder for '" + drv_path + "' killed after writing more than " +
              std::to_string(options_.max_log_size) + " bytes of log output";
    return r;
  default:
    break;
  }
  if (outcome.wait_status != 0) {
    r.status = fixed ? build_status::transient_failure : build_status::permanent_failure;
    r.error = with_log_tail("builder for '" + drv_path + "' " + sandbox::describe_wait_status(outcome.wait_status),
                            outcome.log_tail, hint);
    return r;
  }

  if (!report.failure.empty()) {
    r.status = build_status::misc_failure;
    r.error = report.failure;
    return r;
  }

  store_path dp = store_.parse_path(drv_path);
  std::vector<built_output> outs;
  store_path_set candidates;
  for (auto& p : q.input_closure)
    candidates.insert(parse_store_path(p));

  std::vector<path_info> infos;
  try {
    if (!report.rejected.empty())
      throw output_rejected(report.rejected);
    for (auto& [name, out] : drv.outputs) {
      store_path op = parse_store_path(out.path);
      auto s = std::find_if(report.outputs.begin(), report.outputs.end(), [&](auto& x) { return x.name == name; });
      std::string location = s == report.outputs.end() ? "" : s->location;
      if (s != report.outputs.end() && !plausible_location(store_, op, location, report.isolated_outputs))
        throw output_rejected("the builder's report puts output '" + name + "' of '" + drv_path + "' at '" + location +
                              "', where no output of it can be");
      outs.push_back({name, op, location});
    }
    auto inspected = accept_scanned_outputs(store_, dp, drv, outs, report.outputs, candidates);
    infos = std::move(inspected.infos);
    // --hash asks for the real hash; otherwise the output is kept at its
    // real path (registered, as by Nix 2.8) and the build still fails.
    if (!inspected.hash_mismatch.empty() && run.mode != build_mode::hash) {
      r.status = build_status::output_rejected;
      r.hash_mismatch = true;
      r.error = inspected.hash_mismatch;
      if (run.mode == build_mode::normal) {
        infos.erase(std::remove_if(infos.begin(), infos.end(), [&](auto& i) { return store_.db().is_valid(i.path); }),
                    infos.end());
        register_build_outputs(store_, infos, keys_);
      }
      return r;
    }
  } catch (const output_rejected& e) {
    r.status = build_status::output_rejected;
    r.error = e.what();
    return r;
  }
  for (auto& o : outs)
    r.outputs[o.name] = o.path.full();
  r.status = build_status::built;
  r.times_built = round;

  // Compare with what this run is checked against: the registered
  // outputs (check), or the first round's (later rounds).
  auto differs = [&](const std::vector<path_info>& against, bool checking) -> bool {
    for (std::size_t i = 0; i < infos.size(); ++i) {
      auto it = std::find_if(against.begin(), against.end(), [&](auto& a) { return a.path == infos[i].path; });
      if (it == against.end() || it->nar_hash != infos[i].nar_hash) {
        // Nix's words for each; only --check's mismatch has its own exit status (104).
        r.status = build_status::not_deterministic;
        r.check_mismatch = checking;
        r.error = checking ? "derivation '" + drv_path + "' may not be deterministic: output '" +
                                 infos[i].path.full() + "' differs"
                           : "output '" + infos[i].path.full() + "' of '" + drv_path + "' differs from previous round";
        if (options_.keep_failed) {
          std::string kept = store_.real_path(infos[i].path) + ".check";
          remove_tree(kept);
          if (::rename(outs[i].location.c_str(), kept.c_str()) == 0)
            r.error += " from '" + infos[i].path.full() + ".check'";
        }
        return true;
      }
    }
    return false;
  };

  if (round > 1) {
    differs(first_round_[drv_path], false);
    if (r.status != build_status::built || round < rounds)
      return r;
    infos = first_round_[drv_path];
    first_round_.erase(drv_path);
  } else if (run.mode == build_mode::check && report.isolated_outputs) {
    std::vector<path_info> registered;
    for (auto& i : infos)
      if (auto reg = store_.db().query_path_info(i.path))
        registered.push_back(*reg);
    differs(registered, true);
    return r;
  } else if (round < rounds) {
    first_round_[drv_path] = infos;
    return r;
  }

  if (run.mode == build_mode::repair && report.isolated_outputs) {
    for (auto& o : outs)
      store_.replace_contents(o.path, o.location);
  }
  register_build_outputs(store_, infos, keys_);
  return r;
}

} // namespace kiln
