#include "store/io/error.hpp"
#include "store/format/hash.hpp"
#include "store/format/nar.hpp"
#include "tools/kiln/cli.hpp"
#include "tools/kiln/commands.hpp"

#include <iostream>

namespace kiln::cmd {
namespace {

const char* hash_usage = R"(Usage: kiln hash COMMAND ...

  kiln hash path [--type ALGO] [--base16|--base32|--base64|--sri] PATH...
      hash of the NAR serialisation of each PATH (as 'nix-hash')
  kiln hash file [--type ALGO] [--base16|--base32|--base64|--sri] FILE...
      hash of each regular FILE's bytes (as 'nix-hash --flat')
  kiln hash convert --type ALGO --to base16|base32|base64|sri HASH...
      re-encode HASH (any of those forms, bare or 'algo:'-prefixed)

ALGO is sha256 (default), sha512, sha1 or md5. The default output is Nix
base32, as 'nix-hash --type sha256 --base32' prints it.
)";

const std::vector<cli::option_spec> hash_options = {
  {"--type", true}, {"--base16"}, {"--base32"}, {"--base64"}, {"--sri"}};

hash_format chosen_format(const cli::parsed_args& a) {
  int count = 0;
  hash_format f = hash_format::base32;
  for (auto [flag, fmt] : {std::pair{"--base16", hash_format::base16},
                           std::pair{"--base32", hash_format::base32},
                           std::pair{"--base64", hash_format::base64},
                           std::pair{"--sri", hash_format::sri}})
    if (a.has(flag)) {
      f = fmt;
      ++count;
    }
  if (count > 1)
    throw cli::usage_error("choose one of --base16, --base32, --base64, --sri");
  return f;
}

// `kiln hash path` and `kiln hash file` differ only in what is hashed.
int hash_each(const std::vector<std::string>& args, bool recursive) {
  auto a = cli::parse(args, hash_options, hash_usage);
  cli::expect_positional(a, 1, SIZE_MAX, recursive ? "PATH to hash" : "FILE to hash");
  auto algo = parse_hash_algo(a.value_or("--type", "sha256"));
  auto format = chosen_format(a);
  for (auto& path : a.positional) {
    kiln::hash h;
    if (recursive) {
      h = hash_path(path, algo).nar_hash;
    } else {
      h = hash_file(algo, path);
    }
    std::cout << h.to_string(format) << '\n';
  }
  return 0;
}

int convert(const std::vector<std::string>& args) {
  auto a = cli::parse(args, {{"--type", true}, {"--to", true}}, hash_usage);
  cli::expect_positional(a, 1, SIZE_MAX, "HASH to convert");
  std::optional<hash_algo> algo;
  if (a.values.count("--type"))
    algo = parse_hash_algo(a.values.at("--type"));
  if (!a.values.count("--to"))
    throw cli::usage_error("missing --to base16|base32|base64|sri");
  auto format = parse_hash_format(a.values.at("--to"));
  for (auto& text : a.positional)
    std::cout << parse_hash(text, algo).to_string(format) << '\n';
  return 0;
}

} // namespace

int hash(const std::vector<std::string>& args) {
  return cli::dispatch(
    "kiln hash", args,
    {{"path", "", [](const std::vector<std::string>& a) { return hash_each(a, true); }},
     {"file", "", [](const std::vector<std::string>& a) { return hash_each(a, false); }},
     {"convert", "", convert}},
    hash_usage);
}

} // namespace kiln::cmd
