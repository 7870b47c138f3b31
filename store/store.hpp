// The store interface (design.md, "Store"): what a store does, whoever
// holds it. The local store implements it on its database and directory;
// the daemon's sessions serve it to Nix clients; the daemon-client store
// and the binary-cache stores are the other implementations to come.
// Everything crossing it is a plain value defined here, so a caller needs
// nothing of any implementation.
#pragma once

#include "store/format/hash.hpp"
#include "store/format/path_info.hpp"
#include "store/format/store_path.hpp"
#include "store/io/stream.hpp"

#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace kiln {

// What a substituter knows of a path it can supply.
struct substitutable_info {
  store_path_set references;
  uint64_t download_size = 0;
  uint64_t nar_size = 0;
  std::optional<store_path> deriver;
};

// Asks the configured substituters about paths (store/cache's
// substituter_set). Returns the subset they can supply.
using substitutable_query = std::function<std::map<store_path, substitutable_info>(const store_path_set&)>;

// A wanted target: a derivation's outputs (empty = all), or a plain path
// when `outputs` is unset.
struct wanted_path {
  store_path path;
  std::optional<std::set<std::string>> outputs; // set => `path` is a .drv

  static wanted_path opaque(store_path p) { return {std::move(p), std::nullopt}; }
  static wanted_path built(store_path drv, std::set<std::string> outs = {}) {
    return {std::move(drv), std::move(outs)};
  }
};

struct missing_plan {
  store_path_set will_build;      // .drv paths
  store_path_set will_substitute; // output or source paths
  store_path_set unknown;
  uint64_t download_size = 0;
  uint64_t nar_size = 0;
  // Derivation targets whose wanted outputs are all valid already, with
  // every output path the derivation names (output name -> path).
  std::map<store_path, std::map<std::string, store_path>> satisfied;
};

// store path -> the links that root it.
using gc_root_map = std::map<store_path, std::set<std::string>>;

enum class gc_action { print_roots, print_live, print_dead, delete_dead, delete_specific };

struct gc_options {
  gc_action action = gc_action::delete_dead;
  store_path_set paths;            // for delete_specific
  uint64_t max_freed = std::numeric_limits<uint64_t>::max();
  bool keep_outputs = false;       // outputs of live derivations are live
  bool keep_derivations = true;    // derivers of live paths are live
};

// The collector's progress as Nix prints it, a line at a time
// ("finding garbage collector roots...", "deleting '/nix/store/...'").
using gc_progress = std::function<void(const std::string& line)>;

struct gc_result {
  // The live or dead paths (printing), or what was deleted, sorted; paths
  // in the store directory that were never valid are included as /nix/store/NAME.
  std::vector<std::string> paths;
  gc_root_map roots;                  // permanent and temporary ("{temp:PID}")
  uint64_t bytes_freed = 0;
  std::size_t links_removed = 0;      // unused .links entries
  std::size_t roots_from_socket = 0;  // temp roots other processes sent while it ran
};

struct optimise_result {
  uint64_t files_seen = 0;
  uint64_t files_linked = 0; // replaced by a link to an identical file
  uint64_t bytes_saved = 0;  // sizes of the replaced files whose last other name went
  uint64_t repaired = 0;     // directories found opened up (by a killed run) and restored
};

struct verify_problem {
  store_path path;
  std::string problem; // "missing", "hash mismatch: ...", ...
  // A path whose contents changed: the recorded NAR hash and the one found
  // (prefixed base32, as Nix prints them); empty for other problems.
  std::string expected_hash, actual_hash;
};

// How added content becomes a path (Nix's ContentAddressMethod): a text
// path (.drv files, builtins.toFile), a flat file, or a NAR.
enum class content_method { text, flat, recursive };

class store {
public:
  virtual ~store() = default;

  // Queries. Unknown paths are not errors: false, nullopt, empty.
  virtual bool is_valid(const store_path& p) = 0;
  virtual std::optional<path_info> query_path_info(const store_path& p) = 0;
  virtual store_path_set query_valid_paths(const store_path_set& paths);
  virtual store_path_set query_referrers(const store_path& p) = 0;
  // Valid .drv paths that name `p` as an output.
  virtual store_path_set query_valid_derivers(const store_path& p) = 0;
  // A valid .drv's outputs by name.
  virtual std::map<std::string, store_path> query_derivation_outputs(const store_path& drv) = 0;
  virtual std::vector<store_path> query_all_valid_paths() = 0;
  virtual std::optional<store_path> query_path_from_hash_part(std::string_view hash_part) = 0;
  virtual missing_plan query_missing(const std::vector<wanted_path>& targets) = 0;

  // Adding. `data` is what `method` names: the text, the file's bytes, or
  // the NAR; `algo` hashes it for the path (text: sha256 only).
  // `references` are a text path's (they must be valid).
  virtual path_info add_to_store(std::string_view name, content_method method, hash_algo algo, source& data,
                                 const store_path_set& references) = 0;
  // A NAR whose record is known in advance; its hash and size must match.
  virtual path_info add_nar(source& nar, path_info info) = 0;
  // Writes a valid path's NAR; throws for an invalid one.
  virtual void nar_from_path(const store_path& p, sink& out) = 0;
  virtual void add_signatures(const store_path& p, const std::set<std::string>& sigs) = 0;

  // Roots and collection.
  virtual void add_temp_root(const store_path& p) = 0;
  // Makes `link` (an absolute symlink outside the store) a root.
  virtual void add_indirect_root(const std::string& link) = 0;
  virtual gc_root_map find_roots() = 0;
  virtual gc_result collect_garbage(const gc_options& options, const gc_progress& progress = {}) = 0;

  // Maintenance.
  virtual optimise_result optimise() = 0;
  // Every valid path checked (contents too with `check_contents`).
  virtual std::vector<verify_problem> verify(bool check_contents) = 0;
  // A derivation's build log, if there is one.
  virtual std::optional<std::string> build_log(const store_path& drv) = 0;
};

// A NAR that is not what its record says: Nix's message ("hash mismatch
// importing path ..."), or the sizes that differ.
[[noreturn]] void throw_nar_mismatch(const path_info& expected, const hash& got, uint64_t got_size);

// Every path reachable from `roots` through `next_of` (references, or
// referrers), in topological order (references first), ties broken by
// name, so every store gives the same order for the same graph.
std::vector<store_path> closure_order(const store_path_set& roots,
                                      const std::function<store_path_set(const store_path&)>& next_of,
                                      bool referrers = false);
// The same over any store; a root that is not valid is an error.
std::vector<store_path> compute_closure(store& s, const store_path_set& roots, bool referrers = false);

} // namespace kiln
