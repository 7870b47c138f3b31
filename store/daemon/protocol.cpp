#include "store/daemon/protocol.hpp"

#include "store/format/wire.hpp"

#include <algorithm>
#include <iterator>

namespace kiln::daemon {

namespace {

constexpr uint64_t max_features = 1024;
constexpr std::size_t max_feature_name = 1024;

bool read_bool(wire::reader& in) { return in.u64() != 0; } // any non-zero value, as Nix reads it

std::string version_text(uint64_t v) {
  return std::to_string(protocol_major(v)) + "." + std::to_string(protocol_minor(v));
}

} // namespace

client_hello read_client_hello(wire::reader& in, uint64_t daemon_version) {
  client_hello h;
  uint64_t at = in.offset();
  if (uint64_t magic = in.u64(); magic != worker_magic_1)
    in.fail("not a Nix client (magic " + std::to_string(magic) + ")", at);
  at = in.offset();
  h.version = in.u64();
  if (protocol_major(h.version) != 1 || h.version < oldest_client)
    in.fail("client protocol version " + version_text(h.version) + " is not supported (1.10 or later is)", at);
  if (protocol_minor(std::min(h.version, daemon_version)) >= 38)
    h.features = read_features(in);
  return h;
}

void read_client_hello_rest(wire::reader& in, uint64_t negotiated_version, client_hello& h) {
  unsigned minor = protocol_minor(negotiated_version);
  if (minor >= 14) {
    h.cpu_affinity = read_bool(in);
    if (h.cpu_affinity)
      h.cpu = in.u64();
  }
  if (minor >= 11)
    h.reserve_space = read_bool(in);
}

std::string encode_client_hello(const client_hello& h, uint64_t daemon_version) {
  std::string out;
  wire::append_u64(out, worker_magic_1);
  wire::append_u64(out, h.version);
  if (protocol_minor(std::min(h.version, daemon_version)) >= 38)
    out += encode_features(h.features);
  return out;
}

std::string encode_client_hello_rest(const client_hello& h, uint64_t negotiated_version) {
  std::string out;
  unsigned minor = protocol_minor(negotiated_version);
  if (minor >= 14) {
    wire::append_u64(out, h.cpu_affinity);
    if (h.cpu_affinity)
      wire::append_u64(out, h.cpu);
  }
  if (minor >= 11)
    wire::append_u64(out, h.reserve_space);
  return out;
}

feature_set common_features(const feature_set& a, const feature_set& b) {
  feature_set both;
  std::set_intersection(a.begin(), a.end(), b.begin(), b.end(), std::back_inserter(both));
  return both;
}

std::string encode_features(const feature_set& features) {
  std::string out;
  wire::append_u64(out, features.size());
  for (auto& f : features)
    wire::append_string(out, f);
  return out;
}

feature_set read_features(wire::reader& in) {
  uint64_t at = in.offset();
  uint64_t n = in.u64();
  if (n > max_features)
    in.fail(std::to_string(n) + " protocol features, the limit is " + std::to_string(max_features), at);
  feature_set features;
  for (uint64_t i = 0; i < n; ++i) {
    at = in.offset();
    std::string f = in.str(max_feature_name, "a protocol feature");
    // A set on the wire: sorted and unique, or it is not one.
    if (!features.empty() && f <= features.back())
      in.fail("protocol feature '" + f + "' is out of order or repeated", at);
    features.push_back(std::move(f));
  }
  return features;
}

std::string encode_daemon_greeting(uint64_t daemon_version) {
  std::string out;
  wire::append_u64(out, worker_magic_2);
  wire::append_u64(out, daemon_version);
  return out;
}

std::string encode_daemon_welcome(uint64_t client_version, const std::string& nix_version, trust_flag trust) {
  std::string out;
  if (protocol_minor(client_version) >= 33)
    wire::append_string(out, nix_version);
  if (protocol_minor(client_version) >= 35)
    wire::append_u64(out, static_cast<uint64_t>(trust));
  wire::append_u64(out, static_cast<uint64_t>(stderr_code::last));
  return out;
}

daemon_welcome read_daemon_welcome(wire::reader& in, uint64_t negotiated_version) {
  daemon_welcome w;
  if (protocol_minor(negotiated_version) >= 33)
    w.nix_version = in.str(1024, "daemon version");
  if (protocol_minor(negotiated_version) >= 35) {
    uint64_t at = in.offset();
    uint64_t t = in.u64();
    if (t > 2)
      in.fail("trust flag " + std::to_string(t) + " (0, 1 or 2 expected)", at);
    w.trust = static_cast<trust_flag>(t);
  }
  return w;
}

} // namespace kiln::daemon
