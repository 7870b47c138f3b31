// The strict ATerm reader behind parse_derivation(). Nix's own reader is
// lenient about what it checks; ours refuses anything it could not print
// back or that could later be mistaken for a store path.
#include "store/format/derivation.hpp"

#include "store/io/error.hpp"

namespace kiln {
namespace {

class aterm_reader {
public:
  aterm_reader(std::string_view text, std::string_view where) : text_(text), where_(where) {}

  // `length`: how much of the input to show (as much as was expected).
  [[noreturn]] void fail(const std::string& expected, std::size_t at, std::size_t length = 1) const {
    std::string found = at >= text_.size() ? "end of input" : "'" + std::string(text_.substr(at, length)) + "'";
    throw format_error(std::string(where_) + ": at byte " + std::to_string(at) + ": expected " +
                       expected + ", found " + found);
  }
  [[noreturn]] void fail_value(const std::string& what, std::size_t at) const {
    throw format_error(std::string(where_) + ": at byte " + std::to_string(at) + ": " + what);
  }

  void expect(std::string_view token) {
    if (text_.substr(pos_, token.size()) != token)
      fail("'" + std::string(token) + "'", pos_, token.size());
    pos_ += token.size();
  }

  // True (and consumed) if the next byte is `c`.
  bool accept(char c) {
    if (pos_ < text_.size() && text_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }

  std::string string() {
    if (!accept('"'))
      fail("'\"' (start of a string)", pos_);
    std::string out;
    for (;;) {
      if (pos_ >= text_.size())
        fail("'\"' (end of the string)", pos_);
      char c = text_[pos_++];
      if (c == '"')
        return out;
      if (c == '\\') {
        if (pos_ >= text_.size())
          fail("an escaped character", pos_);
        char e = text_[pos_++];
        out += e == 'n' ? '\n' : e == 'r' ? '\r' : e == 't' ? '\t' : e;
      } else {
        out += c;
      }
    }
  }

  // Reads "[" item ("," item)* "]", calling `item` for each.
  template <class F>
  void list(F&& item) {
    expect("[");
    if (accept(']'))
      return;
    do
      item();
    while (accept(','));
    expect("]");
  }

  std::string store_path_string(const char* role, bool must_be_drv) {
    std::size_t at = pos_;
    std::string s = string();
    bool is_drv = false;
    try {
      is_drv = parse_store_path(s).is_derivation();
    } catch (const format_error& e) {
      fail_value(std::string(role) + ": " + e.what(), at);
    }
    if (must_be_drv && !is_drv)
      fail_value(std::string(role) + " '" + s + "' is not a .drv path", at);
    return s;
  }

  std::size_t pos() const { return pos_; }
  bool at_end() const { return pos_ == text_.size(); }

private:
  std::string_view text_;
  std::string_view where_;
  std::size_t pos_ = 0;
};

void read_output(aterm_reader& r, derivation& drv) {
  r.expect("(");
  std::size_t at = r.pos();
  std::string name = r.string();
  if (name.empty())
    r.fail_value("output name is empty", at);
  r.expect(",");
  derivation_output out;
  std::size_t path_at = r.pos();
  out.path = r.string();
  if (!out.path.empty()) {
    try {
      parse_store_path(out.path);
    } catch (const format_error& e) {
      r.fail_value("path of output '" + name + "': " + e.what(), path_at);
    }
  }
  r.expect(",");
  std::size_t hash_at = r.pos();
  out.hash_algo = r.string();
  r.expect(",");
  out.hash = r.string();
  r.expect(")");
  if (out.is_fixed()) {
    try {
      out.fixed_hash();
    } catch (const format_error& e) {
      r.fail_value("output '" + name + "': " + e.what(), hash_at);
    }
  }
  if (!drv.outputs.emplace(name, std::move(out)).second)
    r.fail_value("duplicate output '" + name + "'", at);
}

void read_input_drv(aterm_reader& r, derivation& drv) {
  r.expect("(");
  std::size_t at = r.pos();
  std::string path = r.store_path_string("input derivation", true);
  r.expect(",");
  std::set<std::string> wanted;
  r.list([&] {
    std::size_t o_at = r.pos();
    if (!wanted.insert(r.string()).second)
      r.fail_value("duplicate output name in inputs of '" + path + "'", o_at);
  });
  r.expect(")");
  if (!drv.input_drvs.emplace(path, std::move(wanted)).second)
    r.fail_value("duplicate input derivation '" + path + "'", at);
}

} // namespace

derivation parse_derivation(std::string_view text, std::string_view where) {
  aterm_reader r(text, where);
  derivation drv;
  r.expect("Derive(");
  r.list([&] { read_output(r, drv); });
  if (drv.outputs.empty())
    r.fail_value("derivation has no outputs", r.pos());
  r.expect(",");
  r.list([&] { read_input_drv(r, drv); });
  r.expect(",");
  r.list([&] {
    std::size_t at = r.pos();
    if (!drv.input_srcs.insert(r.store_path_string("input source", false)).second)
      r.fail_value("duplicate input source", at);
  });
  r.expect(",");
  drv.platform = r.string();
  r.expect(",");
  drv.builder = r.string();
  r.expect(",");
  r.list([&] { drv.args.push_back(r.string()); });
  r.expect(",");
  r.list([&] {
    r.expect("(");
    std::size_t at = r.pos();
    std::string key = r.string();
    r.expect(",");
    std::string value = r.string();
    r.expect(")");
    if (!drv.env.emplace(std::move(key), std::move(value)).second)
      r.fail_value("duplicate environment variable", at);
  });
  r.expect(")");
  if (!r.at_end())
    r.fail("end of input after the closing ')'", r.pos());
  return drv;
}

} // namespace kiln
