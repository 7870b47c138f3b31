"""The engine as Nix 2.8's, side by side: the same .drv files built by
`kiln build` and by `nix-store --realise`, each case asserting what both do.
(Issue 14's audit: each case failed before its change.)"""
import json
import os
import signal
import subprocess
import time

import pytest

from host_processes import running
from kiln_testing import explain, run


def test_outputs_referring_to_each_other_are_refused_and_nothing_registered(both):
    d = both.drv("cyclic", 'echo $dev > $out; echo $out > $dev', outputs=("out", "dev"))
    outs = both.outputs(d)
    nix = both.nix_realise(d)
    kiln = both.kiln_build(d)
    wanted = f"cycle detected in build of '{d}' in the references of output 'dev' from output 'out'"
    assert nix.returncode != 0 and wanted in nix.stderr, explain(nix)
    assert kiln.returncode == nix.returncode and wanted in kiln.stderr, explain(kiln)
    for p in outs.values():
        assert not both.nix_valid(p) and not both.kiln_valid(p)


def test_a_group_or_world_writable_output_is_refused(both):
    for mode in ("775", "757"):
        d = both.drv(f"writable-{mode}", f"mkdir $out; echo x > $out/f; chmod {mode} $out")
        out = both.outputs(d)["out"]
        nix = both.nix_realise(d)
        kiln = both.kiln_build(d)
        wanted = "suspicious ownership or permission on '"
        tail = "' for output 'out'; rejecting this build output"
        assert nix.returncode != 0 and wanted in nix.stderr and tail in nix.stderr, explain(nix)
        assert kiln.returncode == nix.returncode and f"{wanted}{out}{tail}" in kiln.stderr, explain(kiln)
        assert not both.nix_valid(out) and not both.kiln_valid(out)
    # A writable file inside the output is canonicalised, as by Nix.
    d = both.drv("writable-inside", "mkdir $out; echo x > $out/f; chmod 777 $out/f")
    assert both.nix_realise(d).returncode == 0
    assert both.kiln_build(d).returncode == 0


@pytest.mark.parametrize("features, system", [("kvm foo", "x86_64-linux"), ("", "aarch64-linux")])
def test_a_derivation_this_machine_cannot_build_is_refused_naming_what_it_needs(both, features, system):
    d = both.drv("needs", "echo x > $out", env={"requiredSystemFeatures": features} if features else {},
                 system=system)
    nix = both.nix_realise(d)
    kiln = both.kiln_build("--json", d)
    wanted = nix.stderr.strip().splitlines()[-1]
    assert nix.returncode == 1 and wanted.startswith(f"error: a '{system}' with features {{"), explain(nix)
    assert kiln.returncode == nix.returncode, explain(kiln)
    result = json.loads(kiln.stdout)[0]
    assert result["status"] == "InputRejected" and result["errorMsg"] == wanted[len("error: "):], explain(kiln)


def test_a_feature_the_machine_has_builds(both):
    d = both.drv("parallel", "echo x > $out", env={"requiredSystemFeatures": "big-parallel"})
    assert both.nix_realise(d).returncode == 0
    assert both.kiln_build(d).returncode == 0
    d = both.drv("custom", "echo x > $out", env={"requiredSystemFeatures": "gpu"})
    assert both.nix_realise(d, options=["--option", "system-features", "gpu"]).returncode == 0
    assert both.kiln_build("--option", "system-features", "gpu", d).returncode == 0


def read(path):
    with open(path) as f:
        return f.read()


def test_export_references_graph_is_written_as_nix_writes_it(both):
    dep = both.drv("dep", "echo dep > $out")
    dep_out = both.outputs(dep)["out"]
    d = both.drv("graph-user", "cp graph $out", inputs=[dep], env={"exportReferencesGraph": f"graph {dep_out}"})
    out = both.outputs(d)["out"]
    nix, kiln = both.nix_realise(d), both.kiln_build(d)
    assert nix.returncode == 0 and kiln.returncode == 0, explain(nix) + explain(kiln)
    assert read(both.real(out)) == read(both.nix_real(out)) == f"{dep_out}\n\n0\n"  # no deriver line


