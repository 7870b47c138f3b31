// Runs a helper program to completion and keeps what it printed: the
// pre-build-hook, kiln-builtin --print-files. Not for builders (those go
// through builder_process, with the sandbox and the limits).
#pragma once

#include <string>
#include <vector>

namespace kiln::sandbox {

struct captured {
  int status = 0;     // wait status
  std::string output; // its standard output (and error, if asked for)
};

// `what` names the program in errors (it could not be started). With
// `with_stderr` its standard error is kept too, interleaved.
captured run_capture(const std::string& program, const std::vector<std::string>& args, char** envp,
                     const std::string& what, bool with_stderr = false);

} // namespace kiln::sandbox
