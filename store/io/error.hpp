// Errors raised by the store library.
//
// store/ is a plain C++ library, so failures are exceptions derived from
// kiln::error; the actor layer turns them into values at its boundaries.
// Every message names what was wrong and where (a path, a byte offset, a
// field), because it ends up in front of a user with no debugger.
#pragma once

#include <stdexcept>
#include <string>

namespace kiln {

class error : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

// Input that does not follow a format: a hash string, a store path, an ATerm
// derivation, a NAR stream.
class format_error : public error {
public:
  using error::error;
};

// A derivation that cannot be built as it stands, found before its builder
// starts (Nix's BuildError there): the goal ends InputRejected and counts
// as a failed build (exit status 100), as in Nix.
class build_input_rejected : public error {
public:
  using error::error;
};

// A failed system call; the message carries the call, the path and strerror.
class sys_error : public error {
public:
  sys_error(const std::string& what_failed, int err);
  int code() const noexcept { return code_; }

private:
  int code_;
};

// Throws sys_error for the current errno.
[[noreturn]] void throw_errno(const std::string& what_failed);

} // namespace kiln
