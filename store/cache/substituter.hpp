// A substituter: a store paths are fetched from instead of being built
// (another local store, a binary cache). The walk over a path's closure is
// copy.hpp's; this adds what substitution asks of it: signatures checked
// before anything is copied, and an outcome the engine can act on.
#pragma once

#include "store/format/signature.hpp"
#include "store/io/http.hpp"
#include "store/local/substitute_outcome.hpp"
#include "store/store.hpp"

#include <memory>
#include <string>

namespace kiln {

class substituter {
public:
  // `trusted`: its paths need no signature (`?trusted=1`).
  substituter(std::string uri, bool trusted, std::unique_ptr<store> from)
    : uri_(std::move(uri)), trusted_(trusted), from_(std::move(from)) {}
  const std::string& uri() const { return uri_; }

  // Makes `path` (and whatever it refers to) valid in `dest`, or says why
  // not: a path of the closure is absent, or (unless the substituter is
  // trusted or `require_sigs` is off) not signed by any of `keys` and not
  // content-addressed. Copy errors (content that does not match its
  // record) throw, leaving nothing of that path behind.
  substitute_outcome substitute(store& dest, const store_path& path, const trusted_keys& keys, bool require_sigs);

private:
  std::string uri_;
  bool trusted_;
  std::unique_ptr<store> from_;
};

// The substituter a `substituters` entry names: a local store (local:DIR,
// /DIR, ...) or a binary cache (file:///DIR, http(s)://...), opened:
// throws if there is nothing there, or for a URI of a kind not supported.
std::unique_ptr<substituter> make_substituter(const std::string& uri, const http_settings& http = {});

} // namespace kiln
