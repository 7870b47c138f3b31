// How a binary cache's files are reached: a directory (file://) or a web
// server (http://, https://). The binary-cache store says what the files
// are (nix-cache-info, narinfo, NARs, logs); a transport only moves them.
#pragma once

#include "store/io/http.hpp"
#include "store/io/stream.hpp"

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace kiln {

class cache_transport {
public:
  virtual ~cache_transport() = default;
  // The cache as the user named it (for messages).
  virtual const std::string& uri() const = 0;

  // A small file (at most `limit` bytes, more is an error), or nothing if
  // the cache does not have it.
  virtual std::optional<std::string> get(const std::string& name, std::size_t limit) = 0;
  // Streams a file; throws, naming it, if the cache does not have it or it
  // is longer than `limit` bytes (0: no limit).
  virtual std::unique_ptr<source> open(const std::string& name, uint64_t limit) = 0;
  virtual bool has(const std::string& name) = 0;

  // Writing. A new file is made in `scratch_dir()` and published under
  // `name` by put_file (which takes it away); nobody reading the cache sees
  // a file half written.
  virtual std::string scratch_dir() = 0;
  virtual void put_file(const std::string& name, const std::string& scratch_path) = 0;
  virtual void put(const std::string& name, std::string_view contents) = 0;
};

// A cache in the directory `dir` (file:///DIR).
std::unique_ptr<cache_transport> make_file_transport(std::string uri, std::string dir);
// A cache on a web server at `base_url` (http:// or https://, no trailing
// slash); writing is HTTP PUT.
std::unique_ptr<cache_transport> make_http_transport(std::string uri, std::string base_url, http_settings settings);

} // namespace kiln
