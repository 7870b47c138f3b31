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

#include <algorithm>
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

// A path on its way in: journalled, locked, then restored under its
// temporary name until it is made durable, renamed and registered.
struct local_store::incoming {
  explicit incoming(path_info i) : info(std::move(i)) {}
  path_info info;
  std::string real, temp, staging, journal;
  path_lock lock;
  derivation_outputs_map drv_outputs;
};

namespace {

void write_journal_entry(const std::string& journal) {
  unique_fd j(::open(journal.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
  if (!j)
    throw_errno("creating the journal entry '" + journal + "'");
}

} // namespace

// Journal entries are written before locking, so a crash while holding a
// lock always leaves one; and again after, since another process's cleanup
// may have removed one while we waited. One directory fsync each time, for
// however many paths.
std::vector<local_store::incoming> local_store::begin_adds(const std::vector<path_info>& infos) {
  std::vector<incoming> batch;
  store_path_set coming;
  for (auto& info : infos) {
    // Rooted first, so a collector running now or later leaves it (and,
    // once registered, its references) alone.
    add_temp_root(info.path);
    for (auto& r : info.references) {
      if (r == info.path)
        continue;
      add_temp_root(r);
      if (!coming.count(r) && !db_.is_valid(r))
        throw error("cannot add '" + info.path.full() + "': its reference '" + r.full() + "' is not valid");
    }
    coming.insert(info.path);
    if (db_.is_valid(info.path))
      continue;
    incoming in(info);
    in.real = real_path(info.path);
    in.journal = layout_.pending_dir() + "/" + std::string(info.path.base_name());
    batch.push_back(std::move(in));
  }
  auto journal_all = [&] {
    for (auto& in : batch)
      write_journal_entry(in.journal);
    if (!batch.empty())
      fsync_directory(layout_.pending_dir());
  };
  journal_all();
  // Locked in path order, as every add does, so two batches cannot deadlock.
  std::vector<incoming*> by_path;
  for (auto& in : batch)
    by_path.push_back(&in);
  std::sort(by_path.begin(), by_path.end(), [](auto* a, auto* b) { return a->info.path < b->info.path; });
  for (auto* in : by_path)
    in->lock = path_lock::acquire(in->real);
  journal_all();
  std::string pid = std::to_string(::getpid());
  std::vector<incoming> ready;
  for (auto& in : batch) {
    if (db_.is_valid(in.info.path)) { // another process won the race
      ::unlink(in.journal.c_str());
      in.lock.release(true);
      continue;
    }
    if (path_exists(in.real))
      remove_tree(in.real); // an unregistered leftover
    in.temp = layout_.store_dir() + "/" + temp_prefix(in.info.path) + "tmp-" + pid;
    in.staging = temp_prefix(in.info.path) + "stage-" + pid;
    remove_tree(in.temp); // left by a dead process that had our pid
    remove_tree(layout_.store_dir() + "/" + in.staging);
    ready.push_back(std::move(in));
  }
  return ready;
}

void local_store::restore_incoming(incoming& in, const std::function<void(sink&)>& write_nar) {
  path_info& info = in.info;
  pipe_source nar(write_nar);
  hashing_source hashed(nar, hash_algo::sha256);
  restore_nar(hashed, in.temp, {}, in.staging);
  hash got = hashed.finish();
  if (info.nar_size != 0 && (hashed.size() != info.nar_size || got != info.nar_hash))
    throw_nar_mismatch(info, got, hashed.size());
  info.nar_hash = got;
  info.nar_size = hashed.size();
  if (info.path.is_derivation())
    in.drv_outputs[info.path] = derivation_output_paths(in.temp, info.path);
  canonicalise_path_metadata(in.temp);
}

// Durable, then renamed into place, then registered in one transaction:
// a crash before the registration leaves journalled leftovers that the
// next open removes, never a valid path without its contents.
void local_store::commit_incoming(std::vector<incoming>& batch) {
  if (batch.empty())
    return;
  if (batch.size() == 1) {
    fsync_tree(batch[0].temp);
  } else {
    // Many paths: one syncfs of the store's file system costs less than
    // an fsync of every file and directory.
    unique_fd store_fd(::open(layout_.store_dir().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!store_fd || ::syncfs(store_fd.get()) != 0)
      throw_errno("making the new paths in '" + layout_.store_dir() + "' durable");
  }
  for (auto& in : batch)
    if (::rename(in.temp.c_str(), in.real.c_str()) != 0)
      throw_errno("moving '" + in.temp + "' to '" + in.real + "'");
  fsync_directory(layout_.store_dir());
  std::vector<path_info> infos;
  derivation_outputs_map drv_outputs;
  for (auto& in : batch) {
    infos.push_back(in.info);
    drv_outputs.insert(in.drv_outputs.begin(), in.drv_outputs.end());
  }
  db_.register_valid_paths(infos, drv_outputs);
  for (auto& in : batch) {
    ::unlink(in.journal.c_str());
    in.lock.release(true);
  }
}

void local_store::replace_contents(const store_path& p, const std::string& fresh) {
  std::string real = real_path(p);
  std::string old = real + "-kiln-old-" + std::to_string(::getpid());
  bool had = path_exists(real);
  if (had && ::rename(real.c_str(), old.c_str()) != 0)
    throw_errno("moving '" + real + "' aside for repair");
  if (::rename(fresh.c_str(), real.c_str()) != 0)
    throw_errno("moving the repaired '" + p.full() + "' into place");
  fsync_directory(layout_.store_dir());
  if (had)
    remove_tree(old);
}

path_info local_store::repair_path(const path_info& info, const std::function<void(sink&)>& write_nar) {
  auto registered = db_.query_path_info(info.path);
  if (!registered)
    return materialise(info, write_nar);
  add_temp_root(info.path);
  incoming in(*registered); // checked against what is registered, not what the source says
  in.real = real_path(info.path);
  in.lock = path_lock::acquire(in.real);
  std::string pid = std::to_string(::getpid());
  in.temp = layout_.store_dir() + "/" + temp_prefix(info.path) + "tmp-" + pid;
  in.staging = temp_prefix(info.path) + "stage-" + pid;
  remove_tree(in.temp);
  remove_tree(layout_.store_dir() + "/" + in.staging);
  try {
    restore_incoming(in, write_nar);
    fsync_tree(in.temp);
    replace_contents(info.path, in.temp);
  } catch (...) {
    remove_tree(in.temp);
    in.lock.release(true);
    throw;
  }
  in.lock.release(true);
  return *registered;
}

void local_store::commit_or_abandon(std::vector<incoming>& batch) {
  try {
    commit_incoming(batch);
  } catch (...) {
    for (auto& in : batch)
      abandon_incoming(in);
    throw;
  }
}

void local_store::abandon_incoming(incoming& in) {
  remove_tree(in.temp);
  if (!db_.is_valid(in.info.path))
    remove_tree(in.real);
  ::unlink(in.journal.c_str());
  in.lock.release(true);
}

path_info local_store::materialise(path_info info, const std::function<void(sink&)>& write_nar) {
  auto batch = begin_adds({info});
  if (batch.empty())
    return *db_.query_path_info(info.path);
  try {
    restore_incoming(batch[0], write_nar);
  } catch (...) {
    abandon_incoming(batch[0]);
    throw;
  }
  commit_or_abandon(batch);
  return *db_.query_path_info(info.path);
}

std::vector<store_path> local_store::add_nars(const std::vector<path_info>& infos,
                                              const std::function<void(const path_info&, sink&)>& write_nar) {
  auto batch = begin_adds(infos);
  std::size_t done = 0;
  try {
    for (; done < batch.size(); ++done) {
      if (batch[done].info.nar_size == 0)
        throw error("cannot add '" + batch[done].info.path.full() + "' from a NAR without its expected size");
      path_info expected = batch[done].info;
      restore_incoming(batch[done], [&](sink& out) { write_nar(expected, out); });
    }
  } catch (...) {
    // What came before the failure is kept (its references came before it
    // too); the failed path and those after it leave nothing.
    std::vector<incoming> kept(std::make_move_iterator(batch.begin()),
                               std::make_move_iterator(batch.begin() + static_cast<std::ptrdiff_t>(done)));
    for (std::size_t i = done; i < batch.size(); ++i)
      abandon_incoming(batch[i]);
    try {
      commit_or_abandon(kept);
    } catch (...) {
    }
    throw;
  }
  commit_or_abandon(batch);
  std::vector<store_path> added;
  for (auto& in : batch)
    added.push_back(in.info.path);
  return added;
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
