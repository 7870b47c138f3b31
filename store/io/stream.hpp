// Byte sources and sinks: how NARs, exports and hashes move without being
// held in memory. Virtual calls are per buffer, never per byte.
#pragma once

#include "store/format/hash.hpp"
#include "store/io/fd.hpp"

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace kiln {

class sink {
public:
  virtual ~sink() = default;
  virtual void write(const char* data, std::size_t n) = 0;
  void write(std::string_view s) { write(s.data(), s.size()); }
  // Pushes out anything buffered.
  virtual void flush() {}
};

class source {
public:
  virtual ~source() = default;
  // Reads up to n bytes; returns 0 only at end of input.
  virtual std::size_t read(char* data, std::size_t n) = 0;
};

// Buffered writes to a file descriptor it does not own.
class fd_sink : public sink {
public:
  explicit fd_sink(int fd, std::string name = "output", std::size_t buffer = 1 << 16);
  ~fd_sink() override;
  void write(const char* data, std::size_t n) override;
  void flush() override;

private:
  int fd_;
  std::string name_;
  std::vector<char> buf_;
  std::size_t used_ = 0;
};

class fd_source : public source {
public:
  explicit fd_source(int fd, std::string name = "input") : fd_(fd), name_(std::move(name)) {}
  std::size_t read(char* data, std::size_t n) override;

private:
  int fd_;
  std::string name_;
};

// An fd_source that owns its descriptor (a file opened for streaming).
class owned_fd_source : public source {
public:
  owned_fd_source(unique_fd fd, std::string name) : fd_(std::move(fd)), in_(fd_.get(), std::move(name)) {}
  std::size_t read(char* data, std::size_t n) override { return in_.read(data, n); }

private:
  unique_fd fd_;
  fd_source in_;
};

// Buffers reads from another source so small reads (NAR tokens) cost no
// system call; large reads bypass the buffer once it is empty.
class buffered_source : public source {
public:
  explicit buffered_source(source& inner, std::size_t buffer = 1 << 16)
    : inner_(inner), buf_(buffer) {}
  std::size_t read(char* data, std::size_t n) override;

private:
  source& inner_;
  std::vector<char> buf_;
  std::size_t pos_ = 0, end_ = 0;
};

// Reads exactly n bytes or throws format_error("... truncated ...") naming
// `what` when the input ends first.
void read_exact(source& in, char* data, std::size_t n, std::string_view what);
// Copies exactly n bytes of `in` to `out`, or throws as read_exact does.
void copy_exact(source& in, sink& out, uint64_t n, std::string_view what);
// Copies `in` to `out` until `in` ends; returns the bytes copied.
uint64_t copy_all(source& in, sink& out);

// Takes bytes and keeps none (skipping what a stream carries).
class discard_sink : public sink {
public:
  void write(const char*, std::size_t) override {}
};

class string_source : public source {
public:
  explicit string_source(std::string_view s) : s_(s) {}
  std::size_t read(char* data, std::size_t n) override;

private:
  std::string_view s_;
};

class string_sink : public sink {
public:
  void write(const char* data, std::size_t n) override { s.append(data, n); }
  std::string s;
};

// Writes everything to two sinks.
class tee_sink : public sink {
public:
  tee_sink(sink& a, sink& b) : a_(a), b_(b) {}
  void write(const char* data, std::size_t n) override {
    a_.write(data, n);
    b_.write(data, n);
  }

private:
  sink& a_;
  sink& b_;
};

// Hashes and counts everything written to it.
class hash_sink : public sink {
public:
  explicit hash_sink(hash_algo algo) : h_(algo) {}
  void write(const char* data, std::size_t n) override {
    h_.update(data, n);
    size_ += n;
  }
  hash finish() { return h_.finish(); }
  uint64_t size() const { return size_; }

private:
  hasher h_;
  uint64_t size_ = 0;
};

// Passes bytes read from `inner` through, hashing and counting them.
class hashing_source : public source {
public:
  hashing_source(source& inner, hash_algo algo) : inner_(inner), h_(algo) {}
  std::size_t read(char* data, std::size_t n) override {
    std::size_t got = inner_.read(data, n);
    h_.update(data, got);
    size_ += got;
    return got;
  }
  hash finish() { return h_.finish(); }
  uint64_t size() const { return size_; }

private:
  source& inner_;
  hasher h_;
  uint64_t size_ = 0;
};

} // namespace kiln
