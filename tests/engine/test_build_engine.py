"""`kiln build` end to end with real builders (/bin/sh, sandboxed, the host's
tools bound in): the build statuses reached by real builds, the scheduling
invariants (slots, each derivation built once across two processes,
keep-going vs stop), limits, check/repeat/repair/hash modes, registration
(references, constraints), logs, substitution and exit codes."""
import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import time

import pytest

from host_processes import running
from kiln_testing import FileServer, explain


@pytest.fixture
def chain(both):
    """leaf and top (which reads leaf), built; returns (leaf, leaf_out, top, top_out, results)."""
    leaf = both.drv("leaf", "echo building leaf; echo leaf > $out")
    leaf_out = both.outputs(leaf)["out"]
    top = both.drv("top", 'read x < $leaf; echo "$x" > $out; echo $leaf >> $out', inputs=[leaf],
                   env={"leaf": leaf_out})
    r = both.kiln_build("--json", top)
    assert r.returncode == 0, explain(r)
    res = both.results(r)
    return leaf, leaf_out, top, res[top]["builtOutputs"]["out"], res


def test_built_then_already_valid_with_references_and_times(both, chain):
    leaf, leaf_out, top, top_out, res = chain
    assert res[top]["status"] == "Built" and res[leaf]["status"] == "Built"
    assert open(both.real(top_out)).read() == f"leaf\n{leaf_out}\n"
    refs = both.kiln_run("store", "query", "--store", both.store, "--references", top_out).stdout.split()
    assert refs == [leaf_out], "the reference scan found the input"
    assert res[top]["timesBuilt"] == 1 and 0 < res[top]["startTime"] <= res[top]["stopTime"]
    r = both.kiln_build(top)
    assert r.returncode == 0 and r.stdout.strip() == top_out
    assert both.results(both.kiln_build("--json", top))[top]["status"] == "AlreadyValid"


def test_stdin_settles_valid_targets_and_keeps_the_order(both, chain):
    leaf, leaf_out, top, top_out, _ = chain
    fresh = both.drv("fresh", "echo fresh > $out")
    argv = [both.kiln, "build", "--store", both.store, "--stdin"]
    r = subprocess.run([*argv, "--json"], input=f"{top}^out\n{fresh}  {leaf}\n", capture_output=True, text=True,
                       env=both.env)
    res = both.results(r)
    assert {p: x["status"] for p, x in res.items()} == {top: "AlreadyValid", leaf: "AlreadyValid", fresh: "Built"}
    assert res[top]["builtOutputs"] == {"out": top_out}
    r = subprocess.run([*argv, top], input=f"{leaf}\n", capture_output=True, text=True, env=both.env)
    assert r.returncode == 0 and r.stdout.split() == [top_out, leaf_out]
    r = subprocess.run(argv, input="", capture_output=True, text=True, env=both.env)
    assert r.returncode == 1 and "missing a derivation" in r.stderr


def log_file(both, d, ext):
    base = os.path.basename(d)
    return f"{both.dir}/kiln/nix/var/log/nix/drvs/{base[:2]}/{base[2:]}.{ext}"


def test_logs_zstd_by_default_bzip2_and_plain(both, chain):
    leaf, leaf_out = chain[0], chain[1]
    for p in (leaf, leaf_out):
        r = both.kiln_run("log", "--store", both.store, p)
        assert r.returncode == 0 and r.stdout == "building leaf\n", explain(r)
    assert os.path.exists(log_file(both, leaf, "zst"))
    r = both.kiln_run("log", "--store", both.store, chain[3][:-1] + "x")
    assert r.returncode != 0 and "error" in r.stderr
    bz = both.drv("bz", "echo in bzip2; echo > $out")
    assert both.kiln_build("--option", "compress-build-log", "bzip2", bz).returncode == 0
    out = subprocess.run(["bzip2", "-dc", log_file(both, bz, "bz2")], capture_output=True, text=True).stdout
    assert out == "in bzip2\n", "bzip2(1) reads it, as Nix does"
    assert both.kiln_run("log", "--store", both.store, bz).stdout == "in bzip2\n"
    plain = both.drv("plain", "echo plain; echo > $out")
    both.kiln_build("--option", "compress-build-log", "none", plain)
    assert both.kiln_run("log", "--store", both.store, plain).stdout == "plain\n"


