// The worker protocol against every real Nix 2.8 conversation captured in
// tests/vectors/worker-protocol/raw: each side's whole stream (handshake,
// every request with its framed upload, every stderr message, every reply)
// decoded, then encoded again to exactly the bytes Nix sent; and hostile
// frames refused with the field and offset named.
#include "store/daemon/protocol.hpp"
#include "store/daemon/build_results.hpp"
#include "store/daemon/path_infos.hpp"
#include "store/daemon/replies.hpp"
#include "store/daemon/requests.hpp"
#include "store/format/wire.hpp"
#include "store/io/error.hpp"
#include "tests/support/test_support.hpp"

#include <boost/test/unit_test.hpp>

#include <dirent.h>

#include <algorithm>
#include <fstream>

using namespace kiln;
using namespace kiln::daemon;

namespace {

struct capture {
  std::string name, to_daemon, to_client; // each direction's whole byte stream
};

std::string unhex(const std::string& hex) {
  std::string out;
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2)
    out += static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16));
  return out;
}

std::vector<capture> captures() {
  std::string dir = test::vectors_dir() + "/worker-protocol/raw";
  std::vector<std::string> names = test::list_dir(dir);
  std::sort(names.begin(), names.end());
  std::vector<capture> out;
  for (auto& n : names) {
    capture c{n, "", ""};
    std::ifstream in(dir + "/" + n);
    for (std::string line; std::getline(in, line);) {
      auto j = nlohmann::json::parse(line);
      (j["dir"] == "C2D" ? c.to_daemon : c.to_client) += unhex(j["hex"]);
    }
    out.push_back(std::move(c));
  }
  return out;
}

std::string u64(uint64_t v) {
  std::string s;
  wire::append_u64(s, v);
  return s;
}

// Both parts of a hello from a client below 1.38, which sends them at once.
client_hello read_whole_hello(wire::reader& in, uint64_t daemon_version) {
  client_hello h = read_client_hello(in, daemon_version);
  read_client_hello_rest(in, std::min(h.version, daemon_version), h);
  return h;
}

std::string encode_whole_hello(const client_hello& h, uint64_t daemon_version) {
  return encode_client_hello(h, daemon_version) + encode_client_hello_rest(h, std::min(h.version, daemon_version));
}

std::string str(const std::string& s) { // a string as the wire pads it, written out by hand
  return u64(s.size()) + s + std::string((8 - s.size() % 8) % 8, '\0');
}

void refused(const std::string& bytes, const std::string& fragment) {
  string_source src(bytes);
  wire::reader in(src, "daemon message");
  try {
    read_whole_hello(in, protocol_1_34);
    for (;;) {
      string_sink data;
      if (read_request(in).framed_data_follows)
        read_framed(in, data);
    }
  } catch (const format_error& e) {
    BOOST_TEST(std::string(e.what()).find(fragment) != std::string::npos, e.what());
    return;
  }
  BOOST_ERROR("accepted; expected: " + fragment);
}

} // namespace

BOOST_AUTO_TEST_SUITE(worker_protocol)

