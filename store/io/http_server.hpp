// A small HTTP/1.1 server: enough to serve a binary cache to Nix and to
// Kiln (GET and HEAD, keep-alive, byte ranges, chunked bodies of unknown
// length). A thread per connection, up to a bound; every read has a
// timeout, so a client that stops talking holds its thread for a while,
// not forever. Requests are bounded (line, headers); a malformed one gets
// 400 and the connection closed. What to answer is the handler's business.
#pragma once

#include "store/io/fd.hpp"
#include "store/io/stream.hpp"

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace kiln {

struct http_request {
  std::string method, target;                 // "GET", "/nix-cache-info"
  std::map<std::string, std::string> headers; // names in lower case
};

struct http_response {
  int status = 200;
  std::string content_type = "text/plain";
  std::vector<std::pair<std::string, std::string>> headers;
  // The body: `body`, or what `produce` writes (its length in `length`
  // when known, which allows byte ranges; else sent chunked).
  std::string body;
  std::function<void(sink&)> produce;
  std::optional<uint64_t> length;

  static http_response text(int status, std::string body, std::string type = "text/plain") {
    http_response r;
    r.status = status;
    r.body = std::move(body);
    r.content_type = std::move(type);
    return r;
  }
};

using http_handler = std::function<http_response(const http_request&)>;

// "bytes=A-B", "bytes=A-" or "bytes=-N" against a body of `length` bytes:
// the first and last byte, or nothing if the header is not one range of
// those forms or lies outside the body.
std::optional<std::pair<uint64_t, uint64_t>> parse_byte_range(const std::string& header, uint64_t length);

class http_server {
public:
  // Listens on "ADDR:PORT" (port 0: any free one). Throws if it cannot.
  http_server(const std::string& listen, http_handler handler, unsigned max_connections = 256);
  uint16_t port() const { return port_; }
  // Serves until `stop_fd` becomes readable (or forever with -1).
  void run(int stop_fd = -1);

private:
  void serve_connection(int fd);

  unique_fd listener_;
  uint16_t port_ = 0;
  http_handler handler_;
  unsigned max_connections_;
  std::atomic<unsigned> connections_{0};
};

} // namespace kiln