def test_permanent_failure_with_the_log_tail(both):
    bad = both.drv("bad", "echo line one; echo line two; printf 'progress 10%%\\rprogress 100%%\\n'; exit 3")
    r = both.kiln_build("--json", bad)
    res = both.results(r)
    assert r.returncode == 100 and res[bad]["status"] == "PermanentFailure", explain(r)
    msg = res[bad]["errorMsg"]
    assert "failed with exit code 3" in msg and "last 3 log lines:\n> line one\n> line two\n> progress 100%" in msg
    assert "error: builder for" in r.stderr
    r = both.kiln_build("--option", "log-lines", "1", "--json", bad)
    assert "last 1 log lines:\n> progress 100%" in both.results(r)[bad]["errorMsg"]


def test_dependency_failed_keep_going_and_stop(both):
    bad = both.drv("bad", "exit 3")
    dep = both.drv("dep", "echo > $out", inputs=[bad])
    ok1 = both.drv("ok1", "sleep 1; echo > $out")
    r = both.kiln_build("--json", "--keep-going", dep, ok1)
    res = both.results(r)
    assert r.returncode == 100 and res[dep]["status"] == "DependencyFailed" and res[ok1]["status"] == "Built"
    assert res[dep]["errorMsg"] == f"1 dependencies of derivation '{dep}' failed to build"
    ok2 = both.drv("ok2", "sleep 1; echo > $out")
    r = both.kiln_build("--json", "-j", "2", bad, ok2)
    assert r.returncode == 100 and both.results(r)[ok2]["status"] != "Built", explain(r)
    assert not os.path.exists(both.real(both.outputs(ok2)["out"])), "the cancelled build left no output"


def test_input_rejected_and_misc_failure(both, chain):
    darwin = both.drv("darwin", "echo > $out", system="aarch64-darwin")
    r = both.kiln_build("--json", darwin)
    assert r.returncode == 1 and both.results(r)[darwin]["status"] == "InputRejected" and "aarch64-darwin" in r.stderr
    r = both.kiln_build("--json", chain[0] + "^nope")
    assert r.returncode == 1 and "does not have an output named 'nope'" in r.stderr
    nosetup = both.drv("nosetup", "echo x > $out")
    r = both.kiln_build("--json", "--option", "extra-sandbox-paths", "/nonexistent/dir", nosetup)
    assert r.returncode == 1 and both.results(r)[nosetup]["status"] == "MiscFailure", explain(r)
    assert "/nonexistent/dir' for the sandbox does not exist" in r.stderr


def test_an_unexecutable_builder_is_the_builds_failure(both):
    nobuilder = both.drv("nobuilder", "", builder="/nonexistent/builder")
    r = both.kiln_build("--json", nobuilder)
    assert r.returncode == 100 and both.results(r)[nobuilder]["status"] == "PermanentFailure", explain(r)
    assert "executing '/nonexistent/builder': No such file or directory" in r.stderr


