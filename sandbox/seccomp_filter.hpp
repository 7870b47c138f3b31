// The builder's system-call filter, compiled once per process and loaded by
// the child just before exec (no allocation there: the programs are ready).
//
// One program in two parts (one filter to load and compile per builder):
//   - a guard, written by hand, first: any system call numbered above the newest
//     one this filter was reviewed against fails with ENOSYS, as on an older
//     kernel (programs fall back), and the x32 ABI is refused. A syscall
//     added to the kernel later cannot bypass the rules below, the mistake
//     of fchmodat2 (NixOS/nix#10424). It also covers the reviewed syscalls
//     newer than libseccomp's table: fchmodat2 (no setuid/setgid bits) and
//     setxattrat (ENOTSUP).
//   - the rules, made with libseccomp and run where the guard lets a call
//     through for the native ABI and, on x86_64,
//     i386: no setuid/setgid bits through chmod, fchmod, fchmodat, or
//     a create's mode (open, openat, creat, mknod, mknodat; openat2, whose
//     mode the filter cannot see, is refused) (EPERM); no extended attributes set (ACLs and file
//     capabilities are xattrs; ENOTSUP, as Nix answers); io_uring refused
//     (ENOSYS), since its operations are not seen by seccomp at all.
#pragma once

#include <linux/filter.h>

namespace kiln::sandbox {

// Builds it on first use; throws kiln::error if libseccomp fails.
const sock_fprog& builder_seccomp_program();

// The newest system call number the guard lets through.
constexpr unsigned seccomp_newest_reviewed_syscall = 469; // file_setattr (Linux 6.17)

} // namespace kiln::sandbox
