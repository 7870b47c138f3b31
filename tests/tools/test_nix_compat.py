"""Kiln side by side with the real Nix 2.8 (Debian's nix-bin): random trees
archived and hashed by both (names with spaces and unicode, symlinks
relative, absolute and dangling, executables, empty directories, sizes
around multiples of 8): `kiln nar dump` byte for byte `nix-store --dump`,
`kiln hash path|file` as `nix-hash` for sha256/sha512/sha1/md5 in base16
and base32; the vector derivations instantiated by Nix and shown by both;
keys, stores, exports, garbage collection and builds across the two."""
import json
import os
import random
import shutil
import subprocess

import pytest

from kiln_testing import make_vector_tree

NAME_PARTS = ["a", "B", "file", "with space", "ünïcødé", "日本", "-dash", ".hidden",
              "x.y.z", "tab\tname", "UPPER", "_", "0", "é-é", "emoji-🙂"]
TREES, SEED = 25, 20261125


def run(cmd):
    return subprocess.run(cmd, capture_output=True, timeout=120)


def random_name(rng, taken):
    while True:
        n = "".join(rng.choice(NAME_PARTS) for _ in range(rng.randint(1, 3)))
        if n not in taken:
            taken.add(n)
            return n


def random_size(rng):
    base = rng.choice([0, 8, 16, 64, 4096, 65536, 1 << 20])
    return max(0, base + rng.randint(-2, 2)) if base else rng.choice([0, 1, 7, 8, 9])


def make_tree(rng, path, depth):
    os.mkdir(path)
    taken = set()
    for _ in range(rng.randint(0, 6)):
        name = random_name(rng, taken)
        p = os.path.join(path, name)
        kind = rng.random()
        if kind < 0.55:
            with open(p, "wb") as f:
                f.write(rng.randbytes(random_size(rng)))
            os.chmod(p, rng.choice([0o644, 0o755, 0o600, 0o700, 0o444]))
        elif kind < 0.7:
            os.symlink(rng.choice(["../x", "/etc/passwd", "dangling target", "ünï/cødé", name]), p)
        elif depth < 4:
            make_tree(rng, p, depth + 1)
        else:
            os.mkdir(p)  # empty directory


@pytest.mark.parametrize("i", range(TREES))
def test_a_random_tree_dumps_hashes_and_restores_as_nix_does(kiln, tmp_path, i):
    rng = random.Random(SEED + i)
    root = str(tmp_path / "tree")
    if i % 5 == 4:  # some roots are a single file
        with open(root, "wb") as f:
            f.write(rng.randbytes(random_size(rng)))
        os.chmod(root, rng.choice([0o644, 0o755]))
    else:
        make_tree(rng, root, 0)
    ours, theirs = run([kiln, "nar", "dump", root]), run(["nix-store", "--dump", root])
    assert ours.returncode == 0 and theirs.returncode == 0 and ours.stdout == theirs.stdout, (
        f"kiln {len(ours.stdout)} bytes rc={ours.returncode} {ours.stderr[:200]!r}, nix {len(theirs.stdout)} bytes")
    for algo in ["sha256", "sha512", "sha1", "md5"]:
        for fmt in ["--base16", "--base32"]:
            nix_fmt = [fmt] if fmt == "--base32" else []
            k = run([kiln, "hash", "path", "--type", algo, fmt, root])
            n = run(["nix-hash", "--type", algo, *nix_fmt, root])
            assert k.returncode == 0 and k.stdout == n.stdout, f"hash path {algo} {fmt}: {k.stdout!r} vs {n.stdout!r}"
            if os.path.isfile(root):
                k = run([kiln, "hash", "file", "--type", algo, fmt, root])
                n = run(["nix-hash", "--flat", "--type", algo, *nix_fmt, root])
                assert k.returncode == 0 and k.stdout == n.stdout, f"hash file {algo} {fmt}: {k.stdout!r} vs {n.stdout!r}"
    # And back: what Nix dumped, kiln restores to a tree Nix dumps identically.
    dest = str(tmp_path / "restored")
    r = subprocess.run([kiln, "nar", "restore", dest], input=theirs.stdout, capture_output=True)
    assert r.returncode == 0, r.stderr[:200]
    assert run(["nix-store", "--dump", dest]).stdout == theirs.stdout


