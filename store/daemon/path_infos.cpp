#include "store/daemon/path_infos.hpp"

#include "store/io/error.hpp"

namespace kiln::daemon {

namespace {

template <class T>
const T& next(const std::vector<argument>& args, std::size_t& pos, const char* what) {
  if (pos >= args.size() || !std::holds_alternative<T>(args[pos]))
    throw format_error(std::string("a path's record: ") + what + ": missing, or not of its kind");
  return std::get<T>(args[pos++]);
}

} // namespace

path_info path_info_from(const std::vector<argument>& args, std::size_t& pos, const std::optional<store_path>& path) {
  path_info info(path ? *path : parse_store_path(next<std::string>(args, pos, "the path")));
  const std::string& deriver = next<std::string>(args, pos, "the deriver");
  if (!deriver.empty())
    info.deriver = parse_store_path(deriver);
  info.nar_hash = parse_hash(next<std::string>(args, pos, "the NAR hash"), hash_algo::sha256);
  for (auto& r : next<std::vector<std::string>>(args, pos, "the references"))
    info.references.insert(parse_store_path(r));
  info.registration_time = static_cast<int64_t>(next<uint64_t>(args, pos, "the registration time"));
  info.nar_size = next<uint64_t>(args, pos, "the NAR size");
  info.ultimate = next<uint64_t>(args, pos, "the ultimate flag") != 0;
  for (auto& s : next<std::vector<std::string>>(args, pos, "the signatures"))
    info.sigs.insert(s);
  const std::string& ca = next<std::string>(args, pos, "the content address");
  if (!ca.empty())
    info.ca = ca;
  return info;
}

void append_path_info(std::vector<argument>& args, const path_info& info, bool with_path) {
  if (with_path)
    args.emplace_back(info.path.full());
  args.emplace_back(info.deriver ? info.deriver->full() : std::string());
  args.emplace_back(info.nar_hash.base16());
  std::vector<std::string> refs;
  for (auto& r : info.references)
    refs.push_back(r.full());
  args.emplace_back(std::move(refs));
  args.emplace_back(static_cast<uint64_t>(info.registration_time));
  args.emplace_back(info.nar_size);
  args.emplace_back(uint64_t{info.ultimate});
  args.emplace_back(std::vector<std::string>(info.sigs.begin(), info.sigs.end()));
  args.emplace_back(info.ca.value_or(""));
}

} // namespace kiln::daemon
