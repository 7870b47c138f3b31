// Build logs as Nix keeps them: nix/var/log/nix/drvs/XX/REST under the
// store root (XX = the first two characters of the .drv's base name), plain
// or compressed (".zst", Kiln's default; ".bz2", what Nix writes and reads).
// And the log tail a failed build shows: the last lines, with a carriage
// return starting its line over as it does on a terminal.
#pragma once

#include "store/local/store_layout.hpp"

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace kiln {

enum class log_compression { zstd, bzip2, none };

// `compress-build-log`: zstd | bzip2 | none, and Nix's true (bzip2) / false.
log_compression parse_log_compression(const std::string& value);

// Where a derivation's log goes; `drv_base_name` is "<hash>-<name>.drv".
std::string build_log_path(const store_layout& layout, std::string_view drv_base_name,
                           log_compression compression);

// Streams a log to its file, compressing as it goes. The file is created
// when the writer is, so a build that dies still leaves what it printed.
class build_log_writer {
public:
  build_log_writer(const std::string& path, log_compression compression);
  ~build_log_writer();
  build_log_writer(const build_log_writer&) = delete;
  build_log_writer& operator=(const build_log_writer&) = delete;
  void write(std::string_view data);
  // Flushes the compressor's frame and closes the file.
  void close();
private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

// The log of a .drv (by base name), whichever compression it was written
// with; nullopt if there is none. Throws on a corrupt compressed file.
std::optional<std::string> read_build_log(const store_layout& layout, std::string_view drv_base_name);

// The last `max_lines` complete or partial lines of a build's output.
// '\r' returns to the start of the current line, so progress bars leave
// only their final state; "\r\n" ends a line as '\n' does. A line keeps
// its first `max_line_bytes` bytes and says how many more it had, so the
// tail's memory is bounded however long a builder's line is (the log file
// has every byte).
class log_tail {
public:
  static constexpr std::size_t default_max_line_bytes = 8192;
  // With `collect_finished`, lines are also kept for take_finished (-L),
  // which must then be called as they come.
  explicit log_tail(std::size_t max_lines, bool collect_finished = false,
                    std::size_t max_line_bytes = default_max_line_bytes)
      : max_lines_(max_lines), collect_finished_(collect_finished), max_line_bytes_(max_line_bytes) {}
  void feed(std::string_view data);
  // The kept lines, oldest first, the unfinished line last (if not empty).
  std::deque<std::string> lines() const;
  // The lines finished since the last call (for -L; needs collect_finished).
  std::deque<std::string> take_finished();
  // Ends an unfinished last line, if there is one.
  void finish() {
    if (!current_.empty())
      finish_line();
  }
private:
  void finish_line();
  std::string shown_current() const;
  std::size_t max_lines_;
  bool collect_finished_;
  std::size_t max_line_bytes_;
  std::deque<std::string> kept_;
  std::deque<std::string> fresh_;
  std::string current_;
  std::size_t pos_ = 0;
  uint64_t dropped_ = 0; // bytes of the current line past max_line_bytes_
};

} // namespace kiln
