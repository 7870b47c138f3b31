#include "store/cache/substituter.hpp"

#include "store/cache/store_uri.hpp"
#include "store/copy.hpp"
#include "store/io/error.hpp"

#include <atomic>
#include <thread>

namespace kiln {

// Nix's warning for a substitute no trusted key signed.
substitute_outcome substituter::unsigned_outcome(const store_path& p) const {
  return {substitute_outcome::untrusted, "the substitute for '" + p.full() + "' from '" + uri_ +
                                             "' is not signed by any of the keys in 'trusted-public-keys'"};
}

substitute_outcome substituter::plan(store& dest, const store_path& path, const trusted_keys& keys,
                                     bool require_sigs, copy_plan& plan) {
  plan = plan_copy(*from_, dest, {path});
  if (plan.absent)
    return {substitute_outcome::absent,
            !plan.wanted_by ? "'" + uri_ + "' does not have '" + plan.absent->full() + "'"
                            : "'" + uri_ + "' does not have '" + plan.absent->full() + "', which '" +
                                  plan.wanted_by->full() + "' refers to"};
  if (require_sigs && !trusted_)
    for (auto& info : plan.paths)
      if (!trustworthy(info, keys))
        return unsigned_outcome(info.path);
  return {substitute_outcome::available, ""};
}

substitute_outcome substituter::probe(store& dest, const store_path& path, const trusted_keys& keys,
                                      bool require_sigs) {
  copy_plan unused;
  return plan(dest, path, keys, require_sigs, unused);
}

substitute_outcome substituter::substitute(store& dest, const store_path& path, const trusted_keys& keys,
                                        bool require_sigs) {
  copy_plan plan;
  if (auto o = this->plan(dest, path, keys, require_sigs, plan); o.kind != substitute_outcome::available)
    return o;
  std::vector<std::string> copied;
  for (auto& p : copy_paths(*from_, dest, plan.paths))
    copied.push_back(p.full());
  return substitute_outcome::copied_from(uri_, std::move(copied));
}

substitute_outcome substituter::repair(local_store& dest, const store_path& path, const trusted_keys& keys,
                                      bool require_sigs) {
  auto here = dest.query_path_info(path);
  if (!here)
    return substitute(dest, path, keys, require_sigs);
  auto there = from_->query_path_info(path);
  if (!there)
    return {substitute_outcome::absent, "'" + uri_ + "' does not have '" + path.full() + "'"};
  if (there->nar_hash != here->nar_hash)
    return {substitute_outcome::absent,
            "'" + uri_ + "' has other contents for '" + path.full() + "' than this store records"};
  if (require_sigs && !trusted_ && !trustworthy(*there, keys))
    return unsigned_outcome(path);
  dest.repair_path(*here, [&](sink& out) { from_->nar_from_path(path, out); });
  return substitute_outcome::copied_from(uri_, {path.full()});
}

std::map<store_path, substitutable_info> substituter::query(const store_path_set& paths) {
  std::vector<store_path> asked(paths.begin(), paths.end());
  std::vector<std::optional<substitutable_info>> found(asked.size());
  auto* cache = dynamic_cast<binary_cache_store*>(from_.get());
  auto look_up = [&](std::size_t i) {
    auto info = from_->query_path_info(asked[i]);
    if (!info)
      return;
    substitutable_info s{info->references, info->nar_size, info->nar_size, info->deriver};
    if (cache)
      s.download_size = cache->download_size(asked[i]).value_or(info->nar_size);
    found[i] = std::move(s);
  };
  // A cache is asked about many paths at once (its lookups are round
  // trips); a local store, whose connection is one thread's, in turn.
  std::size_t lanes = cache ? std::min<std::size_t>(16, asked.size()) : 1;
  if (lanes <= 1) {
    for (std::size_t i = 0; i < asked.size(); ++i)
      look_up(i);
  } else {
    std::atomic<std::size_t> next{0};
    std::vector<std::exception_ptr> errors(lanes);
    std::vector<std::thread> threads;
    for (std::size_t t = 0; t < lanes; ++t)
      threads.emplace_back([&, t] {
        try {
          for (std::size_t i; (i = next++) < asked.size();)
            look_up(i);
        } catch (...) {
          errors[t] = std::current_exception();
        }
      });
    for (auto& t : threads)
      t.join();
    for (auto& e : errors)
      if (e)
        std::rethrow_exception(e);
  }
  std::map<store_path, substitutable_info> out;
  for (std::size_t i = 0; i < asked.size(); ++i)
    if (found[i])
      out.emplace(asked[i], std::move(*found[i]));
  return out;
}

void substituter_set::open_all() {
  if (opened_)
    return;
  opened_ = true;
  for (auto& uri : uris_) {
    entry e;
    try {
      e.sub = make_substituter(uri, remote_);
    } catch (const std::exception& ex) {
      e.unusable = ex.what();
    }
    entries_.push_back(std::move(e));
  }
  // One that could not be opened keeps its place; it has nothing to give.
  std::stable_sort(entries_.begin(), entries_.end(), [](const entry& a, const entry& b) {
    return (a.sub ? a.sub->priority() : 0) < (b.sub ? b.sub->priority() : 0);
  });
}

std::optional<substitute_outcome> substituter_set::usable(std::size_t index) {
  open_all();
  if (index >= entries_.size())
    throw error("there is no substituter number " + std::to_string(index));
  entry& e = entries_[index];
  if (e.sub)
    return std::nullopt;
  if (e.said)
    return substitute_outcome{substitute_outcome::absent, e.unusable};
  e.said = true;
  return substitute_outcome{substitute_outcome::unusable, e.unusable};
}

substitute_outcome substituter_set::probe(std::size_t index, store& dest, const store_path& path,
                                          const trusted_keys& keys, bool require_sigs) {
  if (auto no = usable(index))
    return *no;
  return entries_[index].sub->probe(dest, path, keys, require_sigs);
}

substitute_outcome substituter_set::substitute(std::size_t index, store& dest, const store_path& path,
                                               const trusted_keys& keys, bool require_sigs, bool repair) {
  if (auto no = usable(index))
    return *no;
  entry& e = entries_[index];
  if (repair) {
    auto* local = dynamic_cast<local_store*>(&dest);
    if (!local)
      throw error("paths are repaired in a local store only");
    return e.sub->repair(*local, path, keys, require_sigs);
  }
  return e.sub->substitute(dest, path, keys, require_sigs);
}

std::vector<std::map<store_path, substitutable_info>> substituter_set::ask_all(const store_path_set& paths) {
  open_all();
  std::vector<std::map<store_path, substitutable_info>> answers(entries_.size());
  std::vector<std::thread> asking;
  for (std::size_t i = 0; i < entries_.size(); ++i)
    if (entries_[i].sub)
      asking.emplace_back([&, i] {
        try {
          answers[i] = entries_[i].sub->query(paths);
        } catch (const std::exception&) {
          // a cache that fails to answer is one that does not have them
        }
      });
  for (auto& t : asking)
    t.join();
  return answers;
}

std::map<store_path, substitutable_info> substituter_set::query(const store_path_set& paths) {
  std::map<store_path, substitutable_info> out;
  for (auto& answer : ask_all(paths)) // in priority order: the first that has a path gives it
    for (auto& [p, info] : answer)
      out.emplace(p, std::move(info));
  return out;
}

std::unique_ptr<substituter> make_substituter(const std::string& uri, const cache_client_settings& remote) {
  store_uri u = parse_store_uri(uri);
  bool trusted = false;
  if (auto it = u.params.find("trusted"); it != u.params.end()) {
    if (it->second != "0" && it->second != "1")
      throw format_error("substituter '" + uri + "': trusted must be 0 or 1, not '" + it->second + "'");
    trusted = it->second == "1";
  }
  if (u.base.rfind("s3://", 0) == 0 || u.base.rfind("ssh", 0) == 0 || u.base == "daemon" ||
      u.base.rfind("unix://", 0) == 0)
    throw format_error("substituter '" + uri +
                       "' is not supported yet (local stores and file://, http:// and https:// binary caches are)");
  auto from = open_store_uri(uri, false, remote);
  int priority = 0; // a local store: first, as Nix's default
  if (auto* cache = dynamic_cast<binary_cache_store*>(from.get()))
    priority = cache->info().priority;
  if (auto it = u.params.find("priority"); it != u.params.end()) {
    try {
      std::size_t used = 0;
      priority = std::stoi(it->second, &used);
      if (used != it->second.size())
        throw format_error("");
    } catch (const std::exception&) {
      throw format_error("substituter '" + uri + "': priority must be a number, not '" + it->second + "'");
    }
  }
  return std::make_unique<substituter>(uri, trusted, priority, std::move(from));
}

} // namespace kiln