def test_drv_show_json_is_nix_show_derivation(kiln, vectors, tmp_path):
    """Nix instantiates each vector case itself; both tools then print its JSON."""
    vdir, tmp = vectors, str(tmp_path)
    man = json.load(open(os.path.join(vdir, "manifest.json")))
    expr = os.path.join(tmp, "expr")
    os.mkdir(expr)
    for f in ["drvs.nix", "params.json"]:
        shutil.copy(os.path.join(vdir, "expr", f), expr)
    # The copied vector tree lost its symlink and exec bit; the manifest has the real one.
    for src in man["derivations"]["sources"]:
        if "tree" in src:
            make_vector_tree(src["tree"], os.path.join(expr, src["name"]))
    store = os.path.join(tmp, "nix-chroot-store")
    nix_opts = ["--store", store, "--option", "substituters", ""]
    for c in man["derivations"]["cases"]:
        r = subprocess.run(["nix-instantiate", *nix_opts, "drvs.nix", "-A", c["case"]],
                           cwd=expr, capture_output=True, timeout=120)
        drv_path = r.stdout.decode().strip()
        assert r.returncode == 0 and drv_path == c["drv_path"], f"nix-instantiate {c['case']}: {drv_path!r} {r.stderr[-300:]!r}"
        nix = subprocess.run(["nix", "--extra-experimental-features", "nix-command", *nix_opts,
                              "show-derivation", c["drv_path"]], capture_output=True, timeout=120)
        ours = subprocess.run([kiln, "drv", "show", "--json", os.path.join(vdir, c["file"])],
                              capture_output=True, timeout=60)
        assert nix.returncode == 0 and ours.returncode == 0 and ours.stdout == nix.stdout, (
            f"drv show --json {c['case']} differs from nix show-derivation:\n"
            f"kiln: {ours.stdout[:300]!r}\nnix:  {nix.stdout[:300]!r} {nix.stderr[-200:]!r}")


def test_nix_keys_work_in_kiln_and_kiln_keys_in_nix(kiln, vectors, tmp_path):
    """Nix's keys work in kiln, and kiln's keys sign paths that Nix verifies."""
    vdir, tmp = vectors, str(tmp_path)
    d = os.path.join(tmp, "keys")
    os.mkdir(d)
    r = run(["nix-store", "--generate-binary-cache-key", "nix-made-1", f"{d}/nix.sk", f"{d}/nix.pk"])
    ours = run([kiln, "key", "public", f"{d}/nix.sk"])
    assert r.returncode == 0 and ours.stdout.decode().strip() == open(f"{d}/nix.pk").read(), f"kiln key public of a Nix key: {ours.stdout!r} {ours.stderr!r}"
    r = run([kiln, "key", "generate", "kiln-made-1", f"{d}/kiln.sk", f"{d}/kiln.pk"])
    assert r.returncode == 0, f"kiln key generate: {r.stderr!r}"
    store = os.path.join(tmp, "nix-key-store")
    opts = ["--store", store, "--option", "substituters", ""]
    newcli = ["nix", "--extra-experimental-features", "nix-command", *opts]
    # Input-addressed paths (from the export vector): a content-addressed
    # path would verify without any signature, and prove nothing.
    with open(os.path.join(vdir, "export/a-b.export"), "rb") as f:
        imported = subprocess.run(["nix-store", *opts, "--option", "require-sigs", "false", "--import"],
                                  stdin=f, capture_output=True, timeout=120)
    path = imported.stdout.decode().split()[-1] if imported.stdout else ""
    signed = run([*newcli, "store", "sign", "-k", f"{d}/kiln.sk", path])
    pk = open(f"{d}/kiln.pk").read()
    verify = run([*newcli, "store", "verify", "--trusted-public-keys", pk, "--sigs-needed", "1", path])
    assert path.startswith("/nix/store/") and signed.returncode == 0 and verify.returncode == 0, f"Nix verifying a kiln-key signature on {path!r}: {signed.stderr[-200:]!r} {verify.stderr[-300:]!r}"
    bad = run([*newcli, "store", "verify", "--trusted-public-keys", open(f"{d}/nix.pk").read(),
               "--sigs-needed", "1", path])
    assert bad.returncode != 0, "Nix accepted a signature under the wrong key (the check cannot fail?)"


