// kiln-worker: hosts builder actors for kilnd, which starts it (see
// actors/worker.hpp); not meant to be run by hand.
#include "actors/worker.hpp"

#include <cstdlib>
#include <iostream>
#include <string>

namespace {

const char* usage =
    "usage: kiln-worker --link-fd FD [--build-dir DIR]\n"
    "\n"
    "A process that runs builds for kilnd, which starts `workers` of them\n"
    "(kiln.conf) and links to each over the socket FD it hands down. Not\n"
    "meant to be run by hand: nothing but kilnd can talk to it.\n"
    "\n"
    "  --link-fd FD     the socket to kilnd (kilnd passes 3)\n"
    "  --build-dir DIR  where build directories go (default: $TMPDIR or /tmp)\n";

} // namespace

int main(int argc, char** argv) {
  int fd = -1;
  std::string build_dir;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::cout << usage;
      return 0;
    }
    if ((a == "--link-fd" || a == "--build-dir") && i + 1 < argc) {
      std::string v = argv[++i];
      if (a == "--build-dir") {
        build_dir = v;
        continue;
      }
      char* end = nullptr;
      long n = std::strtol(v.c_str(), &end, 10);
      if (v.empty() || *end || n < 0 || n > 65535) {
        std::cerr << "kiln-worker: --link-fd: '" << v << "' is not a descriptor number\n";
        return 2;
      }
      fd = static_cast<int>(n);
      continue;
    }
    std::cerr << "kiln-worker: unknown argument '" << a << "'\n" << usage;
    return 2;
  }
  if (fd < 0) {
    std::cerr << "kiln-worker: --link-fd is missing\n" << usage;
    return 2;
  }
  return kiln::run_worker(fd, build_dir);
}
