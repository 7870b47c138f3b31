// Where substitutes come from, whatever kind of store that is: the walk
// over a path's closure (references first, only what the destination
// lacks, signatures checked before anything is copied) is here, once; a
// kind of substituter says how to look a path up and how to copy it.
#pragma once

#include "store/format/signature.hpp"
#include "store/local/local_store.hpp"
#include "store/local/substitute_outcome.hpp"

#include <optional>
#include <string>

namespace kiln {

class substituter {
public:
  virtual ~substituter() = default;
  const std::string& uri() const { return uri_; }
  // Opens it; throws (the substituter is then unusable) if there is nothing there.
  virtual void open() = 0;

  // Makes `path` (and whatever it refers to) valid in `dest`, or says why
  // not: a path of the closure is absent, or (unless the substituter is
  // trusted or `require_sigs` is off) not signed by any of `keys` and not
  // content-addressed. Copy errors (content that does not match its
  // record) throw, leaving nothing of that path behind.
  substitute_outcome substitute(local_store& dest, const store_path& path, const trusted_keys& keys,
                                bool require_sigs);

protected:
  substituter(std::string uri, bool trusted) : uri_(std::move(uri)), trusted_(trusted) {}
  // The directory of SCHEME/DIR[?trusted=0|1] and whether it is trusted;
  // a format_error for anything else.
  static std::pair<std::string, bool> parse_directory_uri(const std::string& uri, std::string_view scheme);
  // What the substituter knows about `p`, or nothing if it lacks it.
  virtual std::optional<path_info> query(const store_path& p) = 0;
  // Adds `info`'s path to `dest` from here (its NAR checked against `info`).
  virtual void copy(local_store& dest, const path_info& info) = 0;

private:
  std::string uri_;
  bool trusted_;
};

} // namespace kiln
