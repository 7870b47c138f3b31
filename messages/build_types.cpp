#include "messages/build_types.hpp"

namespace kiln {

std::string_view to_string(build_status s) {
  switch (s) {
  case build_status::built: return "Built";
  case build_status::substituted: return "Substituted";
  case build_status::already_valid: return "AlreadyValid";
  case build_status::permanent_failure: return "PermanentFailure";
  case build_status::input_rejected: return "InputRejected";
  case build_status::output_rejected: return "OutputRejected";
  case build_status::transient_failure: return "TransientFailure";
  case build_status::timed_out: return "TimedOut";
  case build_status::misc_failure: return "MiscFailure";
  case build_status::dependency_failed: return "DependencyFailed";
  case build_status::log_limit_exceeded: return "LogLimitExceeded";
  case build_status::not_deterministic: return "NotDeterministic";
  }
  return "Unknown";
}

std::string export_key(const std::vector<std::string>& paths, bool json) {
  std::string key = json ? "json" : "text";
  for (auto& p : paths)
    key += " " + p;
  return key;
}

bool is_success(build_status s) {
  return s == build_status::built || s == build_status::substituted || s == build_status::already_valid;
}

bool covers_outputs(const std::set<std::string>& wanted, const std::set<std::string>& asked) {
  if (wanted.empty())
    return true;
  if (asked.empty())
    return false;
  for (auto& o : asked)
    if (!wanted.count(o))
      return false;
  return true;
}

void merge_outputs(std::set<std::string>& wanted, const std::set<std::string>& more) {
  if (wanted.empty())
    return; // already all of them
  if (more.empty())
    wanted.clear();
  else
    wanted.insert(more.begin(), more.end());
}

build_result cancelled_result(const std::string& drv_path) {
  build_result r;
  r.path = drv_path;
  r.status = build_status::misc_failure;
  r.error = "build of '" + drv_path + "' cancelled: another build failed (--keep-going builds what it can)";
  r.cancelled = true;
  return r;
}

namespace {
constexpr std::pair<build_status, uint64_t> nix_numbers[] = {
    {build_status::built, 0},           {build_status::substituted, 1},       {build_status::already_valid, 2},
    {build_status::permanent_failure, 3}, {build_status::input_rejected, 4},  {build_status::output_rejected, 5},
    {build_status::transient_failure, 6}, {build_status::timed_out, 8},       {build_status::misc_failure, 9},
    {build_status::dependency_failed, 10}, {build_status::log_limit_exceeded, 11},
    {build_status::not_deterministic, 12}};
} // namespace

uint64_t nix_status_number(build_status s) {
  for (auto [ours, nix] : nix_numbers)
    if (ours == s)
      return nix;
  return 9;
}

build_status from_nix_status_number(uint64_t n) {
  for (auto [ours, nix] : nix_numbers)
    if (nix == n)
      return ours;
  if (n == 13) // ResolvesToAlreadyValid
    return build_status::already_valid;
  return build_status::misc_failure;
}

int exit_status(const std::vector<build_result>& results) {
  bool failed = false, permanent = false, timed_out = false, mismatch = false, not_deterministic = false;
  for (auto& r : results) {
    failed |= !is_success(r.status);
    permanent |= r.status == build_status::permanent_failure || r.permanent;
    timed_out |= r.status == build_status::timed_out;
    mismatch |= r.hash_mismatch;
    not_deterministic |= r.check_mismatch;
  }
  int mask = 0;
  if (permanent || timed_out || mismatch)
    mask |= 0x04;
  if (timed_out)
    mask |= 0x01;
  if (mismatch)
    mask |= 0x02;
  if (not_deterministic)
    mask |= 0x08;
  if (mask)
    return mask | 0x60;
  return failed ? 1 : 0;
}

} // namespace kiln
