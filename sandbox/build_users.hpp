// Who a sandboxed builder runs as on the host. A daemon running as root
// gives each build a uid no other running build has:
//   - from `build-users-group` (Nix's nixbld pool): the group's members,
//     each taken with a lock file <state>/userpool/<uid> as Nix takes it;
//   - otherwise an automatic uid, 872415232 + slot (Nix's auto-allocate
//     range), slot taken with <state>/userpool2/slot-<n>; the uid needs no
//     passwd entry since the builder sees it as nixbld (1000) through a
//     user namespace.
// An ordinary user's builds all run as that user, mapped the same way.
#pragma once

#include "store/io/fd.hpp"

#include <cstdint>
#include <optional>
#include <string>

namespace kiln::sandbox {

struct build_user {
  uint32_t uid = 0, gid = 0;
  unique_fd lock; // held for the build
};

constexpr uint32_t auto_uid_base = 872415232;
constexpr uint32_t auto_uid_slots = 4096;

// Takes a free build user. Throws kiln::error if the group does not exist,
// has no members, or all of them are busy.
build_user acquire_build_user(const std::string& group, const std::string& state_dir);

// A user namespace in which `inside_uid`/`inside_gid` are the host's
// `host_uid`/`host_gid` (nothing else is mapped), made once per id pair and
// kept open for the process's lifetime. The builder's child joins it with
// setns last, after its mounts, so it holds no capability over them.
int user_namespace_for(uint32_t host_uid, uint32_t host_gid, uint32_t inside_uid, uint32_t inside_gid);

} // namespace kiln::sandbox
