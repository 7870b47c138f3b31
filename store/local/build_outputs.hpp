// What happens to a build's outputs before they become valid (the
// reference's registerOutputs): canonicalise, hash and scan each one for
// references in one pass, enforce the derivation's reference constraints,
// check fixed-output hashes, then sign and register all outputs of the
// build in one transaction.
#pragma once

#include "store/format/derivation.hpp"
#include "store/io/error.hpp"
#include "store/format/path_info.hpp"
#include "store/format/signature.hpp"

#include <functional>
#include <map>
#include <string>
#include <vector>

namespace kiln {

class local_store;
class store_db;

// An output the builder produced that may not become valid (the
// reference's OutputRejected): constraints, illegal references, a flat
// output that is not a regular file.
class output_rejected : public error {
public:
  using error::error;
};

struct built_output {
  std::string name;     // "out", "dev", ...
  store_path path;      // the store path it is to be registered as
  std::string location; // where the builder left it on disk
};

// allowedReferences / allowedRequisites / disallowedReferences /
// disallowedRequisites for one output. `references` are the output's own;
// `closure` gives the requisites of a set of paths (itself included).
// Throws output_rejected listing every offending path. Pure.
void check_reference_constraints(const derivation& drv, const std::string& output_full_path,
                                 const store_path_set& references,
                                 const std::map<std::string, store_path>& outputs,
                                 const std::function<store_path_set(const store_path_set&)>& closure);

// Outputs of one build that refer to each other in a cycle could never be
// exported, copied or collected: refused as Nix refuses them, naming the
// first cycle met when visiting outputs by name. `references` are each
// output's scanned references. Throws output_rejected. Pure.
void refuse_output_cycles(const store_path& drv_path, const std::map<std::string, store_path_set>& references,
                          const std::map<std::string, store_path>& outputs);

// What the builder's side learns of one output where it lies, with no
// database: canonicalised, hashed, scanned for references. Plain strings,
// so it can travel from a worker process.
struct scanned_output {
  std::string name;     // "out", "dev", ...
  std::string path;     // the store path it is to be registered as
  std::string location; // where it lies on disk
  std::string nar_hash; // SRI
  uint64_t nar_size = 0;
  std::vector<std::string> references; // store paths among the candidates
  // A fixed output: its content's hash as the derivation computes it
  // (flat or recursive, the derivation's algorithm), SRI; "" otherwise.
  std::string content_hash;
};

// Canonicalises one output where it lies, hashes it and scans it for the
// `candidates` (the input closure and the build's outputs); no database.
// Throws output_rejected: not produced, suspicious permissions, a flat
// output that is not a non-executable regular file.
scanned_output scan_build_output(const store_path& drv_path, const derivation& drv, const built_output& output,
                                 const store_path_set& candidates);

struct inspected_outputs {
  std::vector<path_info> infos;
  // A fixed output whose content is not what it promised: it was moved to
  // the path its real content gives (as Nix 2.8 does, so the download is
  // not lost; `infos` and the built_output name that path), and this says
  // why the build fails all the same. Empty if every hash matched.
  std::string hash_mismatch;
};

// The store's side of the scans (which came from a worker and are checked
// as such: every output reported, hashes well-formed, references among the
// `candidates` or the outputs): the outputs' path infos (deriver set,
// ultimate, ca for fixed outputs), fixed outputs without references and
// at their promised hash, no cycles, the reference constraints kept.
// Registers nothing. Throws output_rejected.
inspected_outputs accept_scanned_outputs(local_store& store, const store_path& drv_path, const derivation& drv,
                                         std::vector<built_output>& outputs, const std::vector<scanned_output>& scans,
                                         const store_path_set& candidates);

// Signs with every key, then registers all infos in one transaction.
void register_build_outputs(local_store& store, std::vector<path_info>& infos,
                            const std::vector<secret_key>& keys);

} // namespace kiln
