// A kilnd session's store operations: each reads its arguments from the
// request, asks the session's store, and writes its reply as Nix 2.8's
// daemon lays it out (worker-protocol.md §4).
#include "actors/detached_builds.hpp"
#include "actors/session.hpp"

#include "store/cache/store_uri.hpp"
#include "store/daemon/path_infos.hpp"
#include "store/local/missing.hpp"
#include "store/format/signature.hpp"
#include "store/io/error.hpp"
#include "store/local/build_log.hpp"
#include "store/local/gc_roots.hpp"
#include "store/local/verify.hpp"

#include <climits>
#include <sstream>
#include <sys/stat.h>
#include <unistd.h>

namespace kiln::daemon {

namespace {

std::vector<std::string> full_paths(const std::vector<store_path>& paths) {
  return full_paths(store_path_set(paths.begin(), paths.end()));
}

// "text:sha256", "fixed:sha256", "fixed:r:sha256" (AddToStore's method).
std::pair<content_method, hash_algo> parse_content_method(const std::string& text) {
  std::string_view rest = text;
  content_method m;
  if (rest.rfind("text:", 0) == 0) {
    m = content_method::text;
    rest.remove_prefix(5);
  } else if (rest.rfind("fixed:r:", 0) == 0) {
    m = content_method::recursive;
    rest.remove_prefix(8);
  } else if (rest.rfind("fixed:", 0) == 0) {
    m = content_method::flat;
    rest.remove_prefix(6);
  } else {
    throw format_error("unknown content address method '" + text + "'");
  }
  return {m, parse_hash_algo(rest)};
}

// Consumes the rest of an upload whatever happened to it, so the
// connection stays in step; if even that fails, the connection is broken.
template <class F>
void with_upload(framed_source& data, F f) {
  try {
    f();
  } catch (...) {
    try {
      data.drain();
    } catch (const std::exception& e) {
      throw refused_request(e.what());
    }
    throw;
  }
  data.drain();
}

} // namespace

store_path session::path_arg(const std::string& text) const {
  try {
    return parse_store_path(text);
  } catch (const format_error& e) {
    throw format_error("'" + text + "' is not a store path: " + e.what());
  }
}

void session::store_op(const request& r) {
  auto& s = store();
  switch (r.code) {
  case op::is_valid_path: return out_.last({uint64_t{s.is_valid(path_arg(str_at(r.args, 0)))}});
  case op::query_referrers: return out_.last({full_paths(s.query_referrers(path_arg(str_at(r.args, 0))))});
  case op::query_valid_derivers: return out_.last({full_paths(s.query_valid_derivers(path_arg(str_at(r.args, 0))))});
  case op::query_all_valid_paths: return out_.last({full_paths(s.query_all_valid_paths())});
  case op::query_valid_paths: {
    store_path_set asked;
    for (auto& p : strs_at(r.args, 0))
      asked.insert(path_arg(p));
    return out_.last({full_paths(s.query_valid_paths(asked))});
  }
  case op::query_path_info: {
    auto info = s.query_path_info(path_arg(str_at(r.args, 0)));
    std::vector<argument> reply{uint64_t{info.has_value()}};
    if (info)
      append_path_info(reply, *info, false);
    return out_.last(reply);
  }
  case op::query_path_from_hash_part: {
    auto p = s.query_path_from_hash_part(str_at(r.args, 0));
    return out_.last({p ? p->full() : std::string()});
  }
  case op::query_derivation_output_map: {
    string_pairs outputs;
    for (auto& [name, p] : s.query_derivation_outputs(path_arg(str_at(r.args, 0))))
      outputs.emplace_back(name, p.full());
    return out_.last({outputs});
  }
  case op::query_substitutable_path_info:
  case op::query_substitutable_path_infos:
  case op::query_substitutable_paths:
    return query_substitutable(r);
  case op::add_temp_root:
    s.add_temp_root(path_arg(str_at(r.args, 0)));
    return out_.last({uint64_t{1}});
  case op::add_indirect_root:
    s.add_indirect_root(str_at(r.args, 0));
    return out_.last({uint64_t{1}});
  case op::sync_with_gc: return out_.last({uint64_t{1}});
  case op::add_perm_root: return add_perm_root(r);
  case op::find_roots: {
    string_pairs roots;
    for (auto& [target, links] : s.find_roots())
      for (auto& link : links)
        roots.emplace_back(link, target.full());
    return out_.last({roots});
  }
  case op::add_signatures: {
    if (!trusted_)
      throw error("you are not privileged to add signatures");
    auto& sigs = strs_at(r.args, 1);
    s.add_signatures(path_arg(str_at(r.args, 0)), std::set<std::string>(sigs.begin(), sigs.end()));
    return out_.last({uint64_t{1}});
  }
  case op::nar_from_path: {
    store_path p = path_arg(str_at(r.args, 0));
    if (!s.is_valid(p))
      throw error("path '" + p.full() + "' is not valid");
    out_.last();
    s.nar_from_path(p, out_.raw_sink());
    return;
  }
  case op::add_text_to_store: {
    store_path_set refs;
    for (auto& p : strs_at(r.args, 2))
      refs.insert(path_arg(p));
    string_source text(str_at(r.args, 1));
    auto info = s.add_to_store(str_at(r.args, 0), content_method::text, hash_algo::sha256, text, refs);
    return out_.last({info.path.full()});
  }
  case op::optimise_store: {
    uint64_t act = out_.start_activity(act_optimise_store, "");
    auto done = s.optimise();
    out_.stop_activity(act);
    char line[96];
    std::snprintf(line, sizeof line, "%.2f MiB freed by hard-linking %llu files",
                  static_cast<double>(done.bytes_saved) / (1024.0 * 1024.0),
                  static_cast<unsigned long long>(done.files_linked));
    out_.message(lvl_info, line);
    return out_.last({uint64_t{1}});
  }
  case op::kiln_submit: {
    if (!ctx_.detached)
      throw refused_request("detached builds need kilnd's socket (not --stdio)");
    return out_.last({ctx_.detached->submit(strs_at(r.args, 0), changed_settings())});
  }
  case op::kiln_status: {
    if (!ctx_.detached)
      throw refused_request("detached builds need kilnd's socket (not --stdio)");
    auto status = ctx_.detached->status(u64_at(r.args, 0), u64_at(r.args, 1) != 0, [this] { return hung_up(in_fd_); });
    if (!status)
      throw error("there is no detached build " + std::to_string(u64_at(r.args, 0)));
    return out_.last({*status});
  }
  case op::add_to_store: return add_to_store(r);
  case op::add_to_store_nar: return add_to_store_nar(r);
  case op::add_multiple_to_store: return add_multiple_to_store(r);
  case op::add_build_log: return add_build_log(r);
  case op::collect_garbage: return collect_garbage(r);
  case op::verify_store: return verify_store(r);
  case op::query_missing: return query_missing(r);
  default: throw error("operation " + std::to_string(static_cast<uint64_t>(r.code)) + " is not supported by kilnd yet");
  }
}

void session::add_to_store(const request& r) {
  framed_source data(in_);
  with_upload(data, [&] {
    auto [method, algo] = parse_content_method(str_at(r.args, 1));
    store_path_set refs;
    for (auto& p : strs_at(r.args, 2))
      refs.insert(path_arg(p));
    path_info info = store().add_to_store(str_at(r.args, 0), method, algo, data, refs);
    std::vector<argument> reply;
    append_path_info(reply, info, true);
    data.drain();
    out_.last(reply);
  });
}

namespace {

// An untrusted client's paths must be content-addressed or signed by a
// key in trusted-public-keys (Nix's rule for addToStore with checkSigs).
void check_signed(const path_info& info, const settings& config) {
  if (info.ca || !parse_bool_setting(config.get("require-sigs"), "require-sigs"))
    return;
  if (!has_valid_signature(fingerprint_of(info), info.sigs, make_trusted_keys(config.get_words("trusted-public-keys"))))
    throw error("cannot add path '" + info.path.full() + "' because it lacks a valid signature");
}

} // namespace

void session::add_to_store_nar(const request& r) {
  std::size_t pos = 0;
  path_info info = path_info_from(r.args, pos);
  pos++; // repair: Kiln re-adds nothing that is valid
  bool dont_check_sigs = u64_at(r.args, pos) != 0 && trusted_;
  if (!trusted_)
    info.ultimate = false;
  framed_source data(in_);
  with_upload(data, [&] {
    auto& s = store();
    if (!dont_check_sigs)
      check_signed(info, config_);
    if (!s.is_valid(info.path))
      s.add_nar(data, info);
  });
  out_.last();
}

void session::add_multiple_to_store(const request& r) {
  bool dont_check_sigs = u64_at(r.args, 1) != 0 && trusted_;
  framed_source data(in_);
  with_upload(data, [&] {
    auto& s = store();
    wire::reader stream(data, "path stream");
    uint64_t count = stream.u64();
    static const std::vector<part> record{kind::str, kind::str, kind::str, kind::strings, kind::u64,
                                          kind::u64, kind::u64, kind::strings, kind::str};
    for (uint64_t i = 0; i < count; ++i) {
      std::vector<argument> fields;
      read_parts(stream, record, fields);
      std::size_t pos = 0;
      path_info info = path_info_from(fields, pos);
      info.ultimate = false;
      if (!dont_check_sigs)
        check_signed(info, config_);
      if (s.is_valid(info.path)) {
        discard_sink skipped;
        copy_exact(data, skipped, info.nar_size, "NAR of '" + info.path.full() + "'");
      } else {
        s.add_nar(data, info);
      }
    }
  });
  out_.last();
}

void session::add_build_log(const request& r) {
  framed_source data(in_);
  with_upload(data, [&] {
    if (!trusted_)
      throw error("you are not privileged to add logs");
    store_path drv = store_path::from_base_name(str_at(r.args, 0));
    build_log_writer log(build_log_path(ctx_.layout, drv.base_name(),
                                        parse_log_compression(config_.get("compress-build-log"))),
                         parse_log_compression(config_.get("compress-build-log")));
    char buf[65536];
    for (std::size_t n; (n = data.read(buf, sizeof buf)) > 0;)
      log.write(std::string_view(buf, n));
    log.close();
  });
  out_.last({uint64_t{1}});
}

void session::collect_garbage(const request& r) {
  static const gc_action actions[] = {gc_action::print_live, gc_action::print_dead, gc_action::delete_dead,
                                      gc_action::delete_specific};
  uint64_t action = u64_at(r.args, 0);
  if (action >= 4)
    throw format_error("unknown garbage collector action " + std::to_string(action));
  if (u64_at(r.args, 2))
    throw error("you are not allowed to ignore liveness");
  gc_options o;
  o.action = actions[action];
  for (auto& p : strs_at(r.args, 1))
    o.paths.insert(path_arg(p));
  if (uint64_t max = u64_at(r.args, 3))
    o.max_freed = max;
  o.keep_outputs = config_.get_bool("keep-outputs");
  o.keep_derivations = config_.get_bool("keep-derivations");
  auto result = store().collect_garbage(o, [this](const std::string& line) { out_.message(lvl_info, line); });
  out_.last({result.paths, result.bytes_freed, uint64_t{0}});
}

void session::verify_store(const request& r) {
  bool check_contents = u64_at(r.args, 0) != 0, repair = u64_at(r.args, 1) != 0;
  if (repair && !trusted_)
    throw error("you are not privileged to repair paths");
  out_.message(lvl_info, "reading the Nix store...");
  out_.message(lvl_info, "checking path existence...");
  bool errors = false;
  if (check_contents) {
    out_.message(lvl_info, "checking link hashes...");
    for (auto& l : check_links(store())) {
      out_.message(lvl_error, "link '" + l.link + "' was modified! expected hash '" + l.expected + "', got '" +
                                  l.actual + "'");
      if (!repair)
        errors = true;
      else if (::unlink(l.link.c_str()) == 0)
        out_.message(lvl_info, "removed link '" + l.link + "'");
      else
        throw_errno("removing corrupt link '" + l.link + "'");
    }
    out_.message(lvl_info, "checking store hashes...");
  }
  std::set<store_path> repaired;
  for (auto& p : store().verify(check_contents)) {
    out_.message(lvl_error, p.expected_hash.empty() ? "path '" + p.path.full() + "': " + p.problem
                                                    : "path '" + p.path.full() + "' was modified! expected hash '" +
                                                          p.expected_hash + "', got '" + p.actual_hash + "'");
    if (!repair) {
      errors = true;
    } else if (repaired.insert(p.path).second) {
      try {
        repair_path(p.path);
      } catch (const std::exception& e) {
        out_.message(lvl_error, std::string("\x1b[31;1merror:\x1b[0m ") + e.what());
        errors = true;
      }
    }
  }
  out_.last({uint64_t{errors}});
}

// As Nix repairs a path: from the first substituter that has the same
// contents (signed as the daemon's store requires), else rebuilt from its
// deriver.
void session::repair_path(const store_path& p) {
  auto keys = make_trusted_keys(config_.get_words("trusted-public-keys"));
  bool require_sigs = parse_bool_setting(daemon_config_.get("require-sigs"), "require-sigs");
  auto& subs = substituters();
  for (std::size_t i = 0; i < subs.size(); ++i) {
    try {
      auto o = subs.substitute(i, store(), p, keys, require_sigs, true);
      if (o.kind == substitute_outcome::substituted)
        return out_.copied(p.full(), o.from);
      if (o.warns())
        out_.message(lvl_warn, "warning: " + o.message);
    } catch (const std::exception& e) {
      out_.message(lvl_error, std::string("error: ") + e.what());
    }
  }
  auto info = store().query_path_info(p);
  if (!info || !info->deriver || !store().is_valid(*info->deriver))
    throw error("cannot repair path '" + p.full() + "'");
  engine_run run = run_goals(client_build_options(build_mode::repair), {{info->deriver->full(), {}}});
  if (run.top_level.empty() || !is_success(run.top_level.front().status))
    throw error("cannot repair path '" + p.full() + "': " +
                (run.top_level.empty() ? std::string("its build was cancelled") : run.top_level.front().error));
}

void session::query_missing(const request& r) {
  std::vector<wanted_path> targets;
  for (auto& t : strs_at(r.args, 0))
    targets.push_back(parse_derived_path(t));
  auto plan = kiln::query_missing(store(), targets, substituters().as_query());
  out_.last({full_paths(plan.will_build), full_paths(plan.will_substitute), full_paths(plan.unknown),
             plan.download_size, plan.nar_size});
}

substituter_set& session::substituters() {
  if (!substituters_)
    substituters_ = std::make_unique<substituter_set>(config_.get_words("substituters"), cache_client_settings_from(config_));
  return *substituters_;
}

// What the client's substituters have of the paths asked about (Nix's
// querySubstitutablePaths and ...PathInfos).
void session::query_substitutable(const request& r) {
  store_path_set asked;
  if (r.code == op::query_substitutable_path_info)
    asked.insert(path_arg(str_at(r.args, 0)));
  else if (r.code == op::query_substitutable_paths)
    for (auto& p : strs_at(r.args, 0))
      asked.insert(path_arg(p));
  else
    for (auto& [p, ca] : pairs_at(r.args, 0))
      asked.insert(path_arg(p));
  auto found = substituters().query(asked);
  auto record = [](const substitutable_info& info) -> std::vector<argument> {
    return {info.deriver ? info.deriver->full() : std::string(), full_paths(info.references), info.download_size,
            info.nar_size};
  };
  if (r.code == op::query_substitutable_paths) {
    std::vector<std::string> paths;
    for (auto& [p, info] : found)
      paths.push_back(p.full());
    return out_.last({paths});
  }
  if (r.code == op::query_substitutable_path_info) {
    if (found.empty())
      return out_.last({uint64_t{0}});
    std::vector<argument> reply{uint64_t{1}};
    for (auto& a : record(found.begin()->second))
      reply.push_back(a);
    return out_.last(reply);
  }
  std::vector<argument> reply{uint64_t{found.size()}};
  for (auto& [p, info] : found) {
    reply.push_back(p.full());
    for (auto& a : record(info))
      reply.push_back(a);
  }
  out_.last(reply);
}

// AddPermRoot (1.36): a symlink at the client's path to a store path,
// registered as an indirect root, as Nix's daemon makes it for a trusted
// client (an untrusted one can make the link itself, as Nix tells it).
void session::add_perm_root(const request& r) {
  if (!trusted_)
    throw error("you are not privileged to create perm roots\n\nhint: you can just do this client-side without "
                "special privileges, and probably want to do that instead.");
  store_path p = path_arg(str_at(r.args, 0));
  const std::string& link = str_at(r.args, 1);
  if (link.empty() || link[0] != '/')
    throw error("the root '" + link + "' is not an absolute path");
  auto& s = store();
  // Inside the store as its paths read (/nix/store) or where it really is.
  std::string store_dir(default_store_dir);
  if (link.rfind(store_dir + "/", 0) == 0 || link.rfind(ctx_.layout.store_dir() + "/", 0) == 0)
    throw error("creating a garbage collector root (" + link +
                ") in the Nix store is forbidden (are you running nix-build inside the store?)");
  // Replaced only if it is a link into the store already: never a user's file.
  struct stat st;
  if (::lstat(link.c_str(), &st) == 0) {
    char target[PATH_MAX];
    ssize_t n = S_ISLNK(st.st_mode) ? ::readlink(link.c_str(), target, sizeof target - 1) : -1;
    if (n < 0 || std::string(target, static_cast<std::size_t>(n)).rfind(store_dir + "/", 0) != 0)
      throw error("cannot create symlink '" + link + "'; already exists");
  }
  add_permanent_root(s, link, p);
  kiln::add_indirect_root(s, link);
  out_.last({link});
}

} // namespace kiln::daemon
