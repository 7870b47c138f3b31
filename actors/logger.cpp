// The logger: one log file per running build, written as the output
// arrives; with a line sink (-L, a daemon's client) it also passes on each
// line. Detached, because it writes files.
#include "actors/actors.hpp"
#include "store/local/build_log.hpp"
#include "store/format/store_path.hpp"

#include <iostream>
#include <functional>
#include <map>
#include <memory>

namespace kiln {

namespace {

struct open_log {
  std::unique_ptr<build_log_writer> file;
  std::unique_ptr<log_tail> lines; // only with a line sink
};

struct logger_state {
  std::map<std::string, open_log> logs;
  line_sink lines;
  static inline const char* name = "logger";
};

void show(logger_state& st, const std::string& drv, open_log& l) {
  for (auto& line : l.lines->take_finished())
    st.lines(drv, line);
}

logger_actor::behavior_type logger_behavior(logger_actor::stateful_pointer<logger_state> self, line_sink lines) {
  self->state.lines = std::move(lines);
  bool print = static_cast<bool>(self->state.lines);
  return {
      [=](log_open_atom, const std::string& drv, const std::string& file, const std::string& compression) {
        open_log l;
        try {
          if (!file.empty())
            l.file = std::make_unique<build_log_writer>(file, parse_log_compression(compression));
        } catch (const std::exception& e) {
          std::cerr << "warning: cannot write the build log: " << e.what() << '\n';
        }
        if (print)
          l.lines = std::make_unique<log_tail>(0, true);
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
          show(self->state, drv, it->second);
        }
        return bytes.size();
      },
      [=](log_close_atom, const std::string& drv) {
        auto it = self->state.logs.find(drv);
        if (it == self->state.logs.end())
          return true;
        if (it->second.lines) {
          it->second.lines->finish();
          show(self->state, drv, it->second);
        }
        self->state.logs.erase(it); // the writer's destructor finishes the file
        return true;
      },
  };
}

} // namespace

logger_actor spawn_logger(caf::actor_system& sys, line_sink lines) {
  return sys.spawn<caf::detached>(logger_behavior, std::move(lines));
}

} // namespace kiln
