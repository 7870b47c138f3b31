// Compression as a sink: what binary caches (narinfo `Compression`) and
// build logs are written with. The counterpart of decompress.hpp, with the
// same names for the same methods.
#pragma once

#include "store/io/stream.hpp"

#include <memory>
#include <string>
#include <string_view>

namespace kiln {

class compressing_sink : public sink {
public:
  // Ends the compressed stream and writes its tail to the inner sink (which
  // is then flushed); nothing may be written afterwards.
  virtual void finish() = 0;
};

// Writes what it is given to `out` compressed by `method` ("none" or "",
// "xz", "bzip2", "zstd") at `level` (-1: the method's default). An
// unknown method or level is a format_error naming `what`.
std::unique_ptr<compressing_sink> make_compressing_sink(sink& out, std::string_view method, int level,
                                                        std::string what);

// The file-name extension Nix gives a NAR compressed by `method`
// (".xz", ".bz2", ".zst", "" for none).
std::string compression_extension(std::string_view method);

} // namespace kiln