def test_output_rejected_missing_output_and_reference_constraints(both, chain):
    leaf, leaf_out, top, top_out, _ = chain
    noout = both.drv("noout", "echo nothing")
    r = both.kiln_build("--json", noout)
    assert r.returncode == 1 and both.results(r)[noout]["status"] == "OutputRejected"
    assert "failed to produce output path" in r.stderr
    uses_leaf = {"leaf": leaf_out}
    d = both.drv("disallowed", "echo $leaf > $out", inputs=[leaf], env={**uses_leaf, "disallowedReferences": leaf_out})
    r = both.kiln_build("--json", d)
    assert r.returncode == 1 and both.results(r)[d]["status"] == "OutputRejected"
    assert f"is not allowed to refer to the following paths:\n  {leaf_out}" in r.stderr
    d = both.drv("allowed", "echo $leaf > $out", inputs=[leaf], env={**uses_leaf, "allowedReferences": ""})
    assert both.results(both.kiln_build("--json", d))[d]["status"] == "OutputRejected"
    d = both.drv("allowedok", "echo $leaf > $out", inputs=[leaf], env={**uses_leaf, "allowedReferences": leaf_out})
    assert both.results(both.kiln_build("--json", d))[d]["status"] == "Built"
    d = both.drv("req", "echo $top > $out", inputs=[top], env={"top": top_out, "disallowedRequisites": leaf_out})
    r = both.kiln_build("--json", d)
    assert both.results(r)[d]["status"] == "OutputRejected" and leaf_out in r.stderr


FIXED = b"fixed content\n"
FIXED_HASH = hashlib.sha256(FIXED).hexdigest()


def test_fixed_outputs_mismatch_hash_mode_and_transient_failure(both):
    fixed = {"hashAlgo": "sha256", "hash": FIXED_HASH}
    ok = both.drv("fixed", "printf 'fixed content\\n' > $out", fixed=fixed)
    r = both.kiln_build("--json", ok)
    assert r.returncode == 0 and both.results(r)[ok]["status"] == "Built", explain(r)
    wrong = both.drv("fixedwrong", "printf 'other\\n' > $out", fixed=fixed)
    r = both.kiln_build("--json", wrong)
    res = both.results(r)
    assert r.returncode == 102 and res[wrong]["status"] == "OutputRejected" and res[wrong].get("hashMismatch")
    got_sri = "sha256-" + base64.b64encode(hashlib.sha256(b"other\n").digest()).decode()
    assert "hash mismatch in fixed-output derivation" in r.stderr and "specified: sha256-" in r.stderr
    assert got_sri in r.stderr
    r = both.kiln_build("--json", "--hash", wrong)
    assert r.returncode == 0 and both.results(r)[wrong]["status"] == "Built", explain(r)
    actual = both.results(r)[wrong]["builtOutputs"]["out"]
    info = both.kiln_run("store", "path-info", "--store", both.store, "--json", actual).stdout
    assert open(both.real(actual)).read() == "other\n" and "fixed:sha256:" in info
    other_hash = FIXED_HASH[:-1] + ("0" if FIXED_HASH[-1] != "0" else "1")
    transient = both.drv("fixedfail", "exit 1", fixed={"hashAlgo": "sha256", "hash": other_hash})
    r = both.kiln_build("--json", transient)
    assert r.returncode == 1 and both.results(r)[transient]["status"] == "TransientFailure"


HELLO = b"hello fetch\n"
HELLO_HASH = hashlib.sha256(HELLO).hexdigest()


@pytest.fixture
def served(both):
    """A directory served over HTTP on loopback; yields (directory, base URL)."""
    directory = both.share_with_builders("served")
    with open(f"{directory}/hello.txt", "wb") as f:
        f.write(HELLO)

    server = FileServer(directory)
    yield directory, server.url
    server.close()


def fetch(both, name, url, hash_=HELLO_HASH, mode=None, **env):
    fixed = {"hashAlgo": ("r:sha256" if mode == "recursive" else "sha256"), "hash": hash_}
    return both.drv(name, "", env={"url": url, "PATH": None, **env}, fixed=fixed, system="builtin",
                    builder="builtin:fetchurl")


def test_builtin_fetchurl_from_file_and_http(both, served):
    directory, base_url = served
    for label, url in (("file", f"file://{directory}/hello.txt"), ("http", f"{base_url}/hello.txt")):
        f = fetch(both, f"hello-{label}", url)
        r = both.kiln_build("--json", f)
        res = both.results(r)
        assert res[f]["status"] == "Built", explain(r)
        assert open(both.real(res[f]["builtOutputs"]["out"]), "rb").read() == HELLO
        assert f"downloading '{url}'" in both.kiln_run("log", "--store", both.store, f).stdout


