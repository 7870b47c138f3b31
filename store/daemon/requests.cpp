#include "store/daemon/requests.hpp"

#include "store/format/wire.hpp"
#include "store/io/error.hpp"

#include <map>

namespace kiln::daemon {

namespace {

struct shape {
  std::vector<part> args;
  bool framed = false;
};

// What each operation's request carries (worker-protocol.md §4). SetOptions
// is here too, read as its plain fields (protocol.hpp has it as a struct).
const std::map<op, shape>& shapes() {
  using k = kind;
  static const std::map<op, shape> table = {
      {op::is_valid_path, {{k::str}}},
      {op::query_referrers, {{k::str}}},
      {op::add_to_store, {{k::str, k::str, k::strings, k::u64}, true}},
      {op::add_text_to_store, {{k::str, k::str, k::strings}}},
      {op::build_paths, {{k::strings, k::u64}}},
      {op::ensure_path, {{k::str}}},
      {op::add_temp_root, {{k::str}}},
      {op::add_indirect_root, {{k::str}}},
      {op::sync_with_gc, {{}}},
      {op::find_roots, {{}}},
      {op::set_options, {{k::u64, k::u64, k::u64, k::u64, k::u64, k::u64, k::u64, k::u64, k::u64, k::u64,
                          k::u64, k::u64, k::pairs}}},
      {op::collect_garbage, {{k::u64, k::strings, k::u64, k::u64, k::u64, k::u64, k::u64}}},
      {op::query_substitutable_path_info, {{k::str}}},
      {op::query_all_valid_paths, {{}}},
      {op::query_path_info, {{k::str}}},
      {op::query_path_from_hash_part, {{k::str}}},
      {op::query_substitutable_path_infos, {{k::pairs}}},
      {op::query_valid_paths, {{k::strings, k::u64}}},
      {op::query_substitutable_paths, {{k::strings}}},
      {op::query_valid_derivers, {{k::str}}},
      {op::optimise_store, {{}}},
      {op::verify_store, {{k::u64, k::u64}}},
      {op::add_signatures, {{k::str, k::strings}}},
      {op::nar_from_path, {{k::str}}},
      {op::add_to_store_nar, {{k::str, k::str, k::str, k::strings, k::u64, k::u64, k::u64, k::strings, k::str,
                               k::u64, k::u64}, true}},
      {op::query_missing, {{k::strings}}},
      {op::query_derivation_output_map, {{k::str}}},
      {op::add_multiple_to_store, {{k::u64, k::u64}, true}},
      {op::add_build_log, {{k::str}, true}},
      {op::build_paths_with_results, {{k::strings, k::u64}}},
      // The derivation's path, then the derivation itself (its outputs as
      // name, path, hash algorithm, hash; input sources, platform, builder,
      // arguments, environment), then the build mode.
      {op::build_derivation, {{k::str, part(k::records, {k::str, k::str, k::str, k::str}), k::strings, k::str, k::str,
                               k::strings, k::pairs, k::u64}}},
      {op::add_perm_root, {{k::str, k::str}}},
      {op::kiln_submit, {{k::strings}}},
      {op::kiln_status, {{k::u64, k::u64}}},
  };
  return table;
}

} // namespace

request read_request(wire::reader& in) {
  request r;
  uint64_t at = in.offset();
  uint64_t code = in.u64();
  auto it = shapes().find(static_cast<op>(code));
  if (it == shapes().end())
    in.fail("unknown operation " + std::to_string(code), at);
  r.code = it->first;
  r.framed_data_follows = it->second.framed;
  read_parts(in, it->second.args, r.args);
  return r;
}

std::string encode_request(const request& r) {
  std::string out;
  wire::append_u64(out, static_cast<uint64_t>(r.code));
  append_arguments(out, r.args);
  return out;
}

client_options options_of(const request& r) {
  if (r.code != op::set_options)
    throw format_error("expected SetOptions, got operation " + std::to_string(static_cast<uint64_t>(r.code)));
  auto n = [&](std::size_t i) { return u64_at(r.args, i); };
  client_options o;
  o.keep_failed = n(0) != 0; // any non-zero value is true, as Nix reads it
  o.keep_going = n(1) != 0;
  o.try_fallback = n(2) != 0;
  o.verbosity = n(3);
  o.max_build_jobs = n(4);
  o.max_silent_time = n(5);
  o.use_build_hook = n(6) != 0;
  o.verbose_build = n(7);
  o.log_type = n(8);
  o.print_build_trace = n(9);
  o.build_cores = n(10);
  o.use_substitutes = n(11) != 0;
  o.overrides = pairs_at(r.args, 12);
  return o;
}

request set_options_request(const client_options& o) {
  request r;
  r.code = op::set_options;
  for (uint64_t v : {uint64_t{o.keep_failed}, uint64_t{o.keep_going}, uint64_t{o.try_fallback}, o.verbosity,
                     o.max_build_jobs, o.max_silent_time, uint64_t{o.use_build_hook}, o.verbose_build, o.log_type,
                     o.print_build_trace, o.build_cores, uint64_t{o.use_substitutes}})
    r.args.emplace_back(v);
  r.args.emplace_back(o.overrides);
  return r;
}

uint64_t read_framed(wire::reader& in, sink& out, std::size_t max_chunk) {
  std::string buf;
  uint64_t total = 0;
  for (;;) {
    uint64_t at = in.offset();
    uint64_t n = in.u64();
    if (n == 0)
      return total;
    if (n > max_chunk)
      in.fail("a frame of " + std::to_string(n) + " bytes, the limit is " + std::to_string(max_chunk), at);
    buf.resize(static_cast<std::size_t>(n));
    in.read(buf.data(), buf.size());
    out.write(buf.data(), buf.size());
    total += n;
  }
}

std::size_t framed_source::read(char* data, std::size_t n) {
  if (ended_ || n == 0)
    return 0;
  if (left_ == 0) {
    uint64_t at = in_.offset();
    left_ = in_.u64();
    if (left_ == 0) {
      ended_ = true;
      return 0;
    }
    if (left_ > max_chunk_)
      in_.fail("a frame of " + std::to_string(left_) + " bytes, the limit is " + std::to_string(max_chunk_), at);
  }
  std::size_t take = static_cast<std::size_t>(std::min<uint64_t>(left_, n));
  in_.read(data, take);
  left_ -= take;
  return take;
}

void framed_source::drain() {
  discard_sink rest;
  copy_all(*this, rest);
}

std::string encode_framed(std::string_view data, std::size_t chunk) {
  std::string out;
  for (std::size_t pos = 0; pos < data.size(); pos += chunk) {
    std::string_view part = data.substr(pos, chunk);
    wire::append_u64(out, part.size());
    out.append(part);
  }
  wire::append_u64(out, 0);
  return out;
}

} // namespace kiln::daemon
