#include "store/io/http_server.hpp"

#include "store/io/error.hpp"

#include <arpa/inet.h>
#include <cerrno>
#include <cstring>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <strings.h>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>

namespace kiln {

namespace {

constexpr std::size_t max_line = 8192;
constexpr std::size_t max_headers = 100;

struct bad_request : std::runtime_error {
  using std::runtime_error::runtime_error;
};
struct range_done {};

// Reads lines and nothing else (requests have no bodies here).
class line_reader {
public:
  explicit line_reader(int fd) : fd_(fd) {}
  // False at a clean end of the connection before any byte of a line.
  bool line(std::string& out) {
    out.clear();
    for (;;) {
      if (pos_ == len_) {
        ssize_t got = ::recv(fd_, buf_, sizeof buf_, 0);
        if (got <= 0) {
          if (out.empty())
            return false;
          throw bad_request("the request ends in the middle of a line");
        }
        pos_ = 0;
        len_ = static_cast<std::size_t>(got);
      }
      char c = buf_[pos_++];
      if (c == '\n') {
        if (!out.empty() && out.back() == '\r')
          out.pop_back();
        return true;
      }
      if (out.size() >= max_line)
        throw bad_request("a request line or header is longer than 8192 bytes");
      out += c;
    }
  }

private:
  int fd_;
  char buf_[4096];
  std::size_t pos_ = 0, len_ = 0;
};

class socket_sink : public sink {
public:
  using sink::write;
  explicit socket_sink(int fd) : fd_(fd) {}
  ~socket_sink() override = default;
  void write(const char* data, std::size_t n) override {
    if (buf_.size() + n > (1 << 16))
      flush();
    if (n >= (1 << 16))
      send_all(data, n);
    else
      buf_.append(data, n);
  }
  void flush() override {
    send_all(buf_.data(), buf_.size());
    buf_.clear();
  }

private:
  void send_all(const char* data, std::size_t n) {
    while (n) {
      ssize_t sent = ::send(fd_, data, n, MSG_NOSIGNAL);
      if (sent < 0) {
        if (errno == EINTR)
          continue;
        throw_errno("sending to an HTTP client");
      }
      data += sent;
      n -= static_cast<std::size_t>(sent);
    }
  }
  int fd_;
  std::string buf_;
};

class chunked_sink : public sink {
public:
  explicit chunked_sink(sink& out) : out_(out) {}
  void write(const char* data, std::size_t n) override {
    if (!n)
      return;
    char size[32];
    int len = std::snprintf(size, sizeof size, "%zx\r\n", n);
    out_.write(size, static_cast<std::size_t>(len));
    out_.write(data, n);
    out_.write("\r\n", 2);
  }
  void finish() { out_.write("0\r\n\r\n", 5); }

private:
  sink& out_;
};

// Passes on bytes [first, last] of what it is given, then stops the producer.
class range_sink : public sink {
public:
  range_sink(sink& out, uint64_t first, uint64_t last) : out_(out), first_(first), last_(last) {}
  void write(const char* data, std::size_t n) override {
    uint64_t begin = at_, end = at_ + n; // [begin, end)
    at_ = end;
    uint64_t from = std::max(begin, first_), to = std::min(end, last_ + 1);
    if (from < to)
      out_.write(data + (from - begin), static_cast<std::size_t>(to - from));
    if (at_ > last_)
      throw range_done{};
  }

private:
  sink& out_;
  uint64_t first_, last_, at_ = 0;
};

const char* reason(int status) {
  switch (status) {
  case 200: return "OK";
  case 206: return "Partial Content";
  case 400: return "Bad Request";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 416: return "Range Not Satisfiable";
  case 500: return "Internal Server Error";
  case 503: return "Service Unavailable";
  default: return "Status";
  }
}

std::string lower(std::string s) {
  for (auto& c : s)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string trim(const std::string& s) {
  auto b = s.find_first_not_of(" \t");
  auto e = s.find_last_not_of(" \t");
  return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
}

std::pair<std::string, uint16_t> split_listen(const std::string& listen) {
  auto colon = listen.rfind(':');
  if (colon == std::string::npos || colon + 1 == listen.size())
    throw format_error("'" + listen + "' is not ADDR:PORT");
  std::string port = listen.substr(colon + 1);
  if (port.find_first_not_of("0123456789") != std::string::npos || port.size() > 5 || std::stoul(port) > 65535)
    throw format_error("'" + listen + "': '" + port + "' is not a port number");
  return {listen.substr(0, colon), static_cast<uint16_t>(std::stoul(port))};
}

} // namespace

std::optional<std::pair<uint64_t, uint64_t>> parse_byte_range(const std::string& header, uint64_t length) {
  if (header.rfind("bytes=", 0) != 0 || length == 0)
    return std::nullopt;
  std::string spec = trim(header.substr(6));
  auto dash = spec.find('-');
  if (dash == std::string::npos || spec.find(',') != std::string::npos)
    return std::nullopt;
  std::string a = spec.substr(0, dash), b = spec.substr(dash + 1);
  auto number = [](const std::string& s) -> std::optional<uint64_t> {
    if (s.empty() || s.size() > 19 || s.find_first_not_of("0123456789") != std::string::npos)
      return std::nullopt;
    return std::stoull(s);
  };
  if (a.empty()) { // the last N bytes
    auto n = number(b);
    if (!n || *n == 0)
      return std::nullopt;
    return std::pair<uint64_t, uint64_t>{length - std::min(*n, length), length - 1};
  }
  auto first = number(a);
  if (!first || *first >= length)
    return std::nullopt;
  uint64_t last = length - 1;
  if (!b.empty()) {
    auto l = number(b);
    if (!l || *l < *first)
      return std::nullopt;
    last = std::min(*l, length - 1);
  }
  return std::pair<uint64_t, uint64_t>{*first, last};
}

http_server::http_server(const std::string& listen, http_handler handler, unsigned max_connections)
  : handler_(std::move(handler)), max_connections_(max_connections) {
  auto [addr, port] = split_listen(listen);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  if (::inet_pton(AF_INET, addr.empty() ? "0.0.0.0" : addr.c_str(), &sa.sin_addr) != 1)
    throw format_error("'" + listen + "': '" + addr + "' is not an IPv4 address");
  listener_.reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!listener_)
    throw_errno("creating a socket");
  int one = 1;
  ::setsockopt(listener_.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (::bind(listener_.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0)
    throw_errno("listening on '" + listen + "'");
  if (::listen(listener_.get(), 128) != 0)
    throw_errno("listening on '" + listen + "'");
  socklen_t len = sizeof sa;
  ::getsockname(listener_.get(), reinterpret_cast<sockaddr*>(&sa), &len);
  port_ = ntohs(sa.sin_port);
}

void http_server::run(int stop_fd) {
  for (;;) {
    pollfd fds[2] = {{listener_.get(), POLLIN, 0}, {stop_fd, POLLIN, 0}};
    if (::poll(fds, stop_fd >= 0 ? 2 : 1, -1) < 0) {
      if (errno == EINTR)
        continue;
      throw_errno("waiting for connections");
    }
    if (stop_fd >= 0 && fds[1].revents)
      return;
    int fd = ::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0)
      continue;
    if (connections_ >= max_connections_) {
      static const char busy[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
      ::send(fd, busy, sizeof busy - 1, MSG_NOSIGNAL);
      ::close(fd);
      continue;
    }
    ++connections_;
    std::thread([this, fd] {
      serve_connection(fd);
      ::close(fd);
      --connections_;
    }).detach();
  }
}

void http_server::serve_connection(int fd) {
  timeval idle{30, 0}, stuck{120, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &idle, sizeof idle);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &stuck, sizeof stuck);
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  line_reader in(fd);
  socket_sink out(fd);
  try {
    for (;;) {
      http_request req;
      std::string line, version;
      try {
        if (!in.line(line))
          return;
        auto sp1 = line.find(' '), sp2 = line.rfind(' ');
        if (sp1 == std::string::npos || sp2 == sp1)
          throw bad_request("the request line is not 'METHOD TARGET HTTP/1.x'");
        req.method = line.substr(0, sp1);
        req.target = line.substr(sp1 + 1, sp2 - sp1 - 1);
        version = line.substr(sp2 + 1);
        if (version != "HTTP/1.1" && version != "HTTP/1.0")
          throw bad_request("unsupported HTTP version '" + version + "'");
        for (std::size_t n = 0;; ++n) {
          if (!in.line(line))
            throw bad_request("the request ends in its headers");
          if (line.empty())
            break;
          if (n >= max_headers)
            throw bad_request("more than 100 headers");
          auto colon = line.find(':');
          if (colon == std::string::npos || colon == 0)
            throw bad_request("a header without a name");
          req.headers[lower(line.substr(0, colon))] = trim(line.substr(colon + 1));
        }
      } catch (const bad_request& e) {
        auto r = http_response::text(400, std::string(e.what()) + "\n");
        std::string head = "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: " +
                           std::to_string(r.body.size()) + "\r\nConnection: close\r\n\r\n";
        out.write(head);
        out.write(r.body);
        out.flush();
        return;
      }
      std::string connection = lower(req.headers.count("connection") ? req.headers.at("connection") : "");
      bool keep_alive = version == "HTTP/1.1" ? connection != "close" : connection == "keep-alive";
      bool head_only = req.method == "HEAD";

      http_response r;
      if (req.method != "GET" && req.method != "HEAD") {
        r = http_response::text(405, "only GET and HEAD\n");
        r.headers.emplace_back("Allow", "GET, HEAD");
      } else {
        try {
          r = handler_(req);
        } catch (const std::exception& e) {
          r = http_response::text(500, std::string(e.what()) + "\n");
        }
      }
      std::optional<uint64_t> length = r.produce ? r.length : std::optional<uint64_t>(r.body.size());
      std::optional<std::pair<uint64_t, uint64_t>> range;
      if (r.status == 200 && length && req.headers.count("range")) {
        range = parse_byte_range(req.headers.at("range"), *length);
        if (!range) {
          r = http_response::text(416, "");
          r.headers.emplace_back("Content-Range", "bytes */" + std::to_string(*length));
          length = 0;
        } else {
          r.status = 206;
          r.headers.emplace_back("Content-Range", "bytes " + std::to_string(range->first) + "-" +
                                                      std::to_string(range->second) + "/" + std::to_string(*length));
        }
      }
      std::string head = "HTTP/1.1 " + std::to_string(r.status) + " " + reason(r.status) +
                         "\r\nContent-Type: " + r.content_type + "\r\nAccept-Ranges: bytes\r\n";
      for (auto& [k, v] : r.headers)
        head += k + ": " + v + "\r\n";
      if (range)
        head += "Content-Length: " + std::to_string(range->second - range->first + 1) + "\r\n";
      else if (length)
        head += "Content-Length: " + std::to_string(*length) + "\r\n";
      else
        head += "Transfer-Encoding: chunked\r\n";
      head += keep_alive ? "Connection: keep-alive\r\n\r\n" : "Connection: close\r\n\r\n";
      out.write(head);
      if (!head_only) {
        if (!r.produce) {
          if (range)
            out.write(r.body.data() + range->first, range->second - range->first + 1);
          else
            out.write(r.body);
        } else if (range) {
          range_sink part(out, range->first, range->second);
          try {
            r.produce(part);
          } catch (const range_done&) {
          }
        } else if (length) {
          r.produce(out);
        } else {
          chunked_sink chunks(out);
          r.produce(chunks);
          chunks.finish();
        }
      }
      out.flush();
      if (!keep_alive)
        return;
    }
  } catch (const std::exception&) {
    // A client that went away, timed out, or a body that failed half-way:
    // the connection ends (a client sees the body cut short).
  }
}

} // namespace kiln
