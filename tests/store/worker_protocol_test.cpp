// The worker protocol against every real Nix 2.8 conversation captured in
// tests/vectors/worker-protocol/raw: each side's whole stream (handshake,
// every request with its framed upload, every stderr message, every reply)
// decoded, then encoded again to exactly the bytes Nix sent; and hostile
// frames refused with the field and offset named.
#include "store/daemon/protocol.hpp"
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

void refused(const std::string& bytes, const std::string& fragment) {
  string_source src(bytes);
  wire::reader in(src, "daemon message");
  try {
    read_client_hello(in, protocol_1_34);
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
  std::size_t with_options = 0, requests = 0, framed = 0, messages = 0, replies = 0, infos = 0;
  for (auto& c : all) {
    BOOST_TEST_CONTEXT(c.name) {
      string_source src(c.to_daemon);
      wire::reader in(src, "daemon message");
      client_hello hello = read_client_hello(in, protocol_1_34);
      BOOST_TEST(hello.version == protocol_1_34);
      BOOST_TEST(encode_client_hello(hello, protocol_1_34) == c.to_daemon.substr(0, in.offset()));
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
        }
        ++replies;
      }
      while (out.offset() < c.to_client.size()) // an error before work started is sent twice, then the close
        BOOST_TEST((message() == stderr_code::error));
    }
  }
  BOOST_TEST_MESSAGE(messages << " stderr messages, " << replies << " replies, " << infos << " path records");
  BOOST_TEST(infos > 20u);
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
    read_client_hello(in, protocol_1_34);
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
  client_hello old{protocol_version(1, 12), false, 0, false};
  std::string bytes = encode_client_hello(old, protocol_1_34); // 1.12: no affinity flag, a reserveSpace
  BOOST_TEST(bytes.size() == 24u);
  string_source src(bytes);
  wire::reader in(src, "daemon message");
  BOOST_TEST(read_client_hello(in, protocol_1_34).version == protocol_version(1, 12));
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

BOOST_AUTO_TEST_CASE(hostile_frames_are_refused_naming_what_and_where) {
  std::string hello = encode_client_hello({}, protocol_1_34);
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
