#include "store/cache/store_uri.hpp"
#include "store/daemon/client_store.hpp"
#include "store/local/closure.hpp"
#include "store/io/error.hpp"
#include "store/export.hpp"
#include "store/io/fd.hpp"
#include "store/io/file_ops.hpp"
#include "store/io/pipe_source.hpp"
#include "store/format/nar.hpp"
#include "store/local/optimise.hpp"
#include "sandbox/system_features.hpp"
#include "tools/kiln/commands.hpp"
#include "tools/kiln/store_cli.hpp"

#include <cstdlib>
#include <fcntl.h>
#include <iostream>
#include <sys/stat.h>
#include <unistd.h>

namespace kiln::cmd {

const char* store_usage = R"(Usage: kiln store COMMAND [--store local:DIR] ...

  kiln store add PATH...                       add files or trees (recursive sha256)
  kiln store add-fixed [--recursive] --type ALGO PATH...
                                               add as fixed-output content (flat by default)
  kiln store add-text NAME FILE                add FILE's text as NAME; store paths it
                                               mentions that are valid become references
  kiln store path-info [--json] [-r] [--sigs] PATH...
  kiln store query --references|--referrers|--requisites|--deriver|--outputs PATH...
  kiln store missing [--json] DRV[^OUT,...|^*]|PATH...
                                               what realising these would take: derivations
                                               to build, paths to substitute, unknown paths
  kiln store dump PATH                         the NAR of a valid path on stdout
  kiln store export PATH...                    the paths (references first) as a
                                               'nix-store --export' stream on stdout
  kiln store import                            add every path of an export stream on stdin
  kiln store verify [--check-contents] [--json] --all|PATH...
                                               check that valid paths exist (and hash right;
                                               with --all, the optimised .links too);
                                               exit 1 if anything is broken (a daemon
                                               checks its whole store: --all only)
  kiln store gc [--print-roots|--print-live|--print-dead] [--max-freed BYTES] [--json]
                                               delete every path not reachable from a root
                                               (gcroots/, profiles/, live processes' temp
                                               roots); --max-freed takes K/M/G/T suffixes;
                                               keep-outputs/keep-derivations via --option
  kiln store delete [--json] PATH...           delete these paths; refused if any is live
                                               or referred to by a path not being deleted
  kiln store optimise [--json]                 hard-link identical files via .links; report bytes freed
                                               (through a daemon: as it reports them, to 0.01 MiB)
  kiln store sign --key-file SECRET-FILE PATH...   add a signature to each path
  kiln store verify-sigs --trusted-public-keys 'NAME:KEY ...' PATH...
                                               exit 1 unless every path has a valid
                                               signature by one of the keys

--store local:DIR keeps contents in DIR/nix/store and the database in
DIR/nix/var/nix/db, laid out exactly as Nix 2.8 does, so Nix's tools read it
(nix-store --store DIR ...); /DIR and local?root=DIR say the same. Without
--store: the daemon for a user who is not root when its socket exists, else
/ for root and ~/.local/share/kiln/root for others. Paths may be given as
/nix/store/... or as their location under DIR.

--store daemon (or unix:///PATH) talks to kilnd or nix-daemon over Nix's
socket ($NIX_DAEMON_SOCKET_PATH, else /nix/var/nix/daemon-socket/socket):
add, add-fixed, add-text, path-info, query, missing, gc, delete, dump, export,
import, sign, verify-sigs, optimise and verify --all work through it (and kiln
build and kiln log); verify of given PATHs needs a local store and says so.

Settings come from $KILN_CONF (default /etc/kiln/kiln.conf) as 'name = value'
lines, then from --option NAME VALUE (e.g. --option keep-outputs true).
)";

namespace {

bool names_daemon(const std::string& uri) { return uri == "daemon" || uri.rfind("unix://", 0) == 0; }

// Nix's default: the daemon for a user who is not root when its socket is
// there, else the local store.
std::string chosen_store(const cli::parsed_args& a) {
  std::string uri = a.value_or("--store", "auto");
  if (uri == "auto")
    uri = ::getuid() != 0 && ::access(daemon::default_daemon_socket().c_str(), F_OK) == 0 ? "daemon" : "local";
  return uri;
}

} // namespace

std::unique_ptr<local_store> open_store(const cli::parsed_args& a) {
  std::string uri = chosen_store(a);
  if (names_daemon(uri))
    throw cli::usage_error("this command works on a local store only, not through the daemon ('" + uri + "')");
  return std::make_unique<local_store>(store_layout::from_uri(uri));
}

std::unique_ptr<kiln::store> open_store_at(const std::string& uri, const cli::parsed_args& a, bool must_exist,
                                           daemon::client_store::log_sink log) {
  if (!log)
    log = [](const daemon::stderr_message& m) {
      if (m.code == daemon::stderr_code::next)
        std::cerr << m.text << std::flush;
    };
  if (names_daemon(uri)) {
    // The client's settings, as Nix's client sends them: the flags that
    // have fields of their own, then what was set by name.
    daemon::client_options o;
    o.keep_going = a.has("--keep-going");
    o.keep_failed = a.has("--keep-failed");
    o.try_fallback = a.has("--fallback");
    o.verbose_build = a.has("--print-build-logs") ? 0 : 7;
    auto number = [&](const char* flag, const char* name) {
      if (a.values.count(flag))
        return parse_size_setting(a.values.at(flag), std::string(flag));
      return settings().get_number(name);
    };
    if (a.values.count("--max-jobs") && a.values.at("--max-jobs") != "auto")
      o.max_build_jobs = number("--max-jobs", "max-jobs");
    o.max_silent_time = number("--max-silent-time", "max-silent-time");
    for (auto [flag, name] : {std::pair{"--timeout", "timeout"}, {"--max-log-size", "max-log-size"}, {"--repeat", "repeat"}})
      if (a.values.count(flag))
        o.overrides.emplace_back(name, a.values.at(flag));
    o.overrides.insert(o.overrides.end(), a.pairs.begin(), a.pairs.end());
    return std::make_unique<daemon::client_store>(uri == "daemon" ? daemon::default_daemon_socket() : uri.substr(7), o,
                                                  std::move(log));
  }
  if (must_exist || is_binary_cache_uri(uri))
    return open_store_uri(uri, !must_exist, cache_client_settings_from(load_settings(a)));
  return std::make_unique<local_store>(store_layout::from_uri(uri));
}

std::unique_ptr<kiln::store> open_any_store(const cli::parsed_args& a, daemon::client_store::log_sink log) {
  return open_store_at(chosen_store(a), a, false, std::move(log));
}

settings load_settings(const cli::parsed_args& a) {
  settings s;
  // Defaults that depend on the host are set here, before the files.
  s.set("system-features", sandbox::default_system_features(::access("/dev/kvm", F_OK) == 0), "the host");
  const char* env = std::getenv("KILN_CONF");
  std::string conf = env ? env : "/etc/kiln/kiln.conf";
  if (env || ::access(conf.c_str(), F_OK) == 0)
    s.apply_config(read_whole_file(conf, 1u << 20, "configuration file"), conf);
  for (auto& [name, value] : a.pairs)
    s.set(name, value);
  return s;
}

store_path parse_any_path(kiln::store& s, const std::string& text) {
  if (auto* local = dynamic_cast<local_store*>(&s))
    return local->parse_path(text);
  return parse_store_path(text);
}

store_path valid_path(kiln::store& store, const std::string& text) {
  auto p = parse_any_path(store, text);
  if (!store.is_valid(p))
    throw error("path '" + p.full() + "' is not valid in this store");
  return p;
}

store_path_set valid_paths(kiln::store& store, const std::vector<std::string>& texts) {
  store_path_set out;
  for (auto& t : texts)
    out.insert(valid_path(store, t));
  return out;
}

wanted_path parse_wanted(kiln::store& store, const std::string& text) {
  auto caret = text.rfind('^');
  if (caret == std::string::npos) {
    auto p = parse_any_path(store, text);
    return p.is_derivation() ? wanted_path::built(p) : wanted_path::opaque(p);
  }
  auto p = parse_any_path(store, text.substr(0, caret));
  if (!p.is_derivation())
    throw cli::usage_error("'" + text + "': only a .drv path can be followed by ^OUTPUTS");
  std::string list = text.substr(caret + 1);
  std::set<std::string> outputs;
  if (list != "*") {
    for (std::size_t pos = 0; pos <= list.size();) {
      auto comma = list.find(',', pos);
      std::string name = list.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
      if (name.empty())
        throw cli::usage_error("'" + text + "': an empty output name");
      outputs.insert(name);
      pos = comma == std::string::npos ? list.size() + 1 : comma + 1;
    }
  }
  return wanted_path::built(p, outputs);
}

store_path_set valid_paths_mentioned(kiln::store& store, std::string_view text) {
  store_path_set found;
  const std::string marker = std::string(default_store_dir) + "/";
  for (auto pos = text.find(marker); pos != std::string_view::npos; pos = text.find(marker, pos + 1)) {
    auto hash_part = text.substr(pos + marker.size(), store_path_hash_length);
    if (hash_part.size() < store_path_hash_length)
      break;
    bool well_formed = true;
    for (char c : hash_part)
      well_formed = well_formed && is_nix_base32_char(c);
    if (well_formed)
      if (auto p = store.query_path_from_hash_part(hash_part))
        found.insert(*p);
  }
  return found;
}

namespace {

namespace {

// `nix-store --add` and `--add-fixed`: in a local store straight from the
// file system; through a daemon as Nix's client sends it, the NAR (or, for
// a flat hash, the file's bytes) streamed in AddToStore.
path_info add_file_or_tree(kiln::store& s, const std::string& path, ingestion_method method, hash_algo algo) {
  if (auto* local = dynamic_cast<local_store*>(&s))
    return local->add_path(path, method, algo);
  std::string name = split_path(path).second;
  check_store_path_name(name);
  if (method == ingestion_method::recursive) {
    pipe_source nar([&](sink& out) { dump_path(path, out); });
    return s.add_to_store(name, content_method::recursive, algo, nar, {});
  }
  unique_fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  struct stat st;
  if (!fd || ::fstat(fd.get(), &st) != 0)
    throw_errno("opening '" + path + "'");
  if (!S_ISREG(st.st_mode))
    throw error("'" + path + "' is not a regular file (flat hashing takes one file)");
  fd_source bytes(fd.get(), path);
  return s.add_to_store(name, content_method::flat, algo, bytes, {});
}

} // namespace

int add(const std::vector<std::string>& args) {
  auto a = cli::parse(args, {store_option}, store_usage);
  cli::expect_positional(a, 1, SIZE_MAX, "PATH to add");
  auto store = open_any_store(a);
  for (auto& p : a.positional)
    std::cout << add_file_or_tree(*store, p, ingestion_method::recursive, hash_algo::sha256).path.full() << '\n';
  return 0;
}

int add_fixed(const std::vector<std::string>& args) {
  auto a = cli::parse(args, {store_option, {"--recursive"}, {"--type", true}}, store_usage);
  cli::expect_positional(a, 1, SIZE_MAX, "PATH to add");
  if (!a.values.count("--type"))
    throw cli::usage_error("missing --type ALGO (sha256, sha512, sha1 or md5)");
  auto algo = parse_hash_algo(a.values.at("--type"));
  auto method = a.has("--recursive") ? ingestion_method::recursive : ingestion_method::flat;
  auto store = open_any_store(a);
  for (auto& p : a.positional)
    std::cout << add_file_or_tree(*store, p, method, algo).path.full() << '\n';
  return 0;
}

int add_text(const std::vector<std::string>& args) {
  auto a = cli::parse(args, {store_option}, store_usage);
  cli::expect_positional(a, 2, 2, "NAME FILE");
  // Text paths are small (builder scripts, configs); 64 MiB is far beyond any.
  std::string text = read_whole_file(a.positional[1], 64u << 20, "text file");
  auto store = open_any_store(a);
  auto refs = valid_paths_mentioned(*store, text);
  string_source data(text);
  std::cout << store->add_to_store(a.positional[0], content_method::text, hash_algo::sha256, data, refs).path.full()
            << '\n';
  return 0;
}

int dump(const std::vector<std::string>& args) {
  auto a = cli::parse(args, {store_option}, store_usage);
  cli::expect_positional(a, 1, 1, "PATH to dump");
  cli::refuse_binary_to_terminal("NAR");
  auto store = open_any_store(a);
  auto p = valid_path(*store, a.positional[0]);
  fd_sink out(STDOUT_FILENO, "standard output", 1 << 20);
  store->nar_from_path(p, out);
  out.flush();
  return 0;
}

int export_(const std::vector<std::string>& args) {
  auto a = cli::parse(args, {store_option}, store_usage);
  cli::expect_positional(a, 1, SIZE_MAX, "PATH to export");
  cli::refuse_binary_to_terminal("export stream");
  auto store = open_any_store(a);
  auto wanted = valid_paths(*store, a.positional);
  // The given paths only, but references before referrers, as Nix orders them.
  std::vector<store_path> order;
  for (auto& p : compute_closure(*store, wanted))
    if (wanted.count(p))
      order.push_back(p);
  fd_sink out(STDOUT_FILENO, "standard output", 1 << 20);
  export_paths(*store, order, out);
  return 0;
}

int import(const std::vector<std::string>& args) {
  auto a = cli::parse(args, {store_option}, store_usage);
  cli::expect_positional(a, 0, 0, "");
  auto store = open_any_store(a);
  // NARs wait beside the store they go to, or in $TMPDIR on their way to a daemon.
  std::string spool = "/tmp";
  if (auto* local = dynamic_cast<local_store*>(store.get()))
    spool = local->layout().kiln_dir();
  else if (const char* tmp = std::getenv("TMPDIR"); tmp && *tmp)
    spool = tmp;
  fd_source in(STDIN_FILENO, "standard input");
  auto result = import_paths(*store, in, spool);
  for (auto& p : result.imported)
    std::cout << p.full() << '\n';
  for (auto& [path, why] : result.refused)
    std::cerr << "error: " << why << '\n';
  return result.refused.empty() ? 0 : 1;
}

} // namespace

int optimise(const std::vector<std::string>& args) {
  auto a = cli::parse(args, {store_option, {"--json"}}, store_usage);
  cli::expect_positional(a, 0, 0, "");
  auto store = open_any_store(a);
  auto r = store->optimise();
  // A daemon says what it linked and freed (to 0.01 MiB), not what it saw.
  bool local = dynamic_cast<local_store*>(store.get()) != nullptr;
  if (a.has("--json")) {
    std::cout << "{";
    if (local)
      std::cout << "\"filesSeen\":" << r.files_seen << ",";
    std::cout << "\"filesLinked\":" << r.files_linked << ",\"bytesSaved\":" << r.bytes_saved << "}\n";
  } else if (local) {
    std::cout << r.files_linked << " of " << r.files_seen << " files replaced by hard links, "
              << r.bytes_saved << " bytes (" << r.bytes_saved / (1024 * 1024) << " MiB) freed\n";
  } else {
    std::cout << r.files_linked << " files replaced by hard links, " << r.bytes_saved / (1024 * 1024)
              << " MiB freed (as the daemon reports it)\n";
  }
  return 0;
}

int store_query(const std::vector<std::string>& args);
int store_path_info(const std::vector<std::string>& args);
int store_verify(const std::vector<std::string>& args);
int store_sign(const std::vector<std::string>& args);
int store_verify_sigs(const std::vector<std::string>& args);
int store_gc(const std::vector<std::string>& args);
int store_missing(const std::vector<std::string>& args);
int store_delete(const std::vector<std::string>& args);

int store(const std::vector<std::string>& args) {
  return cli::dispatch("kiln store", args,
                       {{"add", "", add},
                        {"add-fixed", "", add_fixed},
                        {"add-text", "", add_text},
                        {"path-info", "", store_path_info},
                        {"query", "", store_query},
                        {"missing", "", store_missing},
                        {"dump", "", dump},
                        {"export", "", export_},
                        {"import", "", import},
                        {"verify", "", store_verify},
                        {"gc", "", store_gc},
                        {"delete", "", store_delete},
                        {"optimise", "", optimise},
                        {"sign", "", store_sign},
                        {"verify-sigs", "", store_verify_sigs}},
                       store_usage);
}

} // namespace kiln::cmd
