// The argument parsing is CLI11's: short flags bundled (-kK) and with
// attached values (-j2), --name=value, "--" ending the options. What is
// ours: the declarations as a table, help that is the command's own usage
// text (on stdout, only when asked for), and errors worded for people,
// with a suggestion for a mistyped option or command.
#include "tools/kiln/cli.hpp"

#include <CLI/CLI.hpp>

#include <algorithm>
#include <iostream>
#include <unistd.h>

namespace kiln::cli {

namespace {

std::size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j)
    row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      std::size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

// The option named in a CLI11 message ("--max-jobs: 1 required TEXT missing").
std::string option_in(const std::string& message) {
  auto colon = message.find(':');
  return colon == std::string::npos ? message : message.substr(0, colon);
}

std::string did_you_mean(const std::string& suggestion) {
  return suggestion.empty() ? "" : " (did you mean '" + suggestion + "'?)";
}

} // namespace

std::string closest(const std::string& typed, const std::vector<std::string>& known) {
  std::string best;
  std::size_t best_distance = std::max<std::size_t>(2, typed.size() / 3) + 1;
  for (auto& k : known) {
    std::size_t d = edit_distance(typed, k);
    if (d < best_distance) {
      best = k;
      best_distance = d;
    }
  }
  return best;
}

std::string parsed_args::value_or(const std::string& name, const std::string& fallback) const {
  auto it = values.find(name);
  return it == values.end() ? fallback : it->second;
}

parsed_args parse(const std::vector<std::string>& args, const std::vector<option_spec>& spec,
                  const char* usage) {
  for (auto& a : args) {
    if (a == "--")
      break;
    if (a == "--help" || a == "-h") {
      std::cout << usage;
      throw help_shown{};
    }
  }
  CLI::App app;
  app.set_help_flag();
  app.allow_extras(true); // unknown options are reported below, with a suggestion
  parsed_args out;
  std::map<std::string, std::string> values; // bound to CLI11; copied to `out` if given
  std::vector<std::string> pair_words;
  std::vector<std::pair<const option_spec*, CLI::Option*>> declared;
  std::vector<std::string> known;
  for (auto& s : spec) {
    std::string names = s.alias.empty() ? s.name : s.alias + "," + s.name;
    known.push_back(s.name);
    if (!s.alias.empty())
      known.push_back(s.alias);
    CLI::Option* o;
    if (s.takes_pair)
      o = app.add_option(names, pair_words)
              ->type_size(2)
              ->expected(1)
              ->allow_extra_args(false)
              ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
    else if (s.takes_value)
      o = app.add_option(names, values[s.name])->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
    else
      o = app.add_flag(names);
    declared.emplace_back(&s, o);
  }
  app.add_option("arguments", out.positional);

  std::vector<std::string> reversed(args.rbegin(), args.rend()); // as CLI11 takes them
  try {
    app.parse(reversed);
  } catch (const CLI::ArgumentMismatch& e) {
    std::string name = option_in(e.what());
    for (auto& s : spec)
      if (s.takes_pair && (name == s.name || name == s.alias))
        throw usage_error("option '" + s.name + "' needs two values: NAME VALUE");
    throw usage_error("option '" + name + "' needs a value");
  } catch (const CLI::ParseError& e) {
    throw usage_error(e.what());
  }
  for (auto& extra : app.remaining()) {
    if (extra == "--")
      continue;
    std::string name = extra.substr(0, extra.find('='));
    throw usage_error("unknown option '" + name + "'" + did_you_mean(closest(name, known)));
  }
  for (auto& [s, o] : declared) {
    if (o->count() == 0)
      continue;
    if (s->takes_pair) { // always whole pairs: CLI11 refuses a last one left single
      for (std::size_t i = 0; i < pair_words.size(); i += 2)
        out.pairs.emplace_back(pair_words[i], pair_words[i + 1]);
    } else if (s->takes_value) {
      out.values[s->name] = values[s->name];
    } else {
      out.flags.insert(s->name);
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
  if (args.empty()) {
    std::cerr << usage; // not asked for: not on stdout
    return 1;
  }
  if (args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    std::cout << usage;
    return 0;
  }
  std::vector<std::string> names;
  for (auto& c : commands) {
    if (c.name == args[0]) {
      try {
        return c.run(std::vector<std::string>(args.begin() + 1, args.end()));
      } catch (usage_error& e) {
        if (e.command.empty())
          e.command = prefix + " " + c.name;
        throw;
      }
    }
    names.push_back(c.name);
  }
  std::string typed = args[0];
  std::string best = closest(typed, names);
  usage_error e(typed.rfind("-", 0) == 0
                    ? "unknown option '" + typed + "' (a command comes first)"
                    : "unknown command '" + prefix + " " + typed + "'" +
                          did_you_mean(best.empty() ? "" : prefix + " " + best));
  e.command = prefix;
  throw e;
}

} // namespace kiln::cli
