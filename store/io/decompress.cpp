#include "store/io/decompress.hpp"

#include "store/io/error.hpp"

#include <bzlib.h>
#include <lzma.h>
#include <zstd.h>

#include <vector>

namespace kiln {

namespace {

// The input side every method shares: a buffer refilled from `in`.
class decompressor : public source {
public:
  decompressor(source& in, std::string what) : in_(in), what_(std::move(what)), buf_(1 << 16) {}

  std::size_t read(char* data, std::size_t n) override {
    while (!ended_) {
      if (pos_ == len_ && !eof_) {
        len_ = in_.read(buf_.data(), buf_.size());
        pos_ = 0;
        eof_ = len_ == 0;
      }
      std::size_t used = 0, made = 0;
      ended_ = step(buf_.data() + pos_, len_ - pos_, data, n, used, made);
      pos_ += used;
      if (made > 0)
        return made;
      if (!ended_ && eof_ && pos_ == len_ && used == 0)
        fail("ends before its compressed stream does");
    }
    return 0;
  }

protected:
  // Consumes input into output; true once the stream has ended.
  virtual bool step(const char* in, std::size_t in_len, char* out, std::size_t out_len, std::size_t& used,
                    std::size_t& made) = 0;
  bool input_ended() const { return eof_ && pos_ == len_; }
  [[noreturn]] void fail(const std::string& why) const { throw format_error(what_ + ": " + why); }

private:
  source& in_;
  std::string what_;
  std::vector<char> buf_;
  std::size_t pos_ = 0, len_ = 0;
  bool eof_ = false, ended_ = false;
};

class xz_source : public decompressor {
public:
  xz_source(source& in, std::string what) : decompressor(in, std::move(what)) {
    if (lzma_stream_decoder(&s_, UINT64_MAX, LZMA_CONCATENATED) != LZMA_OK)
      fail("cannot start xz decompression");
  }
  ~xz_source() override { lzma_end(&s_); }

protected:
  bool step(const char* in, std::size_t in_len, char* out, std::size_t out_len, std::size_t& used,
            std::size_t& made) override {
    s_.next_in = reinterpret_cast<const uint8_t*>(in);
    s_.avail_in = in_len;
    s_.next_out = reinterpret_cast<uint8_t*>(out);
    s_.avail_out = out_len;
    lzma_ret r = lzma_code(&s_, input_ended() ? LZMA_FINISH : LZMA_RUN);
    used = in_len - s_.avail_in;
    made = out_len - s_.avail_out;
    if (r == LZMA_STREAM_END)
      return true;
    if (r != LZMA_OK && !(r == LZMA_BUF_ERROR && !input_ended()))
      fail(r == LZMA_BUF_ERROR ? "ends before its compressed stream does" : "is not valid xz data");
    return false;
  }

private:
  lzma_stream s_ = LZMA_STREAM_INIT;
};

class bzip2_source : public decompressor {
public:
  bzip2_source(source& in, std::string what) : decompressor(in, std::move(what)) {
    if (BZ2_bzDecompressInit(&s_, 0, 0) != BZ_OK)
      fail("cannot start bzip2 decompression");
  }
  ~bzip2_source() override { BZ2_bzDecompressEnd(&s_); }

protected:
  bool step(const char* in, std::size_t in_len, char* out, std::size_t out_len, std::size_t& used,
            std::size_t& made) override {
    s_.next_in = const_cast<char*>(in);
    s_.avail_in = static_cast<unsigned>(in_len);
    s_.next_out = out;
    s_.avail_out = static_cast<unsigned>(out_len);
    int r = BZ2_bzDecompress(&s_);
    used = in_len - s_.avail_in;
    made = out_len - s_.avail_out;
    if (r == BZ_STREAM_END)
      return true;
    if (r != BZ_OK)
      fail("is not valid bzip2 data");
    return false;
  }

private:
  bz_stream s_{};
};

class zstd_source : public decompressor {
public:
  zstd_source(source& in, std::string what) : decompressor(in, std::move(what)), d_(ZSTD_createDStream()) {
    if (!d_)
      fail("cannot start zstd decompression");
    ZSTD_initDStream(d_);
  }
  ~zstd_source() override { ZSTD_freeDStream(d_); }

protected:
  bool step(const char* in, std::size_t in_len, char* out, std::size_t out_len, std::size_t& used,
            std::size_t& made) override {
    ZSTD_inBuffer ib{in, in_len, 0};
    ZSTD_outBuffer ob{out, out_len, 0};
    std::size_t left = ZSTD_decompressStream(d_, &ob, &ib);
    if (ZSTD_isError(left))
      fail(std::string("is not valid zstd data (") + ZSTD_getErrorName(left) + ")");
    used = ib.pos;
    made = ob.pos;
    // The data may hold several frames: it has ended when the input has,
    // with the last frame whole (nothing left of it) and all of it given out.
    if (used || made)
      whole_ = left == 0;
    return input_ended() && in_len == 0 && made == 0 && whole_;
  }

private:
  ZSTD_DStream* d_;
  bool whole_ = false;
};

class plain_source : public source {
public:
  explicit plain_source(source& in) : in_(in) {}
  std::size_t read(char* data, std::size_t n) override { return in_.read(data, n); }

private:
  source& in_;
};

} // namespace

std::unique_ptr<source> decompressing_source(source& in, std::string_view method, std::string what) {
  if (method == "none" || method.empty())
    return std::make_unique<plain_source>(in);
  if (method == "xz")
    return std::make_unique<xz_source>(in, what + " (xz)");
  if (method == "bzip2")
    return std::make_unique<bzip2_source>(in, what + " (bzip2)");
  if (method == "zstd")
    return std::make_unique<zstd_source>(in, what + " (zstd)");
  throw format_error(what + ": unknown compression '" + std::string(method) + "' (none, xz, bzip2 and zstd are known)");
}

} // namespace kiln
