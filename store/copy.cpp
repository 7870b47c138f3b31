#include "store/copy.hpp"

#include "store/io/pipe_source.hpp"
#include "store/local/local_store.hpp"
#include "store/local/verify.hpp"

#include <map>
#include <set>

namespace kiln {

copy_plan plan_copy(store& from, store& to, const store_path_set& roots) {
  copy_plan plan;
  std::set<store_path> seen;
  std::map<store_path, path_info> infos;
  // (path, expanded, who wants it): a path is placed after its references.
  struct step {
    store_path path;
    bool expanded;
    std::optional<store_path> wanted_by;
  };
  std::vector<step> stack;
  for (auto it = roots.rbegin(); it != roots.rend(); ++it)
    stack.push_back({*it, false, std::nullopt});
  while (!stack.empty()) {
    step s = std::move(stack.back());
    stack.pop_back();
    if (s.expanded) {
      plan.paths.push_back(std::move(infos.at(s.path)));
      continue;
    }
    if (!seen.insert(s.path).second)
      continue;
    to.add_temp_root(s.path);
    if (to.is_valid(s.path))
      continue;
    auto info = from.query_path_info(s.path);
    if (!info) {
      plan.absent = s.path;
      plan.wanted_by = s.wanted_by;
      plan.paths.clear();
      return plan;
    }
    stack.push_back({s.path, true, std::nullopt});
    for (auto r = info->references.rbegin(); r != info->references.rend(); ++r)
      if (*r != s.path)
        stack.push_back({*r, false, s.path});
    infos.emplace(s.path, std::move(*info));
  }
  return plan;
}

bool trustworthy(const path_info& info, const trusted_keys& keys) {
  return info.ca || has_valid_signature(fingerprint_of(info), info.sigs, keys);
}

void copy_path(store& from, store& to, const path_info& info) {
  path_info record = info;
  record.ultimate = false;
  record.registration_time = 0;
  pipe_source nar([&](sink& out) { from.nar_from_path(info.path, out); });
  to.add_nar(nar, record);
}

std::vector<store_path> copy_paths(store& from, store& to, const std::vector<path_info>& paths,
                                   const std::function<void(const path_info&)>& each) {
  std::vector<path_info> wanted;
  for (auto& info : paths)
    if (!to.is_valid(info.path)) {
      wanted.push_back(info);
      wanted.back().ultimate = false;
      wanted.back().registration_time = 0;
    }
  std::vector<store_path> copied;
  auto* local = dynamic_cast<local_store*>(&to);
  if (!local) {
    for (auto& info : wanted) {
      if (each)
        each(info);
      copy_path(from, to, info);
      copied.push_back(info.path);
    }
    return copied;
  }
  // A local store takes them in batches, each made durable and registered
  // at once (a few fsyncs a batch instead of a few a path).
  constexpr std::size_t batch_paths = 128;
  constexpr uint64_t batch_bytes = uint64_t(1) << 30;
  for (std::size_t at = 0; at < wanted.size();) {
    std::size_t end = at;
    uint64_t size = 0;
    while (end < wanted.size() && end - at < batch_paths && (end == at || size + wanted[end].nar_size <= batch_bytes))
      size += wanted[end++].nar_size;
    std::vector<path_info> batch(wanted.begin() + static_cast<std::ptrdiff_t>(at),
                                 wanted.begin() + static_cast<std::ptrdiff_t>(end));
    auto added = local->add_nars(batch, [&](const path_info& info, sink& out) {
      if (each)
        each(info);
      from.nar_from_path(info.path, out);
    });
    copied.insert(copied.end(), added.begin(), added.end());
    at = end;
  }
  return copied;
}

} // namespace kiln
