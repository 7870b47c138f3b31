#include "store/format/derivation_json.hpp"

#include "store/format/json_append.hpp"

#include <set>

#include "store/format/derivation_hash.hpp"
#include "store/io/error.hpp"

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
    append_new_key(outputs, name, std::move(o)); // the map's keys are unique
  }
  json input_drvs = json::object();
  for (auto& [path, wanted] : drv.input_drvs)
    append_new_key(input_drvs, path, wanted);
  json body = json::object();
  body["outputs"] = std::move(outputs);
  body["inputSrcs"] = drv.input_srcs;
  body["inputDrvs"] = std::move(input_drvs);
  body["system"] = drv.platform;
  body["builder"] = drv.builder;
  body["args"] = drv.args;
  json env = json::object();
  for (auto& [k, v] : drv.env)
    append_new_key(env, k, v);
  body["env"] = std::move(env);
  json doc = json::object();
  doc[drv_path] = std::move(body);
  return doc.dump(2, ' ', false, json::error_handler_t::replace);
}

namespace {

using json = nlohmann::json;

class json_reader {
public:
  explicit json_reader(std::string_view where) : where_(where) {}

  [[noreturn]] void fail(const std::string& field, const std::string& problem) const {
    throw format_error(std::string(where_) + ": " + field + ": " + problem);
  }
  const json& object(const json& j, const std::string& field) const {
    if (!j.is_object())
      fail(field, "expected an object");
    return j;
  }
  std::string string(const json& j, const std::string& field) const {
    if (!j.is_string())
      fail(field, "expected a string");
    return j.get<std::string>();
  }
  std::vector<std::string> strings(const json& j, const std::string& field) const {
    if (!j.is_array())
      fail(field, "expected an array of strings");
    std::vector<std::string> out;
    for (std::size_t i = 0; i < j.size(); ++i)
      out.push_back(string(j[i], field + "[" + std::to_string(i) + "]"));
    return out;
  }
  std::string store_path_text(const json& j, const std::string& field) const {
    std::string s = string(j, field);
    try {
      parse_store_path(s);
    } catch (const format_error& e) {
      fail(field, e.what());
    }
    return s;
  }

private:
  std::string_view where_;
};

} // namespace

std::pair<derivation, std::string> derivation_from_json(std::string_view text, std::string_view where) {
  json_reader r(where);
  json doc;
  try {
    doc = json::parse(text);
  } catch (const json::parse_error& e) {
    throw format_error(std::string(where) + ": not valid JSON: " + e.what());
  }
  r.object(doc, "the document");
  // `nix show-derivation` output: one key, the .drv path, holding the body.
  if (doc.size() == 1 && doc.begin().key().size() > 4 && doc.begin().key().rfind(".drv") == doc.begin().key().size() - 4)
    doc = json(doc.begin().value());
  r.object(doc, "the derivation");
  derivation d;
  std::string name;
  static const std::set<std::string> known = {"name", "outputs", "inputSrcs", "inputDrvs",
                                              "system", "builder", "args", "env"};
  for (auto& [key, value] : doc.items())
    if (!known.count(key))
      r.fail("\"" + key + "\"", "unknown field");
  for (const char* required : {"outputs", "system", "builder"})
    if (!doc.contains(required))
      r.fail(std::string("\"") + required + "\"", "missing");
  for (auto& [out_name, o] : r.object(doc["outputs"], "\"outputs\"").items()) {
    std::string field = "outputs." + out_name;
    r.object(o, field);
    derivation_output out;
    for (auto& [key, value] : o.items()) {
      if (key == "path")
        out.path = r.store_path_text(value, field + ".path");
      else if (key == "hashAlgo")
        out.hash_algo = r.string(value, field + ".hashAlgo");
      else if (key == "hash")
        out.hash = r.string(value, field + ".hash");
      else
        r.fail(field + "." + key, "unknown field");
    }
    if (out.hash_algo.empty() != out.hash.empty())
      r.fail(field, "\"hashAlgo\" and \"hash\" go together");
    if (out.is_fixed()) {
      try {
        out.fixed_hash();
      } catch (const format_error& e) {
        r.fail(field, e.what());
      }
    }
    d.outputs.emplace(out_name, out);
  }
  if (d.outputs.empty())
    r.fail("\"outputs\"", "a derivation needs at least one output");
  if (doc.contains("inputSrcs"))
    for (auto& src : r.strings(doc["inputSrcs"], "inputSrcs"))
      d.input_srcs.insert(r.store_path_text(src, "inputSrcs"));
  if (doc.contains("inputDrvs"))
    for (auto& [drv_path, outs] : r.object(doc["inputDrvs"], "inputDrvs").items()) {
      std::string field = "inputDrvs." + drv_path;
      if (!r.store_path_text(drv_path, field).empty() && drv_path.rfind(".drv") != drv_path.size() - 4)
        r.fail(field, "not a .drv path");
      auto names = r.strings(outs, field);
      if (names.empty())
        r.fail(field, "name at least one output of the input derivation");
      d.input_drvs[drv_path] = std::set<std::string>(names.begin(), names.end());
    }
  d.platform = r.string(doc["system"], "system");
  d.builder = r.string(doc["builder"], "builder");
  if (doc.contains("args"))
    d.args = r.strings(doc["args"], "args");
  if (doc.contains("env"))
    for (auto& [k, v] : r.object(doc["env"], "env").items())
      d.env[k] = r.string(v, "env." + k);
  if (doc.contains("name"))
    name = r.string(doc["name"], "name");
  else if (d.env.count("name"))
    name = d.env.at("name");
  else
    r.fail("\"name\"", "missing (give \"name\" or env.name)");
  try {
    check_store_path_name(name + ".drv");
  } catch (const format_error& e) {
    r.fail("\"name\"", e.what());
  }
  return {std::move(d), std::move(name)};
}

void fill_output_paths(derivation& drv, std::string_view name, derivation_hasher& hasher) {
  // As Nix writes a .drv: every output has an env var of its name, blank
  // while hashing (the masked form must contain the key).
  derivation blank = drv;
  for (auto& [out_name, out] : blank.outputs) {
    out.path.clear();
    blank.env[out_name] = "";
  }
  auto paths = compute_output_paths(blank, name, hasher);
  for (auto& [out_name, p] : paths) {
    auto& out = drv.outputs.at(out_name);
    if (!out.path.empty() && out.path != p.full())
      throw format_error("output '" + out_name + "' is given as " + out.path + ", but its content implies " +
                         p.full());
    out.path = p.full();
    drv.env[out_name] = p.full();
  }
}

} // namespace kiln
