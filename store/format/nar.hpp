// NAR (Nix ARchive) serialisation: dumping a tree, and the streaming parser
// that restore, listing and import are built on (nix-formats.md §7).
//
// A NAR stores only what Nix considers content: regular files (with one
// executable bit), symlinks and directories with entries sorted bytewise.
// The parser treats its input as hostile: it is iterative (no recursion on
// attacker input, cf. CVE-2026-44028), bounds every length and depth, and
// refuses anything Nix would not have written.
#pragma once

#include "store/io/stream.hpp"
#include "store/io/tree_walk.hpp"

#include <cstdint>
#include <string>
#include <string_view>

namespace kiln {

inline constexpr std::string_view nar_magic = "nix-archive-1";

// Writes the NAR of the file, symlink or directory at `path` to `out`.
// Throws on unsupported file types and on files that change while read.
void dump_path(const std::string& path, sink& out);
// The same for `name` in the directory `dirfd`, shown as `shown` in errors.
void dump_path_at(int dirfd, const std::string& name, const std::string& shown, sink& out);

struct nar_digest {
  hash nar_hash;
  uint64_t nar_size = 0;
};
// The hash and size of the NAR of `path` ("recursive" hashing). Dumping and
// hashing run on two threads, so this costs the larger of the two.
nar_digest hash_path(const std::string& path, hash_algo algo = hash_algo::sha256);

// NAR of a regular file's bytes alone (as `addToStore` with flat content).
void dump_string_as_file(std::string_view contents, bool executable, sink& out);
// The same for `size` bytes read from `contents`, streamed.
void dump_file_as_nar(source& contents, uint64_t size, bool executable, sink& out);

struct nar_limits {
  std::size_t max_depth = max_tree_depth; // directory nesting
  std::size_t max_name = 255;            // NAME_MAX
  std::size_t max_target = 4095;         // PATH_MAX - 1
  uint64_t max_file_size = 1ull << 40;   // 1 TiB: anything larger is corrupt
};

// Events from the parser, in NAR order. Every event does nothing by
// default, so a plain nar_visitor just checks a NAR. `path` is relative to the root
// ("" for the root itself, "a/b" below it); `name` is its last component.
class nar_visitor {
public:
  virtual ~nar_visitor() = default;
  virtual void begin_directory(std::string_view path, std::string_view name) {}
  virtual void end_directory() {}
  // `offset` is where the contents start in the NAR.
  virtual void begin_regular(std::string_view path, std::string_view name, bool executable,
                             uint64_t size, uint64_t offset) {}
  virtual void contents(const char* data, std::size_t n) {}
  virtual void end_regular() {}
  virtual void symlink(std::string_view path, std::string_view name, std::string_view target) {}
};

// Reads one NAR from `in`. With `require_end`, bytes after the NAR are an
// error (a NAR file); without, the source is left just past it (an export
// stream). Throws format_error naming the byte offset and the problem.
// Returns the number of bytes the NAR occupied.
uint64_t parse_nar(source& in, nar_visitor& visitor, bool require_end = true,
                   const nar_limits& limits = {});

// Restores a NAR into a new file system object at `dest`, which must not
// exist. Everything is written into a staging directory beside `dest` and
// renamed into place at the end, so on any error nothing is left at `dest`.
// `staging_name` chooses that directory's name (it must not exist); by
// default it is a fresh ".kiln-restore-..." name.
void restore_nar(source& in, const std::string& dest, const nar_limits& limits = {},
                 const std::string& staging_name = {});

} // namespace kiln
