// The environment a builder starts with, as the reference design sets it:
// a pure plan from the derivation and settings, so it is tested without
// running anything. The executor (and the sandbox issue) apply it.
#pragma once

#include "store/format/derivation.hpp"

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace kiln::sandbox {

struct builder_env_options {
  std::string store_dir = "/nix/store";
  // Where the builder sees its build directory: a fixed "/build" inside a
  // sandbox (for determinism), the real temporary directory otherwise.
  std::string build_dir = "/build";
  unsigned cores = 1;
  // The host's environment, read only for a fixed-output derivation's
  // impureEnvVars.
  std::function<std::optional<std::string>(const std::string&)> host_env;
  // exportReferencesGraph: what the store exports for these paths
  // (store/local/closure.hpp's export_references), as registration text or, for
  // structured attributes, as JSON. Called only if asked; throws for a path
  // outside the derivation's input closure.
  std::function<std::string(const std::vector<std::string>& store_paths, bool json)> export_references;
};

struct builder_env {
  std::map<std::string, std::string> vars;
  // Files to create in the build directory before the builder starts:
  // passAsFile's ".attr-<hash>" files and exportReferencesGraph's files.
  std::map<std::string, std::string> files;
};

// Throws format_error for a malformed exportReferencesGraph (odd number of
// words, a bad file name, a path outside the store).
builder_env plan_builder_env(const derivation& drv, const builder_env_options& options);

} // namespace kiln::sandbox
