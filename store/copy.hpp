// Copying paths from one store to another, whatever kind each is (local,
// daemon, binary cache): what `kiln copy` and substitution do. The walk is
// here once: the closure of what is asked that the destination lacks,
// references before referrers, each path streamed as a NAR from the source
// into the destination, which checks it against its record.
#pragma once

#include "store/format/signature.hpp"
#include "store/store.hpp"

#include <functional>
#include <optional>
#include <vector>

namespace kiln {

struct copy_plan {
  std::vector<path_info> paths;    // what the destination lacks, references first
  std::optional<store_path> absent; // a path of the closure the source does not have
  std::optional<store_path> wanted_by; // ... and the path that refers to it (none for a root)
};

// Walks `roots`' closure in `from`, not going past paths `to` has (a valid
// path's closure is there too). Each path seen gets a temporary root in
// `to`, so a collection there cannot take what the copy relies on.
copy_plan plan_copy(store& from, store& to, const store_path_set& roots);

// True if one of `info`'s signatures is by a key in `keys`, or the path is
// content-addressed (its name proves its contents).
bool trustworthy(const path_info& info, const trusted_keys& keys);

// Streams the NAR of `info.path` from `from` into `to` (the record as
// `from` has it, but not "ultimate": it was not built here).
void copy_path(store& from, store& to, const path_info& info);

// Copies the plan's paths in order, skipping those `to` has by now;
// `each` hears of every path before it is copied. Returns the paths copied.
std::vector<store_path> copy_paths(store& from, store& to, const std::vector<path_info>& paths,
                                   const std::function<void(const path_info&)>& each = {});

} // namespace kiln
