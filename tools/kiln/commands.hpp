// The subcommand groups of the `kiln` CLI, one file each.
#pragma once

#include <string>
#include <vector>

namespace kiln::cmd {

int nar(const std::vector<std::string>& args);  // nar dump | restore | ls
int hash(const std::vector<std::string>& args); // hash path | file | convert
int drv(const std::vector<std::string>& args);  // drv show | path | outputs | add
int key(const std::vector<std::string>& args);  // key generate | public
int store(const std::vector<std::string>& args); // store add | add-fixed | add-text | path-info | query | dump

int build_command(const std::vector<std::string>& args); // build DRV...
int log_command(const std::vector<std::string>& args);   // log PATH
int status_command(const std::vector<std::string>& args); // status ID (a detached build)
int copy_command(const std::vector<std::string>& args);  // copy --to DEST | --from SRC PATH...
int serve_command(const std::vector<std::string>& args); // serve --listen ADDR:PORT
} // namespace kiln::cmd
