// `kiln copy`: paths and their closures from one store to another, as
// `nix copy` (store/copy.hpp does the work).
#include "store/cache/store_uri.hpp"
#include "store/copy.hpp"
#include "store/io/error.hpp"
#include "tools/kiln/commands.hpp"
#include "tools/kiln/store_cli.hpp"

#include <nlohmann/json.hpp>

#include <iostream>
#include <unistd.h>

namespace kiln::cmd {

namespace {

const char* copy_usage = R"(Usage: kiln copy --to DEST [--store SRC] [OPTIONS] PATH...
       kiln copy --from SRC [--store DEST] [OPTIONS] PATH...

Copies each PATH and everything it refers to from one store to another, as
'nix copy' does: only what the destination lacks, references before the paths
that refer to them, each path's contents checked by the destination against
its hash before it becomes valid there. A failure leaves every path copied
before it in place and nothing of the path that failed.

Stores (for --to, --from and --store):
  local, /DIR, local?root=DIR, local:DIR   a local store (Nix's layout)
  daemon, unix:///PATH                     kilnd or nix-daemon
  file:///DIR                              a binary cache in a directory, as
  http://HOST[:PORT]/PATH, https://...     Nix reads and writes it, or on a web
                                           server (written with PUT); parameters
                                           when writing: compression=xz (the
                                           default), zstd, bzip2 or none;
                                           compression-level=N; secret-key=FILE
                                           to sign every path written
  e.g. kiln copy --to 'file:///srv/cache?compression=zstd&secret-key=key.sec' PATH

Options:
  --to DEST              copy from --store (default: as for 'kiln store') to DEST
  --from SRC             copy from SRC to --store
  --store STORE          the other store
  --no-check-sigs        copy paths into a local store or daemon even when no
                         key in trusted-public-keys signed them (by default
                         such paths are refused unless content-addressed, or
                         require-sigs is false)
  --json                 print {"copied": [PATH...], "present": [PATH...]}
  -v, --verbose          say each path as it is copied
  --option NAME VALUE    a setting: trusted-public-keys, require-sigs,
                         download-attempts, stalled-download-timeout, ...

A source or destination binary cache is read and written through its files
only: it is not asked for referrers, roots or builds.
)";

} // namespace

int copy_command(const std::vector<std::string>& args) {
  auto a = cli::parse(args,
                      {store_option, {"--to", true}, {"--from", true}, {"--no-check-sigs", false}, {"--json", false},
                       {"--verbose", false}, {"-v", false}, cli::setting_option},
                      copy_usage);
  bool to = a.values.count("--to"), from = a.values.count("--from");
  if (to == from)
    throw cli::usage_error("say where to copy: --to DEST or --from SRC (one of them)");
  cli::expect_positional(a, 1, SIZE_MAX, "PATH to copy");
  settings config = load_settings(a);

  std::string other = to ? a.values.at("--to") : a.values.at("--from");
  std::unique_ptr<kiln::store> src, dst;
  std::string src_name, dst_name;
  if (to) {
    src = open_any_store(a);
    dst = open_store_at(other, a, false);
    src_name = a.value_or("--store", "the default store"), dst_name = other;
  } else {
    src = open_store_at(other, a, true);
    dst = open_any_store(a);
    src_name = other, dst_name = a.value_or("--store", "the default store");
  }

  store_path_set roots;
  for (auto& text : a.positional)
    roots.insert(parse_any_path(*src, text));
  copy_plan plan = plan_copy(*src, *dst, roots);
  if (plan.absent)
    throw error("path '" + plan.absent->full() + "' is not in '" + src_name + "'" +
                (plan.wanted_by ? " (it is a reference of '" + plan.wanted_by->full() + "')" : std::string()));

  // The destination's own rule, checked for the whole closure before any
  // of it is copied: a binary cache takes anything, a store only what a
  // trusted key signed (Nix's check-sigs).
  bool check = !a.has("--no-check-sigs") && !is_binary_cache_uri(dst_name) && config.get_bool("require-sigs");
  if (check) {
    trusted_keys keys = make_trusted_keys(config.get_words("trusted-public-keys"));
    for (auto& info : plan.paths)
      if (!trustworthy(info, keys))
        throw error("cannot add path '" + info.path.full() +
                    "' because it lacks a signature by a trusted key (see --no-check-sigs)");
  }

  bool verbose = a.has("--verbose") || a.has("-v");
  bool bar = !verbose && !a.has("--json") && ::isatty(2);
  std::size_t done = 0;
  uint64_t bytes = 0;
  auto copied = copy_paths(*src, *dst, plan.paths, [&](const path_info& info) {
    ++done;
    bytes += info.nar_size;
    if (verbose)
      std::cerr << "copying path '" << info.path.full() << "' to '" << dst_name << "'\n";
    else if (bar)
      std::cerr << "\r[" << done << "/" << plan.paths.size() << "] copying '" << info.path.name() << "'\x1b[K"
                << std::flush;
  });
  if (bar && done)
    std::cerr << "\r\x1b[K";

  if (a.has("--json")) {
    nlohmann::json out{{"copied", nlohmann::json::array()}, {"present", nlohmann::json::array()}};
    store_path_set fresh(copied.begin(), copied.end());
    for (auto& p : copied)
      out["copied"].push_back(p.full());
    for (auto& p : roots)
      if (!fresh.count(p))
        out["present"].push_back(p.full());
    std::cout << out.dump() << '\n';
  } else if (done || verbose) {
    std::cerr << "copied " << copied.size() << " path" << (copied.size() == 1 ? "" : "s") << " ("
              << (bytes < (1 << 20) ? std::to_string((bytes + 1023) / 1024) + " KiB"
                                    : std::to_string((bytes + (1 << 19)) / (1 << 20)) + " MiB")
              << " of NAR) from '" << src_name << "' to '" << dst_name << "'\n";
  }
  return 0;
}

} // namespace kiln::cmd
