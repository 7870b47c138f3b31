// File-system operations that work through directory handles, never through
// path strings that another process could swap for a symlink in between
// (the lesson of CVE-2025-46415).
#pragma once

#include "store/io/fd.hpp"

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace kiln {

// True if something (even a dangling symlink) is at `path`.
bool path_exists(const std::string& path);

// The entry names of an open directory (without . and ..), unsorted.
// The descriptor is duplicated, so `dirfd` stays open and usable; `shown`
// names the directory in errors.
std::vector<std::string> read_directory(int dirfd, const std::string& shown);

// Opens the directory `dir` (not a symlink to one) for the *at functions.
unique_fd open_directory(const std::string& dir);

// Removes everything inside `dir`, keeping `dir` itself.
void empty_directory(const std::string& dir);

// Removes `name` inside the directory `dirfd` and everything below it,
// without following symlinks. A missing `name` is not an error. Returns the
// bytes freed: the sizes of files whose last name this was.
uint64_t remove_tree_at(int dirfd, const std::string& name);
// remove_tree_at for a path (split into its parent directory and name).
uint64_t remove_tree(const std::string& path);

// The bytes `path` and everything below it take on disk (allocated blocks,
// each inode once), for a tree that may still be changing: what vanishes
// or cannot be read meanwhile is passed over. 0 if `path` is missing.
uint64_t disk_usage(const std::string& path);

// Gives `name` inside `dirfd` and everything below it to uid:gid, through
// directory handles and without following symlinks (a kept build tree is
// handed over this way, so a symlink or a swapped directory cannot turn
// the chown onto another file: CVE-2021-27851's race).
void chown_tree_at(int dirfd, const std::string& name, unsigned uid, unsigned gid);
void chown_tree(const std::string& path, unsigned uid, unsigned gid);

// Copies `name` in `from_dir` to `to_name` in `to_dir` as new inodes: files
// by content (keeping only the owner-execute bit), directories, symlinks as
// symlinks; nothing followed, devices, sockets and fifos refused. A process
// holding a descriptor to the original cannot change the copy.
void copy_tree_fresh_at(int from_dir, const std::string& name, int to_dir, const std::string& to_name);

// fsyncs every regular file and directory at and below `path` (symlinks
// are made durable by their directory's fsync).
void fsync_tree(const std::string& path);
// Starts writing back every regular file at and below `path`, without
// waiting: a later fsync_tree then finds its data on the way to the disk.
// Best effort (nothing is thrown); only regular files and directories are
// opened, never followed.
void start_writeback_tree(const std::string& path);
// fsyncs one directory, so an entry created or renamed in it is durable.
void fsync_directory(const std::string& dir);

// Creates `dir` and any missing parents with `mode` (mkdir -p). The
// common case, only the last component missing or none, costs one call.
void make_directories(const std::string& dir, unsigned mode = 0755);

// Splits "a/b/c" into "a/b" and "c"; "c" gives "." and "c".
std::pair<std::string, std::string> split_path(const std::string& path);

} // namespace kiln
