// A kilnd connection: the handshake, SetOptions, and the loop that reads a
// request, does it and writes its stderr stream and reply. The operations
// are in session_ops.cpp and session_builds.cpp.
#include "actors/session.hpp"

#include "store/io/error.hpp"

#include <cerrno>
#include <cstring>
#include <grp.h>
#include <sstream>
#include <sys/socket.h>
#include <unistd.h>

namespace kiln::daemon {

namespace {

// The protocol features kilnd has: none of those Nix defines yet.
const feature_set kilnd_features;

bool in_group(const peer_info& peer, const std::string& group) {
  struct group* g = ::getgrnam(group.c_str());
  if (!g)
    return false;
  if (g->gr_gid == peer.gid)
    return true;
  for (char** m = g->gr_mem; *m; ++m)
    if (peer.user == *m)
      return true;
  return false;
}

// Settings an untrusted client may set for its own connection, as Nix 2.8
// lets them through (by Kiln's name for each).
bool untrusted_may_set(const std::string& name) {
  return name == "timeout" || name == "build-timeout" || name == "repeat" || name == "build-repeat" ||
         name == "connect-timeout";
}

std::string kiln_name(const std::string& nix_name) {
  if (nix_name == "build-timeout")
    return "timeout";
  if (nix_name == "build-repeat")
    return "repeat";
  return nix_name;
}

class client_sink : public sink {
public:
  explicit client_sink(client_stream& out) : out_(out) {}
  void write(const char* data, std::size_t n) override {
    out_.raw(std::string_view(data, n));
    if (pending_ += n; pending_ >= (1 << 16)) {
      out_.flush();
      pending_ = 0;
    }
  }
  void flush() override { out_.flush(); }

private:
  client_stream& out_;
  std::size_t pending_ = 0;
};

} // namespace

bool user_matches(const peer_info& peer, const std::string& list) {
  std::istringstream words(list);
  for (std::string w; words >> w;) {
    if (w == "*" || w == peer.user)
      return true;
    if (w.size() > 1 && w[0] == '@' && in_group(peer, w.substr(1)))
      return true;
  }
  return false;
}

bool socket_source::more() {
  if (pos_ < end_)
    return true;
  for (;;) {
    ssize_t n = ::read(fd_, buf_.get(), buffer_size);
    if (n >= 0) {
      pos_ = 0;
      end_ = static_cast<std::size_t>(n);
      return n > 0;
    }
    if (errno == ECONNRESET)
      return false;
    if (errno != EINTR)
      throw_errno("reading from the client");
  }
}

std::size_t socket_source::read(char* data, std::size_t n) {
  if (!more())
    return 0;
  std::size_t take = std::min(n, end_ - pos_);
  std::memcpy(data, buf_.get() + pos_, take);
  pos_ += take;
  return take;
}

void client_stream::put(const stderr_message& m) { buffer_ += encode_stderr_message(m); }

void client_stream::message(uint64_t lvl, const std::string& text) {
  if (lvl > verbosity_)
    return;
  stderr_message m;
  m.code = stderr_code::next;
  m.text = text + "\n";
  put(m);
}

uint64_t client_stream::start_activity(uint64_t type, const std::string& text, std::vector<field> fields,
                                       uint64_t lvl) {
  // Nix's ids are (pid << 32) | counter; clients use them only as keys.
  static std::atomic<uint64_t> counter{1};
  uint64_t id = (static_cast<uint64_t>(::getpid()) << 32) | (counter++ & 0xffffffff);
  stderr_message m;
  m.code = stderr_code::start_activity;
  m.id = id;
  m.level = lvl;
  m.type = type;
  m.text = text;
  m.fields = std::move(fields);
  put(m);
  return id;
}

void client_stream::result(uint64_t activity, uint64_t type, std::vector<field> fields) {
  stderr_message m;
  m.code = stderr_code::result;
  m.id = activity;
  m.type = type;
  m.fields = std::move(fields);
  put(m);
}

void client_stream::stop_activity(uint64_t activity) {
  stderr_message m;
  m.code = stderr_code::stop_activity;
  m.id = activity;
  put(m);
}

void client_stream::copied(const std::string& path, const std::string& from) {
  stop_activity(start_activity(act_copy_path, "copying path '" + path + "' from '" + from + "'",
                               {path, from, std::string("local")}));
}

void client_stream::last(const std::vector<argument>& reply) {
  put(stderr_message{});
  buffer_ += encode_reply(reply);
}

void client_stream::error(const std::string& text) {
  stderr_message m;
  m.code = stderr_code::error;
  m.text = text;
  put(m);
}

sink& client_stream::raw_sink() {
  if (!raw_sink_)
    raw_sink_ = std::make_unique<client_sink>(*this);
  return *raw_sink_;
}

void client_stream::flush() {
  std::size_t done = 0;
  while (done < buffer_.size()) {
    // write(), not send(): stdout may be a pipe (--stdio); kilnd ignores SIGPIPE.
    ssize_t n = ::write(fd_, buffer_.data() + done, buffer_.size() - done);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      buffer_.clear();
      throw client_gone();
    }
    done += static_cast<std::size_t>(n);
  }
  buffer_.clear();
}

