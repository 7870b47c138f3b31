#include "store/daemon/client_store.hpp"

#include <cstdio>

#include "store/daemon/path_infos.hpp"
#include "store/format/wire.hpp"
#include "store/io/error.hpp"
#include "store/io/unix_socket.hpp"
#include "store/local/build_log.hpp"
#include "store/local/store_layout.hpp"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <sys/socket.h>

namespace kiln::daemon {

namespace {

store_path_set paths_of(const std::vector<std::string>& texts) {
  store_path_set out;
  for (auto& t : texts)
    out.insert(parse_store_path(t));
  return out;
}

std::string content_method_text(content_method m, hash_algo algo) {
  std::string a(to_string(algo));
  switch (m) {
  case content_method::text: return "text:" + a;
  case content_method::flat: return "fixed:" + a;
  case content_method::recursive: return "fixed:r:" + a;
  }
  return "";
}

} // namespace

std::string default_daemon_socket() {
  const char* env = std::getenv("NIX_DAEMON_SOCKET_PATH");
  return env && *env ? env : "/nix/var/nix/daemon-socket/socket";
}

struct client_store::connection {
  explicit connection(const std::string& socket_path)
    : fd(connect_unix(socket_path)), raw(fd.get(), "the daemon"), buffered(raw), in(buffered, "daemon reply") {}

  void send(std::string_view bytes) {
    while (!bytes.empty()) {
      ssize_t n = ::send(fd.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0)
        throw_errno("writing to the daemon");
      bytes.remove_prefix(static_cast<std::size_t>(n));
    }
  }

