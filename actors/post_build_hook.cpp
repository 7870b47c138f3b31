// The post-build hook (Nix's post-build-hook): run after a build's outputs
// are registered and before its goal reports, so dependents wait for it (it
// may upload what they need) and its failure fails the build, as in Nix.
#include "actors/actors.hpp"
#include "sandbox/builder_process.hpp"
#include "sandbox/run_capture.hpp"

#include <sys/wait.h>

extern char** environ;

namespace kiln {

namespace {

hook_actor::behavior_type post_build_hook(hook_actor::pointer self) {
  return {
      [=](hook_atom, const std::string& program, const std::string& drv,
          const std::vector<std::string>& outputs) -> caf::result<std::string> {
        std::string out_paths;
        for (auto& o : outputs)
          out_paths += (out_paths.empty() ? "" : " ") + o;
        std::vector<std::string> env_s;
        for (char** e = environ; *e; ++e)
          env_s.emplace_back(*e);
        env_s.push_back("OUT_PATHS=" + out_paths);
        env_s.push_back("DRV_PATH=" + drv);
        std::vector<char*> envp;
        for (auto& e : env_s)
          envp.push_back(e.data());
        envp.push_back(nullptr);
        self->quit(); // one run per actor
        try {
          auto c = sandbox::run_capture(program, {}, envp.data(), "post-build-hook '" + program + "'", true);
          if (WIFEXITED(c.status) && WEXITSTATUS(c.status) == 0)
            return c.output;
          return caf::make_error(engine_errc::hook_failed,
                                 "program '" + program + "' " + sandbox::describe_wait_status(c.status), c.output);
        } catch (const std::exception& e) {
          return caf::make_error(engine_errc::hook_failed, std::string(e.what()), std::string());
        }
      },
  };
}

} // namespace

hook_actor spawn_post_build_hook(caf::actor_system& sys) {
  return sys.spawn<caf::detached>(post_build_hook);
}

} // namespace kiln
