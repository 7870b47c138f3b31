#include <boost/test/unit_test.hpp>

#include "store/io/error.hpp"
#include "store/format/settings.hpp"

#include <map>
#include <optional>

using namespace kiln;

namespace {

bool error_contains(const std::function<void()>& f, const std::string& fragment) {
  try {
    f();
  } catch (const format_error& e) {
    return std::string(e.what()).find(fragment) != std::string::npos;
  }
  return false;
}

} // namespace

BOOST_AUTO_TEST_SUITE(settings_tests)

BOOST_AUTO_TEST_CASE(defaults_are_nixs) {
  settings s;
  BOOST_TEST(!s.get_bool("keep-outputs"));
  BOOST_TEST(s.get_bool("keep-derivations"));
}

BOOST_AUTO_TEST_CASE(config_lines_comments_and_later_values_win) {
  settings s;
  s.apply_config("# a comment\n\n  keep-outputs   =  true  # trailing\nkeep-derivations=false\n"
                 "keep-outputs = false\nkeep-outputs = true",
                 "kiln.conf");
  BOOST_TEST(s.get_bool("keep-outputs"));
  BOOST_TEST(!s.get_bool("keep-derivations"));
}

BOOST_AUTO_TEST_CASE(bad_lines_name_file_and_line) {
  settings s;
  BOOST_TEST(error_contains([&] { s.apply_config("\nkeep-outputs true\n", "k.conf"); },
                            "k.conf:2: expected 'name = value'"));
  BOOST_TEST(error_contains([&] { s.apply_config("x=1", "k.conf"); }, "k.conf:1: unknown setting 'x'"));
  BOOST_TEST(error_contains([&] { s.apply_config(" = 1", "k.conf"); }, "k.conf:1: a setting name is missing"));
  BOOST_TEST(error_contains([&] { s.apply_config("keep-outputs = yes", "k.conf"); },
                            "k.conf:1: setting 'keep-outputs': expected 'true' or 'false', got 'yes'"));
  BOOST_TEST(!s.get_bool("keep-outputs")); // nothing half-applied from the bad line
}

BOOST_AUTO_TEST_CASE(every_number_is_checked_against_its_range_where_it_is_parsed) {
  settings s;
  // A timeout that would overflow a duration, a pids limit the kernel refuses.
  BOOST_TEST(error_contains([&] { s.set("timeout", "99999999999999"); },
                            "setting 'timeout': 99999999999999 is out of range (at most 4294967295 seconds)"));
  BOOST_TEST(error_contains([&] { s.set("max-silent-time", "4294967296", "kiln.conf:3"); },
                            "kiln.conf:3: setting 'max-silent-time'"));
  BOOST_TEST(error_contains([&] { s.set("build-pids-max", "999999999999999999"); }, "at most 4194304"));
  BOOST_TEST(error_contains([&] { s.set("cores", "18446744073709551616"); }, "is out of range"));
  BOOST_TEST(error_contains([&] { s.set("max-jobs", "-1"); }, "should be 'auto' or an integer"));
  BOOST_TEST(error_contains([&] { s.set("max-log-size", "9999999T"); }, "is out of range"));
  // The values that fail stay as they were; the largest allowed ones are taken.
  BOOST_TEST(s.get_number("timeout") == 0u);
  s.set("timeout", "4294967295");
  s.set("build-pids-max", "4194304");
  s.set("max-jobs", "auto");
  BOOST_TEST(s.get_number("timeout") == 4294967295u);
  BOOST_TEST(s.get_number("build-pids-max") == 4194304u);
}

BOOST_AUTO_TEST_CASE(sizes_with_suffixes) {
  BOOST_TEST(parse_size_setting("0", "x") == 0u);
  BOOST_TEST(parse_size_setting("123", "x") == 123u);
  BOOST_TEST(parse_size_setting("2K", "x") == 2048u);
  BOOST_TEST(parse_size_setting("3M", "x") == 3u << 20);
  BOOST_TEST(parse_size_setting("5G", "x") == 5ull << 30);
  BOOST_TEST(parse_size_setting("1T", "x") == 1ull << 40);
  BOOST_TEST(parse_size_setting("18446744073709551615", "x") == 18446744073709551615ull);
  for (auto bad : {"", "K", "-1", "1.5G", "12Q", " 1", "18446744073709551616", "99999999999T"})
    BOOST_TEST(error_contains([&] { parse_size_setting(bad, "--max-freed"); }, "--max-freed"), bad);
}

BOOST_AUTO_TEST_SUITE_END()

// nix.conf by Nix's rules (kilnd reads it): extra- appends, includes are
// relative to the including file, !include may be missing, and a setting
// Kiln does not know is a warning naming file and line, not an error.
BOOST_AUTO_TEST_CASE(nix_conf_by_nixs_rules) {
  std::map<std::string, std::string> files{
      {"/etc/nix/nix.conf", "substituters = a\nextra-substituters = b\n# comment\ninclude more.conf\n"
                            "!include /nowhere.conf\nexperimental-features = nix-command\nfrobnicate = 3\n"},
      {"/etc/nix/more.conf", "extra-substituters = c\nmax-jobs = 4\n"},
      {"/etc/nix/loop.conf", "include loop.conf\n"},
  };
  auto read = [&](const std::string& path) -> std::optional<std::string> {
    auto it = files.find(path);
    return it == files.end() ? std::nullopt : std::optional<std::string>(it->second);
  };
  std::vector<std::string> warnings;
  settings s;
  s.apply_nix_config(files["/etc/nix/nix.conf"], "/etc/nix/nix.conf", read,
                     [&](const std::string& w) { warnings.push_back(w); });
  BOOST_TEST(s.get("substituters") == "a b c");
  BOOST_TEST((s.get_words("substituters") == std::vector<std::string>{"a", "b", "c"}));
  BOOST_TEST(s.get("max-jobs") == "4");
  BOOST_REQUIRE(warnings.size() == 1u); // experimental-features is Nix's own, silently
  BOOST_TEST(warnings[0] == "/etc/nix/nix.conf:7: unknown setting 'frobnicate'");

  settings t;
  BOOST_TEST(error_contains([&] { t.apply_nix_config("include gone.conf\n", "/etc/nix/nix.conf", read, {}); },
                            "/etc/nix/nix.conf:1: file '/etc/nix/gone.conf' included here does not exist"));
  BOOST_TEST(error_contains([&] { t.apply_nix_config(files["/etc/nix/loop.conf"], "/etc/nix/loop.conf", read, {}); },
                            "includes nest more than 16 deep"));
  BOOST_TEST(error_contains([&] { t.apply_nix_config("max-jobs = many\n", "/etc/nix/nix.conf", read, {}); },
                            "/etc/nix/nix.conf:1: setting 'max-jobs'"));
}
