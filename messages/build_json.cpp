#include "messages/build_json.hpp"

#include "store/io/error.hpp"

namespace kiln {

nlohmann::ordered_json build_result_json(const build_result& r) {
  nlohmann::ordered_json j;
  j["path"] = r.path;
  j["status"] = std::string(to_string(r.status));
  j["success"] = is_success(r.status);
  j["errorMsg"] = r.error;
  j["timesBuilt"] = r.times_built;
  j["startTime"] = r.start_time;
  j["stopTime"] = r.stop_time;
  j["builtOutputs"] = r.outputs;
  j["topLevel"] = r.top_level;
  if (r.times_built) {
    j["cpuUserMicros"] = r.cpu_user_us;
    j["cpuSystemMicros"] = r.cpu_system_us;
    j["peakMemoryBytes"] = r.peak_memory;
  }
  if (r.hash_mismatch)
    j["hashMismatch"] = true;
  return j;
}

namespace {

template <class T>
T field(const nlohmann::json& j, const char* name, T fallback) {
  auto it = j.find(name);
  if (it == j.end())
    return fallback;
  try {
    return it->get<T>();
  } catch (const nlohmann::json::exception&) {
    throw format_error(std::string("build result: field '") + name + "' has the wrong type");
  }
}

} // namespace

build_result build_result_from_json(const nlohmann::json& j) {
  if (!j.is_object())
    throw format_error("build result: not a JSON object");
  build_result r;
  r.path = field<std::string>(j, "path", "");
  std::string status = field<std::string>(j, "status", "");
  bool known = false;
  for (uint8_t s = 0; s <= static_cast<uint8_t>(build_status::not_deterministic); ++s)
    if (to_string(static_cast<build_status>(s)) == status) {
      r.status = static_cast<build_status>(s);
      known = true;
    }
  if (!known)
    throw format_error("build result: unknown status '" + status + "'");
  r.error = field<std::string>(j, "errorMsg", "");
  r.times_built = field<uint32_t>(j, "timesBuilt", 0);
  r.start_time = field<int64_t>(j, "startTime", 0);
  r.stop_time = field<int64_t>(j, "stopTime", 0);
  r.outputs = field<std::map<std::string, std::string>>(j, "builtOutputs", {});
  r.top_level = field<bool>(j, "topLevel", false);
  r.cpu_user_us = field<uint64_t>(j, "cpuUserMicros", 0);
  r.cpu_system_us = field<uint64_t>(j, "cpuSystemMicros", 0);
  r.peak_memory = field<uint64_t>(j, "peakMemoryBytes", 0);
  r.hash_mismatch = field<bool>(j, "hashMismatch", false);
  return r;
}

} // namespace kiln
