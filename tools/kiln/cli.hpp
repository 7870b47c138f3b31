// Argument parsing shared by kiln's subcommands (CLI11 underneath). Each
// subcommand declares its options; anything undeclared is a usage error
// that suggests the closest option and points at the subcommand's --help.
#pragma once

#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

namespace kiln::cli {

class usage_error : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
  std::string command; // the command whose --help to point at ("kiln store query"); set by dispatch()
};

// Thrown by parse() once it has printed the usage for --help; main() exits 0.
struct help_shown {};

struct option_spec {
  std::string name;        // "--type"
  bool takes_value = false;
  std::string alias = {};  // "-L"
  bool takes_pair = false; // "--option NAME VALUE": two values, collected in order
};

// `--option NAME VALUE`, for commands that read settings.
inline const option_spec setting_option{"--option", false, "", true};

struct parsed_args {
  std::map<std::string, std::string> values; // options with a value (last wins)
  std::set<std::string> flags;               // options without
  std::vector<std::string> positional;
  std::vector<std::pair<std::string, std::string>> pairs; // --option NAME VALUE, in order

  bool has(const std::string& flag) const { return flags.count(flag) > 0; }
  std::string value_or(const std::string& name, const std::string& fallback) const;
};

// Throws usage_error for unknown options or a missing option value.
// "--" ends option parsing; "--name=value", "-j2" and bundled short flags
// ("-kK") are accepted. With --help or -h anywhere before "--", prints
// `usage` on stdout and throws help_shown.
parsed_args parse(const std::vector<std::string>& args, const std::vector<option_spec>& spec,
                  const char* usage);

// The entry of `known` closest to `typed` (a mistyped option or command),
// or "" when none is close.
std::string closest(const std::string& typed, const std::vector<std::string>& known);

// Throws usage_error unless there are between min and max positional args.
void expect_positional(const parsed_args& a, std::size_t min, std::size_t max,
                       const std::string& what);

// Throws unless stdout is redirected: binary output would garble a terminal.
void refuse_binary_to_terminal(const std::string& what);

// A subcommand: gets the arguments after its name, returns the exit code.
using handler = int (*)(const std::vector<std::string>& args);

struct command {
  std::string name;
  std::string summary;
  handler run;
};

// Dispatches args[0] among `commands`: `usage` on stdout for --help (exit
// 0), on stderr when no command is given (exit 1).
int dispatch(const std::string& prefix, const std::vector<std::string>& args,
             const std::vector<command>& commands, const std::string& usage);

} // namespace kiln::cli
