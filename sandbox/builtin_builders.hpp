// Builders built into Kiln ("builtin:NAME" as a derivation's builder), run
// as Nix runs them: in the build's own process, with the derivation's
// environment. Kiln starts them as a separate small program, kiln-builtin,
// so limits, logs, namespaces and kills apply exactly as to any builder.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kiln::sandbox {

// The program and arguments that run the builtin `builder` names
// ("builtin:fetchurl" -> kiln-builtin fetchurl); nothing for other builders.
// kiln-builtin is looked for next to the running executable.
std::optional<std::vector<std::string>> builtin_command(std::string_view builder);

// The host files a sandbox must show for kiln-builtin to run: the program
// and the shared objects it loads (asked of it once, then remembered).
const std::vector<std::string>& builtin_sandbox_files();

// builtin:fetchurl (Nix 2.8's attributes): downloads `url` (http, https or
// file) to `out`; with unpack = "1" the download is a NAR restored at `out`;
// executable = "1" makes the file executable. Progress and errors go to
// standard error, which is the build log. Throws kiln::error on failure.
void builtin_fetchurl(const std::map<std::string, std::string>& env);

} // namespace kiln::sandbox
