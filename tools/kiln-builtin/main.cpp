// kiln-builtin NAME: runs the builtin builder NAME ("builtin:NAME" in a
// derivation) with the environment the engine prepared for the build. The
// engine starts it like any builder; see sandbox/builtin_builders.hpp.
#include "sandbox/builtin_builders.hpp"

#include <link.h>
#include <unistd.h>

#include <iostream>
#include <map>
#include <string>

extern char** environ;

namespace {

// --print-files: this program and every shared object it loaded, which is
// what a sandbox must show for it to run.
int print_files() {
  char self[4096];
  ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0)
    return 1;
  std::cout << std::string(self, static_cast<std::size_t>(n)) << '\n';
  dl_iterate_phdr(
      [](dl_phdr_info* info, std::size_t, void*) {
        if (info->dlpi_name && info->dlpi_name[0] == '/')
          std::cout << info->dlpi_name << '\n';
        return 0;
      },
      nullptr);
  return 0;
}

} // namespace

int main(int argc, char** argv) {
  if (argc == 2 && std::string(argv[1]) == "--print-files")
    return print_files();
  if (argc != 2) {
    std::cerr << "usage: kiln-builtin NAME (run by the build engine for 'builtin:NAME' builders)\n";
    return 1;
  }
  std::map<std::string, std::string> env;
  for (char** e = environ; *e; ++e) {
    std::string kv = *e;
    auto eq = kv.find('=');
    if (eq != std::string::npos)
      env[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  std::string name = argv[1];
  try {
    if (name == "fetchurl")
      kiln::sandbox::builtin_fetchurl(env);
    else
      throw std::runtime_error("unsupported builtin builder 'builtin:" + name + "'");
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << '\n';
    return 1;
  }
  return 0;
}
