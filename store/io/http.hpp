// HTTP as a binary-cache client needs it (libcurl): GET streamed into a
// sink, HEAD, PUT. Connections are reused (a pool of handles, HTTP/2 where
// offered). 404, 403 and 410 mean "not here"; 408, 429, 5xx, resets and
// stalls are retried with exponential backoff and jitter (Retry-After is
// honoured), and a download cut short resumes where it stopped (a Range
// request), so a retried stream never repeats or loses a byte. Everything
// else, and the last failed attempt, is an error naming the URL and why.
#pragma once

#include "store/io/stream.hpp"

#include <cstdint>
#include <atomic>
#include <functional>
#include <limits>
#include <memory>
#include <string>

namespace kiln {

struct http_settings {
  unsigned attempts = 5;              // download-attempts
  unsigned stalled_timeout = 300;     // stalled-download-timeout: seconds without a byte
  unsigned connect_timeout = 0;       // connect-timeout: seconds, 0 = libcurl's (300)
  std::string netrc_file;             // netrc-file, used if it exists
  // ssl-cert-file: the CAs https servers are checked against; "" (Nix's
  // default) takes $NIX_SSL_CERT_FILE, else $SSL_CERT_FILE, else libcurl's.
  std::string ca_file;
  unsigned first_retry_ms = 250;      // the first backoff; doubled for each attempt after
  // Once set, transfers under way stop within a second and fail ("cancelled"),
  // and none is retried: a run that ended does not wait for its lookups.
  std::shared_ptr<const std::atomic<bool>> cancelled;
};

class http_client {
public:
  explicit http_client(http_settings s);
  ~http_client();
  http_client(const http_client&) = delete;
  http_client& operator=(const http_client&) = delete;

  // Streams the body of a 200 into `out`; false for "not here". A body of
  // more than `limit` bytes is an error (a server that sends forever).
  bool get(const std::string& url, sink& out, uint64_t limit = std::numeric_limits<uint64_t>::max());
  bool head(const std::string& url);
  // Uploads `size` bytes that `open_body` gives (called again for each
  // attempt); any answer but 2xx is an error.
  void put(const std::string& url, const std::function<std::unique_ptr<source>()>& open_body, uint64_t size,
           const std::string& content_type);

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace kiln
