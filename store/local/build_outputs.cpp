#include "store/local/build_outputs.hpp"

#include "store/local/canonicalise.hpp"
#include "store/io/file_ops.hpp"
#include "store/format/find_cycles.hpp"
#include "store/local/local_store.hpp"
#include "store/format/nar.hpp"
#include "store/format/references.hpp"
#include "store/local/store_db.hpp"
#include "store/io/stream.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <sstream>

namespace kiln {

namespace {

std::vector<std::string> words(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  for (std::string w; in >> w;)
    out.push_back(w);
  return out;
}

// A constraint's words: output names of this derivation or store paths.
store_path_set constraint_paths(const std::string& attr, const std::string& value,
                                const std::map<std::string, store_path>& outputs) {
  store_path_set out;
  for (auto& w : words(value)) {
    auto o = outputs.find(w);
    if (o != outputs.end())
      out.insert(o->second);
    else
      try {
        out.insert(parse_store_path(w));
      } catch (const format_error&) {
        throw output_rejected("derivation attribute '" + attr + "' names '" + w +
                              "', which is neither an output of the derivation nor a store path");
      }
  }
  return out;
}

} // namespace

void refuse_output_cycles(const store_path& drv_path, const std::map<std::string, store_path_set>& references,
                          const std::map<std::string, store_path>& outputs) {
  std::vector<std::string> names;
  for (auto& [name, path] : outputs)
    names.push_back(name);
  auto other_outputs = [&](const std::string& name) {
    std::vector<std::string> kids;
    auto refs = references.find(name);
    for (auto& [other, path] : outputs)
      if (refs != references.end() && refs->second.count(path))
        kids.push_back(other);
    return kids;
  };
  auto cycles = find_cycles(names, other_outputs, true);
  if (!cycles.empty()) {
    auto& c = cycles.front();
    throw output_rejected("cycle detected in build of '" + drv_path.full() + "' in the references of output '" +
                          c.front() + "' from output '" + c[c.size() - 2] + "'");
  }
}

void check_reference_constraints(const derivation& drv, const std::string& output_full_path,
                                 const store_path_set& references,
                                 const std::map<std::string, store_path>& outputs,
                                 const std::function<store_path_set(const store_path_set&)>& closure) {
  struct rule {
    const char* attr;
    bool allowed;   // the listed paths are the only ones allowed
    bool requisites; // applies to the whole closure, not just direct references
  };
  static const rule rules[] = {
      {"allowedReferences", true, false},
      {"allowedRequisites", true, true},
      {"disallowedReferences", false, false},
      {"disallowedRequisites", false, true},
  };
  for (auto& r : rules) {
    auto it = drv.env.find(r.attr);
    if (it == drv.env.end())
      continue;
    store_path_set listed = constraint_paths(r.attr, it->second, outputs);
    store_path_set used = r.requisites ? closure(references) : references;
    std::string bad;
    for (auto& p : used) {
      bool offending = r.allowed ? listed.count(p) == 0 : listed.count(p) != 0;
      // An output is always among its own requisites; that is not a use.
      if (offending && !(r.requisites && p.full() == output_full_path))
        bad += "\n  " + p.full();
    }
    if (!bad.empty())
      throw output_rejected("output '" + output_full_path +
                            "' is not allowed to refer to the following paths:" + bad);
  }
}

scanned_output scan_build_output(const store_path& drv_path, const derivation& drv, const built_output& o,
                                 const store_path_set& candidates) {
  std::set<std::string> hash_parts;
  std::map<std::string, store_path> by_hash;
  for (auto& c : candidates) {
    hash_parts.insert(std::string(c.hash_part()));
    by_hash.emplace(std::string(c.hash_part()), c);
  }
  struct stat st;
  if (::lstat(o.location.c_str(), &st) != 0)
    throw output_rejected("builder for '" + drv_path.full() + "' failed to produce output path for output '" + o.name +
                          "' at '" + o.path.full() + "'");
  // Someone else may have changed what the builder left (Nix's check).
  if (!S_ISLNK(st.st_mode) && (st.st_mode & (S_IWGRP | S_IWOTH)))
    throw output_rejected("suspicious ownership or permission on '" + o.path.full() + "' for output '" + o.name +
                          "'; rejecting this build output");
  canonicalise_path_metadata(o.location);

  hash_sink nar_hash(hash_algo::sha256);
  reference_scanner scanner(hash_parts);
  tee_sink both(nar_hash, scanner);
  dump_path(o.location, both);

  scanned_output s;
  s.name = o.name;
  s.path = o.path.full();
  s.location = o.location;
  hash nar = nar_hash.finish();
  s.nar_hash = nar.to_prefixed(hash_format::sri);
  s.nar_size = nar_hash.size();
  for (auto& h : scanner.found())
    s.references.push_back(by_hash.at(h).full());

  auto d = drv.outputs.find(o.name);
  if (d != drv.outputs.end() && d->second.is_fixed()) {
    ingestion_method method = d->second.method();
    hash wanted = d->second.fixed_hash();
    if (method == ingestion_method::flat && (!S_ISREG(st.st_mode) || (st.st_mode & S_IXUSR)))
      throw output_rejected("output path '" + o.path.full() +
                            "' should be a non-executable regular file since recursive hashing is not "
                            "enabled (outputHashMode=flat)");
    // The usual recursive SHA-256 is the NAR hash computed above.
    hash got = method == ingestion_method::flat       ? hash_file(wanted.algo, o.location)
               : wanted.algo == hash_algo::sha256 ? nar
                                                  : hash_path(o.location, wanted.algo).nar_hash;
    s.content_hash = got.to_prefixed(hash_format::sri);
  }
  return s;
}

namespace {

// A scan's text, read back on the store's side: it came from a worker.
hash scanned_hash(const std::string& text, const std::string& what, const scanned_output& s) {
  try {
    return parse_hash(text);
  } catch (const error& e) {
    throw output_rejected("the builder's report on '" + s.path + "' has a bad " + what + ": " + e.what());
  }
}

} // namespace

inspected_outputs accept_scanned_outputs(local_store& store, const store_path& drv_path, const derivation& drv,
                                         std::vector<built_output>& outputs, const std::vector<scanned_output>& scans,
                                         const store_path_set& candidates) {
  inspected_outputs result;
  std::vector<path_info> infos;
  for (auto& o : outputs) {
    auto s = std::find_if(scans.begin(), scans.end(), [&](auto& x) { return x.name == o.name; });
    if (s == scans.end() || s->path != o.path.full())
      throw output_rejected("the builder's report on '" + drv_path.full() + "' says nothing of output '" + o.name + "'");
    path_info info(o.path);
    info.deriver = drv_path;
    info.nar_hash = scanned_hash(s->nar_hash, "NAR hash", *s);
    info.nar_size = s->nar_size;
    info.ultimate = true;
    for (auto& r : s->references) {
      store_path ref = parse_store_path(r);
      bool an_output = std::any_of(outputs.begin(), outputs.end(), [&](auto& x) { return x.path == ref; });
      if (!an_output && !candidates.count(ref))
        throw output_rejected("the builder's report on '" + o.path.full() + "' names a reference '" + r +
                              "' outside the build's inputs");
      info.references.insert(ref);
    }

    auto d = drv.outputs.find(o.name);
    if (d != drv.outputs.end() && d->second.is_fixed()) {
      ingestion_method method = d->second.method();
      hash wanted = d->second.fixed_hash();
      hash got = scanned_hash(s->content_hash, "content hash", *s);
      if (!info.references.empty()) {
        std::string refs;
        for (auto& r : info.references)
          refs += "\n  " + r.full();
        throw output_rejected("fixed-output derivation '" + drv_path.full() +
                              "' must not refer to store paths; output '" + o.path.full() + "' refers to:" + refs);
      }
      if (got != wanted) {
        result.hash_mismatch = "hash mismatch in fixed-output derivation '" + drv_path.full() +
                               "':\n  specified: " + wanted.to_prefixed(hash_format::sri) +
                               "\n  got:       " + got.to_prefixed(hash_format::sri);
        // The content goes where its real hash puts it.
        store_path actual = make_fixed_output_path(o.path.name(), method, got);
        std::string dest = store.real_path(actual);
        if (!store.db().is_valid(actual)) {
          remove_tree(dest);
          if (::rename(o.location.c_str(), dest.c_str()) != 0)
            throw_errno("moving '" + o.location + "' to '" + dest + "'");
        } else {
          remove_tree(o.location);
        }
        o.path = actual;
        o.location = dest;
        info.path = actual;
      }
      info.ca = fixed_output_ca(method, got);
    }
    infos.push_back(std::move(info));
  }

  // Requisites reach through the other outputs of this build (not yet
  // valid) and then through the database.
  std::map<store_path, const path_info*> fresh;
  for (auto& i : infos)
    fresh[i.path] = &i;
  auto closure = [&](const store_path_set& start) {
    store_path_set seen;
    std::vector<store_path> todo(start.begin(), start.end());
    while (!todo.empty()) {
      store_path p = todo.back();
      todo.pop_back();
      if (!seen.insert(p).second)
        continue;
      auto f = fresh.find(p);
      store_path_set next = f != fresh.end() ? f->second->references : store.db().query_references(p);
      for (auto& n : next)
        if (!seen.count(n))
          todo.push_back(n);
    }
    return seen;
  };
  std::map<std::string, store_path> names;
  std::map<std::string, store_path_set> references;
  for (std::size_t i = 0; i < outputs.size(); ++i) {
    names.emplace(outputs[i].name, outputs[i].path);
    references.emplace(outputs[i].name, infos[i].references);
  }
  refuse_output_cycles(drv_path, references, names);
  for (auto& i : infos)
    check_reference_constraints(drv, i.path.full(), i.references, names, closure);
  result.infos = std::move(infos);
  return result;
}

void register_build_outputs(local_store& store, std::vector<path_info>& infos,
                            const std::vector<secret_key>& keys) {
  for (auto& i : infos) {
    std::set<std::string> refs;
    for (auto& r : i.references)
      refs.insert(r.full());
    for (auto& k : keys)
      i.sigs.insert(k.sign(path_fingerprint(i.path.full(), i.nar_hash, i.nar_size, refs)));
  }
  for (auto& i : infos)
    fsync_tree(store.real_path(i.path));
  store.db().register_valid_paths(infos);
}

} // namespace kiln
