// How the protocol's messages are laid out, as data: a message is a list of
// parts (u64, string, string list, string map, or a counted list or an
// optional of records), read into a flat list of arguments in wire order.
// Counts and flags are arguments too, so writing the list back needs no
// shape. requests.cpp and replies.cpp hold the tables.
#pragma once

#include "store/format/wire_reader.hpp"

#include <string>
#include <utility>
#include <variant>
#include <vector>

namespace kiln::daemon {

using string_pairs = std::vector<std::pair<std::string, std::string>>;
// One argument: u64 (and bool), string (and path), a list of strings, or a
// map of strings to strings.
using argument = std::variant<uint64_t, std::string, std::vector<std::string>, string_pairs>;

enum class kind { u64, str, strings, pairs, records, optional };

struct part {
  part(kind of, std::vector<part> fields = {}) : k(of), record(std::move(fields)) {} // a kind alone is a part
  kind k;
  std::vector<part> record; // for records (a u64 count, then each) and optional (a u64 flag, then one if set)
};

// Reads the parts into `out`. Lists, maps and records are bounded (at most
// 2^20 entries, strings at most 1 MiB): far above what a client or daemon
// sends, far below what could exhaust memory. Tables nest at most two deep,
// so the recursion is bounded by the tables, not by the input.
void read_parts(wire::reader& in, const std::vector<part>& parts, std::vector<argument>& out);
void append_arguments(std::string& out, const std::vector<argument>& args);

// The i-th argument as the kind its shape gives it.
inline uint64_t u64_at(const std::vector<argument>& a, std::size_t i) { return std::get<uint64_t>(a.at(i)); }
inline const std::string& str_at(const std::vector<argument>& a, std::size_t i) {
  return std::get<std::string>(a.at(i));
}
inline const std::vector<std::string>& strs_at(const std::vector<argument>& a, std::size_t i) {
  return std::get<std::vector<std::string>>(a.at(i));
}
inline const string_pairs& pairs_at(const std::vector<argument>& a, std::size_t i) {
  return std::get<string_pairs>(a.at(i));
}

} // namespace kiln::daemon
