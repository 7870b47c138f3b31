// A build's result (BuildResult) as the protocol carries it: in
// BuildDerivation's reply, and after each derived path in
// BuildPathsWithResults'. Which fields come depends on the version: the
// times and the determinism flag from 1.29, the outputs built from 1.28,
// the CPU times (each optional) from 1.37.
#pragma once

#include "store/daemon/shapes.hpp"

#include <optional>
#include <string>
#include <vector>

namespace kiln::daemon {

struct wire_build_result {
  uint64_t status = 9; // Nix's numbers: 0 Built, 1 Substituted, 2 AlreadyValid, 3 PermanentFailure, ...
  std::string error;
  uint64_t times_built = 0;
  bool non_deterministic = false;
  uint64_t start_time = 0, stop_time = 0;         // unix seconds
  std::optional<uint64_t> cpu_user_us, cpu_system_us; // the build's CPU time, where it was measured
  string_pairs built_outputs;                      // DrvOutput id -> Realisation JSON
};

// The layout at `version`, for reading replies (replies.cpp).
std::vector<part> build_result_parts(uint64_t version);
// Reads a result from args[pos...] as build_result_parts(version) laid
// them out, advancing pos.
wire_build_result build_result_from(const std::vector<argument>& args, std::size_t& pos, uint64_t version);
void append_build_result(std::vector<argument>& args, const wire_build_result& r, uint64_t version);

} // namespace kiln::daemon
