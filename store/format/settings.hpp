// Kiln's settings: Nix's names where the meaning is Nix's (design.md,
// "Configuration"), from kiln.conf lines and `--option NAME VALUE`.
// Parsing is pure, so a bad line is reported with its file and line number
// before anything runs.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace kiln {

class settings {
public:
  settings(); // every known setting at its default

  // Sets a known setting; throws format_error for an unknown name or a
  // value of the wrong kind, naming `origin` ("--option", "kiln.conf:12").
  void set(const std::string& name, const std::string& value, const std::string& origin = "--option");
  // Applies kiln.conf text: `name = value` lines, `#` comments, blank lines.
  void apply_config(std::string_view text, const std::string& file_name);

  // Applies nix.conf text by Nix's rules: `extra-NAME = v` appends to NAME,
  // `include FILE` and `!include FILE` (missing is fine) read FILE relative
  // to this file's directory through `read_file` (nullopt: missing), and a
  // setting Kiln does not know is passed to `warn`, not an error (the file
  // is Nix's too). `depth` bounds include cycles.
  void apply_nix_config(std::string_view text, const std::string& file_name,
                        const std::function<std::optional<std::string>(const std::string&)>& read_file,
                        const std::function<void(const std::string&)>& warn, int depth = 0);
  bool get_bool(const std::string& name) const;
  // A number or byte-count setting (K/M/G/T suffixes for byte counts).
  uint64_t get_number(const std::string& name) const;
  const std::string& get(const std::string& name) const;
  // A list setting's space-separated words.
  std::vector<std::string> get_words(const std::string& name) const;

  // name -> current value, for `kiln show-config` and the console.
  const std::map<std::string, std::string>& all() const { return values_; }

private:
  std::map<std::string, std::string> values_;
  bool knows(const std::string& name) const;
};

// "true"/"false" as Nix writes booleans.
bool parse_bool_setting(const std::string& value, const std::string& what);
// A byte count with an optional K, M, G or T suffix (powers of 1024), as Nix accepts.
uint64_t parse_size_setting(const std::string& value, const std::string& what);

// One word of sandbox-paths (and extra-sandbox-paths, the pre-build-hook's
// answer): "/path" or "/target=/source", either with a trailing "?" for
// optional (a missing source is skipped instead of failing the build).
struct sandbox_path {
  std::string target, source;
  bool optional = false;
  bool operator==(const sandbox_path& o) const {
    return target == o.target && source == o.source && optional == o.optional;
  }
};
// Throws format_error naming `what` for a relative path or an empty side.
sandbox_path parse_sandbox_path(const std::string& word, const std::string& what);
// Every word of a space-separated list.
std::vector<sandbox_path> parse_sandbox_paths(const std::string& words, const std::string& what);

} // namespace kiln
