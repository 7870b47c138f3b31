#include "sandbox/system_features.hpp"

#include "sandbox/sandbox_spec.hpp"

#include <algorithm>
#include <set>

namespace kiln::sandbox {

namespace {

std::string braced(const std::set<std::string>& words) {
  std::string out;
  for (auto& w : words)
    out += (out.empty() ? "" : ", ") + w;
  return "{" + out + "}";
}

} // namespace

bool platform_ok(const std::string& platform) {
  return platform == "x86_64-linux" || platform == "i686-linux" || platform == "builtin";
}

std::string default_system_features(bool host_has_kvm) {
  return host_has_kvm ? "benchmark big-parallel kvm nixos-test" : "benchmark big-parallel nixos-test";
}

std::vector<std::string> required_system_features(const derivation& drv) {
  auto list = derivation_string_list(drv, "requiredSystemFeatures");
  std::set<std::string> unique(list.begin(), list.end());
  return {unique.begin(), unique.end()};
}

std::optional<std::string> host_refusal(const derivation& drv, const std::string& drv_path,
                                        const std::vector<std::string>& system_features) {
  auto required = required_system_features(drv);
  std::set<std::string> have(system_features.begin(), system_features.end());
  bool ok = platform_ok(drv.platform) &&
            std::all_of(required.begin(), required.end(), [&](auto& f) { return have.count(f) != 0; });
  if (ok)
    return std::nullopt;
  return "a '" + drv.platform + "' with features " + braced({required.begin(), required.end()}) +
         " is required to build '" + drv_path + "', but I am a 'x86_64-linux' with features " + braced(have);
}

} // namespace kiln::sandbox
