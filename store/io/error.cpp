#include "store/io/error.hpp"

#include <cerrno>
#include <cstring>

namespace kiln {

sys_error::sys_error(const std::string& what_failed, int err)
  : error(what_failed + ": " + std::strerror(err)), code_(err) {
}

void throw_errno(const std::string& what_failed) {
  throw sys_error(what_failed, errno);
}

} // namespace kiln