def test_builtin_fetchurl_executable_and_unpacked(both, served):
    directory, base_url = served
    # As <nix/fetchurl.nix> does it: an executable download is hashed recursively.
    shutil.copy(f"{directory}/hello.txt", f"{both.dir}/hello-exec")
    os.chmod(f"{both.dir}/hello-exec", 0o755)
    exec_hash = both.kiln_run("hash", "path", "--type", "sha256", "--base16", f"{both.dir}/hello-exec").stdout.strip()
    f = fetch(both, "tool-exec", f"{base_url}/hello.txt", hash_=exec_hash, mode="recursive", executable="1")
    r = both.kiln_build(f)
    assert r.returncode == 0 and os.stat(both.real(r.stdout.strip())).st_mode & 0o111, explain(r)
    src = f"{both.dir}/nar-src"
    os.makedirs(f"{src}/bin")
    with open(f"{src}/bin/tool", "w") as t:
        t.write("#!/bin/sh\necho tool\n")
    os.chmod(f"{src}/bin/tool", 0o755)
    with open(f"{directory}/tree.nar", "wb") as t:
        t.write(subprocess.run([both.kiln, "nar", "dump", src], capture_output=True).stdout)
    nar_hash = both.kiln_run("hash", "path", "--type", "sha256", "--base16", src).stdout.strip()
    f = fetch(both, "tree", f"{base_url}/tree.nar", hash_=nar_hash, mode="recursive", unpack="1")
    r = both.kiln_build(f)
    tool = both.real(r.stdout.strip()) + "/bin/tool"
    assert r.returncode == 0 and os.access(tool, os.X_OK), explain(r)


def test_builtin_fetchurl_failures_give_the_reason(both, served):
    _, base_url = served
    f = fetch(both, "missing", f"{base_url}/nothing.txt")
    r = both.kiln_build("--json", f)
    assert r.returncode == 1 and both.results(r)[f]["status"] == "TransientFailure" and "HTTP error 404" in r.stderr
    r = both.kiln_build(fetch(both, "wronghash", f"{base_url}/hello.txt", hash_=FIXED_HASH))
    assert r.returncode == 102 and "hash mismatch" in r.stderr
    fixed = {"hashAlgo": "sha256", "hash": HELLO_HASH}
    r = both.kiln_build(both.drv("nourl", "", fixed=fixed, system="builtin", builder="builtin:fetchurl"))
    assert r.returncode == 1 and "attribute 'url' missing" in r.stderr
    r = both.kiln_build(both.drv("nobuiltin", "", fixed=fixed, system="builtin", builder="builtin:frobnicate"))
    assert r.returncode == 1 and "unsupported builtin builder 'builtin:frobnicate'" in r.stderr


def test_timeouts_kill_the_whole_group(both):
    slow = both.drv("slow", "sleep 31.25 & wait")
    r = both.kiln_build("--json", "--timeout", "1", slow)
    assert r.returncode == 101 and both.results(r)[slow]["status"] == "TimedOut", explain(r)
    assert "timed out after 1 seconds" in r.stderr
    assert running([b"sleep", b"31.25"]) == [], "the builder's child died with it"
    silent = both.drv("silent", "echo hi; sleep 30")
    r = both.kiln_build("--json", "--max-silent-time", "1", silent)
    assert r.returncode == 101 and both.results(r)[silent]["status"] == "TimedOut" and "seconds of silence" in r.stderr


def test_log_limit_exceeded(both):
    chatty = both.drv("chatty", "i=0; while [ $i -lt 2000 ]; do echo 'a line of log output'; i=$((i+1)); done; "
                                "echo > $out")
    r = both.kiln_build("--json", "--max-log-size", "1000", chatty)
    assert r.returncode == 1 and both.results(r)[chatty]["status"] == "LogLimitExceeded", explain(r)
    assert "more than 1000 bytes" in r.stderr


