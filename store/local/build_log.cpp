#include "store/local/build_log.hpp"

#include "store/io/compress.hpp"
#include "store/io/decompress.hpp"
#include "store/io/error.hpp"
#include "store/io/fd.hpp"
#include "store/io/file_ops.hpp"

#include <fcntl.h>
#include <sys/stat.h>

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

const char* method_name(log_compression c) {
  switch (c) {
  case log_compression::zstd: return "zstd";
  case log_compression::bzip2: return "bzip2";
  case log_compression::none: return "none";
  }
  return "none";
}

std::string log_stem(const store_layout& layout, std::string_view base) {
  if (base.size() < 3 || base.find('/') != std::string_view::npos)
    throw format_error("'" + std::string(base) + "' is not a derivation's base name");
  return layout.log_dir() + "/" + std::string(base.substr(0, 2)) + "/" + std::string(base.substr(2));
}

} // namespace

std::string build_log_path(const store_layout& layout, std::string_view drv_base_name,
                           log_compression compression) {
  return log_stem(layout, drv_base_name) + compression_extension(method_name(compression));
}

namespace {

// Unbuffered: what the builder printed is in the file as soon as the
// compressor lets it out, so a build that dies leaves its log behind.
class log_file_sink : public sink {
public:
  log_file_sink(int fd, const std::string& path) : fd_(fd), path_(path) {}
  void write(const char* data, std::size_t n) override { write_all(fd_, data, n, path_); }

private:
  int fd_;
  const std::string& path_;
};

} // namespace

struct build_log_writer::impl {
  unique_fd fd;
  std::string path;
  std::unique_ptr<log_file_sink> file;
  std::unique_ptr<compressing_sink> out;
};

build_log_writer::build_log_writer(const std::string& path, log_compression compression)
    : impl_(std::make_unique<impl>()) {
  impl_->path = path;
  make_directories(split_path(path).first);
  impl_->fd = unique_fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!impl_->fd)
    throw_errno("creating build log '" + path + "'");
  impl_->file = std::make_unique<log_file_sink>(impl_->fd.get(), impl_->path);
  impl_->out = make_compressing_sink(*impl_->file, method_name(compression), compression == log_compression::zstd ? 3 : -1,
                                     "build log '" + path + "'");
}

build_log_writer::~build_log_writer() {
  try {
    close();
  } catch (...) {
  }
}

void build_log_writer::write(std::string_view data) {
  if (impl_->fd && !data.empty())
    impl_->out->write(data.data(), data.size());
}

void build_log_writer::close() {
  if (!impl_->fd)
    return;
  impl_->out->finish();
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
    auto text = decompressing_source(raw, method_name(c), "build log '" + path + "'");
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
