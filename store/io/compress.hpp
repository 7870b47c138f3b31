// Compression as a sink: what binary caches (narinfo `Compression`) and
// build logs are written with. The counterpart of decompress.hpp, with the
// same names for the same methods.
#pragma once

#include "store/io/stream.hpp"

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace kiln {

class compressing_sink : public sink {
public:
  // Ends the compressed stream and writes its tail to the inner sink (which
  // is then flushed); nothing may be written afterwards.
  virtual void finish() = 0;
};

// zstd only: long-distance matching finds repeats far apart (a NAR's
// copies of one file) at little cost in speed; told the exact size of what
// comes, it keeps its window (memory) no bigger than that, and a stream
// of another size is an error.
struct zstd_tuning {
  bool long_distance = false;
  std::optional<uint64_t> size;
};

// Writes what it is given to `out` compressed by `method` ("none" or "",
// "xz", "bzip2", "zstd") at `level` (-1: the method's default). An
// unknown method or level is a format_error naming `what`.
std::unique_ptr<compressing_sink> make_compressing_sink(sink& out, std::string_view method, int level,
                                                        std::string what, const zstd_tuning& tuning = {});

// The file-name extension Nix gives a NAR compressed by `method`
// (".xz", ".bz2", ".zst", "" for none).
std::string compression_extension(std::string_view method);

} // namespace kiln