BOOST_AUTO_TEST_CASE(every_captured_conversation_decodes_and_encodes_to_nixs_bytes) {
  auto all = captures();
  BOOST_TEST(all.size() >= 30u);
  std::size_t with_options = 0, requests = 0, framed = 0, messages = 0, replies = 0, infos = 0, results = 0;
  for (auto& c : all) {
    BOOST_TEST_CONTEXT(c.name) {
      string_source src(c.to_daemon);
      wire::reader in(src, "daemon message");
      client_hello hello = read_whole_hello(in, protocol_1_34);
      BOOST_TEST(hello.version == protocol_1_34);
      BOOST_TEST(encode_whole_hello(hello, protocol_1_34) == c.to_daemon.substr(0, in.offset()));
      // The daemon's greeting and welcome, as Nix 2.8's daemon wrote them.
      std::string daemon_side = encode_daemon_greeting(protocol_1_34) + encode_daemon_welcome(hello.version, "2.8.0");
      BOOST_TEST(c.to_client.substr(0, daemon_side.size()) == daemon_side);
      // Every request to the end of the stream, each re-encoded to Nix's bytes.
      std::vector<op> asked;
      while (in.offset() < c.to_daemon.size()) {
        uint64_t start = in.offset();
        request r = read_request(in);
        std::string again = encode_request(r);
        if (r.framed_data_follows) {
          string_sink data;
          read_framed(in, data);
          again += encode_framed(data.s);
          ++framed;
        }
        BOOST_TEST(again.size() == in.offset() - start);
        if (r.framed_data_follows) // the client's chunking is its own; the data must be the same
          BOOST_TEST(again.substr(0, encode_request(r).size()) == c.to_daemon.substr(start, encode_request(r).size()));
        else
          BOOST_TEST(again == c.to_daemon.substr(start, in.offset() - start));
        if (r.code == op::set_options) {
          BOOST_TEST(encode_request(set_options_request(options_of(r))) == again);
          ++with_options;
        }
        asked.push_back(r.code);
        ++requests;
      }
      // The daemon's side: for each request its stderr stream, then its reply.
      string_source back(c.to_client);
      wire::reader out(back, "daemon reply");
      std::string skipped(daemon_side.size(), '\0');
      out.read(skipped.data(), skipped.size());
      auto message = [&] {
        uint64_t start = out.offset();
        stderr_message m = read_stderr_message(out);
        BOOST_TEST(encode_stderr_message(m) == c.to_client.substr(start, out.offset() - start));
        ++messages;
        return m.code;
      };
      for (op code : asked) {
        stderr_code last;
        while ((last = message()) != stderr_code::last && last != stderr_code::error) {
        }
        if (last == stderr_code::error)
          continue;
        uint64_t start = out.offset();
        if (code == op::nar_from_path) {
          string_sink nar;
          uint64_t size = copy_nar_reply(out, nar);
          BOOST_TEST(size > 0u);
          BOOST_TEST(nar.s == c.to_client.substr(start, size));
        } else {
          std::vector<argument> args = read_reply(out, code);
          std::string reply = encode_reply(args);
          BOOST_TEST(reply == c.to_client.substr(start, out.offset() - start));
          // A path's record, through the store's path_info and back
          // (QueryPathInfo's reply leaves the path out: any stands in for it).
          bool with_path = code == op::add_to_store;
          if (with_path || (code == op::query_path_info && std::get<uint64_t>(args[0]) == 1)) {
            std::size_t prefix = with_path ? 0 : 1, pos = prefix;
            std::optional<store_path> given;
            if (!with_path)
              given = parse_store_path("/nix/store/" + std::string(32, '0') + "-x");
            path_info info = path_info_from(args, pos, given);
            BOOST_TEST(pos == args.size());
            std::vector<argument> rebuilt(args.begin(), args.begin() + static_cast<std::ptrdiff_t>(prefix));
            append_path_info(rebuilt, info, with_path);
            BOOST_TEST(encode_reply(rebuilt) == reply);
            ++infos;
          }
          // Build results, through their struct and back.
          if (code == op::build_paths_with_results) {
            std::size_t pos = 1;
            std::vector<argument> rebuilt{args[0]};
            for (uint64_t i = 0; i < u64_at(args, 0); ++i) {
              rebuilt.push_back(args[pos++]);
              append_build_result(rebuilt, build_result_from(args, pos, protocol_1_34), protocol_1_34);
            }
            BOOST_TEST(pos == args.size());
            BOOST_TEST(encode_reply(rebuilt) == reply);
            ++results;
          }
        }
        ++replies;
      }
      while (out.offset() < c.to_client.size()) // an error before work started is sent twice, then the close
        BOOST_TEST((message() == stderr_code::error));
    }
  }
  BOOST_TEST_MESSAGE(messages << " stderr messages, " << replies << " replies, " << infos << " path records");
  BOOST_TEST(infos > 20u);
  BOOST_TEST(results >= 2u); // captures 32 and 33
  BOOST_TEST(replies > 100u);
  // ssh-ng:// clients send no SetOptions; every unix:// one does.
  BOOST_TEST(with_options + 2 == all.size());
  BOOST_TEST_MESSAGE(requests << " requests, " << framed << " with framed data");
  BOOST_TEST(framed > 0u);
}

