#include <boost/test/unit_test.hpp>

#include "store/io/background_sink.hpp"
#include "store/io/error.hpp"
#include "store/format/nar.hpp"
#include "store/io/stream.hpp"

#include <random>

using namespace kiln;

BOOST_AUTO_TEST_SUITE(stream_tests)

BOOST_AUTO_TEST_CASE(background_sink_delivers_every_byte_in_order) {
  std::mt19937 rng(3);
  std::string data(5'000'000, '\0');
  for (auto& c : data)
    c = static_cast<char>(rng());
  string_sink out;
  {
    background_sink bg(out, 4096, 3);
    for (std::size_t i = 0; i < data.size();) {
      std::size_t n = std::min<std::size_t>(1 + rng() % 20000, data.size() - i);
      bg.write(data.data() + i, n);
      i += n;
    }
    bg.flush();
    BOOST_TEST(out.s.size() == data.size()); // complete at flush, not only at destruction
  }
  BOOST_TEST((out.s == data));
}

BOOST_AUTO_TEST_CASE(background_sink_reports_the_inner_sinks_error) {
  struct failing_sink : sink {
    void write(const char*, std::size_t) override { throw error("disk on fire"); }
  } failing;
  background_sink bg(failing, 16, 2);
  try {
    for (int i = 0; i < 1000; ++i)
      bg.write("0123456789abcdef", 16);
    bg.flush();
    BOOST_ERROR("the inner error was lost");
  } catch (const error& e) {
    BOOST_TEST(std::string(e.what()) == "disk on fire");
  }
}

BOOST_AUTO_TEST_CASE(buffered_source_serves_small_and_large_reads) {
  std::string data(100000, 'x');
  for (std::size_t i = 0; i < data.size(); ++i)
    data[i] = static_cast<char>(i);
  string_source inner(data);
  buffered_source in(inner, 1000);
  std::string got(data.size(), '\0');
  std::size_t pos = 0;
  for (std::size_t step : {3, 8, 5000, 1, 999, 30000}) {
    read_exact(in, got.data() + pos, step, "test");
    pos += step;
  }
  read_exact(in, got.data() + pos, data.size() - pos, "test");
  BOOST_TEST((got == data));
  char c;
  BOOST_TEST(in.read(&c, 1) == 0u);
  BOOST_CHECK_THROW(read_exact(in, &c, 1, "test"), format_error);
}

BOOST_AUTO_TEST_CASE(dump_refuses_a_file_larger_than_its_stat_size) {
  // /proc files report size 0 but have contents: exactly a file that "grew".
  string_sink out;
  try {
    dump_path("/proc/self/status", out);
    BOOST_ERROR("archived a file whose contents exceed its size");
  } catch (const error& e) {
    BOOST_TEST(std::string(e.what()).find("grew while being archived") != std::string::npos, e.what());
  }
}

BOOST_AUTO_TEST_SUITE_END()
