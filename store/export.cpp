#include "store/export.hpp"

#include "store/io/error.hpp"
#include "store/io/fd.hpp"
#include "store/format/nar.hpp"
#include "store/format/wire.hpp"

#include <cstdio>
#include <fcntl.h>
#include <unistd.h>

namespace kiln {
namespace {

constexpr uint64_t export_magic = 0x4558494e; // "NIXE"

class stream_reader {
public:
  explicit stream_reader(source& in) : in_(in) {}
  uint64_t u64(const char* what) {
    unsigned char b[8];
    read_exact(in_, reinterpret_cast<char*>(b), 8, std::string("export stream (") + what + ")");
    return wire::decode_u64(b);
  }
  std::string str(const char* what, std::size_t max = 4096) {
    uint64_t len = u64(what);
    if (len > max)
      throw format_error(std::string("export stream: ") + what + " is " + std::to_string(len) +
                         " bytes long, the limit is " + std::to_string(max));
    std::string s(static_cast<std::size_t>(len), '\0');
    read_exact(in_, s.data(), s.size(), std::string("export stream (") + what + ")");
    char pad[8];
    read_exact(in_, pad, wire::padding(len), "export stream (padding)");
    for (std::size_t i = 0; i < wire::padding(len); ++i)
      if (pad[i])
        throw format_error(std::string("export stream: non-zero padding after ") + what);
    return s;
  }

private:
  source& in_;
};

// Copies what the NAR parser reads into a spool file, so the NAR can be
// added once the metadata that follows it is known, in bounded memory.
class spooling_source : public source {
public:
  spooling_source(source& in, sink& spool) : in_(in), spool_(spool) {}
  std::size_t read(char* data, std::size_t n) override {
    std::size_t got = in_.read(data, n);
    spool_.write(data, got);
    return got;
  }

private:
  source& in_;
  sink& spool_;
};

} // namespace

void export_paths(store& store, const std::vector<store_path>& paths, sink& out) {
  for (auto& p : paths) {
    auto info = store.query_path_info(p);
    if (!info)
      throw error("cannot export '" + p.full() + "': it is not valid");
    std::string frame;
    wire::append_u64(frame, 1);
    out.write(frame);
    hash_sink check(hash_algo::sha256);
    tee_sink both(out, check);
    store.nar_from_path(p, both);
    if (check.finish() != info->nar_hash)
      throw error("cannot export '" + p.full() + "': its contents no longer match its recorded " +
                  "hash (run 'kiln store verify --check-contents')");
    frame.clear();
    wire::append_u64(frame, export_magic);
    wire::append_string(frame, p.full());
    wire::append_u64(frame, info->references.size());
    for (auto& r : info->references)
      wire::append_string(frame, r.full());
    wire::append_string(frame, info->deriver ? info->deriver->full() : "");
    wire::append_u64(frame, 0); // no legacy signature
    out.write(frame);
  }
  std::string end;
  wire::append_u64(end, 0);
  out.write(end);
  out.flush();
}

import_result import_paths(store& store, source& raw, const std::string& spool_dir) {
  buffered_source in(raw);
  stream_reader r(in);
  import_result result;
  std::string spool_file = spool_dir + "/kiln-import-" + std::to_string(::getpid()) + ".nar";
  for (std::size_t entry = 1;; ++entry) {
    uint64_t more = r.u64("entry marker");
    if (more == 0)
      break;
    if (more != 1)
      throw format_error("export stream: entry " + std::to_string(entry) + " starts with " +
                         std::to_string(more) + ", expected 1 (another path) or 0 (the end)");
    unique_fd spool_fd(::open(spool_file.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    if (!spool_fd)
      throw_errno("creating the import spool '" + spool_file + "'");
    ::unlink(spool_file.c_str()); // anonymous from now on: nothing to clean up after a crash
    {
      fd_sink spool(spool_fd.get(), "the import spool", 1 << 20);
      spooling_source tee(in, spool);
      hashing_source hashed(tee, hash_algo::sha256);
      nar_visitor v;
      try {
        parse_nar(hashed, v, false);
      } catch (const format_error& e) {
        throw format_error("export stream, entry " + std::to_string(entry) + ": " + e.what());
      }
      spool.flush();
      if (r.u64("magic") != export_magic)
        throw format_error("export stream, entry " + std::to_string(entry) +
                           ": missing the NIXE marker after the NAR");
      path_info info(parse_store_path(r.str("path")));
      uint64_t nrefs = r.u64("reference count");
      if (nrefs > 100000)
        throw format_error("export stream: '" + info.path.full() + "' claims " +
                           std::to_string(nrefs) + " references");
      for (uint64_t i = 0; i < nrefs; ++i)
        info.references.insert(parse_store_path(r.str("reference")));
      std::string deriver = r.str("deriver");
      if (!deriver.empty())
        info.deriver = parse_store_path(deriver);
      if (r.u64("signature flag") == 1)
        r.str("legacy signature", 1 << 16); // ignored, as Nix ignores it
      info.nar_hash = hashed.finish();
      info.nar_size = hashed.size();
      if (::lseek(spool_fd.get(), 0, SEEK_SET) != 0)
        throw_errno("rewinding the import spool");
      fd_source nar(spool_fd.get(), "the import spool");
      try {
        store.add_nar(nar, info);
        result.imported.push_back(info.path);
      } catch (const sys_error&) {
        throw; // the store itself failed: no point going on
      } catch (const error& e) {
        result.refused.emplace_back(info.path, e.what());
      }
    }
  }
  return result;
}

} // namespace kiln
