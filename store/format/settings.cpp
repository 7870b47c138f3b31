#include "store/format/settings.hpp"

#include <set>
#include <sstream>

#include "store/io/error.hpp"

#include <limits>

namespace kiln {
namespace {

enum class kind { boolean, number, size, text, jobs, log_compression, sandbox, paths };

struct known_setting {
  const char* name;
  kind k;
  const char* default_value;
  uint64_t max = std::numeric_limits<int64_t>::max(); // numbers and sizes
  const char* unit = "";
};

// Bounds that keep every use of a value meaningful: seconds fit a
// nanosecond duration (a larger timeout overflowed and fired at once), and
// a control group takes no more pids than the kernel can have.
constexpr uint64_t max_seconds = 4294967295; // about 136 years
constexpr uint64_t max_count = 1000000;

// Settings the code reads today, with Nix's defaults.
const known_setting known[] = {
    {"keep-outputs", kind::boolean, "false"},
    {"keep-derivations", kind::boolean, "true"},
    {"max-jobs", kind::jobs, "1", 65535},
    {"cores", kind::number, "0", 65535},
    {"keep-going", kind::boolean, "false"},
    {"keep-failed", kind::boolean, "false"},
    {"repeat", kind::number, "0", 1000},
    {"max-silent-time", kind::number, "0", max_seconds, " seconds"},
    {"timeout", kind::number, "0", max_seconds, " seconds"},
    {"max-log-size", kind::size, "0"},
    {"log-lines", kind::number, "25", max_count},
    {"compress-build-log", kind::log_compression, "zstd"},
    {"secret-key-files", kind::text, ""},
    {"post-build-hook", kind::text, ""},
    {"build-dir", kind::text, ""},
    {"substituters", kind::text, ""},
    {"trusted-public-keys", kind::text, ""},
    {"require-sigs", kind::boolean, "true"},
    {"fallback", kind::boolean, "false"},
    {"download-attempts", kind::number, "5", 1000},
    {"max-substitution-jobs", kind::number, "16", 1024},
    {"stalled-download-timeout", kind::number, "300", max_seconds, " seconds"},
    {"connect-timeout", kind::number, "0", max_seconds, " seconds"},
    {"netrc-file", kind::text, "/etc/nix/netrc"},
    {"ssl-cert-file", kind::text, ""},
    {"narinfo-cache-positive-ttl", kind::number, "2592000", max_seconds, " seconds"},
    {"narinfo-cache-negative-ttl", kind::number, "3600", max_seconds, " seconds"},
    {"sandbox", kind::sandbox, "true"},
    {"sandbox-fallback", kind::boolean, "true"},
    {"sandbox-paths", kind::paths, ""},
    {"extra-sandbox-paths", kind::paths, ""},
    {"sandbox-build-dir", kind::text, "/build"},
    {"allowed-impure-host-deps", kind::text, ""},
    {"pre-build-hook", kind::text, ""},
    {"build-users-group", kind::text, ""},
    {"system-features", kind::text, ""},
    // kilnd: who may connect, who is trusted, what untrusted clients may pick.
    {"trusted-users", kind::text, "root"},
    {"allowed-users", kind::text, "*"},
    {"trusted-substituters", kind::text, ""}, // the host's default is set by the caller
    // Kiln's own: limits on each build's control group (0 = none).
    {"build-memory-max", kind::size, "0"},
    // Bytes a build's directory and outputs may take on disk together.
    {"build-size-max", kind::size, "0"},
    // "auto": sandbox/sandbox_spec.hpp's default_build_pids_max where it can
    // be enforced. At most the kernel's PID_MAX_LIMIT.
    {"build-pids-max", kind::jobs, "auto", 4194304},
    {"build-cpu-max", kind::number, "0", 100 * 65535, " percent of one CPU"},
    // kilnd: kiln-worker processes that run the builds ("auto": one per
    // core; 0: builds run in kilnd's own process), and how often a round
    // whose worker was lost is tried again on another.
    {"workers", kind::jobs, "auto", 1024},
    // kilnd on SIGTERM: builds under way may finish for this long (unless
    // they are to be cancelled at once), then are cancelled.
    {"shutdown-timeout", kind::number, "60", max_seconds, " seconds"},
    {"shutdown-cancels-builds", kind::boolean, "false"},
    {"max-build-retries", kind::number, "2", 100},
};

uint64_t parse_number(const std::string& value, const std::string& what) {
  if (value.empty() || value.find_first_not_of("0123456789") != std::string::npos)
    throw format_error(what + ": expected a whole number, got '" + value + "'");
  if (value.size() > 18)
    throw format_error(what + ": " + value + " is out of range");
  return std::stoull(value);
}

const known_setting& lookup(const std::string& name, const std::string& origin) {
  for (auto& s : known)
    if (name == s.name)
      return s;
  throw format_error(origin + ": unknown setting '" + name + "'");
}

std::string trim(std::string_view s) {
  auto b = s.find_first_not_of(" \t\r");
  if (b == std::string_view::npos)
    return {};
  auto e = s.find_last_not_of(" \t\r");
  return std::string(s.substr(b, e - b + 1));
}

} // namespace

bool parse_bool_setting(const std::string& value, const std::string& what) {
  if (value == "true")
    return true;
  if (value == "false")
    return false;
  throw format_error(what + ": expected 'true' or 'false', got '" + value + "'");
}

uint64_t parse_size_setting(const std::string& value, const std::string& what) {
  std::string digits = value;
  unsigned shift = 0;
  if (!digits.empty()) {
    switch (digits.back()) {
    case 'K': shift = 10; break;
    case 'M': shift = 20; break;
    case 'G': shift = 30; break;
    case 'T': shift = 40; break;
    default: break;
    }
    if (shift)
      digits.pop_back();
  }
  if (digits.empty() || digits.find_first_not_of("0123456789") != std::string::npos)
    throw format_error(what + ": expected a byte count (optionally with K, M, G or T), got '" +
                       value + "'");
  uint64_t n = 0;
  for (char c : digits) {
    auto d = static_cast<uint64_t>(c - '0');
    if (n > (std::numeric_limits<uint64_t>::max() - d) / 10)
      throw format_error(what + ": '" + value + "' is too large");
    n = n * 10 + d;
  }
  if (shift && n > (std::numeric_limits<uint64_t>::max() >> shift))
    throw format_error(what + ": '" + value + "' is too large");
  return n << shift;
}

settings::settings() {
  for (auto& s : known)
    values_[s.name] = s.default_value;
}

void settings::set(const std::string& name, const std::string& value, const std::string& origin) {
  auto& s = lookup(name, origin);
  std::string what = origin + ": setting '" + name + "'";
  auto within_range = [&](uint64_t n) {
    if (n > s.max)
      throw format_error(what + ": " + value + " is out of range (at most " + std::to_string(s.max) + s.unit + ")");
  };
  switch (s.k) {
  case kind::boolean: parse_bool_setting(value, what); break;
  case kind::number: within_range(parse_number(value, what)); break;
  case kind::size: within_range(parse_size_setting(value, what)); break;
  case kind::jobs:
    if (value == "auto")
      break;
    if (value.empty() || value.find_first_not_of("0123456789") != std::string::npos)
      throw format_error(what + ": should be 'auto' or an integer, got '" + value + "'");
    within_range(parse_number(value, what));
    break;
  case kind::log_compression:
    if (value != "zstd" && value != "bzip2" && value != "none" && value != "true" && value != "false")
      throw format_error(what + ": expected zstd, bzip2, none, true or false, got '" + value + "'");
    break;
  case kind::sandbox:
    if (value != "true" && value != "false" && value != "relaxed")
      throw format_error(what + ": expected 'true', 'false' or 'relaxed', got '" + value + "'");
    break;
  case kind::paths: parse_sandbox_paths(value, what); break;
  case kind::text: break;
  }
  values_[name] = value;
}

bool settings::knows(const std::string& name) const { return values_.count(name) != 0; }

namespace {

// Nix settings that have no meaning for Kiln: accepted from nix.conf
// without a warning (the file is shared with Nix's own tools).
bool nix_only_setting(const std::string& name) {
  static const std::set<std::string> names{"experimental-features", "show-trace", "auto-optimise-store",
                                           "warn-dirty", "flake-registry", "nix-path",
                                           "builders", "builders-use-substitutes", "http-connections",
                                           "substitute", "min-free", "max-free"};
  return names.count(name) != 0;
}

} // namespace

namespace {

// Calls `f(origin, line)` for each line of a configuration file that says
// something: comments ('#' to the end of the line) and blank lines skipped,
// the rest trimmed; origin is "FILE:LINE".
void for_each_config_line(std::string_view text, const std::string& file_name,
                          const std::function<void(const std::string&, const std::string&)>& f) {
  std::size_t line_no = 0;
  for (std::size_t pos = 0; pos <= text.size();) {
    auto nl = text.find('\n', pos);
    std::string_view line = text.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
    pos = nl == std::string_view::npos ? text.size() + 1 : nl + 1;
    ++line_no;
    if (auto hash = line.find('#'); hash != std::string_view::npos)
      line = line.substr(0, hash);
    std::string t = trim(line);
    if (!t.empty())
      f(file_name + ":" + std::to_string(line_no), t);
  }
}

// "name = value", both trimmed; throws naming `origin` otherwise.
std::pair<std::string, std::string> assignment(const std::string& line, const std::string& origin) {
  auto eq = line.find('=');
  if (eq == std::string::npos)
    throw format_error(origin + ": expected 'name = value', got '" + line + "'");
  std::string name = trim(std::string_view(line).substr(0, eq));
  if (name.empty())
    throw format_error(origin + ": a setting name is missing before '='");
  return {name, trim(std::string_view(line).substr(eq + 1))};
}

} // namespace

void settings::apply_nix_config(std::string_view text, const std::string& file_name,
                                const std::function<std::optional<std::string>(const std::string&)>& read_file,
                                const std::function<void(const std::string&)>& warn, int depth) {
  if (depth > 16)
    throw format_error(file_name + ": includes nest more than 16 deep (an include cycle?)");
  std::string dir = file_name.substr(0, file_name.rfind('/') == std::string::npos ? 0 : file_name.rfind('/'));
  for_each_config_line(text, file_name, [&](const std::string& origin, const std::string& line) {
    for (std::string keyword : {"include ", "!include "}) {
      if (line.rfind(keyword, 0) != 0)
        continue;
      std::string target = trim(std::string_view(line).substr(keyword.size()));
      if (target.empty() || target[0] != '/')
        target = dir + "/" + target;
      auto included = read_file(target);
      if (!included && keyword[0] != '!')
        throw format_error(origin + ": file '" + target + "' included here does not exist");
      if (included)
        apply_nix_config(*included, target, read_file, warn, depth + 1);
      return;
    }
    auto [name, value] = assignment(line, origin);
    bool extra = name.rfind("extra-", 0) == 0 && knows(name.substr(6));
    if (extra)
      name = name.substr(6);
    if (!knows(name)) {
      if (!nix_only_setting(name) && !(name.rfind("extra-", 0) == 0 && nix_only_setting(name.substr(6))))
        warn(origin + ": unknown setting '" + name + "'");
      return;
    }
    if (extra && !get(name).empty())
      value = get(name) + " " + value;
    set(name, value, origin);
  });
}

void settings::apply_config(std::string_view text, const std::string& file_name) {
  for_each_config_line(text, file_name, [&](const std::string& origin, const std::string& line) {
    auto [name, value] = assignment(line, origin);
    set(name, value, origin);
  });
}

std::vector<std::string> settings::get_words(const std::string& name) const {
  std::vector<std::string> words;
  std::istringstream in(get(name));
  for (std::string w; in >> w;)
    words.push_back(w);
  return words;
}

bool settings::get_bool(const std::string& name) const {
  return parse_bool_setting(get(name), "setting '" + name + "'");
}

uint64_t settings::get_number(const std::string& name) const {
  auto& v = get(name);
  for (auto& s : known)
    if (name == s.name && s.k == kind::size)
      return parse_size_setting(v, "setting '" + name + "'");
  return parse_number(v, "setting '" + name + "'");
}

const std::string& settings::get(const std::string& name) const {
  auto it = values_.find(name);
  if (it == values_.end())
    throw error("internal: unknown setting '" + name + "' read");
  return it->second;
}

sandbox_path parse_sandbox_path(const std::string& word, const std::string& what) {
  sandbox_path p;
  std::string w = word;
  if (!w.empty() && w.back() == '?') {
    p.optional = true;
    w.pop_back();
  }
  auto eq = w.find('=');
  p.target = w.substr(0, eq);
  p.source = eq == std::string::npos ? p.target : w.substr(eq + 1);
  if (p.target.empty() || p.source.empty())
    throw format_error(what + ": '" + word + "' has an empty path");
  if (p.target[0] != '/' || p.source[0] != '/')
    throw format_error(what + ": '" + word + "' is not an absolute path (or TARGET=SOURCE of two)");
  return p;
}

std::vector<sandbox_path> parse_sandbox_paths(const std::string& words, const std::string& what) {
  std::vector<sandbox_path> out;
  std::size_t pos = 0;
  while ((pos = words.find_first_not_of(" \t\n", pos)) != std::string::npos) {
    auto end = words.find_first_of(" \t\n", pos);
    out.push_back(parse_sandbox_path(words.substr(pos, end - pos), what));
    pos = end;
  }
  return out;
}

} // namespace kiln
