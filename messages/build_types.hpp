// The build vocabulary: what is asked of the engine, how a goal ends, and
// what a builder is given and reports. Plain structs with inspect(), so a
// later issue can move builders into worker processes without changing
// them; only caf/meta is included, so tools can use these without CAF.
#pragma once

#include "caf/meta/type_name.hpp"
#include "sandbox/builder_process.hpp"
#include "store/format/derivation.hpp"
#include "store/local/build_outputs.hpp"
#include "store/local/substitute_outcome.hpp"
#include "store/format/settings.hpp"

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace kiln {

// The reference's twelve BuildResult statuses.
enum class build_status : uint8_t {
  built, substituted, already_valid, permanent_failure, input_rejected, output_rejected,
  transient_failure, timed_out, misc_failure, dependency_failed, log_limit_exceeded,
  not_deterministic
};
// "Built", "AlreadyValid", ... as the reference spells them.
std::string_view to_string(build_status s);
bool is_success(build_status s);
// Nix's BuildResult status numbers (worker-protocol.md §1; 7 is Nix's
// unused CachedFailure, 13 and 14 are newer than Kiln's statuses) and back.
uint64_t nix_status_number(build_status s);
build_status from_nix_status_number(uint64_t n);

struct build_result {
  std::string path;      // the .drv (or store path) the goal was for
  build_status status = build_status::misc_failure;
  std::string error;     // why it failed, with the log tail where there is one
  uint32_t times_built = 0;
  int64_t start_time = 0, stop_time = 0; // unix seconds; 0 if nothing ran
  std::map<std::string, std::string> outputs; // output name -> store path
  bool hash_mismatch = false; // a fixed output came out different (exit code +2)
  bool permanent = false;     // counts as a failed build (exit 100) whatever the status, as Nix's permanentFailure
  bool cancelled = false;     // stopped because another build failed (no -k): not a failure of its own
  bool check_mismatch = false; // --check found different outputs (exit code +4)
  bool top_level = false;     // asked for on the command line
  // The build's whole process tree (its control group), when one ran.
  uint64_t cpu_user_us = 0, cpu_system_us = 0, peak_memory = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, build_result& x) {
  uint8_t& status = reinterpret_cast<uint8_t&>(x.status);
  return f(caf::meta::type_name("build_result"), x.path, status, x.error, x.times_built,
           x.start_time, x.stop_time, x.outputs, x.hash_mismatch, x.permanent, x.cancelled, x.check_mismatch, x.top_level, x.cpu_user_us,
           x.cpu_system_us, x.peak_memory);
}

// The reference's exit status over a run's results: 1 for any other
// failure, else 100 + 1 (timed out) + 2 (hash mismatch) + 4 (not
// deterministic); 0 when everything succeeded.
int exit_status(const std::vector<build_result>& results);

enum class build_mode : uint8_t { normal, repair, check, hash };

// Everything about how to build that the command line and kiln.conf set.
struct build_options {
  build_mode mode = build_mode::normal;
  uint32_t repeat = 0;        // extra rounds to compare (--repeat)
  uint32_t max_jobs = 1;
  uint32_t cores = 1;
  bool keep_going = false;
  bool keep_failed = false;
  bool print_build_logs = false; // -L
  uint64_t max_silent_time = 0;  // seconds, 0 = none
  uint64_t timeout = 0;          // seconds, 0 = none
  uint64_t max_log_size = 0;     // bytes, 0 = none
  uint32_t log_lines = 25;
  bool log_hint = false; // a failure's log tail ends "For full logs, run 'nix log DRV'." (as Nix's daemon)
  std::string compress_build_log = "zstd";
  std::vector<std::string> secret_key_files;
  std::string post_build_hook;
  std::string build_dir_parent; // where build directories go ("" = $TMPDIR or /tmp)
  std::vector<std::string> substituters;        // local:DIR and file:///DIR, [?trusted=1], tried in order
  std::vector<std::string> trusted_public_keys; // "name:base64"
  bool require_sigs = true;
  bool fallback = false; // build when a substituter failed (not only when none had the path)
  uint32_t max_substitution_jobs = 16; // substitutions at once (their own slots, not max-jobs)
  uint32_t max_build_retries = 2; // a round whose worker process was lost is tried again this often
  // How http(s) caches are fetched (store/io/http.hpp's http_settings).
  uint32_t download_attempts = 5;
  uint32_t stalled_download_timeout = 300; // seconds
  uint32_t connect_timeout = 0;            // seconds, 0 = libcurl's
  std::string netrc_file;
  std::string ssl_cert_file;
  uint64_t narinfo_positive_ttl = 30 * 24 * 3600; // seconds a remote cache's narinfo is believed
  uint64_t narinfo_negative_ttl = 3600;           // ... and its having none
  // The sandbox (sandbox/sandbox_spec.hpp): mode 0 off, 1 relaxed, 2 on.
  uint8_t sandbox = 2;
  bool sandbox_fallback = true;
  std::vector<std::string> sandbox_paths; // sandbox-paths + extra-sandbox-paths words
  std::string sandbox_build_dir = "/build";
  std::vector<std::string> allowed_impure_host_deps;
  std::string pre_build_hook;
  std::string build_users_group;
  uint64_t memory_max = 0, pids_max = 0;
  uint64_t size_max = 0; // build-size-max: bytes of build directory and outputs on disk, 0 = none
  uint32_t cpu_max_percent = 0;
  uint64_t pids_default = 0; // build-pids-max = auto: where it can be enforced
  std::vector<std::string> system_features; // what requiredSystemFeatures may ask for
  // Derivations that came with the request (kilnd's BuildDerivation), by
  // the .drv path they are built under, as ATerm text: read from here, not
  // from the store, where they need not be.
  std::map<std::string, std::string> given_derivations;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, build_options& x) {
  uint8_t& mode = reinterpret_cast<uint8_t&>(x.mode);
  return f(caf::meta::type_name("build_options"), mode, x.repeat, x.max_jobs, x.cores,
           x.keep_going, x.keep_failed, x.print_build_logs, x.max_silent_time, x.timeout,
           x.max_log_size, x.log_lines, x.compress_build_log, x.secret_key_files,
           x.post_build_hook, x.build_dir_parent, x.substituters, x.trusted_public_keys, x.require_sigs, x.fallback,
           x.download_attempts, x.stalled_download_timeout, x.connect_timeout, x.netrc_file, x.ssl_cert_file,
           x.narinfo_positive_ttl, x.narinfo_negative_ttl, x.max_substitution_jobs, x.max_build_retries,
           x.sandbox, x.sandbox_fallback, x.sandbox_paths, x.sandbox_build_dir, x.allowed_impure_host_deps,
           x.pre_build_hook, x.build_users_group, x.memory_max, x.pids_max, x.cpu_max_percent, x.system_features, x.pids_default, x.size_max, x.log_hint,
           x.given_derivations);
}

// DRV^out1,out2 (outputs empty = all of them).
struct goal_request {
  std::string drv_path;
  std::set<std::string> outputs;
};

// Sets of wanted outputs, in which the empty set means all of them.
bool covers_outputs(const std::set<std::string>& wanted, const std::set<std::string>& asked);
void merge_outputs(std::set<std::string>& wanted, const std::set<std::string>& more);

// The result of a goal stopped because another build failed (no --keep-going).
build_result cancelled_result(const std::string& drv_path);

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, goal_request& x) {
  return f(caf::meta::type_name("goal_request"), x.drv_path, x.outputs);
}

} // namespace kiln