session::session(int in, int out, daemon_context& ctx, const settings& config, const peer_info& peer, bool trusted)
  : in_fd_(in), ctx_(ctx), peer_(peer), trusted_(trusted), raw_(in), in_(raw_, "daemon request"), out_(out),
    daemon_config_(config), config_(config) {}

local_store& session::store() {
  if (!store_) {
    // Roots named for this session go when it ends, as a Nix daemon
    // worker's go with its process.
    roots_ = std::make_shared<temp_roots>(ctx_.layout.state_dir(), std::string(default_store_dir),
                                          "kilnd" + std::to_string(ctx_.next_session++));
    store_ = std::make_shared<local_store>(ctx_.layout, roots_);
  }
  return *store_;
}

void session::run() {
  try {
    // The greeting goes first: a client writes its magic and then waits
    // for ours, so nothing is lost by not waiting for it.
    out_.raw(encode_daemon_greeting(daemon_version));
    out_.flush();
    client_hello hello = read_client_hello(in_, daemon_version);
    client_version_ = std::min(hello.version, daemon_version);
    if (protocol_minor(client_version_) >= 38) {
      out_.raw(encode_features(kilnd_features));
      out_.flush();
      features_ = common_features(hello.features, kilnd_features);
    }
    read_client_hello_rest(in_, client_version_, hello);
    out_.raw(encode_daemon_welcome(client_version_, ctx_.version,
                                   trusted_ ? trust_flag::trusted : trust_flag::not_trusted));
    out_.flush();
    while (raw_.more()) {
      request r;
      try {
        r = read_request(in_);
      } catch (const format_error& e) {
        // Past a request it cannot read, the stream cannot be trusted: say
        // why, and close.
        out_.error(e.what());
        out_.flush();
        return;
      }
      if (!serve(r))
        return;
      out_.flush();
    }
  } catch (const std::exception&) {
    // The client went away or broke the framing mid-request: nothing more
    // can be said to it. Nothing it sent half-way was registered (every add
    // is atomic).
  }
}

bool session::serve(const request& r) {
  if (r.code == op::set_options) {
    set_options(options_of(r));
    out_.last();
    return true;
  }
  try {
    switch (r.code) {
    case op::build_paths:
    case op::build_paths_with_results: build_paths(r); break;
    case op::build_derivation: build_derivation(r); break;
    case op::ensure_path: ensure_path(r); break;
    default: store_op(r); break;
    }
  } catch (const client_gone&) {
    throw;
  } catch (const refused_request& e) {
    // Refused before the work started, as Nix refuses it: the error, then
    // the connection closes.
    out_.error(e.what());
    out_.flush();
    return false;
  } catch (const std::exception& e) {
    out_.error(e.what());
  }
  return true;
}

void session::set_options(const client_options& o) {
  options_ = o;
  substituters_.reset(); // the client may name others now
  out_.set_verbosity(o.verbosity);
  auto set = [&](const std::string& name, const std::string& value) {
    try {
      config_.set(name, value, "the client's settings");
    } catch (const format_error& e) {
      out_.message(lvl_warn, std::string("\x1b[35;1mwarning:\x1b[0m ") + e.what());
    }
  };
  set("keep-failed", o.keep_failed ? "true" : "false");
  set("keep-going", o.keep_going ? "true" : "false");
  set("fallback", o.try_fallback ? "true" : "false");
  set("max-jobs", std::to_string(o.max_build_jobs));
  set("max-silent-time", std::to_string(o.max_silent_time));
  if (o.build_cores)
    set("cores", std::to_string(o.build_cores));
  for (auto& [name, value] : o.overrides) {
    if (name == "substituters" || name == "extra-substituters") {
      // A client may choose among the daemon's substituters, not add its own.
      std::istringstream asked(value);
      std::string allowed = daemon_config_.get("substituters") + " " + daemon_config_.get("trusted-substituters");
      std::string kept;
      for (std::string u; asked >> u;) {
        if (trusted_ || (" " + allowed + " ").find(" " + u + " ") != std::string::npos)
          kept += (kept.empty() ? "" : " ") + u;
        else
          out_.message(lvl_warn, "\x1b[35;1mwarning:\x1b[0m ignoring untrusted substituter '" + u + "'");
      }
      set("substituters", name == "extra-substituters" ? config_.get("substituters") + " " + kept : kept);
      continue;
    }
    if (!trusted_ && !untrusted_may_set(name))
      continue; // as Nix: silently not applied
    // As Nix's daemon: whether substitutes must be signed is the store's
    // own setting, made when the daemon started; no client changes it.
    if (name == "require-sigs")
      continue;
    if (config_.all().count(kiln_name(name)))
      set(kiln_name(name), value);
  }
}

void serve_connection(int fd, daemon_context& ctx, const settings& config, const peer_info& peer, bool trusted) {
  session(fd, fd, ctx, config, peer, trusted).run();
}

void serve_stdio(daemon_context& ctx, const settings& config) {
  session(STDIN_FILENO, STDOUT_FILENO, ctx, config, peer_info{}, true).run();
}

} // namespace kiln::daemon
