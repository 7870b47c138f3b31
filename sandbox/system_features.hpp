// Whether this machine may build a derivation: its platform, and the
// system features it requires (`requiredSystemFeatures`) against the
// `system-features` setting — Nix's canBuildLocally. Pure.
#pragma once

#include "store/format/derivation.hpp"

#include <optional>
#include <string>
#include <vector>

namespace kiln::sandbox {

// The platforms this machine builds for (the x86_64 default of Nix's
// system and extra-platforms).
bool platform_ok(const std::string& platform);

// Nix's default `system-features`: benchmark, big-parallel, nixos-test,
// and kvm when the host has /dev/kvm.
std::string default_system_features(bool host_has_kvm);

// The features `drv` requires (a sorted, unique list).
std::vector<std::string> required_system_features(const derivation& drv);

// Why `drv` cannot be built here, in Nix's words ("a 'x86_64-linux' with
// features {kvm} is required to build '...', but I am a 'x86_64-linux' with
// features {...}"), or nullopt if it can.
std::optional<std::string> host_refusal(const derivation& drv, const std::string& drv_path,
                                        const std::vector<std::string>& system_features);

} // namespace kiln::sandbox
