"""The `kiln` command line, end to end: every command's output and exit
status on the golden vectors, and on bad input that errors name what was
wrong on stderr (nothing on stdout)."""
import json
import os
import subprocess

import pytest

from kiln_testing import explain, make_vector_tree, refused


@pytest.fixture
def k(kiln):
    """Runs kiln with these arguments; output kept as bytes."""
    def run_kiln(*args, stdin=None, env=None):
        return subprocess.run([kiln, *args], input=stdin, capture_output=True, timeout=60, env=env)
    return run_kiln


def out(r):
    return r.stdout.decode().strip()


# --- The command line itself -------------------------------------------------

COMMANDS = [[], ["nar"], ["hash"], ["drv"], ["nar", "dump"], ["nar", "restore"], ["nar", "ls"],
            ["hash", "path"], ["hash", "file"], ["hash", "convert"], ["drv", "show"],
            ["drv", "path"], ["drv", "outputs"], ["key"], ["key", "generate"], ["key", "public"],
            ["store"], ["store", "add"], ["store", "add-fixed"], ["store", "add-text"], ["store", "path-info"],
            ["store", "query"], ["store", "dump"], ["store", "export"], ["store", "import"],
            ["store", "verify"], ["store", "sign"], ["store", "verify-sigs"], ["store", "optimise"],
            ["store", "gc"], ["store", "delete"], ["store", "missing"], ["drv", "add"], ["build"], ["log"]]


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: " ".join(c) or "kiln")
def test_help_is_on_stdout_when_asked_for(k, cmd):
    for flag in ("--help", "-h"):
        r = k(*cmd, flag)
        assert r.returncode == 0 and r.stdout.startswith(b"Usage: kiln") and r.stderr == b"", explain(r)


def test_usage_without_a_command_goes_to_stderr_and_exits_1(k):
    for cmd in ([], ["store"], ["nar"]):
        r = k(*cmd)
        assert r.returncode == 1 and r.stdout == b"" and b"Usage: kiln" in r.stderr, explain(r)


@pytest.mark.parametrize("args, message, see", [
    (["biuld"], "unknown command 'kiln biuld' (did you mean 'kiln build'?)", "kiln"),
    (["store", "qurey"], "unknown command 'kiln store qurey' (did you mean 'kiln store query'?)", "kiln store"),
    (["frobnicate"], "unknown command 'kiln frobnicate'\n", "kiln"),
    (["build", "--kep-going", "x"], "unknown option '--kep-going' (did you mean '--keep-going'?)", "kiln build"),
    (["nar", "ls", "--jsn", "x"], "unknown option '--jsn' (did you mean '--json'?)", "kiln nar ls"),
    (["hash", "path", "--bogus", "x"], "unknown option '--bogus'\n", "kiln hash path"),
    (["hash", "convert", "--to"], "option '--to' needs a value", "kiln hash convert"),
    (["build", "-j"], "option '--max-jobs' needs a value", "kiln build"),
    (["build", "--option", "cores"], "option '--option' needs two values: NAME VALUE", "kiln build"),
    (["nar", "dump"], "missing PATH", "kiln nar dump"),
    (["--frob"], "unknown option '--frob' (a command comes first)", "kiln"),
])
def test_a_usage_error_says_what_and_where_to_look_and_exits_1(k, args, message, see):
    r = k(*args)
    assert r.returncode == 1 and r.stdout == b"", explain(r)
    assert f"kiln: {message}".encode() in r.stderr + b"\n", explain(r)
    assert r.stderr.endswith(f"(see '{see} --help')\n".encode()), explain(r)


def test_short_flags_bundle_and_take_attached_values(k, tmp_path):
    # Parsed as options: the error is about the derivation, not the flags.
    store = f"local:{tmp_path}/s"
    for flags in (["-kK", "-j2"], ["-Kk", "--max-jobs=2", "--timeout=5"]):
        r = k("build", "--store", store, *flags, "/nix/store/" + "0" * 32 + "-x.drv")
        assert r.returncode == 1 and b"is not valid" in r.stderr and b"--help" not in r.stderr, explain(r)
    # After "--", everything is an argument.
    r = k("build", "--store", store, "-k", "-j", "2", "--", "-j")
    assert r.returncode == 1 and b"path '-j' is not in the Nix store" in r.stderr, explain(r)
    refused(k("build", "--store", store, "-j", "lots", "x"), "setting 'max-jobs': should be 'auto' or an integer, got 'lots'")


