// Decompression against the NARs Nix 2.8 wrote into the vectors' caches
// (xz, bzip2, zstd, none): each comes out as the NAR its narinfo
// describes (hash and size), also when the compressed bytes arrive one at
// a time; cut short, garbled or of an unknown kind, it is an error that
// names what was read. Compression (compress.hpp) comes back through the
// same decompression, for every method and level, in pieces of any size.
#include "store/format/narinfo.hpp"
#include "store/io/compress.hpp"
#include "store/io/decompress.hpp"
#include "store/io/error.hpp"
#include "tests/support/test_support.hpp"

#include <boost/test/unit_test.hpp>

using namespace kiln;

namespace {

// Gives at most `step` bytes per read, as a slow network would.
class trickle_source : public source {
public:
  trickle_source(std::string_view data, std::size_t step) : data_(data), step_(step) {}
  std::size_t read(char* out, std::size_t n) override {
    std::size_t take = std::min({n, step_, data_.size() - pos_});
    std::memcpy(out, data_.data() + pos_, take);
    pos_ += take;
    return take;
  }

private:
  std::string_view data_;
  std::size_t step_, pos_ = 0;
};

std::string decompress(std::string_view data, std::string_view method, std::size_t step = 1 << 20) {
  trickle_source in(data, step);
  auto out = decompressing_source(in, method, "test data");
  string_sink all;
  copy_all(*out, all);
  return all.s;
}

struct vector_nar {
  std::string method, compressed;
  hash nar_hash;
  uint64_t nar_size;
};

std::vector<vector_nar> vector_nars() {
  std::vector<vector_nar> out;
  for (auto& method : {"none", "xz", "bzip2", "zstd"}) {
    std::string dir = test::vectors_dir() + "/cache/" + method;
    for (auto& name : test::list_dir(dir))
      if (name.size() > 8 && name.substr(name.size() - 8) == ".narinfo") {
        narinfo n = parse_narinfo(test::read_file(dir + "/" + name), name);
        out.push_back({method, test::read_file(dir + "/" + n.url), n.nar_hash, n.nar_size});
      }
  }
  return out;
}

void refused(std::string_view data, std::string_view method, const std::string& fragment) {
  BOOST_CHECK_EXCEPTION(decompress(data, method), format_error, test::mentions(fragment));
}

} // namespace

BOOST_AUTO_TEST_SUITE(decompress_tests)

BOOST_AUTO_TEST_CASE(every_nar_nix_compressed_comes_out_as_its_narinfo_says) {
  auto nars = vector_nars();
  BOOST_TEST(nars.size() == 12u);
  for (auto& v : nars) {
    BOOST_TEST_CONTEXT(v.method) {
      for (std::size_t step : {std::size_t(1) << 20, std::size_t(1), std::size_t(7)}) {
        std::string nar = decompress(v.compressed, v.method, step);
        BOOST_TEST(nar.size() == v.nar_size);
        BOOST_TEST((hash_string(hash_algo::sha256, nar) == v.nar_hash));
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(cut_short_garbled_or_unknown_is_an_error_naming_it) {
  for (auto& v : vector_nars()) {
    if (v.method == "none")
      continue;
    BOOST_TEST_CONTEXT(v.method) {
      refused(std::string_view(v.compressed).substr(0, v.compressed.size() / 2), v.method,
              "test data (" + v.method + "): ");
      std::string garbled = v.compressed;
      for (std::size_t i = garbled.size() / 3; i < garbled.size() / 3 + 16 && i < garbled.size(); ++i)
        garbled[i] ^= 0x5a;
      BOOST_CHECK_THROW(decompress(garbled, v.method), format_error);
      refused("this was never compressed", v.method, "test data (" + v.method + "): ");
    }
  }
  refused("", "xz", "ends before its compressed stream does");
  refused("data", "br", "test data: unknown compression 'br'");
  BOOST_TEST(decompress("plain", "none") == "plain");
  BOOST_TEST(decompress("plain", "") == "plain");
}

BOOST_AUTO_TEST_CASE(what_is_compressed_decompresses_to_itself) {
  // Compressible and incompressible halves, larger than the buffers.
  std::string data;
  for (int i = 0; i < 40000; ++i)
    data += "line " + std::to_string(i % 97) + "\n";
  uint64_t x = 88172645463325252ull;
  for (int i = 0; i < 300000; ++i) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    data += static_cast<char>(x);
  }
  for (auto& method : {"none", "xz", "bzip2", "zstd"})
    for (int level : {-1, 1}) {
      BOOST_TEST_CONTEXT(method << " level " << level) {
        string_sink packed;
        auto out = make_compressing_sink(packed, method, level, "test data");
        for (std::size_t at = 0; at < data.size(); at += 70001)
          out->write(data.data() + at, std::min<std::size_t>(70001, data.size() - at));
        out->finish();
        BOOST_TEST((decompress(packed.s, method) == data));
        if (std::string(method) != "none")
          BOOST_TEST(packed.s.size() < data.size());
      }
    }
  // Long-distance matching (kiln serve's NARs): a 4 MiB block repeated
  // lies beyond level 1's window without it, and is found with it.
  {
    std::string block;
    for (int i = 0; i < (4 << 20); ++i) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      block += static_cast<char>(x);
    }
    std::string twice = block + block;
    auto packed_size = [&](const zstd_tuning& t) {
      string_sink packed;
      auto out = make_compressing_sink(packed, "zstd", 1, "test data", t);
      out->write(twice.data(), twice.size());
      out->finish();
      BOOST_TEST((decompress(packed.s, "zstd") == twice));
      return packed.s.size();
    };
    std::size_t near = packed_size({}), far = packed_size({true, twice.size()});
    BOOST_TEST(near > twice.size() * 9 / 10);
    BOOST_TEST(far < twice.size() * 6 / 10);
    // Told a size, another is an error, not a stream that lies.
    string_sink packed;
    auto out = make_compressing_sink(packed, "zstd", 1, "the NAR of X", zstd_tuning{true, twice.size() + 1});
    out->write(twice.data(), twice.size());
    BOOST_CHECK_EXCEPTION(out->finish(), error, test::mentions("the NAR of X"));
  }
  string_sink empty;
  auto out = make_compressing_sink(empty, "zstd", -1, "nothing");
  out->finish();
  BOOST_TEST(decompress(empty.s, "zstd").empty());
  BOOST_CHECK_THROW(make_compressing_sink(empty, "br", -1, "test data"), format_error);
  BOOST_CHECK_THROW(make_compressing_sink(empty, "xz", 12, "test data"), error);
  BOOST_TEST(compression_extension("xz") == ".xz");
  BOOST_TEST(compression_extension("bzip2") == ".bz2");
  BOOST_TEST(compression_extension("zstd") == ".zst");
  BOOST_TEST(compression_extension("none").empty());
}

BOOST_AUTO_TEST_SUITE_END()
