#include "store/io/http.hpp"

#include "store/io/error.hpp"

#include <curl/curl.h>

#include <chrono>
#include <cstring>
#include <exception>
#include <cstdlib>
#include <mutex>
#include <random>
#include <thread>
#include <unistd.h>
#include <vector>

namespace kiln {

namespace {

struct curl_global {
  curl_global() { ok = curl_global_init(CURL_GLOBAL_DEFAULT) == 0; }
  bool ok = false;
};

// One request's state, shared with libcurl's C callbacks. No exception may
// cross those frames: a failure is kept here and the callback returns 0.
struct transfer {
  CURL* handle = nullptr;
  const std::string* url = nullptr;
  sink* out = nullptr;
  uint64_t limit = 0;
  uint64_t delivered = 0;  // bytes of the body given to `out`, over all attempts
  uint64_t skip = 0;       // bytes to drop this attempt (a server that ignored the Range)
  bool started = false;    // this attempt's status has been looked at
  bool wanted = false;     // ... and it was 200 or 206
  std::string retry_after;
  std::exception_ptr failure;
  source* body = nullptr;  // PUT
};

long status_of(CURL* c) {
  long status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  return status;
}

size_t on_body(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<transfer*>(user);
  std::size_t len = size * n;
  try {
    if (!t->started) {
      t->started = true;
      long status = status_of(t->handle);
      t->wanted = status == 200 || status == 206;
      // Asked to resume but given the whole body again: drop what we have.
      t->skip = status == 200 ? t->delivered : 0;
    }
    if (!t->wanted || !t->out)
      return len; // an error page: read and ignored
    std::size_t from = 0;
    if (t->skip) {
      from = static_cast<std::size_t>(std::min<uint64_t>(t->skip, len));
      t->skip -= from;
    }
    if (t->delivered + (len - from) > t->limit)
      throw error("'" + *t->url + "' sends more than the " + std::to_string(t->limit) + " bytes expected");
    t->out->write(data + from, len - from);
    t->delivered += len - from;
    return len;
  } catch (...) {
    t->failure = std::current_exception();
    return 0;
  }
}

size_t on_header(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<transfer*>(user);
  std::string line(data, size * n);
  // Each attempt's headers (and each redirect's): start over.
  if (line.rfind("HTTP/", 0) == 0) {
    t->retry_after.clear();
    t->started = false;
  }
  if (line.size() > 12 && strncasecmp(line.c_str(), "retry-after:", 12) == 0) {
    std::string v = line.substr(12);
    v.erase(0, v.find_first_not_of(" \t"));
    v.erase(v.find_last_not_of(" \t\r\n") + 1);
    t->retry_after = v;
  }
  return size * n;
}

size_t on_upload(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<transfer*>(user);
  try {
    return t->body->read(data, size * n);
  } catch (...) {
    t->failure = std::current_exception();
    return CURL_READFUNC_ABORT;
  }
}

// libcurl asks at least once a second, also while nothing arrives.
int on_progress(void* cancelled, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  return static_cast<const std::atomic<bool>*>(cancelled)->load() ? 1 : 0;
}

bool transient_code(CURLcode rc) {
  switch (rc) {
  case CURLE_COULDNT_CONNECT:
  case CURLE_OPERATION_TIMEDOUT:
  case CURLE_RECV_ERROR:
  case CURLE_SEND_ERROR:
  case CURLE_GOT_NOTHING:
  case CURLE_PARTIAL_FILE:
  case CURLE_HTTP2:
  case CURLE_HTTP2_STREAM:
  case CURLE_SSL_CONNECT_ERROR:
    return true;
  default:
    return false;
  }
}

bool transient_status(long status) { return status == 408 || status == 429 || (status >= 500 && status < 600); }
bool absent_status(long status) { return status == 404 || status == 403 || status == 410; }

// Nix's default for ssl-cert-file: the environment's, if it names one.
std::string default_ca_file() {
  for (const char* name : {"NIX_SSL_CERT_FILE", "SSL_CERT_FILE"})
    if (const char* v = std::getenv(name); v && *v)
      return v;
  return "";
}

} // namespace

struct http_client::impl {
  http_settings settings;
  std::string ca_file; // resolved once
  std::mutex mutex;
  std::vector<CURL*> idle; // handles keep their connections: reuse them
  std::mt19937 random{std::random_device{}()};

  CURL* take() {
    {
      std::lock_guard<std::mutex> g(mutex);
      if (!idle.empty()) {
        CURL* c = idle.back();
        idle.pop_back();
        curl_easy_reset(c);
        return c;
      }
    }
    static curl_global global;
    CURL* c = global.ok ? curl_easy_init() : nullptr;
    if (!c)
      throw error("cannot initialise libcurl");
    return c;
  }
  void give_back(CURL* c) {
    std::lock_guard<std::mutex> g(mutex);
    idle.push_back(c);
  }

