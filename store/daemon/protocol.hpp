// The Nix daemon's worker protocol (../shared/spec/worker-protocol.md) as
// plain values: its constants, and the handshake with its encoding and
// strict decoding (the requests are requests.hpp's). Bytes in, bytes out: no sockets and no CAF,
// so the daemon-client store needs no actors and the golden captures of
// real Nix 2.8 conversations test it directly.
#pragma once

#include "store/format/wire_reader.hpp"

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace kiln::daemon {

constexpr uint64_t worker_magic_1 = 0x6e697863; // client -> daemon
constexpr uint64_t worker_magic_2 = 0x6478696f; // daemon -> client

constexpr uint64_t protocol_version(unsigned major, unsigned minor) { return (uint64_t{major} << 8) | minor; }
constexpr unsigned protocol_major(uint64_t v) { return static_cast<unsigned>((v >> 8) & 0xff); }
constexpr unsigned protocol_minor(uint64_t v) { return static_cast<unsigned>(v & 0xff); }
// What Nix 2.8 speaks, and what this codec has been proved against.
constexpr uint64_t protocol_1_34 = protocol_version(1, 34);
// Nix 2.15-2.19 and Lix (whose 2.94 and later refuse anything older): the
// daemon's welcome says whether it trusts the client.
constexpr uint64_t protocol_1_35 = protocol_version(1, 35);
// Nix 2.20 and later: AddPermRoot (op 47) at 1.36; a BuildResult's CPU
// times at 1.37; from 1.38 both sides exchange the protocol features they
// have right after the versions, and use those both have.
constexpr uint64_t protocol_1_36 = protocol_version(1, 36);
constexpr uint64_t protocol_1_37 = protocol_version(1, 37);
constexpr uint64_t protocol_1_38 = protocol_version(1, 38);
// The oldest client a 2.8 daemon serves.
constexpr uint64_t oldest_client = protocol_version(1, 10);

// The codes that open each message of the daemon's stderr stream.
enum class stderr_code : uint64_t {
  next = 0x6f6c6d67, read = 0x64617461, write = 0x64617416, last = 0x616c7473, error = 0x63787470,
  start_activity = 0x53545254, stop_activity = 0x53544f50, result = 0x52534c54,
};

enum class op : uint64_t {
  is_valid_path = 1, query_referrers = 6, add_to_store = 7, add_text_to_store = 8, build_paths = 9,
  ensure_path = 10, add_temp_root = 11, add_indirect_root = 12, sync_with_gc = 13, find_roots = 14,
  set_options = 19, collect_garbage = 20, query_substitutable_path_info = 21, query_all_valid_paths = 23,
  query_path_info = 26, query_path_from_hash_part = 29, query_substitutable_path_infos = 30,
  query_valid_paths = 31, query_substitutable_paths = 32, query_valid_derivers = 33, optimise_store = 34,
  verify_store = 35, build_derivation = 36, add_signatures = 37, nar_from_path = 38, add_to_store_nar = 39,
  query_missing = 40, query_derivation_output_map = 41, add_multiple_to_store = 44, add_build_log = 45,
  build_paths_with_results = 46, add_perm_root = 47,
  // Kiln's own, far from Nix's numbers (nix-daemon refuses them as unknown):
  // queue a build detached from the connection, answered with its id; and a
  // detached build's state and results (waiting for them if asked), as JSON.
  kiln_submit = 1001, kiln_status = 1002,
};

// Protocol features (1.38), sorted, no duplicates. Kiln announces none of
// Nix's yet; what both sides have is their intersection.
using feature_set = std::vector<std::string>;
feature_set common_features(const feature_set& a, const feature_set& b);

// What a client sends in the handshake, from its magic on. It comes in two
// parts: from 1.38 the client waits for the daemon's features between them.
struct client_hello {
  uint64_t version = protocol_1_34;
  feature_set features;      // 1.38 and later
  bool cpu_affinity = false; // obsolete: a CPU number follows if set
  uint64_t cpu = 0;
  bool reserve_space = false; // obsolete
};

// The first part: magic, version, and from 1.38 the client's features.
// Which fields come is decided by the lower of the two versions. Refuses a
// wrong magic and a client older than oldest_client or of another major
// version.
client_hello read_client_hello(wire::reader& in, uint64_t daemon_version);
std::string encode_client_hello(const client_hello& h, uint64_t daemon_version);
// The second part, after the daemon's features (1.38) or straight after
// the first: the obsolete CPU affinity and reserveSpace.
void read_client_hello_rest(wire::reader& in, uint64_t negotiated_version, client_hello& h);
std::string encode_client_hello_rest(const client_hello& h, uint64_t negotiated_version);
// The daemon's features (1.38 and later), sent between the two parts.
std::string encode_features(const feature_set& features);
feature_set read_features(wire::reader& in);

// The daemon's side: magic and version, then (after the client's answer)
// its Nix version for clients from 1.33 on, then the start-up stderr
// stream, here empty (STDERR_LAST).
std::string encode_daemon_greeting(uint64_t daemon_version);
// From 1.35 on the welcome ends with the client's trust: `trusted` unset
// is sent as 0 (unknown), true as 1, false as 2.
enum class trust_flag : uint64_t { unknown = 0, trusted = 1, not_trusted = 2 };
std::string encode_daemon_welcome(uint64_t client_version, const std::string& nix_version,
                                  trust_flag trust = trust_flag::unknown);
// What a client reads after its hello: the daemon's version string (1.33
// and later), its trust in the client (1.35 and later). The start-up
// stderr stream that follows is the caller's.
struct daemon_welcome {
  std::string nix_version;
  trust_flag trust = trust_flag::unknown;
};
daemon_welcome read_daemon_welcome(wire::reader& in, uint64_t negotiated_version);

// SetOptions (op 19): the client's settings for the connection (read and
// written as a request, requests.hpp).
struct client_options {
  bool keep_failed = false, keep_going = false, try_fallback = false;
  uint64_t verbosity = 3, max_build_jobs = 1, max_silent_time = 0;
  bool use_build_hook = true; // obsolete, always sent as 1
  uint64_t verbose_build = 7; // 0 (lvlError) = show build logs
  uint64_t log_type = 0, print_build_trace = 0; // obsolete
  uint64_t build_cores = 0;
  bool use_substitutes = true;
  std::vector<std::pair<std::string, std::string>> overrides; // other settings by name, in order
};

} // namespace kiln::daemon
