// A local store served as a binary cache (`kiln serve`): what each URL of
// a cache (nix-formats.md §11) answers, made from the store as it is at
// the request: nix-cache-info, <hash>.narinfo (signed on the fly when a
// key is given), nar/<hash>-<narhash>.nar[.zst] (dumped, and compressed
// on the fly), <hash>.ls (the NAR's listing) and log/<drv> (build logs).
// Pure request-to-response logic over the store; the sockets are
// io/http_server's.
#pragma once

#include "store/format/signature.hpp"
#include "store/io/http_server.hpp"
#include "store/local/local_store.hpp"

#include <optional>
#include <string>

namespace kiln {

struct cache_server_options {
  std::optional<secret_key> key; // signs every narinfo served
  std::string compression = "zstd"; // of the NARs: zstd or none
  // zstd with long-distance matching: smaller NARs where files repeat far
  // apart, at a cost in CPU (here: 35% slower on binaries, 3x on
  // incompressible data), so off unless asked for.
  bool long_distance = false;
  int priority = 30;
};

http_response answer_cache_request(local_store& store, const cache_server_options& options,
                                   const http_request& request);

} // namespace kiln
