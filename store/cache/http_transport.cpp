// A binary cache on a web server: files are URLs under the cache's base.
// Reads stream (a producer thread runs the download, the reader pulls);
// writes are PUTs of a local scratch file.
#include "store/cache/cache_transport.hpp"

#include "store/io/error.hpp"
#include "store/io/fd.hpp"
#include "store/io/pipe_source.hpp"

#include <cstdlib>
#include <limits>
#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>

namespace kiln {

namespace {

std::unique_ptr<source> open_scratch(const std::string& path) {
  unique_fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd)
    throw_errno("opening '" + path + "'");
  return std::make_unique<owned_fd_source>(std::move(fd), path);
}

class http_transport : public cache_transport {
public:
  http_transport(std::string uri, std::string base, http_settings settings)
    : uri_(std::move(uri)), base_(std::move(base)), client_(std::move(settings)) {}
  const std::string& uri() const override { return uri_; }

  std::optional<std::string> get(const std::string& name, std::size_t limit) override {
    string_sink out;
    if (!client_.get(url_of(name), out, limit))
      return std::nullopt;
    return out.s;
  }

  std::unique_ptr<source> open(const std::string& name, uint64_t limit) override {
    std::string url = url_of(name);
    return std::make_unique<pipe_source>([this, url, limit](sink& out) {
      if (!client_.get(url, out, limit ? limit : std::numeric_limits<uint64_t>::max()))
        throw error("'" + url + "' is not there");
    });
  }

  bool has(const std::string& name) override { return client_.head(url_of(name)); }

  std::string scratch_dir() override {
    const char* tmp = std::getenv("TMPDIR");
    return tmp && *tmp ? tmp : "/tmp";
  }

  void put_file(const std::string& name, const std::string& scratch_path) override {
    struct remove_after {
      const std::string& path;
      ~remove_after() { ::unlink(path.c_str()); }
    } cleanup{scratch_path};
    uint64_t size = file_size(scratch_path);
    client_.put(url_of(name), [&] { return open_scratch(scratch_path); }, size,
                content_type(name));
  }

  void put(const std::string& name, std::string_view contents) override {
    client_.put(url_of(name), [&] { return std::make_unique<string_source>(contents); }, contents.size(),
                content_type(name));
  }

private:
  std::string url_of(const std::string& name) const { return base_ + "/" + name; }
  static std::string content_type(const std::string& name) {
    if (name == "nix-cache-info")
      return "text/x-nix-cache-info";
    if (name.size() > 8 && name.compare(name.size() - 8, 8, ".narinfo") == 0)
      return "text/x-nix-narinfo";
    return "application/x-nix-nar";
  }
  static uint64_t file_size(const std::string& path) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0)
      throw_errno("reading '" + path + "'");
    return static_cast<uint64_t>(st.st_size);
  }

  std::string uri_, base_;
  http_client client_;
};

} // namespace

std::unique_ptr<cache_transport> make_http_transport(std::string uri, std::string base_url, http_settings settings) {
  return std::make_unique<http_transport>(std::move(uri), std::move(base_url), std::move(settings));
}

} // namespace kiln
