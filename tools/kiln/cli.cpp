#include "tools/kiln/cli.hpp"

#include <iostream>
#include <unistd.h>

namespace kiln::cli {

std::string parsed_args::value_or(const std::string& name, const std::string& fallback) const {
  auto it = values.find(name);
  return it == values.end() ? fallback : it->second;
}

parsed_args parse(const std::vector<std::string>& args, const std::vector<option_spec>& spec,
                  const char* usage) {
  parsed_args out;
  bool options_done = false;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (options_done || a.size() < 2 || a[0] != '-') {
      out.positional.push_back(a);
      continue;
    }
    if (a == "--") {
      options_done = true;
      continue;
    }
    if (a == "--help" || a == "-h") {
      std::cout << usage;
      throw help_shown{};
    }
    std::string name = a, inline_value;
    bool has_inline = false;
    if (auto eq = a.find('='); a.rfind("--", 0) == 0 && eq != std::string::npos) {
      name = a.substr(0, eq);
      inline_value = a.substr(eq + 1);
      has_inline = true;
    }
    const option_spec* found = nullptr;
    for (auto& s : spec)
      if (s.name == name || (!s.alias.empty() && s.alias == name))
        found = &s;
    if (!found)
      throw usage_error("unknown option '" + name + "'");
    if (found->takes_pair) {
      if (has_inline || i + 2 >= args.size())
        throw usage_error("option '" + found->name + "' needs two values: NAME VALUE");
      out.pairs.emplace_back(args[i + 1], args[i + 2]);
      i += 2;
    } else if (!found->takes_value) {
      if (has_inline)
        throw usage_error("option '" + found->name + "' takes no value");
      out.flags.insert(found->name);
    } else if (has_inline) {
      out.values[found->name] = inline_value;
    } else if (i + 1 < args.size()) {
      out.values[found->name] = args[++i];
    } else {
      throw usage_error("option '" + found->name + "' needs a value");
    }
  }
  return out;
}

void expect_positional(const parsed_args& a, std::size_t min, std::size_t max,
                       const std::string& what) {
  if (a.positional.size() < min)
    throw usage_error("missing " + what);
  if (a.positional.size() > max)
    throw usage_error("unexpected argument '" + a.positional[max] + "'");
}

void refuse_binary_to_terminal(const std::string& what) {
  if (::isatty(STDOUT_FILENO))
    throw std::runtime_error("refusing to write a binary " + what +
                             " to a terminal; redirect stdout");
}

int dispatch(const std::string& prefix, const std::vector<std::string>& args,
             const std::vector<command>& commands, const std::string& usage) {
  if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    std::cout << usage;
    return args.empty() ? 1 : 0;
  }
  for (auto& c : commands)
    if (c.name == args[0])
      return c.run(std::vector<std::string>(args.begin() + 1, args.end()));
  throw usage_error("unknown command '" + prefix + " " + args[0] + "'");
}

} // namespace kiln::cli