BOOST_AUTO_TEST_CASE(the_first_captures_options_are_what_the_client_sent) {
  for (auto& c : captures()) {
    if (c.name.rfind("01-", 0) != 0)
      continue;
    string_source src(c.to_daemon);
    wire::reader in(src, "daemon message");
    read_whole_hello(in, protocol_1_34);
    client_options o = options_of(read_request(in));
    BOOST_TEST(o.verbosity == 3u);
    BOOST_TEST(o.build_cores == 2u);
    BOOST_TEST(o.verbose_build == 7u);
    BOOST_REQUIRE(o.overrides.size() == 2u);
    BOOST_TEST(o.overrides[0].first == "store");
    BOOST_TEST(o.overrides[0].second == "unix:///srv/nxcap/proxy.sock");
    BOOST_TEST(o.overrides[1].first == "substituters");
    BOOST_TEST(o.overrides[1].second == "");
    return;
  }
  BOOST_ERROR("capture 01 is missing");
}

BOOST_AUTO_TEST_CASE(an_older_client_gets_the_fields_of_its_version) {
  client_hello old;
  old.version = protocol_version(1, 12);
  std::string bytes = encode_whole_hello(old, protocol_1_34); // 1.12: no affinity flag, a reserveSpace
  BOOST_TEST(bytes.size() == 24u);
  string_source src(bytes);
  wire::reader in(src, "daemon message");
  BOOST_TEST(read_whole_hello(in, protocol_1_34).version == protocol_version(1, 12));
  BOOST_TEST(encode_daemon_welcome(protocol_version(1, 32), "2.8.0") == u64(0x616c7473)); // no version string
}

// 1.35 (Nix 2.15-2.19, Lix): the welcome ends with the daemon's trust in
// the client, written here from the documented change, not captured.
BOOST_AUTO_TEST_CASE(a_1_35_client_is_told_whether_it_is_trusted) {
  std::string version = u64(5) + std::string("2.8.0\0\0\0", 8);
  BOOST_TEST(encode_daemon_welcome(protocol_1_35, "2.8.0", trust_flag::trusted) == version + u64(1) + u64(0x616c7473));
  BOOST_TEST(encode_daemon_welcome(protocol_1_35, "2.8.0", trust_flag::not_trusted) ==
             version + u64(2) + u64(0x616c7473));
  BOOST_TEST(encode_daemon_welcome(protocol_1_35, "2.8.0") == version + u64(0) + u64(0x616c7473));
  // A 1.34 client is not sent the flag it would not read.
  BOOST_TEST(encode_daemon_welcome(protocol_1_34, "2.8.0", trust_flag::trusted) == version + u64(0x616c7473));
  for (auto t : {trust_flag::unknown, trust_flag::trusted, trust_flag::not_trusted}) {
    std::string bytes = encode_daemon_welcome(protocol_1_35, "2.8.0", t);
    string_source src(bytes);
    wire::reader in(src, "daemon message");
    auto w = read_daemon_welcome(in, protocol_1_35);
    BOOST_TEST(w.nix_version == "2.8.0");
    BOOST_TEST((w.trust == t));
  }
  std::string bad_bytes = version + u64(3);
  string_source bad(bad_bytes);
  wire::reader in(bad, "daemon message");
  BOOST_CHECK_EXCEPTION(read_daemon_welcome(in, protocol_1_35), format_error, [](const format_error& e) {
    return std::string(e.what()).find("at byte 16: trust flag 3") != std::string::npos;
  });
}