def test_export_references_graph_of_a_drv_brings_its_outputs_closures(both):
    leaf = both.drv("leaf", "echo leaf > $out")
    dep = both.drv("dep", "cat $leaf > $out", inputs=[leaf], env={"leaf": both.outputs(leaf)["out"]})
    assert both.nix_realise(dep).returncode == 0 and both.kiln_build(dep).returncode == 0
    d = both.drv("drv-graph", "cp graph $out", input_srcs=[dep], env={"exportReferencesGraph": f"graph {dep}"})
    out = both.outputs(d)["out"]
    nix, kiln = both.nix_realise(d), both.kiln_build(d)
    assert nix.returncode == 0 and kiln.returncode == 0, explain(nix) + explain(kiln)
    assert read(both.real(out)) == read(both.nix_real(out))
    assert both.outputs(leaf)["out"] in read(both.real(out))


def test_structured_attrs_get_the_exported_closure_in_attrs_json(both):
    dep = both.drv("dep", "echo dep > $out")
    dep_out = both.outputs(dep)["out"]
    # "; true" keeps bash as the builder: under load nix-store 2.8 was seen
    # killing a builder that had exec'd its last command (cp) while it ran.
    d = both.drv("structured-graph", ". .attrs.sh; cp .attrs.json ${outputs[out]}; true", builder="/bin/bash",
                 inputs=[dep], structured={"exportReferencesGraph": {"closure": [dep_out]}, "name": "structured-graph",
                                           "system": "x86_64-linux", "builder": "/bin/bash", "PATH": "/bin"})
    out = both.outputs(d)["out"]
    nix, kiln = both.nix_realise(d), both.kiln_build(d)
    assert nix.returncode == 0 and kiln.returncode == 0, explain(nix) + explain(kiln)
    ours, theirs = read(both.real(out)), read(both.nix_real(out))
    assert ours == theirs
    assert json.loads(ours)["closure"][0]["path"] == dep_out


def test_export_references_graph_outside_the_input_closure_is_refused(both):
    other = both.drv("other", "echo other > $out")
    assert both.nix_realise(other).returncode == 0 and both.kiln_build(other).returncode == 0
    other_out = both.outputs(other)["out"]
    d = both.drv("impure", "cp graph $out", env={"exportReferencesGraph": f"graph {other_out}"})
    nix, kiln = both.nix_realise(d), both.kiln_build(d)
    wanted = f"cannot export references of path '{other_out}' because it is not in the input closure of the derivation"
    assert nix.returncode != 0 and wanted in nix.stderr, explain(nix)
    assert kiln.returncode == nix.returncode and wanted in kiln.stderr, explain(kiln)


def test_structured_attrs_name_their_files_in_the_environment(both):
    d = both.drv("attrs-env", '. .attrs.sh; /usr/bin/env > ${outputs[out]}; '
                 '[ -f "$NIX_ATTRS_JSON_FILE" ] && [ -f "$NIX_ATTRS_SH_FILE" ] && echo READABLE=1 >> ${outputs[out]}; true',
                 builder="/bin/bash", structured={"name": "attrs-env", "system": "x86_64-linux", "builder": "/bin/bash"})
    out = both.outputs(d)["out"]
    nix, kiln = both.nix_realise(d), both.kiln_build(d)
    assert nix.returncode == 0 and kiln.returncode == 0, explain(nix) + explain(kiln)
    theirs = dict(line.split("=", 1) for line in read(both.nix_real(out)).splitlines())
    ours = dict(line.split("=", 1) for line in read(both.real(out)).splitlines())
    assert theirs["NIX_ATTRS_JSON_FILE"].endswith("/.attrs.json") and theirs["NIX_ATTRS_SH_FILE"].endswith("/.attrs.sh")
    # Nix 2.8 names its host-side build directory, which its sandboxed builder
    # cannot open; Kiln names the one the builder sees.
    assert "READABLE" not in theirs
    assert ours["NIX_ATTRS_JSON_FILE"] == "/build/.attrs.json" and ours["NIX_ATTRS_SH_FILE"] == "/build/.attrs.sh"
    assert ours["READABLE"] == "1"


