#include "store/daemon/build_results.hpp"

#include "store/daemon/protocol.hpp"
#include "store/io/error.hpp"

namespace kiln::daemon {

namespace {

bool has_times(uint64_t v) { return protocol_minor(v) >= 29; }
bool has_outputs(uint64_t v) { return protocol_minor(v) >= 28; }
bool has_cpu(uint64_t v) { return protocol_minor(v) >= 37; }

// An optional duration: a flag, then the microseconds if set.
std::optional<uint64_t> optional_at(const std::vector<argument>& args, std::size_t& pos) {
  uint64_t flag = u64_at(args, pos++);
  if (flag > 1)
    throw format_error("a CPU time's flag is " + std::to_string(flag) + " (0 or 1 expected)");
  if (flag == 0)
    return std::nullopt;
  return u64_at(args, pos++);
}

void append_optional(std::vector<argument>& args, const std::optional<uint64_t>& v) {
  args.emplace_back(uint64_t{v.has_value()});
  if (v)
    args.emplace_back(*v);
}

} // namespace

std::vector<part> build_result_parts(uint64_t version) {
  using k = kind;
  std::vector<part> parts{k::u64, k::str};
  if (has_times(version))
    parts.insert(parts.end(), {k::u64, k::u64, k::u64, k::u64});
  if (has_cpu(version))
    parts.insert(parts.end(), {part(k::optional, {k::u64}), part(k::optional, {k::u64})});
  if (has_outputs(version))
    parts.emplace_back(k::pairs);
  return parts;
}

wire_build_result build_result_from(const std::vector<argument>& args, std::size_t& pos, uint64_t version) {
  wire_build_result r;
  r.status = u64_at(args, pos++);
  r.error = str_at(args, pos++);
  if (has_times(version)) {
    r.times_built = u64_at(args, pos++);
    r.non_deterministic = u64_at(args, pos++) != 0;
    r.start_time = u64_at(args, pos++);
    r.stop_time = u64_at(args, pos++);
  }
  if (has_cpu(version)) {
    r.cpu_user_us = optional_at(args, pos);
    r.cpu_system_us = optional_at(args, pos);
  }
  if (has_outputs(version))
    r.built_outputs = pairs_at(args, pos++);
  return r;
}

void append_build_result(std::vector<argument>& args, const wire_build_result& r, uint64_t version) {
  args.insert(args.end(), {r.status, r.error});
  if (has_times(version))
    args.insert(args.end(), {r.times_built, uint64_t{r.non_deterministic}, r.start_time, r.stop_time});
  if (has_cpu(version)) {
    append_optional(args, r.cpu_user_us);
    append_optional(args, r.cpu_system_us);
  }
  if (has_outputs(version))
    args.emplace_back(r.built_outputs);
}

} // namespace kiln::daemon
