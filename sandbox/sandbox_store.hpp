// The host side of a sandbox's store: the directory a sandboxed builder sees
// as the store and writes its outputs into. A daemon running as root keeps
// one per build user and reuses it, build after build:
//   - emptied of whatever a builder left in it after each build;
//   - the mount points of the inputs (empty files and directories, made as
//     root) kept and renamed to the next build's inputs instead of deleted
//     and made again.
// Creating and deleting inodes is what a trivial build mostly costs on a
// file system such as ext4 without a journal, where every new inode is
// found by skipping those deleted in the last minute.
#pragma once

#include "sandbox/sandbox_spec.hpp"

#include <map>
#include <string>

namespace kiln::sandbox {

// The mount points `spec` binds directly inside its store, by base name:
// true for a directory, false for a file.
std::map<std::string, bool> store_mount_points(const sandbox_spec& spec);

// Makes the store directory `dir` hold exactly the mount points `wanted`,
// and nothing else: entries that are not mount points made here are
// removed, mount points no longer wanted are renamed to the wanted ones that
// are missing (the rest removed), and the still missing ones created.
void prepare_mount_points(const std::string& dir, const std::map<std::string, bool>& wanted);

// After a build: removes every entry of `dir` that is not one of the mount
// points prepare_mount_points made (failed or unmoved outputs, and anything
// else the builder wrote).
void sweep_sandbox_store(const std::string& dir);

} // namespace kiln::sandbox