def test_the_builder_is_run_as_its_base_name(both):
    d = both.drv("argv0", "echo $0 > $out")
    out = both.outputs(d)["out"]
    assert both.nix_realise(d).returncode == 0 and both.kiln_build(d).returncode == 0
    assert read(both.real(out)) == read(both.nix_real(out)) == "sh\n"


def test_a_builder_that_cannot_be_executed_is_a_failed_build(both):
    d = both.drv("noexec", "", builder="/nonexistent", args=[])
    nix, kiln = both.nix_realise(d), both.kiln_build(d)
    wanted = f"builder for '{d}' failed with exit code 1"
    assert nix.returncode == 100 and wanted in nix.stderr, explain(nix)
    assert kiln.returncode == 100 and wanted in kiln.stderr, explain(kiln)
    assert "executing '/nonexistent': No such file or directory" in kiln.stderr  # the log's tail


def valid_outputs_named(both, name, valid, real):
    """Valid store paths called NAME (not .drv files) in one of the two stores."""
    store_dir = os.path.dirname(real("/nix/store/x"))
    return sorted(f"/nix/store/{e}" for e in os.listdir(store_dir)
                  if e.endswith(f"-{name}") and valid(f"/nix/store/{e}"))


def test_a_fixed_output_hash_mismatch_keeps_the_output_at_its_real_path(both):
    d = both.drv("fod", "echo real content > $out", fixed={"hashAlgo": "sha256", "hash": "0" * 64})
    promised = both.outputs(d)["out"]
    nix, kiln = both.nix_realise(d), both.kiln_build("--json", d)
    assert nix.returncode == kiln.returncode == 102, explain(nix) + explain(kiln)
    got = [line.split()[-1] for line in nix.stderr.splitlines() if line.strip().startswith("got:")][0]
    assert f"got:       {got}" in kiln.stderr, explain(kiln)
    theirs = valid_outputs_named(both, "fod", both.nix_valid, both.nix_real)
    ours = valid_outputs_named(both, "fod", both.kiln_valid, both.real)
    assert len(theirs) == 1 and theirs[0] != promised and ours == theirs
    assert read(both.real(ours[0])) == "real content\n"


def test_without_keep_going_dependents_fail_and_only_real_failures_are_shown(both):
    bad = both.drv("bad", "echo failing; exit 1")
    good = both.drv("good", "sleep 1; echo x > $out")
    mid = both.drv("mid", "echo x > $out", inputs=[bad])
    top = both.drv("top", "echo x > $out", inputs=[mid, good])
    other = both.drv("other", "echo x > $out")
    nix, kiln = both.nix_realise(top, other), both.kiln_build(top, other)
    errors = lambda r: [line for line in r.stderr.splitlines() if line.startswith("error: ")]  # noqa: E731
    assert nix.returncode == kiln.returncode == 100, explain(nix) + explain(kiln)
    assert [e.rstrip(";") for e in errors(kiln)] == errors(nix), explain(nix) + explain(kiln)
    assert nix.stdout == kiln.stdout == ""  # nothing is listed when something failed
    res = {r["path"]: r for r in json.loads(both.kiln_build("--json", top, other).stdout)}
    assert res[mid]["status"] == res[top]["status"] == "DependencyFailed"


