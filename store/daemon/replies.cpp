#include "store/daemon/replies.hpp"

#include "store/daemon/build_results.hpp"

#include "store/format/nar.hpp"
#include "store/format/wire.hpp"

#include <map>

namespace kiln::daemon {

namespace {

constexpr std::size_t max_text = 1 << 24; // a log line or an error with its log tail
constexpr uint64_t max_fields = 64;

const std::map<op, std::vector<part>>& reply_shapes() {
  using k = kind;
  static const std::map<op, std::vector<part>> table = {
      {op::is_valid_path, {k::u64}},
      {op::query_referrers, {k::strings}},
      {op::add_to_store, {k::str, k::str, k::str, k::strings, k::u64, k::u64, k::u64, k::strings, k::str}},
      {op::add_text_to_store, {k::str}},
      {op::build_paths, {k::u64}},
      {op::ensure_path, {k::u64}},
      {op::add_temp_root, {k::u64}},
      {op::add_indirect_root, {k::u64}},
      {op::sync_with_gc, {k::u64}},
      {op::find_roots, {k::pairs}},
      {op::set_options, {}},
      {op::collect_garbage, {k::strings, k::u64, k::u64}},
      {op::query_substitutable_path_info, {{k::optional, {k::str, k::strings, k::u64, k::u64}}}},
      {op::query_all_valid_paths, {k::strings}},
      {op::query_path_info, {{k::optional, {k::str, k::str, k::strings, k::u64, k::u64, k::u64, k::strings, k::str}}}},
      {op::query_path_from_hash_part, {k::str}},
      {op::query_substitutable_path_infos, {{k::records, {k::str, k::str, k::strings, k::u64, k::u64}}}},
      {op::query_valid_paths, {k::strings}},
      {op::query_substitutable_paths, {k::strings}},
      {op::query_valid_derivers, {k::strings}},
      {op::optimise_store, {k::u64}},
      {op::verify_store, {k::u64}},
      {op::add_signatures, {k::u64}},
      {op::add_to_store_nar, {}},
      {op::query_missing, {k::strings, k::strings, k::strings, k::u64, k::u64}},
      {op::query_derivation_output_map, {k::pairs}},
      {op::add_multiple_to_store, {}},
      {op::add_build_log, {k::u64}},
      {op::add_perm_root, {k::str}},
      {op::kiln_submit, {k::u64}},
      {op::kiln_status, {k::str}},
  };
  return table;
}

std::vector<field> read_fields(wire::reader& in) {
  uint64_t at = in.offset();
  uint64_t n = in.u64();
  if (n > max_fields)
    in.fail(std::to_string(n) + " fields, the limit is " + std::to_string(max_fields), at);
  std::vector<field> fields;
  for (uint64_t i = 0; i < n; ++i) {
    at = in.offset();
    uint64_t type = in.u64();
    if (type == 0)
      fields.emplace_back(in.u64());
    else if (type == 1)
      fields.emplace_back(in.str(max_text, "a string field"));
    else
      in.fail("a field of unknown type " + std::to_string(type), at);
  }
  return fields;
}

void append_fields(std::string& out, const std::vector<field>& fields) {
  wire::append_u64(out, fields.size());
  for (auto& f : fields) {
    if (auto* v = std::get_if<uint64_t>(&f)) {
      wire::append_u64(out, 0);
      wire::append_u64(out, *v);
    } else {
      wire::append_u64(out, 1);
      wire::append_string(out, std::get<std::string>(f));
    }
  }
}

// The error record (protocol >= 1.26): "Error", level, "Error", message,
// no position, traces without positions.
void read_error(wire::reader& in, stderr_message& m) {
  uint64_t at = in.offset();
  if (in.str(16, "an error's type") != "Error")
    in.fail("an error record must start with \"Error\"", at);
  m.level = in.u64();
  in.str(max_text, "an error's name"); // always "Error", unused
  m.text = in.str(max_text, "an error message");
  at = in.offset();
  if (in.u64() != 0)
    in.fail("an error with a position (Nix 2.8 sends none)", at);
  at = in.offset();
  uint64_t n = in.u64();
  if (n > max_fields)
    in.fail(std::to_string(n) + " error traces, the limit is " + std::to_string(max_fields), at);
  for (uint64_t i = 0; i < n; ++i) {
    at = in.offset();
    if (in.u64() != 0)
      in.fail("a trace with a position (Nix 2.8 sends none)", at);
    m.traces.push_back(in.str(max_text, "an error trace"));
  }
}

// Reads through the wire reader (which counts the bytes) and copies what
// it read to a sink: the NAR parser finds where a raw NAR ends.
class copying_source : public source {
public:
  copying_source(wire::reader& in, sink& out) : in_(in), out_(out) {}
  std::size_t read(char* data, std::size_t n) override {
    in_.read(data, n);
    out_.write(data, n);
    return n;
  }

private:
  wire::reader& in_;
  sink& out_;
};

} // namespace

stderr_message read_stderr_message(wire::reader& in) {
  stderr_message m;
  uint64_t at = in.offset();
  m.code = static_cast<stderr_code>(in.u64());
  switch (m.code) {
  case stderr_code::last: break;
  case stderr_code::next:
  case stderr_code::write: m.text = in.str(max_text, "a log message"); break;
  case stderr_code::read: m.wanted = in.u64(); break;
  case stderr_code::error: read_error(in, m); break;
  case stderr_code::start_activity:
    m.id = in.u64();
    m.level = in.u64();
    m.type = in.u64();
    m.text = in.str(max_text, "an activity's text");
    m.fields = read_fields(in);
    m.parent = in.u64();
    break;
  case stderr_code::stop_activity: m.id = in.u64(); break;
  case stderr_code::result:
    m.id = in.u64();
    m.type = in.u64();
    m.fields = read_fields(in);
    break;
  default: in.fail("unknown stderr message " + std::to_string(static_cast<uint64_t>(m.code)), at);
  }
  return m;
}

std::string encode_stderr_message(const stderr_message& m) {
  std::string out;
  wire::append_u64(out, static_cast<uint64_t>(m.code));
  switch (m.code) {
  case stderr_code::last: break;
  case stderr_code::next:
  case stderr_code::write: wire::append_string(out, m.text); break;
  case stderr_code::read: wire::append_u64(out, m.wanted); break;
  case stderr_code::error:
    wire::append_string(out, "Error");
    wire::append_u64(out, m.level);
    wire::append_string(out, "Error");
    wire::append_string(out, m.text);
    wire::append_u64(out, 0);
    wire::append_u64(out, m.traces.size());
    for (auto& t : m.traces) {
      wire::append_u64(out, 0);
      wire::append_string(out, t);
    }
    break;
  case stderr_code::start_activity:
    wire::append_u64(out, m.id);
    wire::append_u64(out, m.level);
    wire::append_u64(out, m.type);
    wire::append_string(out, m.text);
    append_fields(out, m.fields);
    wire::append_u64(out, m.parent);
    break;
  case stderr_code::stop_activity: wire::append_u64(out, m.id); break;
  case stderr_code::result:
    wire::append_u64(out, m.id);
    wire::append_u64(out, m.type);
    append_fields(out, m.fields);
    break;
  }
  return out;
}

std::vector<argument> read_reply(wire::reader& in, op code, uint64_t version) {
  std::vector<argument> args;
  // The two replies with a build result are laid out by the version.
  if (code == op::build_derivation) {
    read_parts(in, build_result_parts(version), args);
    return args;
  }
  if (code == op::build_paths_with_results) {
    std::vector<part> keyed{kind::str};
    for (auto& p : build_result_parts(version))
      keyed.push_back(p);
    read_parts(in, {part(kind::records, keyed)}, args);
    return args;
  }
  auto it = reply_shapes().find(code);
  if (it == reply_shapes().end())
    in.fail("no reply shape for operation " + std::to_string(static_cast<uint64_t>(code)), in.offset());
  read_parts(in, it->second, args);
  return args;
}

std::string encode_reply(const std::vector<argument>& args) {
  std::string out;
  append_arguments(out, args);
  return out;
}

uint64_t copy_nar_reply(wire::reader& in, sink& out) {
  uint64_t start = in.offset();
  copying_source copied(in, out);
  nar_visitor check_only;
  parse_nar(copied, check_only, false);
  return in.offset() - start;
}

} // namespace kiln::daemon
