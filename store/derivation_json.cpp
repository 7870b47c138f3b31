#include "store/derivation_json.hpp"

#include <nlohmann/json.hpp>

namespace kiln {

std::string derivation_to_json(const derivation& drv, const std::string& drv_path) {
  using json = nlohmann::ordered_json;
  json outputs = json::object();
  for (auto& [name, out] : drv.outputs) {
    json o = json::object();
    if (!out.path.empty())
      o["path"] = out.path;
    if (!out.hash_algo.empty())
      o["hashAlgo"] = out.hash_algo;
    if (!out.hash.empty())
      o["hash"] = out.hash;
    outputs[name] = std::move(o);
  }
  json input_drvs = json::object();
  for (auto& [path, wanted] : drv.input_drvs)
    input_drvs[path] = wanted;
  json body = json::object();
  body["outputs"] = std::move(outputs);
  body["inputSrcs"] = drv.input_srcs;
  body["inputDrvs"] = std::move(input_drvs);
  body["system"] = drv.platform;
  body["builder"] = drv.builder;
  body["args"] = drv.args;
  json env = json::object();
  for (auto& [k, v] : drv.env)
    env[k] = v;
  body["env"] = std::move(env);
  json doc = json::object();
  doc[drv_path] = std::move(body);
  return doc.dump(2, ' ', false, json::error_handler_t::replace);
}

} // namespace kiln
