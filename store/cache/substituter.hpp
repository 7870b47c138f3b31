// A substituter: a store paths are fetched from instead of being built
// (another local store, a binary cache). The walk over a path's closure is
// copy.hpp's; this adds what substitution asks of it: signatures checked
// before anything is copied, and an outcome the engine can act on.
#pragma once

#include "store/format/signature.hpp"
#include "store/cache/store_uri.hpp"
#include "store/copy.hpp"
#include "store/local/local_store.hpp"
#include "store/local/substitute_outcome.hpp"
#include "store/store.hpp"

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace kiln {

class substituter {
public:
  // `trusted`: its paths need no signature (`?trusted=1`). `priority`:
  // lower is tried first (a cache's nix-cache-info Priority, or ?priority=).
  substituter(std::string uri, bool trusted, int priority, std::unique_ptr<store> from)
    : uri_(std::move(uri)), trusted_(trusted), priority_(priority), from_(std::move(from)) {}
  const std::string& uri() const { return uri_; }
  int priority() const { return priority_; }

  // Makes `path` (and whatever it refers to) valid in `dest`, or says why
  // not: a path of the closure is absent, or (unless the substituter is
  // trusted or `require_sigs` is off) not signed by any of `keys` and not
  // content-addressed. Copy errors (content that does not match its
  // record) throw, leaving nothing of that path behind.
  substitute_outcome substitute(store& dest, const store_path& path, const trusted_keys& keys, bool require_sigs);
  // What substitute() would find without copying anything: `available`
  // when it has the closure (lookups only) and it is signed as required.
  substitute_outcome probe(store& dest, const store_path& path, const trusted_keys& keys, bool require_sigs);
  // --repair: a path valid in `dest` (a local store) but damaged gets the
  // contents the substituter has for it, if those hash to what `dest`
  // records (and are signed as above); its references are left alone.
  substitute_outcome repair(local_store& dest, const store_path& path, const trusted_keys& keys, bool require_sigs);

  // What it could supply of `paths` (signatures not checked: that is for
  // the substitution), with the download's size where the substituter
  // knows it (a cache's FileSize; a store's NarSize).
  std::map<store_path, substitutable_info> query(const store_path_set& paths);

private:
  substitute_outcome unsigned_outcome(const store_path& p) const;
  // The copy `path` needs, or why there is none (`available` if there is).
  substitute_outcome plan(store& dest, const store_path& path, const trusted_keys& keys, bool require_sigs,
                          copy_plan& plan);

  std::string uri_;
  bool trusted_;
  int priority_;
  std::unique_ptr<store> from_;
};

// A configuration's substituters, all opened on first use and then
// taken in priority order (lower first; ties in the order configured), as
// Nix orders them. One that cannot be opened is passed over.
class substituter_set {
public:
  substituter_set(std::vector<std::string> uris, cache_client_settings remote)
    : uris_(std::move(uris)), remote_(std::move(remote)) {}
  // Substituter number `index` (in priority order) tries to substitute
  // `path`, as substituter::substitute; one that could not be opened says
  // why once (unusable), and is absent after that.
  substitute_outcome substitute(std::size_t index, store& dest, const store_path& path, const trusted_keys& keys,
                                bool require_sigs, bool repair = false);
  // Whether substituter `index` has `path` to give, as substituter::probe.
  substitute_outcome probe(std::size_t index, store& dest, const store_path& path, const trusted_keys& keys,
                           bool require_sigs);
  std::size_t size() const { return uris_.size(); }
  // What they can supply of `paths`, each path from the first that has it:
  // Nix's querySubstitutablePathInfos, and what "will be fetched" counts.
  std::map<store_path, substitutable_info> query(const store_path_set& paths);
  // What each has of `paths` (in priority order), all asked at once; a
  // remote cache's answers are remembered in the lookup cache for its TTL.
  std::vector<std::map<store_path, substitutable_info>> ask_all(const store_path_set& paths);
  substitutable_query as_query() {
    return [this](const store_path_set& paths) { return query(paths); };
  }

private:
  void open_all();
  // Why substituter `index` cannot be used (said once: `unusable`, then
  // `absent`), or nothing if it can.
  std::optional<substitute_outcome> usable(std::size_t index);
  struct entry {
    std::unique_ptr<substituter> sub;
    std::string unusable; // why it could not be opened
    bool said = false;    // ... and that was told
  };
  std::vector<std::string> uris_;
  cache_client_settings remote_;
  bool opened_ = false;
  std::vector<entry> entries_; // in priority order
};

// The substituter a `substituters` entry names: a local store (local:DIR,
// /DIR, ...) or a binary cache (file:///DIR, http(s)://...), opened:
// throws if there is nothing there, or for a URI of a kind not supported.
std::unique_ptr<substituter> make_substituter(const std::string& uri, const cache_client_settings& remote = {});

} // namespace kiln
