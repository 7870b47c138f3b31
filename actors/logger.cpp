// The logger: one log file per running build, written as the output
// arrives; with -L it also shows each line, prefixed with the derivation's
// name as the reference does. Detached, because it writes files.
#include "actors/actors.hpp"
#include "store/local/build_log.hpp"
#include "store/format/store_path.hpp"

#include <iostream>
#include <map>
#include <memory>

namespace kiln {

namespace {

struct open_log {
  std::unique_ptr<build_log_writer> file;
  std::unique_ptr<log_tail> lines; // only with -L
  std::string prefix;
};

struct logger_state {
  std::map<std::string, open_log> logs;
  static inline const char* name = "logger";
};

// "hello" for /nix/store/<hash>-hello.drv: what -L puts before each line.
std::string short_name(const std::string& drv_path) {
  std::string_view name = parse_store_path(drv_path).name();
  return std::string(name.substr(0, name.size() - 4));
}

void show(open_log& l) {
  for (auto& line : l.lines->take_finished())
    std::cerr << l.prefix << line << '\n';
}

logger_actor::behavior_type logger_behavior(logger_actor::stateful_pointer<logger_state> self, bool print) {
  return {
      [=](log_open_atom, const std::string& drv, const std::string& file, const std::string& compression) {
        open_log l;
        try {
          if (!file.empty())
            l.file = std::make_unique<build_log_writer>(file, parse_log_compression(compression));
        } catch (const std::exception& e) {
          std::cerr << "warning: cannot write the build log: " << e.what() << '\n';
        }
        if (print) {
          l.lines = std::make_unique<log_tail>(0, true);
          l.prefix = short_name(drv) + "> ";
        }
        self->state.logs[drv] = std::move(l);
      },
      [=](log_atom, const std::string& drv, const std::string& bytes) -> uint64_t {
        auto it = self->state.logs.find(drv);
        if (it == self->state.logs.end())
          return bytes.size();
        try {
          if (it->second.file)
            it->second.file->write(bytes);
        } catch (const std::exception& e) {
          std::cerr << "warning: build log of '" << drv << "': " << e.what() << '\n';
          it->second.file.reset();
        }
        if (it->second.lines) {
          it->second.lines->feed(bytes);
          show(it->second);
        }
        return bytes.size();
      },
      [=](log_close_atom, const std::string& drv) {
        auto it = self->state.logs.find(drv);
        if (it == self->state.logs.end())
          return;
        if (it->second.lines) {
          it->second.lines->finish();
          show(it->second);
        }
        self->state.logs.erase(it); // the writer's destructor finishes the file
      },
  };
}

} // namespace

logger_actor spawn_logger(caf::actor_system& sys, bool print_build_logs) {
  return sys.spawn<caf::detached>(logger_behavior, print_build_logs);
}

} // namespace kiln