def test_a_store_kiln_writes_nix_reads_and_the_reverse(kiln, tmp_path):
    """A store Kiln writes is one Nix reads and verifies, and the reverse."""
    tmp = str(tmp_path)
    src = os.path.join(tmp, "store-src")
    make_tree(random.Random(7), src, 0)
    with open(os.path.join(src, "extra"), "w") as f:
        f.write("x")
    for who in ["kiln", "nix"]:
        root = os.path.join(tmp, f"{who}-store")
        opt = ["--store", f"local:{root}"]
        add = run([kiln, "store", "add", *opt, src]) if who == "kiln" else \
            run(["nix-store", "--store", root, "--option", "substituters", "", "--add", src])
        path = add.stdout.decode().strip()
        assert add.returncode == 0 and path.startswith("/nix/store/"), f"{who} add: {add.stderr[-300:]!r}"
        note = os.path.join(tmp, f"{who}-note")
        with open(note, "w") as f:
            f.write(f"refers to {path}\n")
        if who == "kiln":
            text = run([kiln, "store", "add-text", *opt, "note", note]).stdout.decode().strip()
            v = run(["nix-store", "--store", root, "--verify", "--check-contents"])
            assert v.returncode == 0 and b"error" not in v.stderr, f"nix verify of a kiln store: {v.stderr[-300:]!r}"
            q = run(["nix-store", "--store", root, "-qR", text])
            assert q.stdout.decode().split() == [path, text], f"nix -qR on a kiln store: {q.stdout!r}"
            again = run(["nix-store", "--store", root, "--option", "substituters", "", "--add", src])
            assert again.stdout.decode().strip() == path, "nix --add of the same tree gives another path"
            # Nix imports what kiln exports, and the reverse, byte for byte.
            exported = run([kiln, "store", "export", *opt, path, text])
            other = os.path.join(tmp, "nix-imports")
            imp = subprocess.run(["nix-store", "--store", other, "--option", "require-sigs", "false", "--import"],
                                 input=exported.stdout, capture_output=True, timeout=120)
            assert imp.returncode == 0 and imp.stdout.decode().split() == [path, text], f"nix import of a kiln export: {imp.stdout!r} {imp.stderr[-300:]!r}"
            back = run(["nix-store", "--store", other, "--export", path, text])
            assert back.stdout == exported.stdout, "nix re-export differs from kiln's export"
        else:
            info = run([kiln, "store", "path-info", "--json", *opt, path])
            nix_info = run(["nix", "--extra-experimental-features", "nix-command", "--store", root,
                            "path-info", "--json", path])
            ours, theirs = json.loads(info.stdout or b"[{}]")[0], json.loads(nix_info.stdout or b"[{}]")[0]
            assert (ours.get("path") == path and ours.get("narSize") == theirs.get("narSize")
                  and ours.get("ca") == theirs.get("ca")
                  and run([kiln, "hash", "convert", "--to", "sri", ours.get("narHash", "")]).stdout.decode().strip()
                  == theirs.get("narHash")), f"kiln path-info of a Nix store: {ours} vs {theirs}"