  unique_fd fd;
  fd_source raw;
  buffered_source buffered;
  wire::reader in;
};

client_store::client_store(const std::string& socket_path, const client_options& options, log_sink log)
  : conn_(std::make_unique<connection>(socket_path)), log_(std::move(log)) {
  std::string hello;
  wire::append_u64(hello, worker_magic_1);
  conn_->send(hello);
  auto& in = conn_->in;
  uint64_t at = in.offset();
  if (in.u64() != worker_magic_2)
    in.fail("not a Nix daemon (wrong magic)", at);
  uint64_t daemon = in.u64();
  if (protocol_major(daemon) != 1 || daemon < oldest_client)
    in.fail("daemon protocol version " + std::to_string(protocol_major(daemon)) + "." +
                std::to_string(protocol_minor(daemon)) + " is not supported",
            at + 8);
  // We speak up to 1.38 and meet an older daemon at its version.
  client_hello mine;
  mine.version = protocol_1_38;
  conn_->send(encode_client_hello(mine, daemon).substr(8)); // the magic went first
  version_ = std::min(daemon, protocol_1_38);
  if (protocol_minor(version_) >= 38)
    features_ = common_features(mine.features, read_features(in));
  conn_->send(encode_client_hello_rest(mine, version_));
  welcome_ = read_daemon_welcome(in, version_);
  read_stream();
  call(op::set_options, set_options_request(options).args);
}

client_store::~client_store() = default;

void client_store::read_stream() {
  for (;;) {
    stderr_message m = read_stderr_message(conn_->in);
    if (m.code == stderr_code::last)
      return;
    if (m.code == stderr_code::error)
      throw error(m.text);
    if (log_)
      log_(m);
  }
}

std::vector<argument> client_store::call(op code, std::vector<argument> args, source* upload, uint64_t upload_bytes) {
  request r;
  r.code = code;
  r.args = std::move(args);
  conn_->send(encode_request(r));
  if (upload) {
    std::string frame;
    char buf[32768];
    for (uint64_t left = upload_bytes; left > 0;) {
      std::size_t n = upload->read(buf, static_cast<std::size_t>(std::min<uint64_t>(left, sizeof buf)));
      if (n == 0) {
        if (upload_bytes != UINT64_MAX)
          throw error("the upload ended " + std::to_string(left) + " bytes early");
        break;
      }
      left -= n;
      frame.clear();
      wire::append_u64(frame, n);
      frame.append(buf, n);
      conn_->send(frame);
    }
    frame.clear();
    wire::append_u64(frame, 0);
    conn_->send(frame);
  }
  read_stream();
  return code == op::nar_from_path ? std::vector<argument>{} : read_reply(conn_->in, code, version_);
}

bool client_store::is_valid(const store_path& p) { return u64_at(call(op::is_valid_path, {p.full()}), 0) != 0; }

std::optional<path_info> client_store::query_path_info(const store_path& p) {
  auto reply = call(op::query_path_info, {p.full()});
  if (u64_at(reply, 0) == 0)
    return std::nullopt;
  std::size_t pos = 1;
  return path_info_from(reply, pos, p);
}

store_path_set client_store::query_valid_paths(const store_path_set& paths) {
  return paths_of(strs_at(call(op::query_valid_paths, {full_paths(paths), uint64_t{0}}), 0));
}

store_path_set client_store::query_referrers(const store_path& p) {
  return paths_of(strs_at(call(op::query_referrers, {p.full()}), 0));
}

store_path_set client_store::query_valid_derivers(const store_path& p) {
  return paths_of(strs_at(call(op::query_valid_derivers, {p.full()}), 0));
}

std::map<std::string, store_path> client_store::query_derivation_outputs(const store_path& drv) {
  std::map<std::string, store_path> out;
  auto reply = call(op::query_derivation_output_map, {drv.full()}); // kept: the loop reads into it
  for (auto& [name, path] : pairs_at(reply, 0))
    if (!path.empty())
      out.emplace(name, parse_store_path(path));
  return out;
}

std::vector<store_path> client_store::query_all_valid_paths() {
  auto set = paths_of(strs_at(call(op::query_all_valid_paths, {}), 0));
  return {set.begin(), set.end()};
}

std::optional<store_path> client_store::query_path_from_hash_part(std::string_view hash_part) {
  std::string p = str_at(call(op::query_path_from_hash_part, {std::string(hash_part)}), 0);
  if (p.empty())
    return std::nullopt;
  return parse_store_path(p);
}

std::string client_store::derived(const wanted_path& w) const {
  if (!w.outputs)
    return w.path.full();
  if (w.outputs->empty())
    return w.path.full() + "!*";
  std::string list;
  for (auto& o : *w.outputs)
    list += (list.empty() ? "" : ",") + o;
  return w.path.full() + "!" + list;
}

missing_plan client_store::query_missing(const std::vector<wanted_path>& targets) {
  std::vector<std::string> asked;
  for (auto& t : targets)
    asked.push_back(derived(t));
  auto reply = call(op::query_missing, {asked});
  missing_plan plan;
  plan.will_build = paths_of(strs_at(reply, 0));
  plan.will_substitute = paths_of(strs_at(reply, 1));
  plan.unknown = paths_of(strs_at(reply, 2));
  plan.download_size = u64_at(reply, 3);
  plan.nar_size = u64_at(reply, 4);
  return plan;
}

path_info client_store::add_to_store(std::string_view name, content_method method, hash_algo algo, source& data,
                                     const store_path_set& references) {
  auto reply = call(op::add_to_store,
                    {std::string(name), content_method_text(method, algo), full_paths(references), uint64_t{0}}, &data);
  std::size_t pos = 0;
  return path_info_from(reply, pos);
}

path_info client_store::add_nar(source& nar, path_info info) {
  std::vector<argument> args;
  append_path_info(args, info, true);
  args.insert(args.end(), {uint64_t{0} /*repair*/, uint64_t{0} /*dontCheckSigs*/});
  call(op::add_to_store_nar, std::move(args), &nar, info.nar_size);
  return info;
}

void client_store::nar_from_path(const store_path& p, sink& out) {
  call(op::nar_from_path, {p.full()});
  copy_nar_reply(conn_->in, out);
}

void client_store::add_signatures(const store_path& p, const std::set<std::string>& sigs) {
  call(op::add_signatures, {p.full(), std::vector<std::string>(sigs.begin(), sigs.end())});
}

void client_store::add_temp_root(const store_path& p) { call(op::add_temp_root, {p.full()}); }

void client_store::add_indirect_root(const std::string& link) { call(op::add_indirect_root, {link}); }

gc_root_map client_store::find_roots() {
  gc_root_map roots;
  auto reply = call(op::find_roots, {}); // kept: the loop reads into it
  for (auto& [link, target] : pairs_at(reply, 0))
    roots[parse_store_path(target)].insert(link);
  return roots;
}

gc_result client_store::collect_garbage(const gc_options& o, const gc_progress& progress) {
  static const std::map<gc_action, uint64_t> actions{{gc_action::print_live, 0}, {gc_action::print_dead, 1},
                                                     {gc_action::delete_dead, 2}, {gc_action::delete_specific, 3}};
  gc_result result;
  if (o.action == gc_action::print_roots) {
    result.roots = find_roots();
    return result;
  }
  // The daemon applies its own keep-outputs and keep-derivations.
  log_sink saved = log_;
  log_ = [&](const stderr_message& m) {
    if (m.code == stderr_code::next && progress)
      progress(m.text.substr(0, m.text.size() - (!m.text.empty() && m.text.back() == '\n')));
    else if (saved)
      saved(m);
  };
  std::vector<argument> reply;
  try {
    // maxFreed as Nix's client sends it: all ones for no limit (a 2.8
    // daemon takes 0 literally and stops at once).
    reply = call(op::collect_garbage, {actions.at(o.action), full_paths(o.paths), uint64_t{0}, o.max_freed, uint64_t{0},
                                       uint64_t{0}, uint64_t{0}});
  } catch (...) {
    log_ = saved;
    throw;
  }
  log_ = saved;
  result.paths = strs_at(reply, 0);
  result.bytes_freed = u64_at(reply, 1);
  return result;
}

std::vector<argument> client_store::call_keeping_lines(op code, std::vector<argument> args,
                                                      std::vector<std::string>& lines) {
  log_sink saved = log_;
  log_ = [&](const stderr_message& m) {
    if (m.code == stderr_code::next)
      lines.push_back(m.text);
    if (saved)
      saved(m);
  };
  struct restore {
    log_sink& log;
    log_sink& saved;
    ~restore() { log = std::move(saved); }
  } put_back{log_, saved};
  return call(code, std::move(args));
}

optimise_result client_store::optimise() {
  // The daemon says what it saved in its log, not in the reply: "X.YZ MiB
  // freed by hard-linking N files" (Nix's words, kilnd's too). What it saw
  // is not said, and the bytes only to a hundredth of a MiB.
  std::vector<std::string> lines;
  call_keeping_lines(op::optimise_store, {}, lines);
  optimise_result r;
  for (auto& l : lines) {
    double mib = 0;
    unsigned long long files = 0;
    if (std::sscanf(l.c_str(), "%lf MiB freed by hard-linking %llu files", &mib, &files) == 2) {
      r.files_linked = files;
      r.bytes_saved = static_cast<uint64_t>(mib * 1024 * 1024 + 0.5);
    }
  }
  return r;
}

std::vector<verify_problem> client_store::verify(bool check_contents) {
  std::vector<std::string> lines;
  auto reply = call_keeping_lines(op::verify_store, {uint64_t{check_contents}, uint64_t{0}}, lines);
  std::vector<verify_problem> problems;
  if (u64_at(reply, 0) == 0)
    return problems;
  // The daemon names each problem in a line of its log ("path '/nix/store/...' ...").
  for (auto& l : lines) {
    auto start = l.find("'/");
    auto end = start == std::string::npos ? start : l.find('\'', start + 1);
    if (end == std::string::npos)
      continue;
    try {
      problems.push_back({parse_store_path(l.substr(start + 1, end - start - 1)), l.substr(0, l.size() - 1)});
    } catch (const format_error&) {
    }
  }
  if (problems.empty())
    throw error("the daemon found problems in the store but did not name a path (see its log)");
  return problems;
}

std::optional<std::string> client_store::build_log(const store_path& drv) {
  return read_build_log(store_layout{""}, drv.base_name());
}

uint64_t client_store::submit_detached(const std::vector<std::string>& derived_paths) {
  return u64_at(call(op::kiln_submit, {derived_paths}), 0);
}

std::string client_store::detached_status(uint64_t id, bool wait) {
  return str_at(call(op::kiln_status, {id, uint64_t{wait}}), 0);
}

std::vector<remote_build_result> client_store::build_paths(const std::vector<std::string>& derived_paths,
                                                           uint64_t mode) {
  auto reply = call(op::build_paths_with_results, {derived_paths, mode});
  std::vector<remote_build_result> out;
  std::size_t pos = 1;
  for (uint64_t i = 0, n = u64_at(reply, 0); i < n; ++i) {
    remote_build_result r;
    r.path = str_at(reply, pos++);
    static_cast<wire_build_result&>(r) = build_result_from(reply, pos, version_);
    out.push_back(std::move(r));
  }
  return out;
}

} // namespace kiln::daemon
