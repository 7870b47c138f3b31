// `kiln store gc` and `kiln store delete`: the collector from the command line.
#include "store/io/error.hpp"
#include "store/local/gc.hpp"
#include "store/format/settings.hpp"
#include "tools/kiln/commands.hpp"
#include "tools/kiln/store_cli.hpp"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <iostream>

namespace kiln::cmd {

extern const char* store_usage;

namespace {

void print_summary(const gc_result& r, bool json, const char* key) {
  if (json) {
    nlohmann::ordered_json j;
    j[key] = r.paths;
    j["bytesFreed"] = r.bytes_freed;
    j["linksRemoved"] = r.links_removed;
    j["rootsFromSocket"] = r.roots_from_socket;
    std::cout << j.dump() << '\n';
    return;
  }
  char mib[32];
  std::snprintf(mib, sizeof mib, "%.2f", static_cast<double>(r.bytes_freed) / (1024.0 * 1024.0));
  std::cout << r.paths.size() << " store paths deleted, " << mib << " MiB freed\n";
}

// Progress on stderr, so stdout stays the summary (or the JSON).
void report_deletion(const std::string& line) {
  std::cerr << line << '\n';
}

gc_options options_from(const cli::parsed_args& a) {
  settings s = load_settings(a);
  gc_options o;
  o.keep_outputs = s.get_bool("keep-outputs");
  o.keep_derivations = s.get_bool("keep-derivations");
  return o;
}

} // namespace

int store_gc(const std::vector<std::string>& args) {
  auto a = cli::parse(args,
                      {store_option, cli::setting_option, {"--json"}, {"--print-roots"}, {"--print-live"},
                       {"--print-dead"}, {"--max-freed", true}},
                      store_usage);
  cli::expect_positional(a, 0, 0, "");
  gc_options o = options_from(a);
  int modes = a.has("--print-roots") + a.has("--print-live") + a.has("--print-dead");
  if (modes > 1)
    throw cli::usage_error("--print-roots, --print-live and --print-dead exclude each other");
  if (modes && a.values.count("--max-freed"))
    throw cli::usage_error("--max-freed only applies when deleting");
  o.action = a.has("--print-roots")  ? gc_action::print_roots
             : a.has("--print-live") ? gc_action::print_live
             : a.has("--print-dead") ? gc_action::print_dead
                                     : gc_action::delete_dead;
  if (a.values.count("--max-freed"))
    o.max_freed = parse_size_setting(a.values.at("--max-freed"), "--max-freed");
  bool json = a.has("--json");
  auto store = open_any_store(a);
  auto r = store->collect_garbage(o, json ? gc_progress{} : report_deletion);
  switch (o.action) {
  case gc_action::print_roots:
    if (json) {
      nlohmann::ordered_json j = nlohmann::ordered_json::object();
      for (auto& [p, links] : r.roots)
        j[p.full()] = links;
      std::cout << j.dump() << '\n';
    } else {
      for (auto& [p, links] : r.roots)
        for (auto& l : links)
          std::cout << l << " -> " << p.full() << '\n';
    }
    break;
  case gc_action::print_live:
  case gc_action::print_dead:
    if (json)
      std::cout << nlohmann::json(r.paths).dump() << '\n';
    else
      for (auto& p : r.paths)
        std::cout << p << '\n';
    break;
  default:
    print_summary(r, json, "deleted");
  }
  return 0;
}

int store_delete(const std::vector<std::string>& args) {
  auto a = cli::parse(args, {store_option, cli::setting_option, {"--json"}}, store_usage);
  cli::expect_positional(a, 1, SIZE_MAX, "PATH to delete");
  gc_options o = options_from(a);
  o.action = gc_action::delete_specific;
  auto store = open_any_store(a);
  for (auto& t : a.positional)
    o.paths.insert(parse_any_path(*store, t));
  auto r = store->collect_garbage(o, a.has("--json") ? gc_progress{} : report_deletion);
  print_summary(r, a.has("--json"), "deleted");
  return 0;
}

} // namespace kiln::cmd