def test_kilns_collector_and_nixs_agree(kiln, tmp_path):
    """Kiln's collector and Nix's agree on roots, live and dead paths of one store."""
    tmp = str(tmp_path)
    root = os.path.join(tmp, "gc-store")
    opt = ["--store", f"local:{root}"]

    def add(name, text):
        f = os.path.join(tmp, "gc-" + name)
        with open(f, "w") as out:
            out.write(text)
        return run([kiln, "store", "add-text", *opt, name, f]).stdout.decode().strip()

    leaf = add("leaf", "leaf")
    mid = add("mid", "mid " + leaf)
    top = add("top", "top " + mid)
    lone = add("lone", "lone")
    by_file = add("by-file", "rooted by a file")
    add("junk1", "junk1")
    add("junk2", "junk2 " + lone)
    gcroots = os.path.join(root, "nix/var/nix/gcroots")
    os.makedirs(os.path.join(gcroots, "auto"))
    os.symlink(mid, os.path.join(gcroots, "mid"))
    result = os.path.join(tmp, "gc-result")
    os.symlink(lone, result)
    os.symlink(result, os.path.join(gcroots, "auto", "r"))
    open(os.path.join(gcroots, os.path.basename(by_file)), "w").close()
    for mode in ["--print-dead", "--print-live", "--print-roots"]:
        k = run([kiln, "store", "gc", *opt, mode])
        n = run(["nix-store", "--store", root, "--gc", mode])
        assert k.returncode == 0 and sorted(k.stdout.decode().splitlines()) == sorted(n.stdout.decode().splitlines()), f"gc {mode}: kiln {k.stdout!r} vs nix {n.stdout!r}"
    # Both collect the same paths; what Nix then finds is a store it considers whole.
    k = run([kiln, "store", "gc", *opt])
    n = run(["nix-store", "--store", root, "--verify", "--check-contents"])
    left = run(["nix-store", "--store", root, "--gc", "--print-dead"])
    assert k.returncode == 0 and n.returncode == 0 and not left.stdout.strip(), f"after kiln gc: verify rc={n.returncode} {n.stderr[:300]!r}, nix still finds dead {left.stdout!r}"
    assert leaf in run([kiln, "store", "gc", *opt, "--print-live"]).stdout.decode(), "the rooted closure stays"


def test_every_vector_derivation_builds_to_nixs_nar_hash(kiln, vectors, tmp_path):
    """Every vector derivation Nix built (without input sources) is built by
    Kiln and by `nix-store --realise`; the outputs' NAR hashes must agree."""
    vdir, tmp = vectors, str(tmp_path)
    man = json.load(open(os.path.join(vdir, "manifest.json")))
    cases = [c for c in man["derivations"]["cases"] if c.get("built") and not c["input_srcs"]]
    kstore, nroot = os.path.join(tmp, "kbuild"), os.path.join(tmp, "nbuild")
    added, pending = set(), list(cases)
    while pending:  # inputs before the derivations that use them
        ready = [c for c in pending if all(d in added for d in c["input_drvs"])]
        assert ready, "vector derivations form a graph"
        for c in ready:
            r = run([kiln, "drv", "add", "--store", f"local:{kstore}", os.path.join(vdir, c["file"])])
            assert r.returncode == 0 and r.stdout.decode().strip() == c["drv_path"], f"drv add {c['case']}: {r.stderr[:200]!r}"
            added.add(c["drv_path"])
            pending.remove(c)
    drvs = [c["drv_path"] for c in cases]
    # Nix gets the same .drv files through an export of Kiln's store.
    exp = run([kiln, "store", "export", "--store", f"local:{kstore}", *drvs])
    imp = subprocess.run(["nix-store", "--store", nroot, "--import"], input=exp.stdout, capture_output=True)
    assert exp.returncode == 0 and imp.returncode == 0, f"export to nix: {exp.stderr[:200]!r} {imp.stderr[:200]!r}"
    # Both sandboxed, with the host's shell and tools bound in.
    kb = run([kiln, "build", "--store", f"local:{kstore}", "-j", "2", "--json",
              "--option", "sandbox-paths", "/bin /lib /lib64 /usr", *drvs])
    assert kb.returncode == 0, f"kiln build of the vectors: {kb.stderr[-600:]!r}"
    results = {r["path"]: r for r in json.loads(kb.stdout or b"[]")}
    for c in cases:
        nb = run(["nix-store", "--store", nroot, "--realise", c["drv_path"], "--option", "substituters", "",
                  "--option", "sandbox", "true", "--option", "sandbox-paths", "/bin /lib /lib64 /usr"])
        assert nb.returncode == 0, f"nix-store --realise {c['case']}: {nb.stderr[-300:]!r}"
        for name, out in c["outputs"].items():
            built = results.get(c["drv_path"], {}).get("builtOutputs", {}).get(name)
            assert built == out, f"{c['case']}^{name}: kiln built {built}, Nix's path is {out}"
            n = run(["nix-store", "--store", nroot, "-q", "--hash", out]).stdout.decode().strip()
            k = run([kiln, "store", "path-info", "--store", f"local:{kstore}", "--json", out])
            khash = json.loads(k.stdout)[0]["narHash"] if k.returncode == 0 else None
            assert n and khash == n, f"{c['case']}^{name}: NAR hash kiln {khash} vs nix {n}"
