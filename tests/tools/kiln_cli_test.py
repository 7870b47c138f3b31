#!/usr/bin/env python3
"""The `kiln` command-line contract of the foundation issue, end to end.

Usage: kiln_cli_test.py KILN VECTORS_DIR
Runs the real binary on the golden vectors and on bad input: every command's
output, exit status, and that errors name what was wrong on stderr.
"""
import json, os, subprocess, sys, tempfile

kiln, vdir = sys.argv[1], sys.argv[2]
man = json.load(open(os.path.join(vdir, "manifest.json")))
failures = checks = 0


def run(*args, stdin=None):
    return subprocess.run([kiln, *args], input=stdin, capture_output=True, timeout=60)


def check(ok, what):
    global failures, checks
    checks += 1
    if not ok:
        failures += 1
        print("FAIL", what)


def fails_with(result, fragment, what):
    err = result.stderr.decode(errors="replace")
    check(result.returncode != 0 and fragment in err and not result.stdout.strip(),
          f"{what}: rc={result.returncode} stderr={err[:300]!r} (wanted {fragment!r})")


# --help everywhere, usage errors point at it.
for cmd in [[], ["nar"], ["hash"], ["drv"], ["nar", "dump"], ["nar", "restore"], ["nar", "ls"],
            ["hash", "path"], ["hash", "file"], ["hash", "convert"], ["drv", "show"],
            ["drv", "path"], ["drv", "outputs"], ["key"], ["key", "generate"], ["key", "public"],
            ["store"], ["store", "add"], ["store", "add-fixed"], ["store", "add-text"], ["store", "path-info"],
            ["store", "query"], ["store", "dump"], ["store", "export"], ["store", "import"],
            ["store", "verify"], ["store", "sign"], ["store", "verify-sigs"], ["store", "optimise"],
            ["store", "gc"], ["store", "delete"], ["store", "missing"], ["drv", "add"]]:
    r = run(*cmd, "--help")
    check(r.returncode == 0 and b"Usage: kiln" in r.stdout, f"--help for {cmd}: {r.stdout[:80]!r}")
fails_with(run("frobnicate"), "unknown command 'kiln frobnicate'", "unknown command")
fails_with(run("hash", "path", "--bogus", "x"), "unknown option '--bogus'", "unknown option")
fails_with(run("hash", "convert", "--to"), "option '--to' needs a value", "missing value")
fails_with(run("nar", "dump"), "missing PATH", "missing argument")

# hash convert: every vector, every target form, from every source form.
for c in man["base32"]["cases"]:
    for src in ["bytes_hex", "nix_base32", "base64", "sri", "prefixed_base32"]:
        for to, key in [("base16", "bytes_hex"), ("base32", "nix_base32"), ("base64", "base64"), ("sri", "sri")]:
            r = run("hash", "convert", "--type", c["algo"], "--to", to, c[src])
            check(r.returncode == 0 and r.stdout.decode().strip() == c[key],
                  f"convert {c[src]} -> {to}: {r.stdout!r} {r.stderr[:200]!r}")
fails_with(run("hash", "convert", "--type", "sha256", "--to", "base32", "abc"),
           "64 (base16), 52 (base32) or 44 (base64)", "bad hash length")
fails_with(run("hash", "convert", "--type", "sha256", "--to", "base99", "0" * 64), "unknown hash format", "bad format")
fails_with(run("hash", "convert", "--type", "sha3", "--to", "base16", "0" * 64), "unknown hash algorithm 'sha3'", "bad algo")

