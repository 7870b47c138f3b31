#include "store/format/derivation.hpp"
#include "store/format/derivation_hash.hpp"
#include "store/format/derivation_json.hpp"
#include "store/io/error.hpp"
#include "store/io/fd.hpp"
#include "store/io/file_ops.hpp"
#include "tools/kiln/cli.hpp"
#include "tools/kiln/commands.hpp"
#include "tools/kiln/store_cli.hpp"

#include <iostream>
#include <tuple>

namespace kiln::cmd {
namespace {

const char* drv_usage = R"(Usage: kiln drv COMMAND ...

  kiln drv show [--json] FILE.drv
      print the derivation; --json prints what 'nix show-derivation' prints
  kiln drv path FILE.drv
      the store path a .drv with this content has
  kiln drv outputs [--drv-dir DIR] FILE.drv
      recompute the output paths from the content, one 'name path' line each;
      input .drv files are found by base name in DIR (default: FILE's
      directory). Fails if the paths recorded in FILE differ.

  kiln drv add [--store local:DIR] FILE.drv
  kiln drv add [--store local:DIR] --json FILE.json
      add a derivation to the store and print its .drv path. Its input
      derivations and sources must be valid there. FILE.drv must record the
      output paths its content implies; FILE.json (the 'nix show-derivation'
      body, plus "name") may leave them out and Kiln fills them in:
        {"name": "hello", "system": "x86_64-linux", "builder": "/bin/sh",
         "args": ["-c", "echo hi > $out"], "outputs": {"out": {}},
         "inputDrvs": {}, "inputSrcs": [], "env": {}}

FILE.drv is an ATerm store derivation. Its name comes from the file name
when that is '<hash>-<name>.drv', else from the 'name' env var.
)";

struct loaded {
  derivation drv;
  std::string name;
  std::string path; // the store path of the .drv
};

loaded load(const std::string& file) {
  loaded l;
  l.drv = read_derivation_file(file);
  l.name = derivation_name(l.drv, file);
  l.path = derivation_store_path(l.drv, l.name).full();
  return l;
}

std::string quoted(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '\n')
      out += "\\n";
    else if (c == '"' || c == '\\')
      out += std::string("\\") + c;
    else
      out += c;
  }
  return out + "\"";
}

void print_human(const loaded& l) {
  auto& d = l.drv;
  std::cout << l.path << "\n  outputs:\n";
  for (auto& [name, o] : d.outputs) {
    std::cout << "    " << name << "  " << (o.path.empty() ? "(deferred)" : o.path);
    if (o.is_fixed())
      std::cout << "  fixed " << o.hash_algo << ":" << o.hash;
    std::cout << '\n';
  }
  std::cout << "  input derivations:" << (d.input_drvs.empty() ? " none\n" : "\n");
  for (auto& [path, outs] : d.input_drvs) {
    std::cout << "    " << path << " (";
    bool first = true;
    for (auto& o : outs) {
      std::cout << (first ? "" : ", ") << o;
      first = false;
    }
    std::cout << ")\n";
  }
  std::cout << "  input sources:" << (d.input_srcs.empty() ? " none\n" : "\n");
  for (auto& s : d.input_srcs)
    std::cout << "    " << s << '\n';
  std::cout << "  system: " << d.platform << "\n  builder: " << d.builder << "\n  args:";
  for (auto& arg : d.args)
    std::cout << ' ' << quoted(arg);
  std::cout << "\n  env:\n";
  for (auto& [k, v] : d.env)
    std::cout << "    " << k << '=' << quoted(v) << '\n';
}

int show(const std::vector<std::string>& args) {
  auto a = cli::parse(args, {{"--json"}}, drv_usage);
  cli::expect_positional(a, 1, 1, "FILE.drv to show");
  auto l = load(a.positional[0]);
  if (a.has("--json"))
    std::cout << derivation_to_json(l.drv, l.path) << '\n';
  else
    print_human(l);
  return 0;
}

int path(const std::vector<std::string>& args) {
  auto a = cli::parse(args, {}, drv_usage);
  cli::expect_positional(a, 1, 1, "FILE.drv");
  std::cout << load(a.positional[0]).path << '\n';
  return 0;
}

int outputs(const std::vector<std::string>& args) {
  auto a = cli::parse(args, {{"--drv-dir", true}}, drv_usage);
  cli::expect_positional(a, 1, 1, "FILE.drv");
  const std::string& file = a.positional[0];
  auto l = load(file);
  derivation_hasher hasher(directory_loader(a.value_or("--drv-dir", split_path(file).first)));
  auto computed = compute_output_paths(l.drv, l.name, hasher);
  std::string lines, mismatches; // printed only if none is wrong: the error names them all
  for (auto& [name, p] : computed) {
    lines += name + ' ' + p.full() + '\n';
    auto& recorded = l.drv.outputs.at(name).path;
    if (!recorded.empty() && recorded != p.full())
      mismatches += "\n  output '" + name + "': recorded " + recorded + ", computed " + p.full();
  }
  if (!mismatches.empty())
    throw error("'" + file + "' records output paths that its content does not imply:" +
                mismatches);
  std::cout << lines;
  return 0;
}

int add(const std::vector<std::string>& args) {
  auto a = cli::parse(args, {store_option, {"--json"}}, drv_usage);
  cli::expect_positional(a, 1, 1, "FILE to add");
  const std::string& file = a.positional[0];
  auto store = open_store(a);
  derivation_hasher hasher(directory_loader(store->layout().store_dir()));
  derivation d;
  std::string name;
  if (a.has("--json")) {
    // JSON derivations are small; 64 MiB is far beyond any.
    std::tie(d, name) = derivation_from_json(read_whole_file(file, 64u << 20, "JSON derivation"), file);
    fill_output_paths(d, name, hasher);
  } else {
    auto l = load(file);
    d = l.drv;
    name = l.name;
    for (auto& [out_name, p] : compute_output_paths(d, name, hasher))
      if (d.outputs.at(out_name).path != p.full())
        throw error("'" + file + "' records output '" + out_name + "' as '" + d.outputs.at(out_name).path +
                    "', but its content implies " + p.full());
  }
  std::cout << store->add_derivation(d, name).path.full() << '\n';
  return 0;
}

} // namespace

int drv(const std::vector<std::string>& args) {
  return cli::dispatch("kiln drv", args,
                       {{"show", "", show}, {"path", "", path}, {"outputs", "", outputs}, {"add", "", add}},
                       drv_usage);
}

} // namespace kiln::cmd
