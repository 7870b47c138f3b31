// The NAR parser. Iterative: a stack of open directories replaces recursion,
// so hostile nesting costs heap bounded by nar_limits::max_depth, never
// stack; and the current path is one string that grows and shrinks, so a
// deep tree costs time and memory linear in its depth.
#include "store/io/error.hpp"
#include "store/format/nar.hpp"
#include "store/format/wire_reader.hpp"

#include <vector>

namespace kiln {
namespace {

// The NAR's framing tokens on top of the shared reader.
class nar_reader : public wire::reader {
public:
  nar_reader(source& in, const nar_limits& limits) : wire::reader(in, "NAR"), limits_(limits) {}

  // Framing tokens are short words; a long string where one is due is an error.
  std::string token() { return str(16, "a token"); }

  void expect(std::string_view want) {
    uint64_t at = offset();
    std::string got = token();
    if (got != want)
      fail("expected '" + std::string(want) + "', found '" + got + "'", at);
  }

  const nar_limits& limits() const { return limits_; }

private:
  const nar_limits& limits_;
};

struct open_directory {
  std::size_t path_size; // of nar_parser::path_ while in this directory
  std::string last_name; // entries must come in strictly increasing order
  bool has_entries = false;
};

class nar_parser {
public:
  nar_parser(source& in, nar_visitor& v, const nar_limits& limits) : r_(in, limits), v_(v) {}

  uint64_t run(bool require_end) {
    uint64_t at = r_.offset();
    if (r_.str(16, "the magic string") != nar_magic)
      r_.fail("not a NAR (bad magic; expected 'nix-archive-1')", at);
    if (begin_node(""))
      parse_directories();
    uint64_t size = r_.offset();
    if (require_end && !r_.at_end())
      r_.fail("trailing data after the end of the NAR", size);
    return size;
  }

private:
  // Parses the node at path_; returns true if it was a directory, now open
  // on the stack.
  bool begin_node(std::string_view name) {
    const std::string& path = path_;
    r_.expect("(");
    r_.expect("type");
    uint64_t at = r_.offset();
    std::string type = r_.token();
    if (type == "regular") {
      parse_regular(path, name);
    } else if (type == "symlink") {
      r_.expect("target");
      uint64_t t_at = r_.offset();
      std::string target = r_.str(r_.limits().max_target, "a symlink target");
      if (target.empty())
        r_.fail("symlink '" + shown(path) + "' has an empty target", t_at);
      if (target.find('\0') != std::string::npos)
        r_.fail("symlink '" + shown(path) + "' has a NUL byte in its target", t_at);
      v_.symlink(path, name, target);
    } else if (type == "directory") {
      if (stack_.size() >= r_.limits().max_depth)
        r_.fail("directories nested deeper than " + std::to_string(r_.limits().max_depth), at);
      v_.begin_directory(path, name);
      stack_.push_back({path.size(), "", false});
      return true;
    } else {
      r_.fail("unknown node type '" + type + "'", at);
    }
    r_.expect(")");
    return false;
  }

  void parse_regular(const std::string& path, std::string_view name) {
    bool executable = false;
    uint64_t at = r_.offset();
    std::string tag = r_.token();
    if (tag == "executable") {
      executable = true;
      uint64_t e_at = r_.offset();
      if (!r_.token().empty())
        r_.fail("the 'executable' marker must be followed by an empty string", e_at);
      at = r_.offset();
      tag = r_.token();
    }
    if (tag != "contents")
      r_.fail("expected 'contents', found '" + tag + "'", at);
    uint64_t size_at = r_.offset();
    uint64_t size = r_.u64();
    if (size > r_.limits().max_file_size)
      r_.fail("file '" + shown(path) + "' claims " + std::to_string(size) +
                " bytes, more than the limit of " + std::to_string(r_.limits().max_file_size),
              size_at);
    v_.begin_regular(path, name, executable, size, r_.offset());
    char buf[65536];
    for (uint64_t left = size; left > 0;) {
      std::size_t n = static_cast<std::size_t>(std::min<uint64_t>(left, sizeof buf));
      r_.read(buf, n);
      v_.contents(buf, n);
      left -= n;
    }
    r_.padding(size);
    v_.end_regular();
  }

  void parse_directories() {
    while (!stack_.empty()) {
      uint64_t at = r_.offset();
      std::string tag = r_.token();
      if (tag == ")") {
        v_.end_directory();
        stack_.pop_back();
        if (!stack_.empty()) {
          r_.expect(")"); // closes the parent's "entry ("
          path_.resize(stack_.back().path_size);
        }
      } else if (tag == "entry") {
        parse_entry();
      } else {
        r_.fail("expected 'entry' or ')', found '" + tag + "'", at);
      }
    }
  }

  void parse_entry() {
    r_.expect("(");
    r_.expect("name");
    uint64_t at = r_.offset();
    std::string name = r_.str(r_.limits().max_name, "an entry name");
    auto& dir = stack_.back();
    check_entry_name(name, dir, at);
    dir.last_name = name;
    dir.has_entries = true;
    r_.expect("node");
    if (!path_.empty())
      path_ += '/';
    path_ += name;
    bool directory = begin_node(std::string_view(path_).substr(path_.size() - name.size()));
    if (!directory) {
      r_.expect(")");
      path_.resize(dir.path_size);
    }
  }

  void check_entry_name(const std::string& name, const open_directory& dir, uint64_t at) {
    auto where = [&] { return " in directory '" + shown(path_) + "'"; }; // path_ is the directory's here
    if (name.empty())
      r_.fail("empty entry name" + where(), at);
    if (name == "." || name == "..")
      r_.fail("entry name '" + name + "'" + where(), at);
    if (name.find('/') != std::string::npos)
      r_.fail("entry name '" + name + "' contains '/'" + where(), at);
    if (name.find('\0') != std::string::npos)
      r_.fail("entry name contains a NUL byte" + where(), at);
    if (dir.has_entries && name == dir.last_name)
      r_.fail("duplicate entry '" + name + "'" + where(), at);
    if (dir.has_entries && name < dir.last_name)
      r_.fail("entry '" + name + "' out of order (after '" + dir.last_name + "')" + where(), at);
  }

  static std::string shown(const std::string& path) { return path.empty() ? "/" : path; }

  nar_reader r_;
  nar_visitor& v_;
  std::vector<open_directory> stack_;
  std::string path_; // of the node being parsed, relative to the root
};

} // namespace

uint64_t parse_nar(source& in, nar_visitor& visitor, bool require_end, const nar_limits& limits) {
  return nar_parser(in, visitor, limits).run(require_end);
}

} // namespace kiln