with tempfile.TemporaryDirectory() as tmp:
    # hash path/file defaults: sha256 base32.
    f = os.path.join(tmp, "f")
    open(f, "w").close()
    r = run("hash", "file", f)
    check(r.stdout.decode().strip() == "0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73", f"hash file default {r.stdout!r}")
    r = run("hash", "file", "--sri", f)
    check(r.stdout.decode().strip() == "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=", f"hash file --sri {r.stdout!r}")
    fails_with(run("hash", "file", tmp), "is not a regular file", "hash file on a directory")
    fails_with(run("hash", "path", os.path.join(tmp, "missing")), "missing", "hash path on a missing path")
    fails_with(run("hash", "file", "--sri", "--base16", f), "choose one of", "two formats")

    # nar dump / restore / ls on every NAR vector.
    for c in man["nar"]["cases"]:
        nar_file = os.path.join(vdir, c["nar_file"])
        nar = open(nar_file, "rb").read()
        dest = os.path.join(tmp, "r-" + c["case"])
        r = run("nar", "restore", dest, stdin=nar)
        d = run("nar", "dump", dest)
        check(r.returncode == 0 and d.stdout == nar, f"restore+dump {c['case']}: {r.stderr[:200]!r}")
        r = run("nar", "ls", "--json", nar_file)
        check(r.returncode == 0 and json.loads(r.stdout)["type"] == c["tree"]["type"], f"nar ls --json {c['case']}")
        r = run("nar", "ls", nar_file)
        check(r.returncode == 0 and r.stdout[:2] in (b"-r", b"dr", b"lr"),
              f"nar ls {c['case']}: {r.stdout[:80]!r}")
    nar = open(os.path.join(vdir, "nar/nested.nar"), "rb").read()
    for cut in [0, 8, 40, len(nar) // 2, len(nar) - 1]:
        dest = os.path.join(tmp, f"cut{cut}")
        fails_with(run("nar", "restore", dest, stdin=nar[:cut]), "invalid NAR: at byte", f"truncated at {cut}")
        check(not os.path.lexists(dest), f"leftover at {dest}")
    check(not [e for e in os.listdir(tmp) if e.startswith(".kiln-restore")], "staging leftovers")
    fails_with(run("nar", "restore", f, stdin=nar), "already exists", "restore onto an existing path")
    fails_with(run("nar", "ls", os.path.join(tmp, "nope.nar")), "nope.nar", "ls of a missing file")

    # drv show / path / outputs on every derivation vector.
    drvdir = os.path.join(vdir, "drv")
    for c in man["derivations"]["cases"]:
        path = os.path.join(vdir, c["file"])
        r = run("drv", "path", path)
        check(r.stdout.decode().strip() == c["drv_path"], f"drv path {c['case']}")
        r = run("drv", "outputs", "--drv-dir", drvdir, path)
        got = dict(l.split(" ", 1) for l in r.stdout.decode().splitlines())
        check(r.returncode == 0 and got == c["outputs"], f"drv outputs {c['case']}: {got} {r.stderr[:200]!r}")
        r = run("drv", "show", "--json", path)
        body = json.loads(r.stdout)[c["drv_path"]] if r.returncode == 0 else {}
        check({k: v["path"] for k, v in body.get("outputs", {}).items()} == c["outputs"]
              and body.get("inputDrvs") == c["input_drvs"], f"drv show --json {c['case']}")
        r = run("drv", "show", path)
        check(r.returncode == 0 and r.stdout.decode().startswith(c["drv_path"] + "\n"), f"drv show {c['case']}")

    # A .drv whose recorded output path its content does not imply.
    trivial = next(c for c in man["derivations"]["cases"] if c["case"] == "trivial")
    text = open(os.path.join(vdir, trivial["file"])).read()
    forged = text.replace(trivial["outputs"]["out"], "/nix/store/00000000000000000000000000000000-trivial")
    forged_file = os.path.join(tmp, os.path.basename(trivial["file"]))
    open(forged_file, "w").write(forged)
    r = run("drv", "outputs", forged_file)
    check(r.returncode != 0 and b"records output paths that its content does not imply" in r.stderr
          and trivial["outputs"]["out"].encode() in r.stderr, f"forged outputs: {r.stderr[:300]!r}")
    # An input derivation that cannot be found is named.
    chain2 = next(c for c in man["derivations"]["cases"] if c["case"] == "chain2")
    fails_with(run("drv", "outputs", "--drv-dir", tmp, os.path.join(vdir, chain2["file"])),
               "cannot load input derivation", "missing input drv")
    # Malformed .drv files.
    bad = os.path.join(tmp, "bad.drv")
    open(bad, "w").write(text[:-1])
    fails_with(run("drv", "path", bad), "bad.drv: at byte", "truncated drv")
    fails_with(run("drv", "path", "/dev/null"), "expected 'Derive('", "empty drv")

with tempfile.TemporaryDirectory() as tmp:
    # Keys: Nix's format, never overwriting, the public half of a Nix secret key.
    r = run("key", "public", os.path.join(vdir, "keys/secret.key"))
    check(r.returncode == 0 and r.stdout.decode().strip() == open(os.path.join(vdir, "keys/public.key")).read(),
          f"key public of the vector key: {r.stdout!r}")
    sk, pk = os.path.join(tmp, "sk"), os.path.join(tmp, "pk")
    r = run("key", "generate", "host-1", sk, pk)
    check(r.returncode == 0 and open(pk).read().startswith("host-1:") and not open(sk).read().endswith("\n")
          and os.stat(sk).st_mode & 0o777 == 0o600, f"key generate: {r.stderr!r}")
    before = open(sk).read()
    fails_with(run("key", "generate", "host-1", sk, os.path.join(tmp, "pk2")), "File exists", "key overwrite")
    check(open(sk).read() == before and not os.path.exists(os.path.join(tmp, "pk2")), "secret key clobbered")
    fails_with(run("key", "generate", "host-1", os.path.join(tmp, "sk3"), pk), "File exists", "public overwrite")
    check(not os.path.exists(os.path.join(tmp, "sk3")), "half a key pair left behind")
    fails_with(run("key", "public", pk), "has 32 bytes, expected 64", "public key given as secret")
    fails_with(run("key", "generate", "a:b", os.path.join(tmp, "x"), os.path.join(tmp, "y")), "without ':'", "bad key name")

with tempfile.TemporaryDirectory() as tmp:
    # The local store: vector trees land at Nix's paths; queries; bad input.
    opt = ["--store", f"local:{tmp}/root"]
    srcdir = next(x for x in man["derivations"]["sources"] if x["name"] == "srcdir")
    note = next(x for x in man["derivations"]["sources"] if x["name"] == "note-ref.txt")
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from nix_compat_test import make_vector_tree
    make_vector_tree(srcdir["tree"], os.path.join(tmp, "srcdir"))
    r = run("store", "add", *opt, os.path.join(tmp, "srcdir"))
    check(r.returncode == 0 and r.stdout.decode().strip() == srcdir["store_path"], f"store add: {r.stdout!r} {r.stderr!r}")
    with open(os.path.join(tmp, "note"), "w") as f:
        f.write(note["contents"])
    r = run("store", "add-text", *opt, note["name"], os.path.join(tmp, "note"))
    check(r.stdout.decode().strip() == note["store_path"], f"store add-text: {r.stdout!r} {r.stderr!r}")
    r = run("store", "query", *opt, "--requisites", note["store_path"])
    check(r.stdout.decode().split() == [srcdir["store_path"], note["store_path"]], f"query --requisites {r.stdout!r}")
    r = run("store", "query", *opt, "--referrers", srcdir["store_path"])
    check(r.stdout.decode().split() == [note["store_path"]], f"query --referrers {r.stdout!r}")
    r = run("store", "query", *opt, "--deriver", srcdir["store_path"])
    check(r.stdout.decode().strip() == "unknown-deriver", f"query --deriver {r.stdout!r}")
    r = run("store", "path-info", *opt, "--json", "-r", note["store_path"])
    infos = json.loads(r.stdout) if r.returncode == 0 else []
    check([i["path"] for i in infos] == [srcdir["store_path"], note["store_path"]]
          and infos[0]["narHash"] == "sha256:" + run("hash", "convert", "--type", "sha256", "--to", "base32",
                                                      srcdir["nar_sha256_base16"]).stdout.decode().strip()
          and infos[0]["narSize"] == srcdir["nar_size"] and infos[1]["references"] == [srcdir["store_path"]],
          f"path-info --json -r: {r.stdout[:300]!r}")
    r = run("store", "dump", *opt, srcdir["store_path"])
    check(r.returncode == 0 and len(r.stdout) == srcdir["nar_size"], "store dump")
    export = open(os.path.join(vdir, "export/a-b.export"), "rb").read()
    r = run("store", "import", *opt, stdin=export)
    paths = [e["path"] for e in man["export"]["entries"]]
    check(r.returncode == 0 and r.stdout.decode().split() == paths, f"store import: {r.stdout!r} {r.stderr!r}")
    r = run("store", "export", *opt, *reversed(paths))
    check(r.returncode == 0 and r.stdout == export, "store export differs from Nix's export of the same paths")
    fails_with(run("store", "import", *opt, stdin=export[:500]), "invalid NAR", "truncated import")

    # Signing reproduces Nix's signatures; verify-sigs and verify tell good from bad.
    cache = man["binary_cache"]
    r = run("store", "sign", *opt, "--key-file", os.path.join(vdir, "keys/secret.key"), *paths)
    check(r.returncode == 0, f"store sign: {r.stderr!r}")
    infos = {i["path"]: i for i in json.loads(run("store", "path-info", *opt, "--json", "--sigs", *paths).stdout)}
    for want in cache["local_path_info_json_after_nix_store_sign"]:
        if want["path"] in infos:
            check(infos[want["path"]].get("signatures") == want["signatures"], f"signature of {want['path']}")
    r = run("store", "verify-sigs", *opt, "--trusted-public-keys", cache["public_key"], *paths)
    check(r.returncode == 0 and r.stdout.count(b"signed by a trusted key") == 2, f"verify-sigs: {r.stdout!r}")
    other = run("key", "generate", "other-1", os.path.join(tmp, "o.sk"), os.path.join(tmp, "o.pk"))
    r = run("store", "verify-sigs", *opt, "--trusted-public-keys", open(os.path.join(tmp, "o.pk")).read(), *paths)
    check(r.returncode == 1 and b"NO valid signature" in r.stdout, f"verify-sigs with the wrong key: {r.stdout!r}")
    r = run("store", "verify", *opt, "--check-contents", "--all")
    check(r.returncode == 0 and b"0 problems" in r.stderr, f"verify of a good store: {r.stderr!r}")
    leaf = os.path.join(tmp, "root/nix/store", os.path.basename(paths[0]))
    os.chmod(leaf, 0o644)
    with open(leaf, "ab") as f:
        f.write(b"tampered")
    r = run("store", "verify", *opt, "--check-contents", "--json", "--all")
    problems = json.loads(r.stdout) if r.stdout else []
    check(r.returncode == 1 and [p["path"] for p in problems] == [paths[0]]
          and "contents changed" in problems[0]["problem"], f"verify of a tampered path: {r.stdout!r}")
    os.unlink(leaf)
    r = run("store", "verify", *opt, paths[0])
    check(r.returncode == 1 and b"missing from" in r.stderr, f"verify of a missing path: {r.stderr!r}")
    fails_with(run("store", "verify", *opt), "either --all or the PATHs", "verify without paths")
    fails_with(run("store", "sign", *opt, paths[1]), "missing --key-file", "sign without key")
    fails_with(run("store", "path-info", *opt, "/nix/store/00000000000000000000000000000000-gone"),
               "is not valid in this store", "path-info of an invalid path")
    fails_with(run("store", "query", *opt, "/nix/store/x"), "missing --references", "query without a mode")
    fails_with(run("store", "query", *opt, "--references", "--referrers", srcdir["store_path"]), "choose one of",
               "two query modes")
    fails_with(run("store", "add-fixed", *opt, os.path.join(tmp, "note")), "missing --type", "add-fixed without type")
    fails_with(run("store", "add-fixed", *opt, "--type", "sha256", os.path.join(tmp, "srcdir")),
               "not a regular file", "flat add of a directory")
    fails_with(run("store", "add", "--store", "daemon", os.path.join(tmp, "note")), "unsupported store 'daemon'", "bad store")
    fails_with(run("store", "add", *opt, os.path.join(tmp, "missing")), "missing", "add of a missing path")
    os.makedirs(os.path.join(tmp, "root11/nix/var/nix/db"))
    with open(os.path.join(tmp, "root11/nix/var/nix/db/schema"), "w") as f:
        f.write("11")
    fails_with(run("store", "add", "--store", f"local:{tmp}/root11", os.path.join(tmp, "note")),
               "schema version 11", "unknown schema version")

with tempfile.TemporaryDirectory() as tmp:
    # GC: roots keep closures, --print-* agree with what deletion does, delete refuses live paths.
    opt = ["--store", f"local:{tmp}/root"]
    gcroots = os.path.join(tmp, "root/nix/var/nix/gcroots")

    def add_text(name, text):
        f = os.path.join(tmp, name)
        open(f, "w").write(text)
        r = run("store", "add-text", *opt, name, f)
        check(r.returncode == 0, f"add-text {name}: {r.stderr!r}")
        return r.stdout.decode().strip()

    leaf = add_text("leaf", "leaf")
    top = add_text("top", "top uses " + leaf)
    junk = add_text("junk", "junk")
    os.symlink(top, os.path.join(gcroots, "top"))
    r = run("store", "gc", *opt, "--print-live")
    check(r.stdout.decode().split() == sorted([leaf, top]), f"gc --print-live: {r.stdout!r}")
    r = run("store", "gc", *opt, "--print-dead", "--json")
    check(json.loads(r.stdout) == [junk], f"gc --print-dead --json: {r.stdout!r}")
    r = run("store", "gc", *opt, "--print-roots")
    check(r.stdout.decode() == f"{gcroots}/top -> {top}\n", f"gc --print-roots: {r.stdout!r}")
    fails_with(run("store", "delete", *opt, leaf), "it is reachable from a root", "delete of a live path")
    fails_with(run("store", "delete", *opt, top), f"it is a root ({gcroots}/top)", "delete of a root")
    r = run("store", "gc", *opt)
    check(r.returncode == 0 and r.stdout.decode().startswith("1 store paths deleted")
          and f"deleting '{junk}'".encode() in r.stderr, f"gc: {r.stdout!r} {r.stderr!r}")
    r = run("store", "verify", *opt, "--all")
    check(r.returncode == 0, f"verify after gc: {r.stderr!r}")
    os.unlink(os.path.join(gcroots, "top"))
    fails_with(run("store", "delete", *opt, leaf), f"'{top}' refers to it", "delete of a referred path")
    r = run("store", "delete", *opt, "--json", top, leaf)
    j = json.loads(r.stdout) if r.returncode == 0 else {}
    check(j.get("deleted") == sorted([leaf, top]) and j.get("bytesFreed") == len("leaf") + len("top uses " + leaf),
          f"delete --json: {r.stdout!r} {r.stderr!r}")
    check(not [e for e in os.listdir(os.path.join(tmp, "root/nix/store")) if not e.endswith(".lock")],
          "store empty after deleting everything")
    fails_with(run("store", "delete", *opt, leaf), "it is not in the store", "delete of a missing path")
    fails_with(run("store", "gc", *opt, "--print-dead", "--print-live"), "exclude each other", "two gc modes")
    fails_with(run("store", "gc", *opt, "--max-freed", "lots"), "expected a byte count", "bad --max-freed")
    fails_with(run("store", "gc", *opt, "--option", "keep-outputs", "maybe"), "expected 'true' or 'false'", "bad bool")
    fails_with(run("store", "gc", *opt, "--option", "keep-everything", "true"), "unknown setting 'keep-everything'",
               "unknown setting")
    fails_with(run("store", "gc", *opt, "--option", "keep-outputs"), "needs two values", "--option with one value")
    conf = os.path.join(tmp, "kiln.conf")
    open(conf, "w").write("# comment\nkeep-outputs = true\nkeep-derivations: false\n")
    r = subprocess.run([kiln, "store", "gc", *opt, "--print-live"], capture_output=True,
                       env={**os.environ, "KILN_CONF": conf})
    check(r.returncode != 0 and f"{conf}:3: expected 'name = value'".encode() in r.stderr,
          f"bad config line: {r.stderr!r}")

with tempfile.TemporaryDirectory() as tmp:
    # The "what is missing" plan for vector derivations added as .drv texts.
    opt = ["--store", f"local:{tmp}/root"]
    cases = {c["case"]: c for c in man["derivations"]["cases"]}
    for name in ["chain1", "chain2"]:
        c = cases[name]
        r = run("store", "add-text", *opt, os.path.basename(c["file"])[33:], os.path.join(vdir, c["file"]))
        check(r.stdout.decode().strip() == c["drv_path"], f"add-text of {name}.drv: {r.stdout!r} {r.stderr!r}")
    d1, d2 = cases["chain1"]["drv_path"], cases["chain2"]["drv_path"]
    r = run("store", "missing", *opt, "--json", d2)
    j = json.loads(r.stdout) if r.returncode == 0 else {}
    check(j.get("willBuild") == sorted([d1, d2]) and j.get("willSubstitute") == [] and j.get("unknown") == [],
          f"missing --json: {r.stdout!r} {r.stderr!r}")
    r = run("store", "missing", *opt, d2 + "^out")
    check(r.stdout.decode() == f"these 2 derivations will be built:\n  {min(d1, d2)}\n  {max(d1, d2)}\n",
          f"missing text: {r.stdout!r}")
    r = run("store", "missing", *opt, "--json", cases["trivial"]["drv_path"] + "^*", "/nix/store/" + "0" * 32 + "-src")
    check(json.loads(r.stdout or "{}").get("unknown") == sorted([cases["trivial"]["drv_path"], "/nix/store/" + "0" * 32 + "-src"]),
          f"missing of what is not there: {r.stdout!r}")
    fails_with(run("store", "missing", *opt, d2 + "^doc"), "has no output 'doc'", "missing with a bad output")
    fails_with(run("store", "missing", *opt, d2 + "^out,"), "an empty output name", "missing with an empty output")
    fails_with(run("store", "missing", *opt, cases["chain1"]["outputs"]["out"] + "^out"), "only a .drv path",
               "^ after a non-drv")

with tempfile.TemporaryDirectory() as tmp:
    # drv add: every vector derivation written as JSON without its output paths
    # lands on the .drv path Nix gave it (inputs first); as ATerm too.
    opt = ["--store", f"local:{tmp}/root"]
    cases = {c["case"]: c for c in man["derivations"]["cases"]}
    by_path = {c["drv_path"]: c for c in cases.values()}
    added = set()

    def add_json(c):
        for dep in c["input_drvs"]:
            if dep not in added:
                add_json(by_path[dep])
        body = json.loads(run("drv", "show", "--json", os.path.join(vdir, c["file"])).stdout)[c["drv_path"]]
        for name, out in body["outputs"].items():
            out.pop("path", None)
            body["env"].pop(name, None)
        body["name"] = os.path.basename(c["file"])[33:-4]
        f = os.path.join(tmp, c["case"] + ".json")
        json.dump(body, open(f, "w"))
        r = run("drv", "add", *opt, "--json", f)
        check(r.stdout.decode().strip() == c["drv_path"], f"drv add --json {c['case']}: {r.stdout!r} {r.stderr!r}")
        added.add(c["drv_path"])

    for c in cases.values():
        if not c.get("input_srcs") and c["drv_path"] not in added:
            add_json(c)
    r = run("store", "query", *opt, "--outputs", cases["multi"]["drv_path"])
    check(sorted(r.stdout.decode().split()) == sorted(cases["multi"]["outputs"].values()), f"outputs recorded: {r.stdout!r}")
    r = run("drv", "add", "--store", f"local:{tmp}/root2", os.path.join(vdir, cases["chain1"]["file"]))
    check(r.stdout.decode().strip() == cases["chain1"]["drv_path"], f"drv add ATerm: {r.stdout!r} {r.stderr!r}")
    fails_with(run("drv", "add", "--store", f"local:{tmp}/root2", os.path.join(vdir, cases["chain3"]["file"])),
               "cannot load input derivation", "drv add with a missing input")
    forged_file = os.path.join(tmp, os.path.basename(trivial["file"]))
    open(forged_file, "w").write(forged)
    fails_with(run("drv", "add", *opt, forged_file), "but its content implies", "drv add of a forged .drv")
    bad = os.path.join(tmp, "bad.json")
    for text, fragment in [('{"system": 1}', '"outputs": missing'),
                           ('{"name": "x", "system": "s", "builder": "b", "outputs": {"out": {}}, "colour": 1}',
                            '"colour": unknown field'),
                           ('{"name": "x", "system": "s", "builder": "b", "outputs": {}}', "at least one output"),
                           ('{"name": "x", "system": "s", "builder": "b", "outputs": {"out": {"hash": "00"}}}',
                            '"hashAlgo" and "hash" go together'),
                           ('{"name": "x", "system": "s", "builder": "b", "outputs": {"out": {}}, "args": [1]}',
                            "args[0]: expected a string"),
                           ('{"name": "x y", "system": "s", "builder": "b", "outputs": {"out": {}}}', '"name"'),
                           ('{"name": "x", "system": "s", "builder": "b", "outputs": {"out": {}}, '
                            '"inputDrvs": {"/nix/store/' + "0" * 32 + '-in.drv": ["out"]}}', "cannot load input derivation"),
                           ('{"name": ', "not valid JSON")]:
        open(bad, "w").write(text)
        fails_with(run("drv", "add", *opt, "--json", bad), fragment, f"bad JSON derivation {text[:40]}")

print(f"kiln_cli: {checks - failures}/{checks} checks passed")
sys.exit(1 if failures else 0)
