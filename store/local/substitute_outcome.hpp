// What one substituter did with one store path: a plain value, so the
// engine can pass it between actors and tell the cases apart (Nix passes
// over an absent path silently, warns about an untrusted one, and counts a
// failed copy against the derivation unless --fallback).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace kiln {

struct substitute_outcome {
  enum kind_t : uint8_t {
    substituted, // the path (with its closure) is valid now
    absent,      // the substituter does not have it: try the next one
    untrusted,   // it has it, but not signed by a trusted key: try the next one, with a warning
    unusable,    // the substituter cannot be opened (said once; afterwards it is absent)
    available,   // (a probe's answer) it has the path's closure, signed as required: a copy would be tried
    failed,      // (from whichever has it) one that had it failed to give it, and no other did
  } kind = substituted;
  std::string message; // why; for untrusted and unusable, the warning (without "warning: ")
  // (from whichever has it) What the user is told: each substituter passed
  // over with a warning or an error, as "warning: ..." / "error: ...".
  std::vector<std::string> notices;
  std::vector<std::string> copied; // substituted: the paths copied (references first) ...
  std::string from;                // ... and from where (the substituter's URI)

  substitute_outcome() = default;
  substitute_outcome(kind_t k, std::string why) : kind(k), message(std::move(why)) {}
  // Substituted: `paths` copied from `uri`.
  static substitute_outcome copied_from(std::string uri, std::vector<std::string> paths) {
    substitute_outcome o;
    o.from = std::move(uri);
    o.copied = std::move(paths);
    return o;
  }
  bool warns() const { return kind == untrusted || kind == unusable; }
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, substitute_outcome& x) {
  uint8_t& kind = reinterpret_cast<uint8_t&>(x.kind);
  return f(kind, x.message, x.notices, x.copied, x.from);
}

} // namespace kiln
