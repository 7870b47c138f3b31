// What the daemon writes back for a request: its stderr stream (log lines,
// activities and their results, ending in STDERR_LAST or an error), then,
// after STDERR_LAST, the reply laid out by the operation's shape.
#pragma once

#include "store/daemon/protocol.hpp"
#include "store/daemon/shapes.hpp"
#include "store/io/stream.hpp"

#include <string>
#include <variant>
#include <vector>

namespace kiln::daemon {

using field = std::variant<uint64_t, std::string>;

struct stderr_message {
  stderr_code code = stderr_code::last;
  std::string text;           // next, write: the bytes; error: the message; start_activity: the text
  uint64_t id = 0;            // activities and results
  uint64_t level = 0;         // error, start_activity
  uint64_t type = 0;          // start_activity: the activity type; result: the result type
  uint64_t parent = 0;        // start_activity
  uint64_t wanted = 0;        // read: how many bytes the daemon asks for
  std::vector<field> fields;  // start_activity, result
  std::vector<std::string> traces; // error
};

stderr_message read_stderr_message(wire::reader& in);
std::string encode_stderr_message(const stderr_message& m);

// The reply to `code` after STDERR_LAST, in wire order, as laid out at
// the connection's `version` (only build results differ between versions).
// NarFromPath's reply is a raw NAR, not arguments: copy it with
// copy_nar_reply().
std::vector<argument> read_reply(wire::reader& in, op code, uint64_t version = protocol_1_34);
std::string encode_reply(const std::vector<argument>& args);
uint64_t copy_nar_reply(wire::reader& in, sink& out);

} // namespace kiln::daemon