namespace kiln::sandbox {

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, mount_step& x) {
  return f(caf::meta::type_name("mount_step"), x.kind, x.source, x.target, x.mode, x.optional, x.source_is_dir);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, cgroup_limits& x) {
  return f(caf::meta::type_name("cgroup_limits"), x.memory_max, x.pids_max, x.cpu_max_percent, x.pids_default);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, sandbox_spec& x) {
  return f(caf::meta::type_name("sandbox_spec"), x.program, x.args, x.env, x.cwd, x.build_dir, x.store_dir,
           x.store_real_dir, x.overlay_upper, x.overlay_work, x.overlay_hide, x.isolated, x.network, x.hostname,
           x.domainname, x.sandbox_uid, x.sandbox_gid, x.host_uid, x.host_gid, x.chroot_store_dir, x.root_dir,
           x.mounts, x.personality, x.seccomp, x.limits, x.file_size_max);
}

} // namespace kiln::sandbox

namespace kiln {

// One run of one builder: the process to start (the executor's own
// description) and the limits it runs under.
struct builder_job {
  std::string drv_path;
  sandbox::sandbox_spec process;
  uint64_t max_silent_time = 0, timeout = 0, max_log_size = 0;
  uint64_t size_max = 0; // bytes on disk of process.build_dir and output_locations together
  uint32_t log_lines = 25;
  std::string notice; // a line for the log before the builder's output (e.g. no sandbox)
  std::vector<std::string> output_locations; // where the outputs appear on the host
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, builder_job& x) {
  return f(caf::meta::type_name("builder_job"), x.drv_path, x.process, x.max_silent_time, x.timeout, x.max_log_size, x.size_max, x.log_lines, x.notice, x.output_locations);
}

// How a builder run ended. `limit` names a limit that killed it.
struct builder_outcome {
  enum limit_kind : uint8_t { none, silent, timeout, log_size, setup_failed, cancelled, disk_size };
  int32_t wait_status = 0;
  uint8_t limit = none;
  std::string message;               // setup failure text, or the limit hit
  std::vector<std::string> log_tail; // the last log-lines lines
  uint64_t cpu_user_us = 0, cpu_system_us = 0, peak_memory = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, builder_outcome& x) {
  return f(caf::meta::type_name("builder_outcome"), x.wait_status, x.limit, x.message, x.log_tail,
           x.cpu_user_us, x.cpu_system_us, x.peak_memory);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, derivation_output& x) {
  return f(caf::meta::type_name("derivation_output"), x.path, x.hash_algo, x.hash);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, derivation& x) {
  return f(caf::meta::type_name("derivation"), x.outputs, x.input_drvs, x.input_srcs, x.platform,
           x.builder, x.args, x.env);
}

// A derivation as its goal needs it: parsed, with its outputs' validity.
struct loaded_derivation {
  std::string drv_path;
  derivation drv;
  std::map<std::string, bool> output_valid; // output name -> valid now
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, loaded_derivation& x) {
  return f(caf::meta::type_name("loaded_derivation"), x.drv_path, x.drv, x.output_valid);
}

// One run of a derivation's builder, as its goal asks the store actor to
// describe it and then to judge it.
struct build_round {
  std::string drv_path;
  derivation drv;
  uint32_t round = 1, rounds = 1; // round counts from 1 (--repeat adds rounds)
  // This goal's mode: only the derivations asked for are checked or hashed;
  // their inputs are realised normally (repair reaches the inputs too).
  build_mode mode = build_mode::normal;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, build_round& x) {
  uint8_t& mode = reinterpret_cast<uint8_t&>(x.mode);
  return f(caf::meta::type_name("build_round"), x.drv_path, x.drv, x.round, x.rounds, mode);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, sandbox_path& x) {
  return f(caf::meta::type_name("sandbox_path"), x.target, x.source, x.optional);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, scanned_output& x) {
  return f(caf::meta::type_name("scanned_output"), x.name, x.path, x.location, x.nar_hash, x.nar_size, x.references,
           x.content_hash);
}

// One build round as the store's side describes it for the builder's side
// (design.md: described where the database is, applied on a worker):
// everything the worker needs, nothing it must ask back for. Paths are the
// host's; a local worker shares the store's file system.
struct build_request {
  build_round run;
  // The build's settings, without what a worker has no use for: secret
  // keys, substituters and their keys, derivations given with the request.
  build_options options;
  std::string store_real_dir; // where the store's paths are on the host
  std::string state_dir;      // nix/var/nix: the build users' locks
  std::string kiln_dir;       // nix/var/kiln: sandbox roots and stores, builds beside the store
  std::string log_path;       // "" = no log file (rounds after the first)
  // The closure of the inputs: what the sandbox shows, and what outputs
  // may refer to (besides each other).
  std::vector<std::string> input_closure;
  // sandbox-paths, a store path's source already resolved to where it
  // lies, and the closure of those store paths (the sandbox shows it too).
  std::vector<sandbox_path> sandbox_paths;
  std::vector<std::string> sandbox_closure;
  // exportReferencesGraph's answers (sandbox/builder_env.hpp), keyed by
  // export_key: the worker plans the same environment with no database.
  std::map<std::string, std::string> exported_references;
  std::map<std::string, bool> output_valid; // output name -> valid (an invalid leftover is removed)
  // Asked to look again first (with the outputs' locks held): the outputs
  // still invalid, and whether the wanted ones had all become valid (then
  // nothing else is described).
  std::vector<std::string> invalid_outputs;
  bool already_valid = false;
};

// The key of an exportReferencesGraph answer in build_request.
std::string export_key(const std::vector<std::string>& paths, bool json);

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, build_request& x) {
  return f(caf::meta::type_name("build_request"), x.run, x.options, x.store_real_dir, x.state_dir, x.kiln_dir,
           x.log_path, x.input_closure, x.sandbox_paths, x.sandbox_closure, x.exported_references, x.output_valid,
           x.invalid_outputs, x.already_valid);
}

// What the builder's side did with a build_request: how the run ended and,
// when it succeeded, each output scanned where it lies. The store's side
// judges it and registers.
struct build_report {
  builder_outcome outcome;
  std::vector<scanned_output> outputs;
  std::string rejected; // an output refused by the scan (output_rejected): why
  std::string failure;  // the worker failed at its own work (preparing, moving, scanning): why
  // Check, repair and later rounds: the outputs lie apart from the store
  // (the store's side moves or compares them there before release).
  bool isolated_outputs = false;
  // Nothing of the round was left to keep (no --keep-failed, outputs in
  // the store): the builder released it before reporting, and has ended.
  bool released = false;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, build_report& x) {
  return f(caf::meta::type_name("build_report"), x.outcome, x.outputs, x.rejected, x.failure, x.isolated_outputs,
           x.released);
}

} // namespace kiln
