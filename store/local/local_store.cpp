#include "store/local/local_store.hpp"

#include "store/local/canonicalise.hpp"
#include "store/format/derivation.hpp"
#include "store/io/error.hpp"
#include "store/io/fd.hpp"
#include "store/io/file_ops.hpp"
#include "store/format/nar.hpp"
#include "store/local/path_lock.hpp"
#include "store/io/pipe_source.hpp"
#include "store/local/temp_roots.hpp"

#include <cerrno>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace kiln {
namespace {

// The layout's directories, created if missing (the database's first,
// since the store_db member opens it right after).
store_layout prepared(store_layout layout) {
  for (auto& d : {layout.db_dir(), layout.store_dir(), layout.gcroots_dir(),
                  layout.temproots_dir(), layout.profiles_dir(), layout.log_dir(),
                  layout.pending_dir()})
    make_directories(d);
  return layout;
}

// A .drv becomes valid together with the record of its outputs, as in
// Nix; content that is not a derivation is refused.
std::map<std::string, store_path> derivation_output_paths(const std::string& file, const store_path& p) {
  derivation drv;
  try {
    drv = parse_derivation(read_whole_file(file, 64u << 20, "derivation"), p.full());
  } catch (const error& e) {
    throw format_error("cannot add '" + p.full() + "': it is named like a derivation but is not one: " +
                       e.what());
  }
  std::map<std::string, store_path> outputs;
  for (auto& [name, out] : drv.outputs)
    if (!out.path.empty())
      outputs.emplace(name, parse_store_path(out.path));
  return outputs;
}

// Temporaries are named "<hash part>-kiln-tmp-<pid>" (the copy being made)
// and "<hash part>-kiln-stage-<pid>" (restore_nar's staging directory).
// Both parse as store paths with the target's hash part, which the adder
// holds as a temp root: a collector (Kiln's or Nix's, which deletes
// anything else it does not recognise) leaves them alone while the adder
// lives. The cleanup on open finds them by the same prefix.
std::string temp_prefix(const store_path& p) {
  return std::string(p.hash_part()) + "-kiln-";
}

} // namespace

local_store::local_store(store_layout layout, std::shared_ptr<temp_roots> roots)
  : layout_(prepared(std::move(layout))), db_(layout_.db_dir()), roots_(std::move(roots)) {
  cleaned_ = finish_interrupted_adds();
}

std::string local_store::real_path(const store_path& p) const {
  return layout_.store_dir() + "/" + std::string(p.base_name());
}

store_path local_store::parse_path(const std::string& text) const {
  if (text.rfind(layout_.store_dir() + "/", 0) == 0 && !layout_.root.empty())
    return parse_store_path(text, layout_.store_dir());
  return parse_store_path(text);
}