RANDOM = "read u < /proc/sys/kernel/random/uuid; echo $u > $out"


def test_check_and_repeat_find_non_determinism(both, chain):
    rnd = both.drv("random", RANDOM)
    assert both.kiln_build(rnd).returncode == 0
    r = both.kiln_build("--json", "--check", rnd)
    assert r.returncode == 104 and both.results(r)[rnd]["status"] == "NotDeterministic", explain(r)
    assert "may not be deterministic" in r.stderr
    r = both.kiln_build("--json", "--check", "--keep-failed", rnd)
    assert r.returncode == 104 and os.path.exists(both.real(both.outputs(rnd)["out"]) + ".check")
    r = both.kiln_build("--json", "--check", chain[0])
    assert r.returncode == 0 and both.results(r)[chain[0]]["status"] == "Built"
    rnd2 = both.drv("random2", RANDOM)
    r = both.kiln_build("--json", "--repeat", "1", rnd2)
    assert r.returncode == 1 and both.results(r)[rnd2]["status"] == "NotDeterministic"
    assert "differs from previous round" in r.stderr
    assert not both.kiln_valid(both.outputs(rnd2)["out"]), "nothing registered after differing rounds"
    r = both.kiln_build("-L", "--repeat", "2", both.drv("det", "echo same > $out"))
    assert r.returncode == 0 and "(round 3/3)" in r.stderr


def test_repair_replaces_a_corrupted_output(both, chain):
    leaf, leaf_out = chain[0], chain[1]
    os.chmod(both.real(leaf_out), 0o644)
    with open(both.real(leaf_out), "w") as f:
        f.write("corrupt\n")
    verify = ["store", "verify", "--store", both.store, "--check-contents", leaf_out]
    assert both.kiln_run(*verify).returncode != 0
    r = both.kiln_build("--repair", leaf)
    assert r.returncode == 0 and open(both.real(leaf_out)).read() == "leaf\n", explain(r)
    assert both.kiln_run(*verify).returncode == 0


def test_print_build_logs_and_keep_failed(both):
    r = both.kiln_build("-L", both.drv("shout", "echo hello from the builder; echo > $out"))
    assert "shout> hello from the builder" in r.stderr
    r = both.kiln_build("--keep-failed", both.drv("keep", "echo kept > marker; exit 1"))
    m = re.search(r"keeping build directory '([^']+)'", r.stderr)
    assert m and open(m.group(1) + "/marker").read() == "kept\n", explain(r)


def test_the_builders_environment(both):
    d = both.drv("envd", "echo $PATH $HOME $NIX_STORE $NIX_BUILD_CORES > $out; /bin/cat $fooPath >> $out; "
                         'echo >> $out; [ "$PWD" = "$NIX_BUILD_TOP" ] && echo pwd-ok >> $out',
                 env={"PATH": None, "foo": "passed as file", "passAsFile": "foo"})
    r = both.kiln_build("--option", "cores", "3", d)
    assert r.returncode == 0, explain(r)
    assert open(both.real(r.stdout.strip())).read() == "/path-not-set /homeless-shelter /nix/store 3\npassed as file\npwd-ok\n"


def test_post_build_hook_gets_its_variables_and_outputs_are_signed(both):
    events = both.share_with_builders("events")
    hook = f"{both.dir}/hook.sh"
    with open(hook, "w") as f:
        f.write(f'#!/bin/sh\necho "$DRV_PATH $OUT_PATHS" > {events}/hook\n')
    os.chmod(hook, 0o755)
    hooked = both.drv("hooked", "echo > $out")
    r = both.kiln_build("--option", "post-build-hook", hook, hooked)
    assert r.returncode == 0 and open(f"{events}/hook").read().strip() == f"{hooked} {r.stdout.strip()}"
    key, pub = f"{both.dir}/key", f"{both.dir}/key.pub"
    assert both.kiln_run("key", "generate", "test-1", key, pub).returncode == 0
    r = both.kiln_build("--option", "secret-key-files", key, both.drv("signed", "echo signed > $out"))
    info = both.kiln_run("store", "path-info", "--store", both.store, "--json", "--sigs", r.stdout.strip()).stdout
    assert r.returncode == 0 and "test-1:" in info, explain(r)