# --- hash ---------------------------------------------------------------------

def test_hash_convert_every_vector_to_every_form(k, manifest):
    for c in manifest["base32"]["cases"]:
        for src in ["bytes_hex", "nix_base32", "base64", "sri", "prefixed_base32"]:
            for to, key in [("base16", "bytes_hex"), ("base32", "nix_base32"), ("base64", "base64"), ("sri", "sri")]:
                r = k("hash", "convert", "--type", c["algo"], "--to", to, c[src])
                assert r.returncode == 0 and out(r) == c[key], (c[src], to, explain(r))


@pytest.mark.parametrize("args, fragment", [
    (["--type", "sha256", "--to", "base32", "abc"], "64 (base16), 52 (base32) or 44 (base64)"),
    (["--type", "sha256", "--to", "base99", "0" * 64], "unknown hash format"),
    (["--type", "sha3", "--to", "base16", "0" * 64], "unknown hash algorithm 'sha3'"),
])
def test_hash_convert_refuses_bad_input(k, args, fragment):
    refused(k("hash", "convert", *args), fragment)


def test_hash_file_and_path(k, tmp_path):
    f = tmp_path / "f"
    f.write_text("")
    assert out(k("hash", "file", str(f))) == "0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73"
    assert out(k("hash", "file", "--sri", str(f))) == "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
    refused(k("hash", "file", str(tmp_path)), "is not a regular file")
    refused(k("hash", "path", str(tmp_path / "missing")), "missing")
    refused(k("hash", "file", "--sri", "--base16", str(f)), "choose one of")


# --- nar ----------------------------------------------------------------------

def test_nar_restore_dump_and_ls_of_every_vector(k, manifest, vectors, tmp_path):
    for c in manifest["nar"]["cases"]:
        nar_file = os.path.join(vectors, c["nar_file"])
        nar = open(nar_file, "rb").read()
        dest = str(tmp_path / ("r-" + c["case"]))
        r = k("nar", "restore", dest, stdin=nar)
        assert r.returncode == 0 and k("nar", "dump", dest).stdout == nar, (c["case"], explain(r))
        r = k("nar", "ls", "--json", nar_file)
        assert r.returncode == 0 and json.loads(r.stdout)["type"] == c["tree"]["type"], c["case"]
        r = k("nar", "ls", nar_file)
        assert r.returncode == 0 and r.stdout[:2] in (b"-r", b"dr", b"lr"), (c["case"], r.stdout[:80])


