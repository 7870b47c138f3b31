#include "store/io/error.hpp"
#include "store/io/fd.hpp"
#include "store/format/nar.hpp"
#include "store/format/nar_listing.hpp"
#include "tools/kiln/cli.hpp"
#include "tools/kiln/commands.hpp"

#include <iostream>
#include <unistd.h>

namespace kiln::cmd {
namespace {

const char* nar_usage = R"(Usage: kiln nar COMMAND ...

  kiln nar dump PATH           write the NAR of PATH (file, symlink or tree) to stdout
  kiln nar restore DEST        read a NAR from stdin and create it at DEST
  kiln nar ls [--json] FILE    list the contents of a NAR file ('-' for stdin)

The NAR bytes are identical to 'nix-store --dump'. Restore refuses a
malformed NAR with the byte offset of the problem and leaves nothing at
DEST; DEST must not exist.
)";

int dump(const std::vector<std::string>& args) {
  auto a = cli::parse(args, {}, "Usage: kiln nar dump PATH\n\nWrites the NAR serialisation of PATH to stdout.\n");
  cli::expect_positional(a, 1, 1, "PATH to dump");
  cli::refuse_binary_to_terminal("NAR");
  fd_sink out(STDOUT_FILENO, "standard output", 1 << 20);
  dump_path(a.positional[0], out);
  out.flush();
  return 0;
}

int restore(const std::vector<std::string>& args) {
  auto a = cli::parse(args, {}, "Usage: kiln nar restore DEST < FILE.nar\n\n"
                 "Unpacks the NAR on stdin at DEST, which must not exist. On any error\n"
                 "nothing is left at DEST.\n");
  cli::expect_positional(a, 1, 1, "DEST to restore to");
  fd_source in(STDIN_FILENO, "standard input");
  restore_nar(in, a.positional[0]);
  return 0;
}

int ls(const std::vector<std::string>& args) {
  auto a = cli::parse(args, {{"--json"}}, "Usage: kiln nar ls [--json] FILE.nar\n\n"
                 "Lists every object in the NAR, recursively. With --json, prints the tree\n"
                 "as 'nix nar ls --json -R' does (type, size, executable, narOffset, target).\n"
                 "FILE '-' reads standard input.\n");
  cli::expect_positional(a, 1, 1, "FILE.nar to list");
  const std::string& file = a.positional[0];
  unique_fd fd;
  if (file != "-")
    fd = open_read_only(file);
  fd_source in(fd ? fd.get() : STDIN_FILENO, file == "-" ? "standard input" : "'" + file + "'");
  std::cout << (a.has("--json") ? nar_listing_json(in) + "\n" : nar_listing_text(in));
  return 0;
}

} // namespace

int nar(const std::vector<std::string>& args) {
  return cli::dispatch("kiln nar", args,
                       {{"dump", "", dump}, {"restore", "", restore}, {"ls", "", ls}}, nar_usage);
}

} // namespace kiln::cmd