std::size_t local_store::finish_interrupted_adds() {
  std::size_t cleaned = 0;
  unique_fd pending(::open(layout_.pending_dir().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!pending)
    throw_errno("opening '" + layout_.pending_dir() + "'");
  // The store directory can be huge; it is listed only if an add was interrupted.
  std::optional<std::vector<std::string>> store_entries;
  for (auto& base : read_directory(pending.get(), layout_.pending_dir())) {
    std::optional<store_path> parsed;
    try {
      parsed = store_path::from_base_name(base);
    } catch (const format_error&) {
      ::unlinkat(pending.get(), base.c_str(), 0); // not ours to interpret; never block opening
      continue;
    }
    const store_path& p = *parsed;
    auto lock = path_lock::try_acquire(real_path(p));
    if (!lock.held())
      continue; // an add in progress in another process
    if (!db_.is_valid(p)) {
      if (path_exists(real_path(p))) {
        remove_tree(real_path(p));
        ++cleaned;
      }
      std::string prefix = temp_prefix(p);
      if (!store_entries) {
        unique_fd store_fd(::open(layout_.store_dir().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
        if (!store_fd)
          throw_errno("opening '" + layout_.store_dir() + "'");
        store_entries = read_directory(store_fd.get(), layout_.store_dir());
      }
      for (auto& e : *store_entries)
        if (e.rfind(prefix, 0) == 0) {
          remove_tree(layout_.store_dir() + "/" + e);
          ++cleaned;
        }
    }
    if (::unlinkat(pending.get(), base.c_str(), 0) != 0 && errno != ENOENT)
      throw_errno("removing the journal entry '" + base + "'");
    lock.release(true);
  }
  return cleaned;
}

void local_store::add_temp_root(const store_path& p) {
  add_temp_roots({p});
}

void local_store::add_temp_roots(const std::vector<store_path>& paths) {
  (roots_ ? *roots_ : temp_roots::for_store(layout_.state_dir(), std::string(default_store_dir))).add(paths);
}

void local_store::add_temp_roots_for_references(const path_info& info) {
  for (auto& r : info.references) {
    if (r == info.path)
      continue;
    add_temp_root(r);
    if (!db_.is_valid(r))
      throw error("cannot add '" + info.path.full() + "': its reference '" + r.full() +
                  "' is not valid");
  }
}

path_info local_store::materialise(path_info info,
                                   const std::function<void(sink&)>& write_nar) {
  // Rooted first, so a collector running now or later leaves it (and, once
  // registered, its references) alone.
  add_temp_root(info.path);
  add_temp_roots_for_references(info);
  if (auto existing = db_.query_path_info(info.path))
    return *existing;
  std::string real = real_path(info.path);
  std::string base(info.path.base_name());
  std::string journal = layout_.pending_dir() + "/" + base;
  auto write_journal = [&] {
    unique_fd j(::open(journal.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
    if (!j)
      throw_errno("creating the journal entry '" + journal + "'");
    fsync_directory(layout_.pending_dir());
  };
  // The entry is written before locking, so a crash while holding the lock
  // always leaves one; and again after, since another process's cleanup
  // may have removed it while we waited for the lock.
  write_journal();
  auto lock = path_lock::acquire(real);
  write_journal();
  if (auto existing = db_.query_path_info(info.path)) { // another process won the race
    ::unlink(journal.c_str());
    lock.release(true);
    return *existing;
  }
  if (path_exists(real))
    remove_tree(real); // an unregistered leftover
  std::string pid = std::to_string(::getpid());
  std::string temp = layout_.store_dir() + "/" + temp_prefix(info.path) + "tmp-" + pid;
  std::string staging = temp_prefix(info.path) + "stage-" + pid;
  remove_tree(temp); // left by a dead process that had our pid
  remove_tree(layout_.store_dir() + "/" + staging);

  try {
    pipe_source nar(write_nar);
    hashing_source hashed(nar, hash_algo::sha256);
    restore_nar(hashed, temp, {}, staging);
    hash got = hashed.finish();
    if (info.nar_size != 0 && (hashed.size() != info.nar_size || got != info.nar_hash))
      throw_nar_mismatch(info, got, hashed.size());
    info.nar_hash = got;
    info.nar_size = hashed.size();
    derivation_outputs_map drv_outputs;
    if (info.path.is_derivation())
      drv_outputs[info.path] = derivation_output_paths(temp, info.path);
    canonicalise_path_metadata(temp);
    fsync_tree(temp);
    if (::rename(temp.c_str(), real.c_str()) != 0)
      throw_errno("moving '" + temp + "' to '" + real + "'");
    fsync_directory(layout_.store_dir());
    db_.register_valid_paths({info}, drv_outputs);
  } catch (...) {
    remove_tree(temp);
    if (!db_.is_valid(info.path))
      remove_tree(real);
    ::unlink(journal.c_str());
    lock.release(true);
    throw;
  }
  ::unlink(journal.c_str());
  lock.release(true);
  return *db_.query_path_info(info.path);
}

path_info local_store::add_path(const std::string& source_path, ingestion_method method,
                                hash_algo algo, std::optional<std::string> name) {
  std::string n = name ? *name : split_path(source_path).second;
  check_store_path_name(n);
  // One pass names the path and measures its NAR. The copy materialise()
  // makes must hash the same, so content that changes in between fails the
  // add before anything becomes valid.
  hash h;
  nar_digest nar;
  if (method == ingestion_method::recursive && algo == hash_algo::sha256) {
    nar = hash_path(source_path);
    h = nar.nar_hash;
  } else {
    hash_sink nar_sink(hash_algo::sha256), by_algo(algo);
    if (method == ingestion_method::flat) {
      h = hash_file(algo, source_path);
      dump_path(source_path, nar_sink);
    } else {
      tee_sink both(nar_sink, by_algo);
      dump_path(source_path, both);
      h = by_algo.finish();
    }
    nar = {nar_sink.finish(), nar_sink.size()};
  }
  path_info info(make_fixed_output_path(n, method, h));
  info.ca = fixed_output_ca(method, h);
  info.nar_hash = nar.nar_hash;
  info.nar_size = nar.nar_size;
  return materialise(info, [&](sink& out) { dump_path(source_path, out); });
}

path_info local_store::add_text(std::string_view name, std::string_view contents,
                                const store_path_set& references) {
  auto h = hash_string(hash_algo::sha256, contents);
  path_info info(make_text_path(name, h, references));
  info.references = references;
  info.ca = text_ca(h);
  return materialise(info, [&](sink& out) { dump_string_as_file(contents, false, out); });
}

path_info local_store::add_derivation(const derivation& drv, std::string_view name) {
  store_path_set refs;
  for (auto& src : drv.input_srcs)
    refs.insert(parse_store_path(src));
  for (auto& [in, outputs] : drv.input_drvs)
    refs.insert(parse_store_path(in));
  return add_text(std::string(name) + ".drv", print_derivation(drv), refs);
}

path_info local_store::add_nar(source& nar, path_info info) {
  if (info.nar_size == 0)
    throw error("cannot add '" + info.path.full() + "' from a NAR without its expected size");
  // Exactly nar_size bytes: the NAR may be followed by more data (an export).
  return materialise(info, [&](sink& out) { copy_exact(nar, out, info.nar_size, "NAR of '" + info.path.full() + "'"); });
}

} // namespace kiln
