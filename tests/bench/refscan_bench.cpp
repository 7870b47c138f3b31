// Reference-scan throughput, by hand (not in CI):
//   build/bin/kiln-bench-refscan [MIB] [CANDIDATES] [TREE]
// Scans MIB MiB of in-memory data in 1 MiB chunks for CANDIDATES hash parts,
// once as random binary (the common case: compiled outputs) and once as
// base32-heavy text (the worst case: every position is a possible match).
// With TREE, also scans that tree's NAR as a build would (I/O included).
#include "store/format/nar.hpp"
#include "store/format/references.hpp"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>

using namespace kiln;

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void run(const char* label, const std::string& data, std::size_t mib,
         const std::set<std::string>& candidates, const std::vector<std::string>& planted) {
  double best = 1e9;
  std::size_t found = 0;
  for (int round = 0; round < 3; ++round) {
    auto t0 = std::chrono::steady_clock::now();
    reference_scanner s(candidates);
    for (std::size_t m = 0; m < mib; ++m)
      s.write(data.data() + (m % 64) * (1 << 20), 1 << 20);
    best = std::min(best, seconds_since(t0));
    found = s.found().size();
  }
  double bytes = static_cast<double>(mib) * (1 << 20);
  std::printf("%-28s %8.2f GB/s  (%zu MiB in %.3f s, found %zu of %zu planted)\n", label,
              bytes / best / 1e9, mib, best, found, planted.size());
}

} // namespace

int main(int argc, char** argv) {
  std::size_t mib = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 1024;
  std::size_t n = argc > 2 ? std::strtoul(argv[2], nullptr, 10) : 500;
  std::mt19937_64 rng(7);
  std::set<std::string> candidates;
  std::vector<std::string> list;
  while (candidates.size() < n) {
    std::string h;
    for (int k = 0; k < 32; ++k)
      h += nix_base32_alphabet[rng() % 32];
    if (candidates.insert(h).second)
      list.push_back(h);
  }
  // 64 MiB of data, reused cyclically, with a few candidates planted.
  std::string binary(64 << 20, '\0'), text(64 << 20, '\0');
  for (auto& c : binary)
    c = static_cast<char>(rng());
  for (std::size_t i = 0; i < text.size(); ++i)
    text[i] = (i % 80 == 79) ? '\n' : nix_base32_alphabet[rng() % 32];
  std::vector<std::string> planted(list.begin(), list.begin() + std::min<std::size_t>(8, n));
  for (std::size_t k = 0; k < planted.size(); ++k) {
    binary.replace(k * (8 << 20) + 12345, 32, planted[k]);
    text.replace(k * (8 << 20) + 777, 32, planted[k]);
  }
  std::printf("reference scan, %zu candidates, 1 MiB chunks, best of 3\n", n);
  run("binary data", binary, mib, candidates, planted);
  run("base32 text (worst case)", text, mib, candidates, planted);
  if (argc > 3) {
    hash_sink size(hash_algo::sha256);
    dump_path(argv[3], size);
    auto t0 = std::chrono::steady_clock::now();
    auto found = scan_path_for_references(argv[3], candidates);
    double s = seconds_since(t0);
    std::printf("%-28s %8.2f GB/s  (NAR of %s, %.0f MiB in %.3f s, found %zu)\n", "tree (dump + scan)",
                static_cast<double>(size.size()) / s / 1e9, argv[3],
                static_cast<double>(size.size()) / (1 << 20), s, found.size());
  }
  return 0;
}