// 1.38 (Nix 2.24 and later): after the two versions the client sends its
// protocol features and waits for the daemon's before the rest of its
// hello. Written from the documented change, not captured.
BOOST_AUTO_TEST_CASE(a_1_38_handshake_exchanges_features_between_the_two_parts) {
  client_hello h;
  h.version = protocol_1_38;
  h.features = {"alpha", "beta-feature"};
  std::string first = u64(worker_magic_1) + u64(0x126) + u64(2) + str("alpha") + str("beta-feature");
  BOOST_TEST(encode_client_hello(h, protocol_1_38) == first);
  BOOST_TEST(encode_client_hello_rest(h, protocol_1_38) == u64(0) + u64(0)); // no CPU affinity, no reserveSpace
  BOOST_TEST(encode_features({}) == u64(0));
  BOOST_TEST(encode_features({"beta-feature"}) == u64(1) + str("beta-feature"));
  {
    std::string bytes = first + u64(0) + u64(0);
    string_source src(bytes);
    wire::reader in(src, "daemon message");
    client_hello got = read_client_hello(in, protocol_1_38);
    BOOST_TEST(in.offset() == first.size()); // the rest waits for the daemon's features
    BOOST_TEST(got.features == h.features);
    read_client_hello_rest(in, protocol_1_38, got);
    BOOST_TEST(in.offset() == bytes.size());
  }
  // Against a 1.37 daemon the same client sends no features.
  BOOST_TEST(encode_client_hello(h, protocol_1_37) == u64(worker_magic_1) + u64(0x126));
  BOOST_TEST((common_features({"a", "b", "c"}, {"b", "c", "d"}) == feature_set{"b", "c"}));
  BOOST_TEST(common_features({"a"}, {}).empty());
  // A set on the wire is sorted and unique.
  for (auto& [bytes, fragment] : std::vector<std::pair<std::string, std::string>>{
           {u64(2) + str("b") + str("a"), "at byte 24: protocol feature 'a' is out of order or repeated"},
           {u64(2) + str("a") + str("a"), "protocol feature 'a' is out of order or repeated"},
           {u64(1u << 20), "1048576 protocol features, the limit is 1024"}}) {
    string_source src(bytes);
    wire::reader in(src, "daemon message");
    BOOST_CHECK_EXCEPTION(read_features(in), format_error, [&](const format_error& e) {
      return std::string(e.what()).find(fragment) != std::string::npos;
    });
  }
}

// 1.36: AddPermRoot, op 47: a store path and the link to make; the reply is
// the link.
BOOST_AUTO_TEST_CASE(a_1_36_add_perm_root_is_a_path_and_a_link) {
  std::string path = "/nix/store/" + std::string(32, 'a') + "-x";
  std::string bytes = u64(47) + str(path) + str("/home/u/result");
  string_source src(bytes);
  wire::reader in(src, "daemon message");
  request r = read_request(in);
  BOOST_TEST((r.code == op::add_perm_root));
  BOOST_TEST(str_at(r.args, 0) == path);
  BOOST_TEST(str_at(r.args, 1) == "/home/u/result");
  BOOST_TEST(encode_request(r) == bytes);
  std::string reply = str("/home/u/result");
  string_source back(reply);
  wire::reader out(back, "daemon reply");
  BOOST_TEST(str_at(read_reply(out, op::add_perm_root, protocol_1_36), 0) == "/home/u/result");
}