  void configure(CURL* c, const std::string& url, transfer& t, char* detail) {
    curl_easy_setopt(c, CURLOPT_URL, url.c_str());
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, 10L);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "curl/" LIBCURL_VERSION " Kiln");
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_HTTP_VERSION, CURL_HTTP_VERSION_2TLS);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, detail);
    // libcurl's 16 KiB reads cost a receive, a poll and a hand-over to the
    // NAR's reader per 16 KiB (measured: 40% of a copy's time from kiln
    // serve went to them); larger reads cut those 32-fold.
    curl_easy_setopt(c, CURLOPT_BUFFERSIZE, 512L * 1024);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &t);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &t);
    // A stall: fewer than 1 byte a second for that long, waiting for the
    // answer included.
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, static_cast<long>(settings.stalled_timeout));
    if (settings.connect_timeout)
      curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, static_cast<long>(settings.connect_timeout));
    if (settings.cancelled) {
      curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
      curl_easy_setopt(c, CURLOPT_XFERINFODATA, const_cast<std::atomic<bool>*>(settings.cancelled.get()));
      curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    } else {
      curl_easy_setopt(c, CURLOPT_NOPROGRESS, 1L);
    }
    if (!ca_file.empty())
      curl_easy_setopt(c, CURLOPT_CAINFO, ca_file.c_str());
    if (!settings.netrc_file.empty() && ::access(settings.netrc_file.c_str(), R_OK) == 0) {
      curl_easy_setopt(c, CURLOPT_NETRC, static_cast<long>(CURL_NETRC_OPTIONAL));
      curl_easy_setopt(c, CURLOPT_NETRC_FILE, settings.netrc_file.c_str());
    }
  }

  // Waits before attempt `attempt` + 1: Retry-After if the server said
  // (at most a minute), else 2^(attempt-1) times the first delay, with jitter.
  void back_off(unsigned attempt, const std::string& retry_after) {
    std::chrono::milliseconds wait;
    if (!retry_after.empty() && retry_after.find_first_not_of("0123456789") == std::string::npos &&
        retry_after.size() < 6)
      wait = std::chrono::milliseconds(std::min(60000ul, std::stoul(retry_after) * 1000ul));
    else {
      double base = settings.first_retry_ms * double(1u << std::min(attempt - 1, 10u));
      std::uniform_real_distribution<double> jitter(1.0, 1.5);
      std::lock_guard<std::mutex> g(mutex);
      wait = std::chrono::milliseconds(static_cast<long>(base * jitter(random)));
    }
    std::this_thread::sleep_for(wait);
  }

  // Runs one request with retries. `prepare` sets what differs (method,
  // body) on a configured handle. Returns the final status; throws for
  // transport errors that outlived the retries and for the sink's errors.
  long perform(const std::string& url, transfer& t, const std::function<void(CURL*)>& prepare) {
    std::string last_problem;
    for (unsigned attempt = 1;; ++attempt) {
      CURL* c = take();
      char detail[CURL_ERROR_SIZE] = "";
      t.handle = c;
      t.url = &url;
      t.started = false;
      t.wanted = false;
      t.skip = 0;
      t.failure = nullptr;
      t.retry_after.clear();
      configure(c, url, t, detail);
      std::string range;
      if (t.delivered) {
        range = std::to_string(t.delivered) + "-";
        curl_easy_setopt(c, CURLOPT_RANGE, range.c_str());
      }
      prepare(c);
      CURLcode rc = curl_easy_perform(c);
      long status = status_of(c);
      give_back(c);
      if (t.failure)
        std::rethrow_exception(t.failure);
      if (settings.cancelled && settings.cancelled->load())
        throw error("the download of '" + url + "' was cancelled");
      bool retry;
      if (rc != CURLE_OK) {
        last_problem = std::string(curl_easy_strerror(rc)) + (detail[0] ? std::string(" (") + detail + ")" : "");
        retry = transient_code(rc);
      } else if (transient_status(status)) {
        last_problem = "HTTP status " + std::to_string(status);
        retry = true;
      } else {
        return status;
      }
      if (!retry || attempt >= std::max(1u, settings.attempts))
        throw error("unable to download '" + url + "': " + last_problem +
                    (attempt > 1 ? " (after " + std::to_string(attempt) + " attempts)" : ""));
      back_off(attempt, t.retry_after);
    }
  }
};

http_client::http_client(http_settings s) : impl_(std::make_unique<impl>()) {
  impl_->settings = std::move(s);
  impl_->ca_file = impl_->settings.ca_file.empty() ? default_ca_file() : impl_->settings.ca_file;
}

http_client::~http_client() {
  for (CURL* c : impl_->idle)
    curl_easy_cleanup(c);
}

bool http_client::get(const std::string& url, sink& out, uint64_t limit) {
  transfer t;
  t.out = &out;
  t.limit = limit;
  long status = impl_->perform(url, t, [](CURL* c) { curl_easy_setopt(c, CURLOPT_HTTPGET, 1L); });
  if (status == 200 || status == 206) {
    out.flush();
    return true;
  }
  if (absent_status(status))
    return false;
  throw error("unable to download '" + url + "': HTTP status " + std::to_string(status));
}

bool http_client::head(const std::string& url) {
  transfer t;
  long status = impl_->perform(url, t, [](CURL* c) { curl_easy_setopt(c, CURLOPT_NOBODY, 1L); });
  if (status >= 200 && status < 300)
    return true;
  if (absent_status(status))
    return false;
  throw error("unable to query '" + url + "': HTTP status " + std::to_string(status));
}

void http_client::put(const std::string& url, const std::function<std::unique_ptr<source>()>& open_body,
                      uint64_t size, const std::string& content_type) {
  transfer t;
  std::unique_ptr<source> body;
  std::string type_header = "Content-Type: " + content_type;
  curl_slist* headers = curl_slist_append(nullptr, type_header.c_str());
  long status;
  try {
    status = impl_->perform(url, t, [&](CURL* c) {
      body = open_body();
      t.body = body.get();
      curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
      curl_easy_setopt(c, CURLOPT_READFUNCTION, on_upload);
      curl_easy_setopt(c, CURLOPT_READDATA, &t);
      curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(size));
      curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    });
  } catch (...) {
    curl_slist_free_all(headers);
    throw;
  }
  curl_slist_free_all(headers);
  if (status < 200 || status >= 300)
    throw error("unable to upload to '" + url + "': HTTP status " + std::to_string(status));
}

} // namespace kiln
