#include "sandbox/seccomp_filter.hpp"

#include "store/io/error.hpp"
#include "store/io/fd.hpp"

#include <linux/audit.h>
#include <linux/seccomp.h>
#include <seccomp.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <memory>
#include <vector>

namespace kiln::sandbox {
namespace {

#if defined(__x86_64__)
constexpr unsigned native_arch = AUDIT_ARCH_X86_64;
constexpr unsigned compat_arch = AUDIT_ARCH_I386;
#elif defined(__aarch64__)
constexpr unsigned native_arch = AUDIT_ARCH_AARCH64;
constexpr unsigned compat_arch = AUDIT_ARCH_ARM;
#else
#error "the seccomp guard needs this architecture's AUDIT_ARCH value"
#endif
constexpr unsigned x32_bit = 0x40000000;

// Numbers the same on every architecture (allocated after the 2019
// unification). libseccomp 2.5.4 predates fchmodat2 and setxattrat, so the
// hand-written guard handles those two.
constexpr int nr_io_uring_setup = 425, nr_io_uring_enter = 426, nr_io_uring_register = 427;
constexpr int nr_fchmodat2 = 452;
constexpr int nr_setxattrat = 463;

int syscall_number(const char* name, int fallback) {
  int nr = seccomp_syscall_resolve_name(name);
  return nr == __NR_SCMP_ERROR ? fallback : nr;
}

// Jump offsets count instructions after the jump; the labels at the end.
// What the guard lets through goes on to the instruction after its last,
// where the rules begin (see compiled).
std::vector<sock_filter> make_guard() {
  auto stmt = [](unsigned short code, unsigned k) { return sock_filter{code, 0, 0, k}; };
  auto jump = [](unsigned short code, unsigned k, unsigned char jt, unsigned char jf) {
    return sock_filter{code, jt, jf, k};
  };
  const unsigned mode_arg2 = offsetof(seccomp_data, args) + 2 * sizeof(uint64_t); // low word (little endian)
  return {
      /*  0 */ stmt(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch)),
      /*  1 */ jump(BPF_JMP | BPF_JEQ | BPF_K, native_arch, 2, 0),  // -> 4
      /*  2 */ jump(BPF_JMP | BPF_JEQ | BPF_K, compat_arch, 3, 0),  // -> 6
      /*  3 */ stmt(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),    // an ABI not reviewed
      /*  4 */ stmt(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
      /*  5 */ jump(BPF_JMP | BPF_JSET | BPF_K, x32_bit, 6, 1),     // x32 -> 12, else -> 7
      /*  6 */ stmt(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
      /*  7 */ jump(BPF_JMP | BPF_JGT | BPF_K, seccomp_newest_reviewed_syscall, 4, 0), // -> 12
      /*  8 */ jump(BPF_JMP | BPF_JEQ | BPF_K, nr_fchmodat2, 1, 0),  // -> 10
      /*  9 */ jump(BPF_JMP | BPF_JEQ | BPF_K, nr_setxattrat, 3, 5), // -> 13, else -> 15
      /* 10 */ stmt(BPF_LD | BPF_W | BPF_ABS, mode_arg2),
      /* 11 */ jump(BPF_JMP | BPF_JSET | BPF_K, S_ISUID | S_ISGID, 2, 3), // -> 14, else -> 15
      /* 12 */ stmt(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
      /* 13 */ stmt(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOTSUP),
      /* 14 */ stmt(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
      /* 15 */ stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
}

struct ctx_deleter {
  void operator()(void* c) const { seccomp_release(c); }
};

std::vector<sock_filter> make_rules() {
  std::unique_ptr<void, ctx_deleter> ctx(seccomp_init(SCMP_ACT_ALLOW));
  if (!ctx)
    throw error("seccomp: cannot create a filter context");
  auto check = [](int r, const char* what) {
    if (r < 0)
      throw error(std::string("seccomp: ") + what + ": " + std::strerror(-r));
  };
#if defined(__x86_64__)
  check(seccomp_arch_add(ctx.get(), SCMP_ARCH_X86), "adding the i386 ABI");
#endif
  // Setting the "no new privileges" bit is the executor's job, in order.
  check(seccomp_attr_set(ctx.get(), SCMP_FLTATR_CTL_NNP, 0), "leaving no_new_privs to the executor");
  // Other ABIs (x32) are the guard's to refuse; fail them, do not kill.
  check(seccomp_attr_set(ctx.get(), SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_ERRNO(ENOSYS)), "setting the other-ABI action");
  // A binary search over the syscall numbers instead of a list: the kernel
  // runs the program for every number when it loads it (to cache the
  // always-allowed ones), so its length is paid in every builder's setup.
  check(seccomp_attr_set(ctx.get(), SCMP_FLTATR_CTL_OPTIMIZE, 2), "choosing the binary-tree layout");

  struct mode_arg {
    const char* name;
    int fallback;
    unsigned arg;
  };
  // The mode argument of every call that sets one: chmod's family, and
  // the calls that create a file with a mode (open with O_CREAT honours
  // S_ISUID as chmod does).
  for (auto m : {mode_arg{"chmod", -1, 1}, mode_arg{"fchmod", -1, 1}, mode_arg{"fchmodat", -1, 2},
                 mode_arg{"open", -1, 2}, mode_arg{"openat", -1, 3}, mode_arg{"creat", -1, 1},
                 mode_arg{"mknod", -1, 1}, mode_arg{"mknodat", -1, 2}}) {
    int nr = syscall_number(m.name, m.fallback);
    for (unsigned bit : {unsigned(S_ISUID), unsigned(S_ISGID)}) {
      scmp_arg_cmp cmp{m.arg, SCMP_CMP_MASKED_EQ, bit, bit};
      check(seccomp_rule_add(ctx.get(), SCMP_ACT_ERRNO(EPERM), nr, 1, cmp), m.name);
    }
  }
  for (auto x : {mode_arg{"setxattr", -1, 0}, mode_arg{"lsetxattr", -1, 0}, mode_arg{"fsetxattr", -1, 0}})
    check(seccomp_rule_add(ctx.get(), SCMP_ACT_ERRNO(ENOTSUP), syscall_number(x.name, x.fallback), 0), x.name);
  // openat2 passes its mode inside a struct the filter cannot read: refused
  // (ENOSYS, so callers fall back to openat).
  for (auto u : {mode_arg{"io_uring_setup", nr_io_uring_setup, 0}, mode_arg{"io_uring_enter", nr_io_uring_enter, 0},
                 mode_arg{"io_uring_register", nr_io_uring_register, 0}, mode_arg{"openat2", 437, 0}})
    check(seccomp_rule_add(ctx.get(), SCMP_ACT_ERRNO(ENOSYS), syscall_number(u.name, u.fallback), 0), u.name);

  // libseccomp writes the program to a descriptor; read it back.
  unique_fd mem(::memfd_create("kiln-seccomp", MFD_CLOEXEC));
  if (!mem)
    throw_errno("seccomp: creating a memfd");
  check(seccomp_export_bpf(ctx.get(), mem.get()), "exporting the program");
  off_t size = ::lseek(mem.get(), 0, SEEK_END);
  if (size <= 0 || size % sizeof(sock_filter) != 0)
    throw error("seccomp: the exported program has an odd size");
  std::vector<sock_filter> prog(static_cast<std::size_t>(size) / sizeof(sock_filter));
  if (::pread(mem.get(), prog.data(), static_cast<std::size_t>(size), 0) != size)
    throw_errno("seccomp: reading the program back");
  return prog;
}

// The guard's last instruction (allow) is dropped, so its jumps there land
// on the rules' first instruction; the rules jump only forward within
// themselves and load what they test first, so they run as if alone.
std::vector<sock_filter> make_program() {
  std::vector<sock_filter> guard = make_guard(), rules = make_rules();
  if (guard.back().code != (BPF_RET | BPF_K) || guard.back().k != SECCOMP_RET_ALLOW)
    throw error("seccomp: the guard must end by allowing the call");
  guard.pop_back();
  guard.insert(guard.end(), rules.begin(), rules.end());
  if (guard.size() > BPF_MAXINSNS)
    throw error("seccomp: the program is too long");
  return guard;
}

struct compiled {
  std::vector<sock_filter> code = make_program();
  sock_fprog program{static_cast<unsigned short>(code.size()), code.data()};
};

} // namespace

const sock_fprog& builder_seccomp_program() {
  static const compiled c;
  return c.program;
}

} // namespace kiln::sandbox