// A BuildResult at each version: status and error always; times and the
// determinism flag from 1.29; the built outputs from 1.28; from 1.37 the
// CPU times, each a flag and then microseconds if set.
BOOST_AUTO_TEST_CASE(a_build_result_has_the_fields_of_its_version) {
  wire_build_result r;
  r.status = 0;
  r.error = "";
  r.times_built = 1;
  r.start_time = 1700000000;
  r.stop_time = 1700000003;
  r.cpu_user_us = 500;
  r.built_outputs = {{"sha256:00!out", "{}"}};
  std::string head = u64(0) + str("");
  std::string times = u64(1) + u64(0) + u64(1700000000) + u64(1700000003);
  std::string outputs = u64(1) + str("sha256:00!out") + str("{}");
  std::string cpu = u64(1) + u64(500) + u64(0); // user 500 µs, system not measured
  std::map<uint64_t, std::string> expected = {{protocol_version(1, 27), head},
                                              {protocol_version(1, 28), head + outputs},
                                              {protocol_1_34, head + times + outputs},
                                              {protocol_1_36, head + times + outputs},
                                              {protocol_1_37, head + times + cpu + outputs},
                                              {protocol_1_38, head + times + cpu + outputs}};
  for (auto& [version, bytes] : expected) {
    BOOST_TEST_CONTEXT("1." << protocol_minor(version)) {
      std::vector<argument> args;
      append_build_result(args, r, version);
      BOOST_TEST(encode_reply(args) == bytes);
      string_source src(bytes);
      wire::reader in(src, "daemon reply");
      auto read = read_reply(in, op::build_derivation, version);
      BOOST_TEST(in.offset() == bytes.size());
      std::size_t pos = 0;
      wire_build_result back = build_result_from(read, pos, version);
      BOOST_TEST(pos == read.size());
      BOOST_TEST(encode_reply([&] {
                   std::vector<argument> again;
                   append_build_result(again, back, version);
                   return again;
                 }()) == bytes);
      if (protocol_minor(version) >= 37) {
        BOOST_TEST((back.cpu_user_us == std::optional<uint64_t>(500)));
        BOOST_TEST(!back.cpu_system_us.has_value());
      }
    }
  }
  // BuildPathsWithResults at 1.37: each result after its derived path.
  std::string keyed = u64(1) + str("/nix/store/x.drv!out") + head + times + cpu + outputs;
  string_source src(keyed);
  wire::reader in(src, "daemon reply");
  auto args = read_reply(in, op::build_paths_with_results, protocol_1_37);
  BOOST_TEST(in.offset() == keyed.size());
  BOOST_TEST(str_at(args, 1) == "/nix/store/x.drv!out");
  // A CPU time's flag is a flag: anything but 0 or 1 is refused (Nix reads it as such).
  std::vector<argument> bad{uint64_t{0}, std::string(), uint64_t{1}, uint64_t{0}, uint64_t{1}, uint64_t{2},
                            uint64_t{7}, uint64_t{500}, uint64_t{0}, string_pairs{}};
  std::size_t pos = 0;
  BOOST_CHECK_EXCEPTION(build_result_from(bad, pos, protocol_1_37), format_error, [](const format_error& e) {
    return std::string(e.what()).find("a CPU time's flag is 7 (0 or 1 expected)") != std::string::npos;
  });
}

// BuildDerivation, op 36: the .drv path, the derivation (outputs as name,
// path, hash algorithm, hash; sources, platform, builder, arguments,
// environment) and the build mode.
BOOST_AUTO_TEST_CASE(build_derivation_carries_the_derivation_itself) {
  std::string drv = "/nix/store/" + std::string(32, 'b') + "-x.drv";
  std::string out = "/nix/store/" + std::string(32, 'c') + "-x";
  std::string src = "/nix/store/" + std::string(32, 'd') + "-src";
  std::string bytes = u64(36) + str(drv) + u64(1) + str("out") + str(out) + str("") + str("") + u64(1) + str(src) +
                      str("x86_64-linux") + str("/bin/sh") + u64(2) + str("-c") + str("echo hi > $out") + u64(1) +
                      str("out") + str(out) + u64(0);
  string_source in_src(bytes);
  wire::reader in(in_src, "daemon message");
  request r = read_request(in);
  BOOST_TEST((r.code == op::build_derivation));
  BOOST_TEST(in.offset() == bytes.size());
  BOOST_TEST(encode_request(r) == bytes);
  BOOST_TEST(str_at(r.args, 0) == drv);
  BOOST_TEST(u64_at(r.args, 1) == 1u);
  BOOST_TEST(str_at(r.args, 3) == out);
  BOOST_TEST(strs_at(r.args, 6) == std::vector<std::string>{src});
  BOOST_TEST(u64_at(r.args, 11) == 0u);
}