def test_nar_restore_of_a_truncated_nar_leaves_nothing(k, vectors, tmp_path):
    nar = open(os.path.join(vectors, "nar/nested.nar"), "rb").read()
    for cut in [0, 8, 40, len(nar) // 2, len(nar) - 1]:
        dest = tmp_path / f"cut{cut}"
        refused(k("nar", "restore", str(dest), stdin=nar[:cut]), "invalid NAR: at byte")
        assert not os.path.lexists(dest)
    assert os.listdir(tmp_path) == []  # no staging directory either
    (tmp_path / "f").write_text("")
    refused(k("nar", "restore", str(tmp_path / "f"), stdin=nar), "already exists")
    refused(k("nar", "ls", str(tmp_path / "nope.nar")), "nope.nar")


# --- drv ----------------------------------------------------------------------

def test_drv_path_outputs_and_show_of_every_vector(k, manifest, vectors):
    drvdir = os.path.join(vectors, "drv")
    for c in manifest["derivations"]["cases"]:
        path = os.path.join(vectors, c["file"])
        assert out(k("drv", "path", path)) == c["drv_path"], c["case"]
        r = k("drv", "outputs", "--drv-dir", drvdir, path)
        assert r.returncode == 0 and dict(l.split(" ", 1) for l in r.stdout.decode().splitlines()) == c["outputs"]
        body = json.loads(k("drv", "show", "--json", path).stdout)[c["drv_path"]]
        assert {n: o["path"] for n, o in body["outputs"].items()} == c["outputs"]
        assert body["inputDrvs"] == c["input_drvs"]
        r = k("drv", "show", path)
        assert r.returncode == 0 and r.stdout.decode().startswith(c["drv_path"] + "\n"), c["case"]


def forged_trivial(manifest, vectors, tmp_path):
    """The trivial vector .drv with an output path its content does not imply."""
    trivial = next(c for c in manifest["derivations"]["cases"] if c["case"] == "trivial")
    text = open(os.path.join(vectors, trivial["file"])).read()
    forged = tmp_path / os.path.basename(trivial["file"])
    forged.write_text(text.replace(trivial["outputs"]["out"], "/nix/store/" + "0" * 32 + "-trivial"))
    return trivial, text, str(forged)


def test_drv_refuses_forged_malformed_and_incomplete_derivations(k, manifest, vectors, tmp_path):
    trivial, text, forged = forged_trivial(manifest, vectors, tmp_path)
    refused(k("drv", "outputs", forged), "records output paths that its content does not imply")
    assert trivial["outputs"]["out"].encode() in k("drv", "outputs", forged).stderr
    chain2 = next(c for c in manifest["derivations"]["cases"] if c["case"] == "chain2")
    refused(k("drv", "outputs", "--drv-dir", str(tmp_path), os.path.join(vectors, chain2["file"])),
            "cannot load input derivation")
    bad = tmp_path / "bad.drv"
    bad.write_text(text[:-1])
    refused(k("drv", "path", str(bad)), "bad.drv: at byte")
    refused(k("drv", "path", "/dev/null"), "expected 'Derive('")


def test_drv_add_lands_every_vector_on_nixs_path(k, manifest, vectors, tmp_path):
    # Written as JSON without its output paths, each derivation (inputs
    # first) lands on the .drv path Nix gave it; as ATerm too.
    opt = ["--store", f"local:{tmp_path}/root"]
    cases = {c["case"]: c for c in manifest["derivations"]["cases"]}
    by_path = {c["drv_path"]: c for c in cases.values()}
    added = set()

    def add_json(c):
        for dep in c["input_drvs"]:
            if dep not in added:
                add_json(by_path[dep])
        body = json.loads(k("drv", "show", "--json", os.path.join(vectors, c["file"])).stdout)[c["drv_path"]]
        for name, output in body["outputs"].items():
            output.pop("path", None)
            body["env"].pop(name, None)
        body["name"] = os.path.basename(c["file"])[33:-4]
        f = tmp_path / (c["case"] + ".json")
        f.write_text(json.dumps(body))
        r = k("drv", "add", *opt, "--json", str(f))
        assert out(r) == c["drv_path"], (c["case"], explain(r))
        added.add(c["drv_path"])

    for c in cases.values():
        if not c.get("input_srcs") and c["drv_path"] not in added:
            add_json(c)
    r = k("store", "query", *opt, "--outputs", cases["multi"]["drv_path"])
    assert sorted(r.stdout.decode().split()) == sorted(cases["multi"]["outputs"].values())
    r = k("drv", "add", "--store", f"local:{tmp_path}/root2", os.path.join(vectors, cases["chain1"]["file"]))
    assert out(r) == cases["chain1"]["drv_path"], explain(r)
    refused(k("drv", "add", "--store", f"local:{tmp_path}/root2", os.path.join(vectors, cases["chain3"]["file"])),
            "cannot load input derivation")
    _, _, forged = forged_trivial(manifest, vectors, tmp_path)
    refused(k("drv", "add", *opt, forged), "but its content implies")


@pytest.mark.parametrize("body, fragment", [
    ('{"system": 1}', '"outputs": missing'),
    ('{"name": "x", "system": "s", "builder": "b", "outputs": {"out": {}}, "colour": 1}', '"colour": unknown field'),
    ('{"name": "x", "system": "s", "builder": "b", "outputs": {}}', "at least one output"),
    ('{"name": "x", "system": "s", "builder": "b", "outputs": {"out": {"hash": "00"}}}',
     '"hashAlgo" and "hash" go together'),
    ('{"name": "x", "system": "s", "builder": "b", "outputs": {"out": {}}, "args": [1]}', "args[0]: expected a string"),
    ('{"name": "x y", "system": "s", "builder": "b", "outputs": {"out": {}}}', '"name"'),
    ('{"name": "x", "system": "s", "builder": "b", "outputs": {"out": {}}, '
     '"inputDrvs": {"/nix/store/' + "0" * 32 + '-in.drv": ["out"]}}', "cannot load input derivation"),
    ('{"name": ', "not valid JSON"),
])
def test_drv_add_refuses_bad_json_naming_the_field(k, tmp_path, body, fragment):
    bad = tmp_path / "bad.json"
    bad.write_text(body)
    refused(k("drv", "add", "--store", f"local:{tmp_path}/root", "--json", str(bad)), fragment)


# --- key ----------------------------------------------------------------------

def test_keys_in_nixs_format_never_overwritten(k, vectors, tmp_path):
    r = k("key", "public", os.path.join(vectors, "keys/secret.key"))
    assert r.returncode == 0 and out(r) == open(os.path.join(vectors, "keys/public.key")).read()
    sk, pk = str(tmp_path / "sk"), str(tmp_path / "pk")
    r = k("key", "generate", "host-1", sk, pk)
    assert r.returncode == 0 and open(pk).read().startswith("host-1:") and not open(sk).read().endswith("\n")
    assert os.stat(sk).st_mode & 0o777 == 0o600
    before = open(sk).read()
    refused(k("key", "generate", "host-1", sk, str(tmp_path / "pk2")), "File exists")
    assert open(sk).read() == before and not os.path.exists(tmp_path / "pk2")
    refused(k("key", "generate", "host-1", str(tmp_path / "sk3"), pk), "File exists")
    assert not os.path.exists(tmp_path / "sk3")  # no half key pair
    refused(k("key", "public", pk), "has 32 bytes, expected 64")
    refused(k("key", "generate", "a:b", str(tmp_path / "x"), str(tmp_path / "y")), "without ':'")


# --- store --------------------------------------------------------------------

@pytest.fixture
def filled(k, manifest, vectors, tmp_path):
    """A local store with the vectors' source tree, a text referring to it,
    and Nix's export of two paths imported; returns (options, paths by name)."""
    opt = ["--store", f"local:{tmp_path}/root"]
    srcdir = next(x for x in manifest["derivations"]["sources"] if x["name"] == "srcdir")
    note = next(x for x in manifest["derivations"]["sources"] if x["name"] == "note-ref.txt")
    make_vector_tree(srcdir["tree"], str(tmp_path / "srcdir"))
    r = k("store", "add", *opt, str(tmp_path / "srcdir"))
    assert r.returncode == 0 and out(r) == srcdir["store_path"], explain(r)
    (tmp_path / "note").write_text(note["contents"])
    r = k("store", "add-text", *opt, note["name"], str(tmp_path / "note"))
    assert out(r) == note["store_path"], explain(r)
    export = open(os.path.join(vectors, "export/a-b.export"), "rb").read()
    r = k("store", "import", *opt, stdin=export)
    exported = [e["path"] for e in manifest["export"]["entries"]]
    assert r.returncode == 0 and r.stdout.decode().split() == exported, explain(r)
    return opt, {"srcdir": srcdir, "note": note, "exported": exported, "export": export}


def test_store_queries_path_info_dump_and_export(k, filled):
    opt, p = filled
    srcdir, note = p["srcdir"]["store_path"], p["note"]["store_path"]
    assert k("store", "query", *opt, "--requisites", note).stdout.decode().split() == [srcdir, note]
    assert k("store", "query", *opt, "--referrers", srcdir).stdout.decode().split() == [note]
    assert out(k("store", "query", *opt, "--deriver", srcdir)) == "unknown-deriver"
    infos = json.loads(k("store", "path-info", *opt, "--json", "-r", note).stdout)
    nar_hash = out(k("hash", "convert", "--type", "sha256", "--to", "base32", p["srcdir"]["nar_sha256_base16"]))
    assert [i["path"] for i in infos] == [srcdir, note]
    assert infos[0]["narHash"] == "sha256:" + nar_hash and infos[0]["narSize"] == p["srcdir"]["nar_size"]
    assert infos[1]["references"] == [srcdir]
    r = k("store", "dump", *opt, srcdir)
    assert r.returncode == 0 and len(r.stdout) == p["srcdir"]["nar_size"]
    r = k("store", "export", *opt, *reversed(p["exported"]))
    assert r.returncode == 0 and r.stdout == p["export"], "differs from Nix's export of the same paths"
    refused(k("store", "import", *opt, stdin=p["export"][:500]), "invalid NAR")


def test_signatures_as_nixs_and_verify_tells_good_from_bad(k, filled, manifest, vectors, tmp_path):
    opt, p = filled
    paths, cache = p["exported"], manifest["binary_cache"]
    r = k("store", "sign", *opt, "--key-file", os.path.join(vectors, "keys/secret.key"), *paths)
    assert r.returncode == 0, explain(r)
    infos = {i["path"]: i for i in json.loads(k("store", "path-info", *opt, "--json", "--sigs", *paths).stdout)}
    for want in cache["local_path_info_json_after_nix_store_sign"]:
        if want["path"] in infos:
            assert infos[want["path"]].get("signatures") == want["signatures"], want["path"]
    r = k("store", "verify-sigs", *opt, "--trusted-public-keys", cache["public_key"], *paths)
    assert r.returncode == 0 and r.stdout.count(b"signed by a trusted key") == 2, explain(r)
    k("key", "generate", "other-1", str(tmp_path / "o.sk"), str(tmp_path / "o.pk"))
    r = k("store", "verify-sigs", *opt, "--trusted-public-keys", (tmp_path / "o.pk").read_text(), *paths)
    assert r.returncode == 1 and b"NO valid signature" in r.stdout, explain(r)
    r = k("store", "verify", *opt, "--check-contents", "--all")
    assert r.returncode == 0 and b"0 problems" in r.stderr, explain(r)
    leaf = tmp_path / "root/nix/store" / os.path.basename(paths[0])
    os.chmod(leaf, 0o644)
    with open(leaf, "ab") as f:
        f.write(b"tampered")
    r = k("store", "verify", *opt, "--check-contents", "--json", "--all")
    problems = json.loads(r.stdout)
    assert r.returncode == 1 and [x["path"] for x in problems] == [paths[0]], explain(r)
    assert "contents changed" in problems[0]["problem"]
    os.unlink(leaf)
    r = k("store", "verify", *opt, paths[0])
    assert r.returncode == 1 and b"missing from" in r.stderr, explain(r)


def test_store_commands_refuse_bad_input(k, filled, tmp_path):
    opt, p = filled
    srcdir = p["srcdir"]["store_path"]
    refused(k("store", "verify", *opt), "either --all or the PATHs")
    refused(k("store", "sign", *opt, p["exported"][1]), "missing --key-file")
    refused(k("store", "path-info", *opt, "/nix/store/" + "0" * 32 + "-gone"), "is not valid in this store")
    refused(k("store", "query", *opt, "/nix/store/x"), "missing --references")
    refused(k("store", "query", *opt, "--references", "--referrers", srcdir), "choose one of")
    refused(k("store", "add-fixed", *opt, str(tmp_path / "note")), "missing --type")
    refused(k("store", "add-fixed", *opt, "--type", "sha256", str(tmp_path / "srcdir")), "not a regular file")
    refused(k("drv", "add", "--store", "daemon", str(tmp_path / "note")), "works on a local store only")
    refused(k("store", "add", "--store", "unix:///nonexistent/socket", str(tmp_path / "note")),
            "connecting to '/nonexistent/socket': No such file or directory")
    refused(k("store", "add", "--store", "ftp://x", str(tmp_path / "note")), "unsupported store 'ftp://x'")
    refused(k("store", "add", *opt, str(tmp_path / "missing")), "missing")
    os.makedirs(tmp_path / "root11/nix/var/nix/db")
    (tmp_path / "root11/nix/var/nix/db/schema").write_text("11")
    refused(k("store", "add", "--store", f"local:{tmp_path}/root11", str(tmp_path / "note")), "schema version 11")


def test_gc_keeps_closures_of_roots_and_delete_refuses_live_paths(k, tmp_path):
    opt = ["--store", f"local:{tmp_path}/root"]
    gcroots = tmp_path / "root/nix/var/nix/gcroots"

    def add_text(name, contents):
        (tmp_path / name).write_text(contents)
        r = k("store", "add-text", *opt, name, str(tmp_path / name))
        assert r.returncode == 0, explain(r)
        return out(r)

    leaf = add_text("leaf", "leaf")
    top = add_text("top", "top uses " + leaf)
    junk = add_text("junk", "junk")
    os.symlink(top, gcroots / "top")
    assert k("store", "gc", *opt, "--print-live").stdout.decode().split() == sorted([leaf, top])
    assert json.loads(k("store", "gc", *opt, "--print-dead", "--json").stdout) == [junk]
    assert k("store", "gc", *opt, "--print-roots").stdout.decode() == f"{gcroots}/top -> {top}\n"
    refused(k("store", "delete", *opt, leaf), "it is reachable from a root")
    refused(k("store", "delete", *opt, top), f"it is a root ({gcroots}/top)")
    r = k("store", "gc", *opt)
    assert r.returncode == 0 and r.stdout.startswith(b"1 store paths deleted"), explain(r)
    assert f"deleting '{junk}'".encode() in r.stderr
    assert k("store", "verify", *opt, "--all").returncode == 0
    os.unlink(gcroots / "top")
    refused(k("store", "delete", *opt, leaf), f"'{top}' refers to it")
    r = k("store", "delete", *opt, "--json", top, leaf)
    j = json.loads(r.stdout)
    assert j["deleted"] == sorted([leaf, top]) and j["bytesFreed"] == len("leaf") + len("top uses " + leaf)
    assert not [e for e in os.listdir(tmp_path / "root/nix/store") if not e.endswith(".lock")]
    refused(k("store", "delete", *opt, leaf), "it is not in the store")


@pytest.mark.parametrize("args, fragment", [
    (["--print-dead", "--print-live"], "exclude each other"),
    (["--max-freed", "lots"], "expected a byte count"),
    (["--option", "keep-outputs", "maybe"], "expected 'true' or 'false'"),
    (["--option", "keep-everything", "true"], "unknown setting 'keep-everything'"),
    (["--option", "keep-outputs"], "needs two values"),
])
def test_gc_refuses_bad_options_and_settings(k, tmp_path, args, fragment):
    refused(k("store", "gc", "--store", f"local:{tmp_path}/root", *args), fragment)


def test_a_bad_config_line_is_named_by_file_and_line(k, tmp_path):
    conf = tmp_path / "kiln.conf"
    conf.write_text("# comment\nkeep-outputs = true\nkeep-derivations: false\n")
    r = k("store", "gc", "--store", f"local:{tmp_path}/root", "--print-live", env={**os.environ, "KILN_CONF": str(conf)})
    refused(r, f"{conf}:3: expected 'name = value'")


def test_missing_plans_builds_of_vector_derivations(k, manifest, vectors, tmp_path):
    opt = ["--store", f"local:{tmp_path}/root"]
    cases = {c["case"]: c for c in manifest["derivations"]["cases"]}
    for name in ["chain1", "chain2"]:
        c = cases[name]
        r = k("store", "add-text", *opt, os.path.basename(c["file"])[33:], os.path.join(vectors, c["file"]))
        assert out(r) == c["drv_path"], explain(r)
    d1, d2 = cases["chain1"]["drv_path"], cases["chain2"]["drv_path"]
    j = json.loads(k("store", "missing", *opt, "--json", d2).stdout)
    assert j == {**j, "willBuild": sorted([d1, d2]), "willSubstitute": [], "unknown": []}
    r = k("store", "missing", *opt, d2 + "^out")
    assert r.stdout.decode() == f"these 2 derivations will be built:\n  {min(d1, d2)}\n  {max(d1, d2)}\n"
    absent = "/nix/store/" + "0" * 32 + "-src"
    r = k("store", "missing", *opt, "--json", cases["trivial"]["drv_path"] + "^*", absent)
    assert json.loads(r.stdout)["unknown"] == sorted([cases["trivial"]["drv_path"], absent])
    refused(k("store", "missing", *opt, d2 + "^doc"), "has no output 'doc'")
    refused(k("store", "missing", *opt, d2 + "^out,"), "an empty output name")
    refused(k("store", "missing", *opt, cases["chain1"]["outputs"]["out"] + "^out"), "only a .drv path")
