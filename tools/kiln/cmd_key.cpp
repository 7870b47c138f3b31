#include "store/io/error.hpp"
#include "store/io/fd.hpp"
#include "store/format/signature.hpp"
#include "tools/kiln/cli.hpp"
#include "tools/kiln/commands.hpp"

#include <fcntl.h>
#include <iostream>
#include <unistd.h>

namespace kiln::cmd {
namespace {

const char* key_usage = R"(Usage: kiln key COMMAND ...

  kiln key generate NAME SECRET-FILE PUBLIC-FILE
      make an Ed25519 key pair in Nix's format ('NAME:base64', no newline),
      as 'nix-store --generate-binary-cache-key' does; the secret file is
      created mode 0600. Existing files are never overwritten.
  kiln key public SECRET-FILE
      print the public key belonging to a secret key file

NAME is conventionally the cache's host name and a number, e.g. cache.example.org-1.
)";

// O_EXCL: a key file that exists may be the only copy of a secret.
void write_new_file(const std::string& path, const std::string& text, mode_t mode) {
  unique_fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode));
  if (!fd)
    throw_errno("creating key file '" + path + "'");
  write_all(fd.get(), text.data(), text.size(), "'" + path + "'");
  if (::fsync(fd.get()) != 0)
    throw_errno("syncing '" + path + "'");
}

int generate(const std::vector<std::string>& args) {
  auto a = cli::parse(args, {}, key_usage);
  cli::expect_positional(a, 3, 3, "NAME SECRET-FILE PUBLIC-FILE");
  auto sk = generate_secret_key(a.positional[0]);
  write_new_file(a.positional[1], sk.to_string(), 0600);
  try {
    write_new_file(a.positional[2], sk.to_public().to_string(), 0644);
  } catch (...) {
    ::unlink(a.positional[1].c_str()); // no half a key pair
    throw;
  }
  return 0;
}

int public_of(const std::vector<std::string>& args) {
  auto a = cli::parse(args, {}, key_usage);
  cli::expect_positional(a, 1, 1, "SECRET-FILE");
  std::cout << read_secret_key_file(a.positional[0]).to_public().to_string() << '\n';
  return 0;
}

} // namespace

int key(const std::vector<std::string>& args) {
  return cli::dispatch("kiln key", args, {{"generate", "", generate}, {"public", "", public_of}},
                       key_usage);
}

} // namespace kiln::cmd
