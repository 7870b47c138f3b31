// A local store: contents under layout.store_dir(), metadata in store_db.
//
// Adding a path never leaves it half-there. The steps, each a crash point:
//   0. add PATH and its references as temp roots (gc.hpp), check references
//   1. lock PATH (path_lock), re-check validity (another process may have won)
//   2. record the add in pending/<base name>          (journal)
//   3. write the content under a temporary name in the store directory,
//      hashing it as it is written; check the hash against what is expected
//   4. canonicalise, fsync, rename into place, fsync the store directory
//   5. register in one transaction, then drop the journal entry
// Opening the store finishes the journal: for every entry whose lock is
// free, an unregistered path and its temporaries are deleted.
#pragma once

#include "store/format/path_info.hpp"
#include "store/store.hpp"
#include "store/local/store_db.hpp"
#include "store/local/store_layout.hpp"
#include "store/io/stream.hpp"

#include <functional>
#include <memory>
#include <optional>
#include <string>

namespace kiln {

struct derivation;
class temp_roots;

class local_store : public store {
public:
  // Creates the layout's directories if missing, opens the database and
  // cleans up after interrupted adds.
  // `roots` holds the temp roots this store's adds make; by default the
  // process's own file (temp_roots::for_store).
  explicit local_store(store_layout layout, std::shared_ptr<temp_roots> roots = nullptr);

  const store_layout& layout() const { return layout_; }
  // The temp roots this store's adds register (a kilnd session's own;
  // null: the process's), for other connections working on its behalf.
  const std::shared_ptr<temp_roots>& roots() const { return roots_; }
  store_db& db() { return db_; }
  // Where a store path's content lives on disk.
  std::string real_path(const store_path& p) const;
  // Parses a path given as /nix/store/... or as its real location.
  store_path parse_path(const std::string& text) const;

  // `nix-store --add` (recursive, sha256) and `nix-store --add-fixed`.
  // `name` defaults to the source's base name.
  path_info add_path(const std::string& source_path,
                     ingestion_method method = ingestion_method::recursive,
                     hash_algo algo = hash_algo::sha256,
                     std::optional<std::string> name = std::nullopt);
  // builtins.toFile: a text path with the given references (must be valid).
  path_info add_text(std::string_view name, std::string_view contents,
                     const store_path_set& references);
  // A .drv (`name`.drv), with its input sources and derivations as
  // references (all must be valid) and its outputs recorded.
  path_info add_derivation(const derivation& drv, std::string_view name);
  // A NAR whose metadata is known in advance (substitution, the daemon
  // protocol, import). The NAR's hash and size must match `info`.
  path_info add_nar(source& nar, path_info info) override;
  // Adds many paths at once (a substitution's or a copy's closure, in
  // order, references first): each NAR, which `write_nar` produces from
  // the record, is checked as add_nar checks it, and all are made durable
  // together and registered in one transaction. If one fails, the paths
  // before it are added and nothing of it or of those after it is.
  // Returns the paths added (not those that were valid already).
  std::vector<store_path> add_nars(const std::vector<path_info>& infos,
                                   const std::function<void(const path_info&, sink&)>& write_nar);
  // Repair: gives a valid path (whose contents are damaged) the contents
  // of the NAR `write_nar` produces, which must hash to its registered
  // NarHash; the record stays. A path that is not valid is added.
  path_info repair_path(const path_info& info, const std::function<void(sink&)>& write_nar);
  // Puts the tree at `fresh` (in the store directory) in place of `p`'s
  // contents: the old copy is moved aside, the new one in, the old removed.
  void replace_contents(const store_path& p, const std::string& fresh);

  // Keeps `p` from the garbage collector until this process exits (Nix's
  // temp roots; every add roots its path and references itself).
  void add_temp_root(const store_path& p) override;
  void add_temp_roots(const std::vector<store_path>& paths);

  // The rest of the store interface (local_store_api.cpp).
  bool is_valid(const store_path& p) override;
  std::optional<path_info> query_path_info(const store_path& p) override;
  store_path_set query_referrers(const store_path& p) override;
  store_path_set query_valid_derivers(const store_path& p) override;
  std::map<std::string, store_path> query_derivation_outputs(const store_path& drv) override;
  std::vector<store_path> query_all_valid_paths() override;
  std::optional<store_path> query_path_from_hash_part(std::string_view hash_part) override;
  missing_plan query_missing(const std::vector<wanted_path>& targets) override;
  path_info add_to_store(std::string_view name, content_method method, hash_algo algo, source& data,
                         const store_path_set& references) override;
  void nar_from_path(const store_path& p, sink& out) override;
  void add_signatures(const store_path& p, const std::set<std::string>& sigs) override;
  void add_indirect_root(const std::string& link) override;
  gc_root_map find_roots() override;
  gc_result collect_garbage(const gc_options& options, const gc_progress& progress = {}) override;
  optimise_result optimise() override;
  std::vector<verify_problem> verify(bool check_contents) override;
  std::optional<std::string> build_log(const store_path& drv) override;

  // What the interrupted-add cleanup removed when this store was opened.
  std::size_t cleaned_on_open() const { return cleaned_; }

private:
  std::size_t finish_interrupted_adds();
  // Steps 1-5 above; `write_nar` produces the path's NAR. One path is a
  // batch of one: begin (root, journal, lock), restore, commit (durable,
  // rename, register), or abandon.
  path_info materialise(path_info info, const std::function<void(sink&)>& write_nar);
  struct incoming;
  std::vector<incoming> begin_adds(const std::vector<path_info>& infos);
  void restore_incoming(incoming& in, const std::function<void(sink&)>& write_nar);
  void commit_incoming(std::vector<incoming>& batch);
  // Commits the batch, or (and rethrows) leaves nothing of it.
  void commit_or_abandon(std::vector<incoming>& batch);
  void abandon_incoming(incoming& in);

  store_layout layout_;
  store_db db_;
  std::shared_ptr<temp_roots> roots_;
  std::size_t cleaned_ = 0;
};

} // namespace kiln
