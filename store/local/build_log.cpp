#include "store/local/build_log.hpp"

#include "store/io/decompress.hpp"
#include "store/io/error.hpp"
#include "store/io/fd.hpp"
#include "store/io/file_ops.hpp"

#include <bzlib.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <zstd.h>

#include <cerrno>
#include <vector>

namespace kiln {

log_compression parse_log_compression(const std::string& value) {
  if (value == "zstd")
    return log_compression::zstd;
  if (value == "bzip2" || value == "true")
    return log_compression::bzip2;
  if (value == "none" || value == "false")
    return log_compression::none;
  throw format_error("compress-build-log: '" + value + "' is not one of zstd, bzip2, none, true, false");
}

namespace {

const char* suffix(log_compression c) {
  switch (c) {
  case log_compression::zstd: return ".zst";
  case log_compression::bzip2: return ".bz2";
  case log_compression::none: return "";
  }
  return "";
}

std::string log_stem(const store_layout& layout, std::string_view base) {
  if (base.size() < 3 || base.find('/') != std::string_view::npos)
    throw format_error("'" + std::string(base) + "' is not a derivation's base name");
  return layout.log_dir() + "/" + std::string(base.substr(0, 2)) + "/" + std::string(base.substr(2));
}

} // namespace

std::string build_log_path(const store_layout& layout, std::string_view drv_base_name,
                           log_compression compression) {
  return log_stem(layout, drv_base_name) + suffix(compression);
}

struct build_log_writer::impl {
  unique_fd fd;
  std::string path;
  log_compression compression;
  ZSTD_CStream* zstd = nullptr;
  bz_stream bz{};
  bool bz_open = false;
  std::vector<char> buf = std::vector<char>(1 << 16);

  void out(const char* p, std::size_t n) { write_all(fd.get(), p, n, path); }

  void zstd_step(ZSTD_inBuffer& in, ZSTD_EndDirective mode) {
    for (;;) {
      ZSTD_outBuffer ob{buf.data(), buf.size(), 0};
      std::size_t left = ZSTD_compressStream2(zstd, &ob, &in, mode);
      if (ZSTD_isError(left))
        throw error("compressing build log '" + path + "': " + ZSTD_getErrorName(left));
      out(buf.data(), ob.pos);
      if (mode == ZSTD_e_end ? left == 0 : in.pos == in.size)
        return;
    }
  }

  void bz_step(const char* p, std::size_t n, int action) {
    bz.next_in = const_cast<char*>(p);
    bz.avail_in = static_cast<unsigned>(n);
    for (;;) {
      bz.next_out = buf.data();
      bz.avail_out = static_cast<unsigned>(buf.size());
      int r = BZ2_bzCompress(&bz, action);
      if (r < 0)
        throw error("compressing build log '" + path + "': bzip2 error " + std::to_string(r));
      out(buf.data(), buf.size() - bz.avail_out);
      if (action == BZ_RUN ? bz.avail_in == 0 : r == BZ_STREAM_END)
        return;
    }
  }
};

build_log_writer::build_log_writer(const std::string& path, log_compression compression)
    : impl_(std::make_unique<impl>()) {
  impl_->path = path;
  impl_->compression = compression;
  make_directories(split_path(path).first);
  impl_->fd = unique_fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!impl_->fd)
    throw_errno("creating build log '" + path + "'");
  if (compression == log_compression::zstd) {
    impl_->zstd = ZSTD_createCStream();
    ZSTD_CCtx_setParameter(impl_->zstd, ZSTD_c_compressionLevel, 3);
  } else if (compression == log_compression::bzip2) {
    if (BZ2_bzCompressInit(&impl_->bz, 9, 0, 0) != BZ_OK)
      throw error("cannot start bzip2 compression for '" + path + "'");
    impl_->bz_open = true;
  }
}

build_log_writer::~build_log_writer() {
  try {
    close();
  } catch (...) {
  }
}

void build_log_writer::write(std::string_view data) {
  if (!impl_->fd || data.empty())
    return;
  switch (impl_->compression) {
  case log_compression::none:
    impl_->out(data.data(), data.size());
    break;
  case log_compression::zstd: {
    ZSTD_inBuffer in{data.data(), data.size(), 0};
    impl_->zstd_step(in, ZSTD_e_continue);
    break;
  }
  case log_compression::bzip2:
    impl_->bz_step(data.data(), data.size(), BZ_RUN);
    break;
  }
}

void build_log_writer::close() {
  if (!impl_->fd)
    return;
  if (impl_->zstd) {
    ZSTD_inBuffer in{nullptr, 0, 0};
    impl_->zstd_step(in, ZSTD_e_end);
    ZSTD_freeCStream(impl_->zstd);
    impl_->zstd = nullptr;
  }
  if (impl_->bz_open) {
    impl_->bz_step(nullptr, 0, BZ_FINISH);
    BZ2_bzCompressEnd(&impl_->bz);
    impl_->bz_open = false;
  }
  impl_->fd.reset();
}

std::optional<std::string> read_build_log(const store_layout& layout, std::string_view drv_base_name) {
  for (auto c : {log_compression::zstd, log_compression::bzip2, log_compression::none}) {
    std::string path = build_log_path(layout, drv_base_name, c);
    if (!path_exists(path))
      continue;
    unique_fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd)
      throw_errno("opening the build log '" + path + "'");
    fd_source raw(fd.get(), path);
    auto text = decompressing_source(raw, c == log_compression::zstd    ? "zstd"
                                          : c == log_compression::bzip2 ? "bzip2"
                                                                        : "none",
                                     "build log '" + path + "'");
    string_sink out;
    copy_all(*text, out);
    return out.s;
  }
  return std::nullopt;
}

void log_tail::feed(std::string_view data) {
  for (char c : data) {
    if (c == '\r') {
      pos_ = 0;
    } else if (c == '\n') {
      finish_line();
    } else if (pos_ >= max_line_bytes_) {
      ++dropped_;
    } else {
      if (pos_ >= current_.size())
        current_.resize(pos_ + 1);
      current_[pos_++] = c;
    }
  }
}

std::string log_tail::shown_current() const {
  if (dropped_ == 0)
    return current_;
  return current_ + " [" + std::to_string(dropped_) + " more bytes]";
}

void log_tail::finish_line() {
  std::string line = shown_current();
  if (collect_finished_)
    fresh_.push_back(line);
  kept_.push_back(std::move(line));
  if (kept_.size() > max_lines_)
    kept_.pop_front();
  current_.clear();
  pos_ = 0;
  dropped_ = 0;
}

std::deque<std::string> log_tail::lines() const {
  std::deque<std::string> all = kept_;
  if (!current_.empty()) {
    all.push_back(shown_current());
    if (all.size() > max_lines_)
      all.pop_front();
  }
  return all;
}

std::deque<std::string> log_tail::take_finished() {
  std::deque<std::string> out;
  out.swap(fresh_);
  return out;
}

} // namespace kiln
