#include "store/io/compress.hpp"

#include "store/io/error.hpp"

#include <bzlib.h>
#include <lzma.h>
#include <zstd.h>

#include <vector>

namespace kiln {

namespace {

// What every method shares: an output buffer drained into `out`.
class compressor : public compressing_sink {
public:
  compressor(sink& out, std::string what) : out_(out), what_(std::move(what)), buf_(1 << 16) {}

  void write(const char* data, std::size_t n) override {
    if (finished_)
      throw error(what_ + ": written to after its end");
    if (n)
      drive(data, n, false);
  }
  void finish() override {
    if (finished_)
      return;
    finished_ = true;
    drive(nullptr, 0, true);
    out_.flush();
  }

protected:
  // Consumes input, fills buffer; true once `last` has been fully written out.
  virtual bool step(const char*& in, std::size_t& in_len, char* out, std::size_t& out_len, bool last) = 0;
  [[noreturn]] void fail(const std::string& why) const { throw error(what_ + ": " + why); }

private:
  void drive(const char* data, std::size_t n, bool last) {
    for (;;) {
      std::size_t room = buf_.size();
      bool done = step(data, n, buf_.data(), room, last);
      std::size_t made = buf_.size() - room;
      if (made)
        out_.write(buf_.data(), made);
      if (last ? done : n == 0 && made < buf_.size())
        return;
    }
  }

  sink& out_;
  std::string what_;
  std::vector<char> buf_;
  bool finished_ = false;
};

class xz_sink : public compressor {
public:
  xz_sink(sink& out, int level, std::string what) : compressor(out, std::move(what)) {
    uint32_t preset = level < 0 ? LZMA_PRESET_DEFAULT : static_cast<uint32_t>(level);
    if (level > 9 || lzma_easy_encoder(&s_, preset, LZMA_CHECK_CRC64) != LZMA_OK)
      fail("cannot start xz compression at level " + std::to_string(level));
  }
  ~xz_sink() override { lzma_end(&s_); }

protected:
  bool step(const char*& in, std::size_t& in_len, char* out, std::size_t& out_len, bool last) override {
    s_.next_in = reinterpret_cast<const uint8_t*>(in);
    s_.avail_in = in_len;
    s_.next_out = reinterpret_cast<uint8_t*>(out);
    s_.avail_out = out_len;
    lzma_ret r = lzma_code(&s_, last ? LZMA_FINISH : LZMA_RUN);
    in += in_len - s_.avail_in;
    in_len = s_.avail_in;
    out_len = s_.avail_out;
    if (r == LZMA_STREAM_END)
      return true;
    if (r != LZMA_OK)
      fail("xz error " + std::to_string(r));
    return false;
  }

private:
  lzma_stream s_ = LZMA_STREAM_INIT;
};

class bzip2_sink : public compressor {
public:
  bzip2_sink(sink& out, int level, std::string what) : compressor(out, std::move(what)) {
    if (level > 9 || level == 0 || BZ2_bzCompressInit(&s_, level < 0 ? 9 : level, 0, 0) != BZ_OK)
      fail("cannot start bzip2 compression at level " + std::to_string(level));
  }
  ~bzip2_sink() override { BZ2_bzCompressEnd(&s_); }

protected:
  bool step(const char*& in, std::size_t& in_len, char* out, std::size_t& out_len, bool last) override {
    s_.next_in = const_cast<char*>(in);
    s_.avail_in = static_cast<unsigned>(in_len);
    s_.next_out = out;
    s_.avail_out = static_cast<unsigned>(out_len);
    int r = BZ2_bzCompress(&s_, last ? BZ_FINISH : BZ_RUN);
    in += in_len - s_.avail_in;
    in_len = s_.avail_in;
    out_len = s_.avail_out;
    if (r < 0)
      fail("bzip2 error " + std::to_string(r));
    return r == BZ_STREAM_END;
  }

private:
  bz_stream s_{};
};

class zstd_sink : public compressor {
public:
  zstd_sink(sink& out, int level, std::string what, const zstd_tuning& tuning)
    : compressor(out, std::move(what)), c_(ZSTD_createCCtx()) {
    if (!c_ || level > ZSTD_maxCLevel() ||
        ZSTD_isError(ZSTD_CCtx_setParameter(c_, ZSTD_c_compressionLevel, level < 0 ? 3 : level)))
      fail("cannot start zstd compression at level " + std::to_string(level));
    if ((tuning.long_distance && ZSTD_isError(ZSTD_CCtx_setParameter(c_, ZSTD_c_enableLongDistanceMatching, 1))) ||
        (tuning.size && ZSTD_isError(ZSTD_CCtx_setPledgedSrcSize(c_, *tuning.size))))
      fail("cannot start zstd compression with long-distance matching");
  }
  ~zstd_sink() override { ZSTD_freeCCtx(c_); }

protected:
  bool step(const char*& in, std::size_t& in_len, char* out, std::size_t& out_len, bool last) override {
    ZSTD_inBuffer ib{in, in_len, 0};
    ZSTD_outBuffer ob{out, out_len, 0};
    std::size_t left = ZSTD_compressStream2(c_, &ob, &ib, last ? ZSTD_e_end : ZSTD_e_continue);
    if (ZSTD_isError(left))
      fail(std::string("zstd error: ") + ZSTD_getErrorName(left));
    in += ib.pos;
    in_len -= ib.pos;
    out_len -= ob.pos;
    return last && left == 0;
  }

private:
  ZSTD_CCtx* c_;
};

class plain_sink : public compressing_sink {
public:
  explicit plain_sink(sink& out) : out_(out) {}
  void write(const char* data, std::size_t n) override { out_.write(data, n); }
  void finish() override { out_.flush(); }

private:
  sink& out_;
};

} // namespace

std::unique_ptr<compressing_sink> make_compressing_sink(sink& out, std::string_view method, int level,
                                                        std::string what, const zstd_tuning& tuning) {
  if (method == "none" || method.empty())
    return std::make_unique<plain_sink>(out);
  if (method == "xz")
    return std::make_unique<xz_sink>(out, level, what + " (xz)");
  if (method == "bzip2")
    return std::make_unique<bzip2_sink>(out, level, what + " (bzip2)");
  if (method == "zstd")
    return std::make_unique<zstd_sink>(out, level, what + " (zstd)", tuning);
  throw format_error(what + ": unknown compression '" + std::string(method) + "' (none, xz, bzip2 and zstd are known)");
}

std::string compression_extension(std::string_view method) {
  if (method == "xz")
    return ".xz";
  if (method == "bzip2")
    return ".bz2";
  if (method == "zstd")
    return ".zst";
  return "";
}

} // namespace kiln