@pytest.fixture
def mirror(both):
    """A second store holding the same derivations, whose builds leave a mark."""
    class Mirror:
        store = f"local:{both.dir}/mirror"
        marker = f"{both.share_with_builders('events')}/subst-built"

        def drv(self, name, script, inputs=()):
            d = both.drv(name, f"echo built >> {self.marker}; {script}", inputs=inputs)
            r = both.kiln_run("drv", "add", "--store", self.store, "--json", f"{both.dir}/drv{both._count}.json")
            assert r.returncode == 0 and r.stdout.strip() == d, explain(r)
            return d

        def build(self, *args):
            r = both.kiln_run("build", "--store", self.store, *args)
            assert r.returncode == 0, explain(r)
            open(self.marker, "w").close()

        def built(self):
            return open(self.marker).read()

    m = Mirror()
    open(m.marker, "w").close()
    os.chmod(m.marker, 0o666)
    return m


def test_substituted_from_a_signed_store_nothing_built(both, mirror):
    key, pub = f"{both.dir}/key", f"{both.dir}/key.pub"
    both.kiln_run("key", "generate", "test-1", key, pub)
    dep = mirror.drv("subdep", "echo dep > $out")
    dep_out = both.outputs(dep)["out"]
    top = mirror.drv("subtop", f"echo {dep_out} > $out", inputs=[dep])
    mirror.build("--option", "secret-key-files", key, top)
    r = both.kiln_build("--json", "--option", "substituters", mirror.store, "--option", "trusted-public-keys",
                        open(pub).read(), top)
    res = both.results(r)
    assert res[top]["status"] == "Substituted" and mirror.built() == "", explain(r)
    top_out = res[top]["builtOutputs"]["out"]
    assert open(both.real(top_out)).read() == f"{dep_out}\n", "the output and the path it refers to were copied"
    r = both.kiln_run("store", "verify", "--store", both.store, "--check-contents", top_out, dep_out)
    assert r.returncode == 0, explain(r)


def test_unsigned_substitutes_are_built_unless_the_store_is_trusted(both, mirror):
    unsigned = mirror.drv("subunsigned", "echo u > $out")
    mirror.build(unsigned)
    r = both.kiln_build("--json", "--option", "substituters", mirror.store, unsigned)
    assert both.results(r)[unsigned]["status"] == "Built" and mirror.built() == "built\n", explain(r)
    unsigned2 = mirror.drv("subunsigned2", "echo u2 > $out")
    mirror.build(unsigned2)
    r = both.kiln_build("--json", "--option", "substituters", f"{mirror.store}?trusted=1", unsigned2)
    assert r.returncode == 0 and both.results(r)[unsigned2]["status"] == "Substituted" and mirror.built() == ""


