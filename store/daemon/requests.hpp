// The arguments of every request a Nix 2.8 client sends (protocol 1.34),
// and of AddPermRoot (1.36), read and written by one table of shapes (requests.cpp) rather than by a
// function per operation. Bulk data that follows some requests (ops 7, 39,
// 44, 45) is a framed stream left for the caller to consume with
// read_framed(), so a large NAR is never held whole.
#pragma once

#include "store/daemon/protocol.hpp"
#include "store/daemon/shapes.hpp"
#include "store/io/stream.hpp"

#include <string>
#include <vector>

namespace kiln::daemon {

struct request {
  op code = op::is_valid_path;
  std::vector<argument> args; // in wire order
  bool framed_data_follows = false;
};

// Reads an opcode and its arguments. Throws format_error for an opcode this
// codec does not know (naming it) and for arguments past their bounds.
request read_request(wire::reader& in);
std::string encode_request(const request& r);

// SetOptions as its struct, and back; options_of throws format_error for a
// request of another operation.
client_options options_of(const request& r);
request set_options_request(const client_options& o);

// Copies a framed stream (chunks, each a u64 length and its bytes, ended by
// an empty one) to `out`; at most `max_chunk` bytes per chunk. Returns the
// bytes copied.
uint64_t read_framed(wire::reader& in, sink& out, std::size_t max_chunk = 1 << 20);
std::string encode_framed(std::string_view data, std::size_t chunk = 32768);

// The same stream as a source: read() gives the chunks' bytes and 0 at the
// empty chunk that ends it. drain() skips what is left, so the connection
// stays in step when the reader stopped early (a refused upload).
class framed_source : public source {
public:
  explicit framed_source(wire::reader& in, std::size_t max_chunk = 1 << 20) : in_(in), max_chunk_(max_chunk) {}
  std::size_t read(char* data, std::size_t n) override;
  void drain();
  bool ended() const { return ended_; }

private:
  wire::reader& in_;
  std::size_t max_chunk_;
  uint64_t left_ = 0; // in the current chunk
  bool ended_ = false;
};

} // namespace kiln::daemon