def test_check_rebuilds_only_what_was_asked_for_and_keeps_the_other_output_as_dot_check(both):
    leaf = both.drv("leaf", "echo leaf > $out")
    top = both.drv("top", "cat /proc/sys/kernel/random/uuid > $out", inputs=[leaf])
    assert both.nix_realise(top).returncode == 0 and both.kiln_build(top).returncode == 0
    nix, kiln = both.nix_realise(top, options=["--check", "-K"]), both.kiln_build("--check", "-K", top)
    assert nix.returncode == kiln.returncode == 104, explain(nix) + explain(kiln)
    for r in (nix, kiln):
        assert f"checking outputs of '{top}'..." in r.stderr and leaf not in r.stderr, explain(r)
    out = both.outputs(top)["out"]
    assert f"may not be deterministic: output '{out}' differs from '{out}.check'" in kiln.stderr, explain(kiln)
    assert os.path.exists(both.real(out) + ".check") and os.path.exists(both.nix_real(out) + ".check")


def test_repair_rebuilds_only_damaged_outputs(both):
    # Nix 2.8 checks each output's contents and repairs what is damaged; with
    # a store kept elsewhere (--store DIR, as here) it hashes the host's
    # /nix/store path instead, finds every path "corrupted or missing" and
    # rebuilds them all. So Nix is held to checking, Kiln to the behaviour.
    leaf = both.drv("leaf", "echo leaf > $out")
    top = both.drv("top", "cat $leaf > $out; echo top >> $out", inputs=[leaf], env={"leaf": both.outputs(leaf)["out"]})
    assert both.nix_realise(top).returncode == 0 and both.kiln_build(top).returncode == 0
    out = both.outputs(top)["out"]
    nix, kiln = both.nix_realise(top, options=["--repair"]), both.kiln_build("--repair", top)
    assert nix.returncode == kiln.returncode == 0, explain(nix) + explain(kiln)
    assert f"checking path '{out}'" in nix.stderr, explain(nix)
    assert "repairing" not in kiln.stderr and "building" not in kiln.stderr, explain(kiln)  # intact
    for real in (both.real(out), both.nix_real(out)):
        with open(real, "w") as f:
            f.write("damaged\n")
    nix, kiln = both.nix_realise(top, options=["--repair"]), both.kiln_build("--repair", top)
    assert nix.returncode == kiln.returncode == 0, explain(nix) + explain(kiln)
    for r in (nix, kiln):
        assert f"repairing outputs of '{top}'" in r.stderr, explain(r)
    assert leaf not in kiln.stderr, explain(kiln)  # only the damaged one
    assert read(both.real(out)) == read(both.nix_real(out)) == "leaf\ntop\n"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupt_kills_the_builds_and_leaves_nothing_behind(both, sig):
    d = both.drv("slow", "echo started; exec sleep 6071")
    tools = {"kiln": [both.kiln, "build", "--store", both.store, d],
             "nix": ["nix-store", "--store", both.nix_root, "--realise", d, "--option", "substituters", "",
                     "--option", "sandbox", "true", "--option", "sandbox-paths", "/bin /lib /lib64 /usr"]}
    assert both.nix_realise(d, options=["--dry-run"]).returncode == 0  # the .drv is in Nix's store
    for tool, argv in tools.items():
        p = subprocess.Popen(argv, env=both.env, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while not running([b"sleep", b"6071"]) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert running([b"sleep", b"6071"]), f"{tool}: the builder did not start"
        p.send_signal(sig)
        _, err = p.communicate(timeout=60)
        assert p.returncode == 1 and "error: interrupted by the user" in err, f"{tool}: {p.returncode} {err}"
        assert not running([b"sleep", b"6071"]), f"{tool} left its builder running"
    assert os.listdir(f"{both.dir}/tmp") == [], "Kiln's build directories are removed"


def test_a_failing_post_build_hook_fails_the_build_and_its_output_goes_to_the_log(both):
    hook = f"{both.dir}/hook.sh"
    with open(hook, "w") as f:
        f.write("#!/bin/sh\necho hook saw $DRV_PATH\necho hook complains >&2\nexit 3\n")
    os.chmod(hook, 0o755)
    a = both.drv("hooked", "echo a > $out")
    b = both.drv("after", "echo b > $out", inputs=[a])
    opts = ["--option", "post-build-hook", hook]
    nix, kiln = both.nix_realise(b, options=opts), both.kiln_build(b, *opts)
    assert nix.returncode == kiln.returncode == 1, explain(nix) + explain(kiln)
    for r in (nix, kiln):
        assert r.stdout == "", explain(r)  # the hook's output is not the command's
        assert f"running post-build-hook '{hook}'..." in r.stderr, explain(r)
        assert "post-build-hook: hook complains" in r.stderr, explain(r)
        assert f"error: program '{hook}' failed with exit code 3" in r.stderr, explain(r)
    assert f"post-build-hook: hook saw {a}" in kiln.stderr
    # The hooked build's output stays registered (the hook runs after); what
    # depends on it was never built (the hook runs before dependents start).
    assert both.nix_valid(both.outputs(a)["out"]) and both.kiln_valid(both.outputs(a)["out"])
    assert not both.nix_valid(both.outputs(b)["out"]) and not both.kiln_valid(both.outputs(b)["out"])


def test_repeat_with_a_non_deterministic_builder_fails_as_nix_does(both):
    d = both.drv("rnd", "cat /proc/sys/kernel/random/uuid > $out")
    out = both.outputs(d)["out"]
    nix, kiln = both.nix_realise(d, options=["--option", "repeat", "1"]), both.kiln_build("--repeat", "1", d)
    wanted = f"error: output '{out}' of '{d}' differs from previous round"
    assert nix.returncode == kiln.returncode == 1, explain(nix) + explain(kiln)
    assert wanted in nix.stderr and wanted in kiln.stderr, explain(nix) + explain(kiln)
    assert not both.nix_valid(out) and not both.kiln_valid(out)


def test_a_build_leaves_no_lock_files_in_the_store(both):
    leaf = both.drv("leaf", "echo leaf > $out")
    top = both.drv("top", "echo top > $out; echo dev > $dev", inputs=[leaf], outputs=("out", "dev"))
    assert both.nix_realise(top).returncode == 0 and both.kiln_build(top).returncode == 0
    for real in (both.real, both.nix_real):
        store_dir = os.path.dirname(real("/nix/store/x"))
        assert [e for e in os.listdir(store_dir) if e.endswith(".lock")] == [], store_dir


def test_an_import_with_one_unparsable_derivation_goes_on_with_the_rest(both):
    # Kiln reports the bad derivation and adds the others (Nix 2.8 keeps what
    # came before it and stops there); the error names the derivation and
    # what was found in it; the exit status says something was refused.
    drvs = [both.drv(n, "echo > $out") for n in ("a", "b", "c")]
    exp = subprocess.run([both.kiln, "store", "export", "--store", both.store, *drvs], env=both.env,
                         capture_output=True)
    assert exp.returncode == 0
    first = exp.stdout.find(b"Derive([")
    second = exp.stdout.find(b"Derive([", first + 1)
    stream = exp.stdout[:second] + b"Derivx([" + exp.stdout[second + 8:]
    nix = subprocess.run(["nix-store", "--store", both.nix_root, "--import"], input=stream, capture_output=True)
    fresh = f"local:{both.dir}/fresh"
    kiln = subprocess.run([both.kiln, "store", "import", "--store", fresh], input=stream, capture_output=True)
    assert nix.returncode == kiln.returncode == 1, (nix.stderr, kiln.stderr)
    bad = [d for d in drvs if d.encode() in kiln.stderr]
    assert len(bad) == 1 and b"found 'Derivx('" in kiln.stderr, kiln.stderr
    for d in drvs:
        valid = both.kiln_run("store", "path-info", "--store", fresh, d).returncode == 0
        assert valid == (d not in bad), d
        assert (d.encode() in kiln.stdout) == (d not in bad)


def substitute_from_kiln_store(both, case):
    """Builds a derivation in Kiln's store, which then serves as the
    substituter of Nix's store and of a fresh Kiln store for the same .drv;
    `case` says what is wrong with the substitute. Returns (drv, out, nix, kiln)."""
    d = both.drv("subst", "echo hello > $out")
    out = both.outputs(d)["out"]
    assert both.kiln_build(d).returncode == 0
    keys = {}
    for name in ("k1", "k2"):
        sec, pub = f"{both.dir}/{name}.sec", f"{both.dir}/{name}.pub"
        assert both.kiln_run("key", "generate", name, sec, pub).returncode == 0
        keys[name] = (sec, open(pub).read())
    if case != "unsigned":
        r = both.kiln_run("store", "sign", "--store", both.store, "--key-file", keys["k1"][0], out)
        assert r.returncode == 0, explain(r)
    if case.startswith("corrupt"):  # same size, other bytes: the NAR hash differs
        os.chmod(both.real(out), 0o644)
        with open(both.real(out), "w") as f:
            f.write("jello\n")
    trusted = keys["k2" if case == "wrong key" else "k1"][1]
    extra = ["--fallback"] if case.endswith("fallback") else []
    opts = ["--option", "trusted-public-keys", trusted, *extra]
    nix = both.nix_realise(d, options=["--option", "substituters", f"{both.dir}/kiln", *opts])
    consumer = f"local:{both.dir}/consumer"
    exp = subprocess.run([both.kiln, "store", "export", "--store", both.store, d], env=both.env, capture_output=True)
    imp = subprocess.run([both.kiln, "store", "import", "--store", consumer], input=exp.stdout, env=both.env,
                         capture_output=True)
    assert imp.returncode == 0, imp.stderr
    kiln = both.kiln_run("build", "--store", consumer, d, "--option", "substituters", both.store, *opts)
    kiln.valid = both.kiln_run("store", "path-info", "--store", consumer, out).returncode == 0
    return d, out, nix, kiln


@pytest.mark.parametrize("case", ["unsigned", "wrong key"])
def test_an_untrusted_substitute_is_passed_over_with_a_warning(both, case):
    d, out, nix, kiln = substitute_from_kiln_store(both, case)
    assert nix.returncode == kiln.returncode == 0, explain(nix) + explain(kiln)
    for r, uri in ((nix, "local"), (kiln, both.store)):
        assert (f"warning: the substitute for '{out}' from '{uri}' is not signed by any of the keys in "
                "'trusted-public-keys'") in r.stderr, explain(r)
        assert f"building '{d}'" in r.stderr, explain(r)
    assert both.nix_valid(out) and kiln.valid


@pytest.mark.parametrize("case", ["corrupt", "corrupt, fallback"])
def test_a_substitute_not_matching_its_record_fails_unless_fallback(both, case):
    d, out, nix, kiln = substitute_from_kiln_store(both, case)
    for r in (nix, kiln):
        assert f"error: hash mismatch importing path '{out}';" in r.stderr, explain(r)
    failed = (f"error: some substitutes for the outputs of derivation '{d}' failed (usually happens due to "
              "networking issues); try '--fallback' to build derivation from source")
    if case.endswith("fallback"):
        assert nix.returncode == kiln.returncode == 0, explain(nix) + explain(kiln)
        assert both.nix_valid(out) and kiln.valid
        assert open(both.nix_real(out)).read() == "hello\n"
    else:
        assert nix.returncode == kiln.returncode == 1, explain(nix) + explain(kiln)
        assert failed in nix.stderr and failed in kiln.stderr, explain(nix) + explain(kiln)
        assert not both.nix_valid(out) and not kiln.valid
        assert kiln.stdout == ""
        # Nothing of the refused copy is left in the store, only the .drv.
        assert os.listdir(f"{both.dir}/consumer/nix/store") == [os.path.basename(d)]


def deep_tree(both, depth):
    """A derivation whose output is `depth` nested directories "d" and a file "f"
    (perl: a shell's cd takes quadratic time on the way down)."""
    script = ('mkdir $ENV{out} or die; chdir $ENV{out} or die; '
              f'for (1..{depth}) {{ mkdir "d" or die; chdir "d" or die }} '
              'open F, ">f" or die; print F "leaf\\n"; close F')
    return both.drv(f"deep-{depth}", "", builder="/usr/bin/perl", args=["-e", script])


def test_a_tree_over_a_thousand_levels_deep_hashes_as_nix_hashes_it(both):
    d = deep_tree(both, 1500)  # paths of ~3,000 bytes: Nix 2.8 fails beyond PATH_MAX
    out = both.outputs(d)["out"]
    nix, kiln = both.nix_realise(d), both.kiln_build(d)
    assert nix.returncode == kiln.returncode == 0, explain(nix) + explain(kiln)
    nix_hash = run(["nix-store", "--store", both.nix_root, "--query", "--hash", out]).stdout.strip()
    kiln_info = json.loads(both.kiln_run("store", "path-info", "--store", both.store, "--json", out).stdout)
    assert kiln_info[0]["narHash"] == nix_hash


def test_a_tree_beyond_path_max_is_built_exported_imported_listed_and_added_again(both):
    depth = 5000  # paths of 10,000 bytes, far beyond the old limit of 256 levels
    d = deep_tree(both, depth)
    out = both.outputs(d)["out"]
    built = both.kiln_build(d)
    assert built.returncode == 0, explain(built)
    nar_hash = json.loads(both.kiln_run("store", "path-info", "--store", both.store, "--json", out).stdout)[0]["narHash"]

    fresh = f"local:{both.dir}/fresh"
    exp = subprocess.run([both.kiln, "store", "export", "--store", both.store, out], capture_output=True)
    assert exp.returncode == 0, exp.stderr
    imp = subprocess.run([both.kiln, "store", "import", "--store", fresh], input=exp.stdout, capture_output=True)
    assert imp.returncode == 0, imp.stderr
    verify = both.kiln_run("store", "verify", "--store", fresh, "--check-contents", out)
    assert verify.returncode == 0, explain(verify)

    nar = subprocess.run([both.kiln, "store", "dump", "--store", fresh, out], capture_output=True).stdout
    # (Python's json module recurses, so the listings are checked as text.)
    listing = subprocess.run([both.kiln, "nar", "ls", "--json", "-"], input=nar, capture_output=True)
    assert listing.returncode == 0, listing.stderr
    listing = listing.stdout.decode()
    directory = '{"type":"directory","entries":{'
    leaf = '"f":{"type":"regular","size":5,"narOffset":'
    assert listing.startswith(directory + '"d":' + directory)
    assert listing.count(directory) == depth + 1 and listing.count(leaf) == 1
    assert listing.endswith("}" * (2 * depth + 3) + "\n")
    text = subprocess.run([both.kiln, "nar", "ls", "-"], input=nar, capture_output=True).stdout.decode()
    assert text.splitlines()[-1] == "-r--r--r--            5 ." + "/d" * depth + "/f"

    tree = f"{both.dir}/restored"
    assert subprocess.run([both.kiln, "nar", "restore", tree], input=nar, capture_output=True).returncode == 0
    added = both.kiln_run("store", "add", "--store", fresh, tree)
    assert added.returncode == 0, explain(added)
    again = both.kiln_run("store", "path-info", "--store", fresh, "--json", added.stdout.strip())
    assert json.loads(again.stdout)[0]["narHash"] == nar_hash
    for args in (["optimise"], ["delete", out]):
        r = both.kiln_run("store", *args, "--store", fresh)
        assert r.returncode == 0, explain(r)