@pytest.mark.parametrize("compression", ["none", "xz", "bzip2", "zstd"])
def test_substituted_from_a_binary_cache_nix_wrote(both, compression):
    """A file:// cache written by Nix 2.8's nix copy --to, signed, with each
    compression: the outputs come from it, nothing is built."""
    key, pub = f"{both.dir}/key", f"{both.dir}/key.pub"
    both.kiln_run("key", "generate", "cache-key-1", key, pub)
    blog = f"{both.share_with_builders('events')}/builds"
    open(blog, "w").close()
    os.chmod(blog, 0o666)
    dep = both.drv("cachedep", f"echo dep >> {blog}; echo dep > $out")
    dep_out = both.outputs(dep)["out"]
    top = both.drv("cachetop", f"echo top >> {blog}; echo {dep_out} > $out", inputs=[dep])
    top_out = both.outputs(top)["out"]
    assert both.kiln_build(top).returncode == 0
    cache = both.nix_cache([dep_out, top_out], compression, key)  # then gone from Kiln's store
    assert both.kiln_run("store", "delete", "--store", both.store, top_out, dep_out).returncode == 0
    open(blog, "w").close()
    r = both.kiln_build("--json", "--option", "substituters", f"file://{cache}", "--option", "trusted-public-keys",
                        open(pub).read(), top)
    assert both.results(r)[top]["status"] == "Substituted", explain(r)
    assert open(blog).read() == "", "something was built"
    assert open(both.real(top_out)).read() == f"{dep_out}\n"
    v = both.kiln_run("store", "verify", "--store", both.store, "--check-contents", top_out, dep_out)
    assert v.returncode == 0, explain(v)
    # Not signed by a key Kiln trusts: built instead, with a warning.
    assert both.kiln_run("store", "delete", "--store", both.store, top_out).returncode == 0
    r = both.kiln_build("--json", "--option", "substituters", f"file://{cache}", top)
    assert both.results(r)[top]["status"] == "Built" and "is not signed by any of the keys" in r.stderr, explain(r)


def test_an_unsupported_substituter_is_passed_over_with_a_warning(both):
    d = both.drv("subhttps", "echo > $out")
    r = both.kiln_build("--json", "--option", "substituters", "s3://cache-bucket", d)
    assert r.returncode == 0 and both.results(r)[d]["status"] == "Built", explain(r)
    assert r.stderr.count("warning: substituter 's3://cache-bucket' is not supported yet") == 1


def test_build_slots_are_respected_and_used(both):
    log = f"{both.share_with_builders('events')}/slots"
    open(log, "w").close()
    os.chmod(log, 0o666)  # appended to by builds of different build users
    wide = [both.drv(f"slot{i}", f"echo S >> {log}; sleep 0.4; echo E >> {log}; echo > $out") for i in range(6)]
    r = both.kiln_build("-j", "2", both.drv("slottop", "echo > $out", inputs=wide))
    inflight = peak = 0
    for line in open(log).read().split():
        inflight += 1 if line == "S" else -1
        peak = max(peak, inflight)
    assert r.returncode == 0 and peak == 2, f"peak {peak} with -j 2\n" + explain(r)


def test_two_processes_on_overlapping_graphs_build_each_derivation_once(both):
    blog = f"{both.share_with_builders('events')}/builds"
    open(blog, "w").close()
    os.chmod(blog, 0o666)
    shared = [both.drv(f"shared{i}", f"echo shared{i} >> {blog}; sleep 0.3; echo > $out") for i in range(4)]
    ga = both.drv("graph-a", f"echo graph-a >> {blog}; echo > $out", inputs=shared)
    gb = both.drv("graph-b", f"echo graph-b >> {blog}; echo > $out", inputs=shared[1:])
    procs = [subprocess.Popen([both.kiln, "build", "--store", both.store, "-j", "2", g], env=both.env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for g in (ga, gb)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    assert sorted(open(blog).read().split()) == sorted(["graph-a", "graph-b"] + [f"shared{i}" for i in range(4)])


def test_bad_input_is_refused_and_the_store_stays_consistent(both, chain):
    leaf, leaf_out = chain[0], chain[1]
    cases = [(["/nix/store/" + "a" * 32 + "-x.drv"], "is not valid"),
             ([leaf_out], "is not a derivation"),
             (["--check", "--repair", leaf], "exclude each other"),
             (["--option", "max-jobs", "many", leaf], "max-jobs"),
             (["-j", "0", "--json", both.drv("nojobs", "echo > $out")], "unable to start any build")]
    for args, fragment in cases:
        r = both.kiln_build(*args)
        assert r.returncode == 1 and fragment in r.stderr, explain(r)
    r = both.kiln_run("store", "verify", "--store", both.store, "--check-contents", "--all")
    assert r.returncode == 0, explain(r)
