// A substituter that is another local store (`local:DIR`, optionally
// `local:DIR?trusted=1`): paths are copied from it, references first, as
// NARs checked against the hash and size it records. Binary caches are a
// later issue; this is what makes substitution real until then.
#pragma once

#include "store/local/local_store.hpp"
#include "store/format/signature.hpp"
#include "store/local/substitute_outcome.hpp"

#include <memory>
#include <string>

namespace kiln {

class local_substituter {
public:
  // Throws format_error for a URI that is not local:DIR[?trusted=1].
  explicit local_substituter(const std::string& uri);

  const std::string& uri() const { return uri_; }
  // Opens the store; throws if there is none.
  void open() { source(); }

  // Makes `path` (and whatever it refers to) valid in `dest` from this
  // store, or says why not: a path of the closure is absent, or (unless
  // the substituter is trusted or `require_sigs` is off) not signed by any
  // of `keys` and not content-addressed. Copy errors (content that does not
  // match its record) throw, leaving nothing of that path behind.
  substitute_outcome substitute(local_store& dest, const store_path& path, const trusted_keys& keys, bool require_sigs);

private:
  local_store& source();

  std::string uri_, root_;
  bool trusted_ = false;
  std::unique_ptr<local_store> source_; // opened on first use
};

} // namespace kiln
