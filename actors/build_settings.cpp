// Settings to build options: one reading of the settings for every caller
// (the CLI, kilnd, a daemon client's overrides).
#include "actors/build_settings.hpp"

#include "sandbox/sandbox_spec.hpp"

#include <thread>

namespace kiln {

build_options build_options_from(const settings& s) {
  build_options o;
  auto jobs = s.get("max-jobs");
  if (jobs == "auto")
    o.max_jobs = std::max(1u, std::thread::hardware_concurrency());
  else
    o.max_jobs = static_cast<uint32_t>(s.get_number("max-jobs"));
  o.cores = static_cast<uint32_t>(s.get_number("cores"));
  if (o.cores == 0)
    o.cores = std::max(1u, std::thread::hardware_concurrency());
  o.keep_going = s.get_bool("keep-going");
  o.keep_failed = s.get_bool("keep-failed");
  o.repeat = static_cast<uint32_t>(s.get_number("repeat"));
  o.max_silent_time = s.get_number("max-silent-time");
  o.timeout = s.get_number("timeout");
  o.max_log_size = s.get_number("max-log-size");
  o.log_lines = static_cast<uint32_t>(s.get_number("log-lines"));
  o.compress_build_log = s.get("compress-build-log");
  o.secret_key_files = s.get_words("secret-key-files");
  o.post_build_hook = s.get("post-build-hook");
  o.build_dir_parent = s.get("build-dir");
  o.substituters = s.get_words("substituters");
  o.trusted_public_keys = s.get_words("trusted-public-keys");
  o.require_sigs = s.get_bool("require-sigs");
  o.fallback = s.get_bool("fallback");
  o.max_substitution_jobs = static_cast<uint32_t>(s.get_number("max-substitution-jobs"));
  o.max_build_retries = static_cast<uint32_t>(s.get_number("max-build-retries"));
  o.download_attempts = static_cast<uint32_t>(s.get_number("download-attempts"));
  o.stalled_download_timeout = static_cast<uint32_t>(s.get_number("stalled-download-timeout"));
  o.connect_timeout = static_cast<uint32_t>(s.get_number("connect-timeout"));
  o.netrc_file = s.get("netrc-file");
  o.ssl_cert_file = s.get("ssl-cert-file");
  o.narinfo_positive_ttl = s.get_number("narinfo-cache-positive-ttl");
  o.narinfo_negative_ttl = s.get_number("narinfo-cache-negative-ttl");
  const std::string& sb = s.get("sandbox");
  o.sandbox = sb == "false" ? 0 : sb == "relaxed" ? 1 : 2;
  o.sandbox_fallback = s.get_bool("sandbox-fallback");
  o.sandbox_paths = s.get_words("sandbox-paths");
  for (auto& p : s.get_words("extra-sandbox-paths"))
    o.sandbox_paths.push_back(p);
  o.sandbox_build_dir = s.get("sandbox-build-dir");
  o.allowed_impure_host_deps = s.get_words("allowed-impure-host-deps");
  o.pre_build_hook = s.get("pre-build-hook");
  o.build_users_group = s.get("build-users-group");
  o.memory_max = s.get_number("build-memory-max");
  o.size_max = s.get_number("build-size-max");
  if (s.get("build-pids-max") == "auto")
    o.pids_default = sandbox::default_build_pids_max;
  else
    o.pids_max = s.get_number("build-pids-max");
  o.cpu_max_percent = static_cast<uint32_t>(s.get_number("build-cpu-max"));
  o.system_features = s.get_words("system-features");
  return o;
}

} // namespace kiln
