// kiln-builtin NAME: runs the builtin builder NAME ("builtin:NAME" in a
// derivation) with the environment the engine prepared for the build. The
// engine starts it like any builder; see sandbox/builtin_builders.hpp.
#include "sandbox/builtin_builders.hpp"

#include <iostream>
#include <map>
#include <string>

extern char** environ;

int main(int argc, char** argv) {
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
