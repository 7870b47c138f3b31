#include "sandbox/builtin_builders.hpp"

#include "sandbox/run_capture.hpp"

#include "store/io/error.hpp"
#include "store/io/fd.hpp"
#include "store/io/file_ops.hpp"
#include "store/format/nar.hpp"
#include "store/io/stream.hpp"

#include <curl/curl.h>
#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <iostream>
#include <memory>

namespace kiln::sandbox {

namespace {

std::string executable_dir() {
  std::string self(4096, '\0');
  ssize_t n = ::readlink("/proc/self/exe", self.data(), self.size());
  if (n <= 0)
    return ".";
  self.resize(static_cast<std::size_t>(n));
  return split_path(self).first;
}

} // namespace

const std::vector<std::string>& builtin_sandbox_files() {
  static const std::vector<std::string> files = [] {
    std::string program = executable_dir() + "/kiln-builtin";
    char* no_env[] = {nullptr};
    auto r = run_capture(program, {"--print-files"}, no_env, "'" + program + " --print-files'");
    std::vector<std::string> found;
    std::size_t pos = 0;
    for (std::size_t nl; (nl = r.output.find('\n', pos)) != std::string::npos; pos = nl + 1)
      found.push_back(r.output.substr(pos, nl - pos));
    if (r.status != 0 || found.empty())
      throw error("'" + program + " --print-files' failed");
    return found;
  }();
  return files;
}

namespace {

const std::string& attribute(const std::map<std::string, std::string>& env, const std::string& name) {
  auto it = env.find(name);
  if (it == env.end())
    throw error("attribute '" + name + "' missing");
  return it->second;
}

struct curl_deleter {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
};

struct download_file {
  int fd;
  std::string error; // why writing failed; libcurl then stops with a write error
};

// No exception may cross libcurl's C frames: a failed write is reported by
// returning 0, which aborts the transfer, and the reason kept for later.
size_t write_to_file(char* data, size_t size, size_t n, void* arg) {
  auto* file = static_cast<download_file*>(arg);
  try {
    write_all(file->fd, data, size * n, "the download");
    return size * n;
  } catch (const std::exception& e) {
    file->error = e.what();
    return 0;
  }
}

// Downloads `url` into the open file `fd`, following redirects.
void download(const std::string& url, int fd) {
  static bool initialised = curl_global_init(CURL_GLOBAL_DEFAULT) == 0;
  std::unique_ptr<CURL, curl_deleter> c(initialised ? curl_easy_init() : nullptr);
  if (!c)
    throw error("unable to download '" + url + "': cannot initialise libcurl");
  char detail[CURL_ERROR_SIZE] = "";
  curl_easy_setopt(c.get(), CURLOPT_URL, url.c_str());
  curl_easy_setopt(c.get(), CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(c.get(), CURLOPT_MAXREDIRS, 10L);
  curl_easy_setopt(c.get(), CURLOPT_USERAGENT, "curl/" LIBCURL_VERSION " Kiln");
  download_file file{fd, {}};
  curl_easy_setopt(c.get(), CURLOPT_WRITEFUNCTION, write_to_file);
  curl_easy_setopt(c.get(), CURLOPT_WRITEDATA, &file);
  curl_easy_setopt(c.get(), CURLOPT_ERRORBUFFER, detail);
  curl_easy_setopt(c.get(), CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c.get(), CURLOPT_CONNECTTIMEOUT, 300L);
  CURLcode rc = curl_easy_perform(c.get());
  if (!file.error.empty())
    throw error("unable to download '" + url + "': " + file.error);
  long status = 0;
  curl_easy_getinfo(c.get(), CURLINFO_RESPONSE_CODE, &status);
  if (rc == CURLE_OK && status >= 400)
    throw error("unable to download '" + url + "': HTTP error " + std::to_string(status));
  if (rc != CURLE_OK)
    throw error("unable to download '" + url + "': " + curl_easy_strerror(rc) +
                (detail[0] ? std::string(" (") + detail + ")" : std::string()));
}

} // namespace

std::optional<std::vector<std::string>> builtin_command(std::string_view builder) {
  constexpr std::string_view prefix = "builtin:";
  if (builder.substr(0, prefix.size()) != prefix)
    return std::nullopt;
  return std::vector<std::string>{executable_dir() + "/kiln-builtin", std::string(builder.substr(prefix.size()))};
}

void builtin_fetchurl(const std::map<std::string, std::string>& env) {
  const std::string& out = attribute(env, "out");
  const std::string& url = attribute(env, "url");
  bool unpack = env.count("unpack") && env.at("unpack") == "1";
  bool executable = env.count("executable") && env.at("executable") == "1";
  std::cerr << "downloading '" << url << "'..." << std::endl;
  if (!unpack) {
    unique_fd fd(::open(out.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, executable ? 0755 : 0644));
    if (!fd)
      throw_errno("creating '" + out + "'");
    download(url, fd.get());
    return;
  }
  // A NAR: fetched whole into the build directory first, then restored
  // (restore_nar leaves nothing at `out` if the NAR is bad).
  std::string nar = "download.nar";
  {
    unique_fd fd(::open(nar.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    if (!fd)
      throw_errno("creating '" + nar + "' in the build directory");
    download(url, fd.get());
  }
  unique_fd in(::open(nar.c_str(), O_RDONLY | O_CLOEXEC));
  if (!in)
    throw_errno("reading the downloaded '" + nar + "'");
  fd_source raw(in.get(), "the NAR downloaded from '" + url + "'");
  buffered_source buffered(raw);
  restore_nar(buffered, out);
  if (executable && ::chmod(out.c_str(), 0755) != 0)
    throw_errno("making '" + out + "' executable");
}

} // namespace kiln::sandbox