BOOST_AUTO_TEST_CASE(hostile_frames_are_refused_naming_what_and_where) {
  std::string hello = encode_whole_hello({}, protocol_1_34);
  refused(u64(0x12345678), "at byte 0: not a Nix client");
  refused(u64(worker_magic_1) + u64(protocol_version(2, 0)), "at byte 8: client protocol version 2.0 is not supported");
  refused(u64(worker_magic_1) + u64(protocol_version(1, 9)), "1.9 is not supported");
  refused(hello.substr(0, 20), "at byte 20: input ended unexpectedly (truncated daemon message)");
  refused(hello + u64(999), "at byte 32: unknown operation 999");
  std::string options = encode_request(set_options_request({}));
  std::string frame = hello + options;
  frame.replace(hello.size() + 13 * 8, 8, u64(1ull << 40)); // the overrides count
  refused(frame, "a map of 1099511627776 entries, the limit is 1048576");
  client_options one;
  one.overrides = {{"cores", "4"}};
  frame = hello + encode_request(set_options_request(one));
  frame[frame.size() - 8 + 1] = 'x'; // a padding byte of the value "4"
  refused(frame, "non-zero padding byte");
  frame = hello + encode_request(set_options_request(one));
  frame.replace(hello.size() + 14 * 8, 8, u64(1ull << 62)); // the name's length
  refused(frame, "a map key is 4611686018427387904 bytes long, the limit is 1048576");
  request add;
  add.code = op::add_build_log;
  add.args = {std::string("x.drv")};
  refused(hello + encode_request(add) + u64(1ull << 30), "a frame of 1073741824 bytes, the limit is 1048576");
}

BOOST_AUTO_TEST_CASE(a_hostile_daemon_reply_is_refused_naming_what_and_where) {
  auto refused_reply = [](const std::string& bytes, const std::string& fragment) {
    string_source src(bytes);
    wire::reader in(src, "daemon reply");
    try {
      read_stderr_message(in);
      BOOST_ERROR("accepted; expected: " + fragment);
    } catch (const format_error& e) {
      BOOST_TEST(std::string(e.what()).find(fragment) != std::string::npos, e.what());
    }
  };
  refused_reply(u64(42), "at byte 0: unknown stderr message 42");
  stderr_message error;
  error.code = stderr_code::error;
  error.text = "boom";
  std::string bytes = encode_stderr_message(error);
  bytes.replace(bytes.size() - 16, 8, u64(1)); // havePos
  refused_reply(bytes, "an error with a position");
  stderr_message result;
  result.code = stderr_code::result;
  bytes = encode_stderr_message(result);
  bytes.replace(24, 8, u64(1000)); // the field count
  refused_reply(bytes, "at byte 24: 1000 fields, the limit is 64");
  result.fields = {uint64_t{1}};
  bytes = encode_stderr_message(result);
  bytes.replace(32, 8, u64(7)); // the field's type
  refused_reply(bytes, "at byte 32: a field of unknown type 7");

  // A record naming a path outside the store, or with a hash that is none.
  path_info good(parse_store_path("/nix/store/" + std::string(32, '0') + "-x"));
  std::vector<argument> args;
  append_path_info(args, good, true);
  auto refused_record = [&](std::size_t i, argument bad, const std::string& fragment) {
    std::vector<argument> changed = args;
    changed[i] = std::move(bad);
    std::size_t pos = 0;
    try {
      path_info_from(changed, pos);
      BOOST_ERROR("accepted; expected: " + fragment);
    } catch (const format_error& e) {
      BOOST_TEST(std::string(e.what()).find(fragment) != std::string::npos, e.what());
    }
  };
  refused_record(0, std::string("/etc/passwd"), "/etc/passwd");
  refused_record(2, std::string("xyz"), "xyz");
  refused_record(3, uint64_t{7}, "a path's record: the references: missing, or not of its kind");
}

BOOST_AUTO_TEST_SUITE_END()
