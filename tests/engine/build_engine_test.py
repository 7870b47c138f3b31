#!/usr/bin/env python3
"""`kiln build` end to end: real builders (/bin/sh) in a temporary store.

Usage: build_engine_test.py KILN
Reaches the build statuses with real builds, checks the scheduling
invariants (slots, each derivation built once across two processes,
keep-going vs stop), limits, check/repeat/repair/hash modes, registration
(references, constraints), logs and exit codes.
"""
import json, os, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
from host_processes import running  # noqa: E402

kiln = sys.argv[1]
failures = checks = 0


def check(ok, what):
    global failures, checks
    checks += 1
    if not ok:
        failures += 1
        print("FAIL", what)


tmp = tempfile.mkdtemp(prefix="kiln-engine-test-")
# Build directories (and those --keep-failed keeps) inside it too.
os.makedirs(f"{tmp}/tmp")
os.environ["TMPDIR"] = f"{tmp}/tmp"
store = f"local:{tmp}/store"
events = f"{tmp}/events"
os.makedirs(events)
served = f"{tmp}/served"
os.makedirs(served)
counter = [0]
# Every build here runs in the sandbox (the default) with the host's shell
# and tools bound in, as the benchmark gives Nix; the builders' build user
# may write the events directory, through which the tests watch them.
os.chmod(tmp, 0o755)
os.chmod(events, 0o777)
conf = f"{tmp}/kiln.conf"
with open(conf, "w") as f:
    f.write("sandbox-paths = /bin /lib /lib64 /usr\n")
    f.write(f"extra-sandbox-paths = {events} {served}\n")
os.environ["KILN_CONF"] = conf


def run(*args, timeout=120):
    return subprocess.run([kiln, *args], capture_output=True, text=True, timeout=timeout)


def drv(name, script, inputs=(), env=None, outputs=("out",), system="x86_64-linux", fixed=None, builder="/bin/sh"):
    """Adds a derivation whose builder runs `script` under /bin/sh; returns its .drv path."""
    counter[0] += 1
    body = {"name": name, "outputs": {o: {} for o in outputs}, "inputSrcs": [],
            "inputDrvs": {d: ["out"] for d in inputs}, "system": system,
            "builder": builder, "args": ["-c", script], "env": dict(env or {})}
    if fixed:
        body["outputs"] = {"out": fixed}
    f = f"{tmp}/d{counter[0]}.json"
    json.dump(body, open(f, "w"))
    r = run("drv", "add", "--store", store, "--json", f)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def out_of(d):
    """The output path a derivation records."""
    return json.loads(run("drv", "show", "--json", real(d)).stdout)[d]["outputs"]["out"]["path"]


def build(*args, timeout=120):
    return run("build", "--store", store, *args, timeout=timeout)


def results(r):
    return {x["path"]: x for x in json.loads(r.stdout)}


def real(p):
    return f"{tmp}/store{p}"


# Built, then AlreadyValid; output printed, log kept, references registered.
leaf = drv("leaf", "echo building leaf; echo leaf > $out")
leaf_out = out_of(leaf)
top = drv("top", "read x < $leaf; echo \"$x\" > $out; echo $leaf >> $out", inputs=[leaf], env={"leaf": leaf_out})
r = build("--json", top)
res = results(r)
check(r.returncode == 0 and res[top]["status"] == "Built" and res[leaf]["status"] == "Built",
      f"Built: {r.returncode} {r.stdout[:400]} {r.stderr[:400]}")
top_out = res[top]["builtOutputs"]["out"]
check(open(real(top_out)).read() == f"leaf\n{leaf_out}\n", "top's output holds its input's content")
refs = run("store", "query", "--store", store, "--references", top_out).stdout.split()
check(refs == [leaf_out], f"reference scan found the input: {refs}")
check(res[top]["timesBuilt"] == 1 and res[top]["startTime"] > 0 and res[top]["stopTime"] >= res[top]["startTime"],
      f"times: {res[top]}")
r = build(top)
check(r.returncode == 0 and r.stdout.strip() == top_out, f"plain output is the output path: {r.stdout!r}")
r = build("--json", top)
check(results(r)[top]["status"] == "AlreadyValid", f"AlreadyValid: {r.stdout[:300]}")
# --stdin: valid targets settle without building, a new one builds, outputs in the order asked.
fresh = drv("fresh", "echo fresh > $out")
r = subprocess.run([kiln, "build", "--store", store, "--stdin", "--json"], input=f"{top}^out\n{fresh}  {leaf}\n",
                   capture_output=True, text=True, timeout=120)
res = results(r) if r.returncode == 0 else {}
check(r.returncode == 0 and res.get(top, {}).get("status") == "AlreadyValid" and res.get(leaf, {}).get("status") ==
      "AlreadyValid" and res.get(fresh, {}).get("status") == "Built" and len(res) == 3,
      f"--stdin mixes valid and new targets: {r.stdout[:500]} {r.stderr[:300]}")
check(res.get(top, {}).get("builtOutputs") == {"out": top_out}, f"a settled target names its outputs: {res.get(top)}")
r = subprocess.run([kiln, "build", "--store", store, "--stdin", top], input=f"{leaf}\n", capture_output=True,
                   text=True, timeout=120)
check(r.returncode == 0 and r.stdout.split() == [top_out, leaf_out], f"--stdin after arguments, in order: {r.stdout!r}")
r = subprocess.run([kiln, "build", "--store", store, "--stdin"], input="", capture_output=True, text=True)
check(r.returncode == 1 and "missing a derivation" in r.stderr, f"--stdin with nothing: {r.stderr[:200]}")
r = run("log", "--store", store, leaf)
check(r.returncode == 0 and r.stdout == "building leaf\n", f"kiln log of the .drv: {r.stdout!r} {r.stderr}")
r = run("log", "--store", store, leaf_out)
check(r.returncode == 0 and r.stdout == "building leaf\n", f"kiln log of the output: {r.stdout!r}")
check(os.path.exists(f"{tmp}/store/nix/var/log/nix/drvs/{os.path.basename(leaf)[:2]}/{os.path.basename(leaf)[2:]}.zst"),
      "the log is .zst by default")
r = run("log", "--store", store, top_out[:-1] + "x")
check(r.returncode != 0 and "error" in r.stderr, f"no log: {r.stderr}")

# bzip2 logs are what Nix reads; bzip2(1) decompresses them.
bz = drv("bz", "echo in bzip2; echo > $out")
r = build("--option", "compress-build-log", "bzip2", bz)
path = f"{tmp}/store/nix/var/log/nix/drvs/{os.path.basename(bz)[:2]}/{os.path.basename(bz)[2:]}.bz2"
check(r.returncode == 0 and os.path.exists(path), f"bz2 log written: {r.stderr}")
if os.path.exists(path):
    out = subprocess.run(["bzip2", "-dc", path], capture_output=True, text=True).stdout
    check(out == "in bzip2\n", f"bzip2 -d reads it: {out!r}")
check(run("log", "--store", store, bz).stdout == "in bzip2\n", "kiln log reads .bz2")
plain = drv("plain", "echo plain; echo > $out")
build("--option", "compress-build-log", "none", plain)
check(run("log", "--store", store, plain).stdout == "plain\n", "kiln log reads an uncompressed log")

# PermanentFailure: exit code 100, message with the log tail.
bad = drv("bad", "echo line one; echo line two; printf 'progress 10%%\\rprogress 100%%\\n'; exit 3")
r = build("--json", bad)
res = results(r)
check(r.returncode == 100 and res[bad]["status"] == "PermanentFailure", f"PermanentFailure: {r.returncode} {r.stdout[:300]}")
msg = res[bad]["errorMsg"]
check("failed with exit code 3" in msg and "last 3 log lines:\n> line one\n> line two\n> progress 100%" in msg,
      f"failure message with the tail, \\r handled: {msg!r}")
check("error: builder for" in r.stderr, f"errors on stderr: {r.stderr[:200]}")
r = build("--option", "log-lines", "1", "--json", bad)
check("last 1 log lines:\n> progress 100%" in results(r)[bad]["errorMsg"], "log-lines limits the tail")

# DependencyFailed, and keep-going vs stop.
dep = drv("dep", "echo > $out", inputs=[bad])
ok1 = drv("ok1", f"/bin/sleep 1; echo > $out")
r = build("--json", "--keep-going", dep, ok1)
res = results(r)
check(r.returncode == 100 and res[dep]["status"] == "DependencyFailed" and res[ok1]["status"] == "Built",
      f"keep-going builds the rest: {r.returncode} {[(os.path.basename(k), v['status']) for k, v in res.items()]}")
check(res[dep]["errorMsg"] == f"1 dependencies of derivation '{dep}' failed to build", res[dep]["errorMsg"])
ok2 = drv("ok2", f"/bin/sleep 1; echo > $out")
r = build("--json", "-j", "2", bad, ok2)
res = results(r)
check(r.returncode == 100 and res[ok2]["status"] != "Built" and not os.path.exists(real(res[ok2]["path"]).replace(".drv", "")),
      f"without keep-going the first failure stops the rest: {[(os.path.basename(k), v['status']) for k, v in res.items()]}")
ok2_out = out_of(ok2)
check(not os.path.exists(real(ok2_out)), "the cancelled build left no output")

# InputRejected: wrong platform; an output the derivation does not have.
darwin = drv("darwin", "echo > $out", system="aarch64-darwin")
r = build("--json", darwin)
check(r.returncode == 1 and results(r)[darwin]["status"] == "InputRejected" and "aarch64-darwin" in r.stderr,
      f"InputRejected (platform): {r.returncode} {r.stderr[:200]}")
r = build("--json", leaf + "^nope")
check(r.returncode == 1 and "does not have an output named 'nope'" in r.stderr, f"InputRejected (output): {r.stderr[:200]}")

# MiscFailure: the sandbox cannot be made (a sandbox path is missing).
nosetup = drv("nosetup", "echo x > $out")
r = build("--json", "--option", "extra-sandbox-paths", "/nonexistent/dir", nosetup)
check(r.returncode == 1 and results(r)[nosetup]["status"] == "MiscFailure" and
      "/nonexistent/dir' for the sandbox does not exist" in r.stderr,
      f"MiscFailure: {r.returncode} {r.stdout[:300]} {r.stderr[:300]}")
# A builder that cannot be executed is the build's own failure (as Nix).
nobuilder = drv("nobuilder", "", builder="/nonexistent/builder")
r = build("--json", nobuilder)
check(r.returncode == 100 and results(r)[nobuilder]["status"] == "PermanentFailure" and
      "executing '/nonexistent/builder': No such file or directory" in r.stderr,
      f"unexecutable builder: {r.returncode} {r.stderr[:300]}")

# OutputRejected: no output; disallowed reference (every offender listed).
noout = drv("noout", "echo nothing")
r = build("--json", noout)
check(r.returncode == 1 and results(r)[noout]["status"] == "OutputRejected" and "failed to produce output path" in r.stderr,
      f"OutputRejected (missing): {r.returncode} {r.stderr[:300]}")
disallowed = drv("disallowed", "echo $leaf > $out", inputs=[leaf], env={"leaf": leaf_out, "disallowedReferences": leaf_out})
r = build("--json", disallowed)
check(r.returncode == 1 and results(r)[disallowed]["status"] == "OutputRejected" and
      f"is not allowed to refer to the following paths:\n  {leaf_out}" in r.stderr, f"disallowedReferences: {r.stderr[:300]}")
allowed = drv("allowed", "echo $leaf > $out", inputs=[leaf], env={"leaf": leaf_out, "allowedReferences": ""})
check(results(build("--json", allowed))[allowed]["status"] == "OutputRejected", "allowedReferences = none")
allowed_ok = drv("allowedok", "echo $leaf > $out", inputs=[leaf], env={"leaf": leaf_out, "allowedReferences": leaf_out})
check(results(build("--json", allowed_ok))[allowed_ok]["status"] == "Built", "allowedReferences listing it")
req = drv("req", "echo $top > $out", inputs=[top], env={"top": top_out, "disallowedRequisites": leaf_out})
r = build("--json", req)
check(results(r)[req]["status"] == "OutputRejected" and leaf_out in r.stderr, f"disallowedRequisites reaches through: {r.stderr[:300]}")

# Fixed outputs: hash mismatch (exit 102), TransientFailure, --hash.
import hashlib, base64
content = b"fixed content\n"
good = hashlib.sha256(content).hexdigest()
fixed_ok = drv("fixed", "printf 'fixed content\\n' > $out", fixed={"hashAlgo": "sha256", "hash": good})
r = build("--json", fixed_ok)
check(r.returncode == 0 and results(r)[fixed_ok]["status"] == "Built", f"fixed output built: {r.stderr[:300]}")
wrong = drv("fixedwrong", "printf 'other\\n' > $out", fixed={"hashAlgo": "sha256", "hash": good})
r = build("--json", wrong)
res = results(r)
check(r.returncode == 102 and res[wrong]["status"] == "OutputRejected" and res[wrong].get("hashMismatch"),
      f"hash mismatch: {r.returncode} {r.stdout[:300]}")
got_sri = "sha256-" + base64.b64encode(hashlib.sha256(b"other\n").digest()).decode()
check("hash mismatch in fixed-output derivation" in r.stderr and "specified: sha256-" in r.stderr and got_sri in r.stderr,
      f"mismatch message: {r.stderr[:400]}")
r = build("--json", "--hash", wrong)
res = results(r)
check(r.returncode == 0 and res[wrong]["status"] == "Built", f"--hash registers the actual content: {r.stderr[:300]}")
if r.returncode == 0:
    actual = res[wrong]["builtOutputs"]["out"]
    info = json.loads(run("store", "path-info", "--store", store, "--json", actual).stdout)
    check(open(real(actual)).read() == "other\n" and "fixed:sha256:" in json.dumps(info), f"content-addressed: {info}")
transient = drv("fixedfail", "exit 1", fixed={"hashAlgo": "sha256", "hash": good[:-1] + ("0" if good[-1] != "0" else "1")})
r = build("--json", transient)
check(r.returncode == 1 and results(r)[transient]["status"] == "TransientFailure", f"TransientFailure: {r.returncode} {r.stdout[:200]}")

# builtin:fetchurl from file:// and from an HTTP server on loopback: flat, executable,
# unpacked NAR; a 404, a wrong hash and a missing attribute fail with the reason.
import http.server, shutil, threading
open(f"{served}/hello.txt", "wb").write(b"hello fetch\n")
nar_src = f"{tmp}/nar-src"
os.makedirs(f"{nar_src}/bin")
open(f"{nar_src}/bin/tool", "w").write("#!/bin/sh\necho tool\n")
os.chmod(f"{nar_src}/bin/tool", 0o755)
open(f"{served}/tree.nar", "wb").write(subprocess.run([kiln, "nar", "dump", nar_src], capture_output=True).stdout)
nar_hash = subprocess.run([kiln, "hash", "path", "--type", "sha256", "--base16", nar_src], capture_output=True,
                          text=True).stdout.strip()


class Quiet(http.server.SimpleHTTPRequestHandler):
    def __init__(self, *a, **kw):
        super().__init__(*a, directory=served, **kw)

    def log_message(self, *a):
        pass


httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
threading.Thread(target=httpd.serve_forever, daemon=True).start()
base_url = f"http://127.0.0.1:{httpd.server_address[1]}"
hello_hash = hashlib.sha256(b"hello fetch\n").hexdigest()


def fetch(name, url, hash_=hello_hash, mode=None, **env):
    body = {"url": url, **env}
    fixed = {"hashAlgo": ("r:sha256" if mode == "recursive" else "sha256"), "hash": hash_}
    return drv(name, "", env=body, fixed=fixed, system="builtin", builder="builtin:fetchurl")


for label, url in (("file", f"file://{served}/hello.txt"), ("http", f"{base_url}/hello.txt")):
    f = fetch(f"hello-{label}", url)
    r = build("--json", f)
    res = results(r) if r.returncode == 0 else {}
    out = res.get(f, {}).get("builtOutputs", {}).get("out", "")
    check(res.get(f, {}).get("status") == "Built" and open(real(out), "rb").read() == b"hello fetch\n",
          f"builtin:fetchurl from {label}: {r.returncode} {r.stderr[-400:]}")
    check(f"downloading '{url}'" in run("log", "--store", store, f).stdout, f"the {label} download is logged")
# As <nix/fetchurl.nix> does it: an executable download is hashed recursively.
shutil.copy(f"{served}/hello.txt", f"{tmp}/hello-exec")
os.chmod(f"{tmp}/hello-exec", 0o755)
exec_hash = subprocess.run([kiln, "hash", "path", "--type", "sha256", "--base16", f"{tmp}/hello-exec"],
                           capture_output=True, text=True).stdout.strip()
f = fetch("tool-exec", f"{base_url}/hello.txt", hash_=exec_hash, mode="recursive", executable="1")
r = build(f)
check(r.returncode == 0 and os.stat(real(r.stdout.strip())).st_mode & 0o111, f"executable = 1: {r.stderr[-300:]}")
f = fetch("tree", f"{base_url}/tree.nar", hash_=nar_hash, mode="recursive", unpack="1")
r = build(f)
out = r.stdout.strip()
check(r.returncode == 0 and os.path.exists(real(out) + "/bin/tool") and os.access(real(out) + "/bin/tool", os.X_OK),
      f"unpack = 1 restores the NAR: {r.stderr[-300:]}")
f = fetch("missing", f"{base_url}/nothing.txt")
r = build("--json", f)
check(r.returncode == 1 and results(r)[f]["status"] == "TransientFailure" and "HTTP error 404" in r.stderr,
      f"a 404 fails with the reason: {r.returncode} {r.stderr[-300:]}")
f = fetch("wronghash", f"{base_url}/hello.txt", hash_=good)
r = build(f)
check(r.returncode == 102 and "hash mismatch" in r.stderr, f"a fetched file with the wrong hash: {r.stderr[-300:]}")
f = drv("nourl", "", env={}, fixed={"hashAlgo": "sha256", "hash": hello_hash}, system="builtin", builder="builtin:fetchurl")
r = build(f)
check(r.returncode == 1 and "attribute 'url' missing" in r.stderr, f"no url: {r.stderr[-300:]}")
f = drv("nobuiltin", "", fixed={"hashAlgo": "sha256", "hash": hello_hash}, system="builtin", builder="builtin:frobnicate")
r = build(f)
check(r.returncode == 1 and "unsupported builtin builder 'builtin:frobnicate'" in r.stderr, f"unknown builtin: {r.stderr[-300:]}")
httpd.shutdown()

# TimedOut (exit 101): --timeout and --max-silent-time kill the whole group.
slow = drv("slow", "/bin/sleep 31.25 & wait")
t0 = time.time()
r = build("--json", "--timeout", "1", slow)
took = time.time() - t0
check(r.returncode == 101 and results(r)[slow]["status"] == "TimedOut" and "timed out after 1 seconds" in r.stderr,
      f"TimedOut: {r.returncode} {r.stderr[:300]}")
check(took < 10, f"the timeout stopped it early ({took:.1f}s)")




check(running([b"/bin/sleep", b"31.25"]) == [], "the builder's child died with it")
silent = drv("silent", "echo hi; /bin/sleep 30")
r = build("--json", "--max-silent-time", "1", silent)
check(r.returncode == 101 and results(r)[silent]["status"] == "TimedOut" and "seconds of silence" in r.stderr,
      f"max-silent-time: {r.returncode} {r.stderr[:300]}")

# LogLimitExceeded.
chatty = drv("chatty", "i=0; while [ $i -lt 2000 ]; do echo 'a line of log output'; i=$((i+1)); done; echo > $out")
r = build("--json", "--max-log-size", "1000", chatty)
check(r.returncode == 1 and results(r)[chatty]["status"] == "LogLimitExceeded" and "more than 1000 bytes" in r.stderr,
      f"LogLimitExceeded: {r.returncode} {r.stderr[:300]}")

# NotDeterministic: --check (exit 104) and --repeat (exit 1, as Nix); a deterministic one passes.
rnd = drv("random", "read u < /proc/sys/kernel/random/uuid; echo $u > $out")
check(build(rnd).returncode == 0, "random built")
r = build("--json", "--check", rnd)
check(r.returncode == 104 and results(r)[rnd]["status"] == "NotDeterministic" and "may not be deterministic" in r.stderr,
      f"--check: {r.returncode} {r.stderr[:300]}")
r = build("--json", "--check", "--keep-failed", rnd)
rnd_out = out_of(rnd)
check(r.returncode == 104 and os.path.exists(real(rnd_out) + ".check"), f"--keep-failed keeps PATH.check: {r.stderr[:300]}")
r = build("--json", "--check", leaf)
check(r.returncode == 0 and results(r)[leaf]["status"] == "Built", f"--check of a deterministic build: {r.stderr[:300]}")
rnd2 = drv("random2", "read u < /proc/sys/kernel/random/uuid; echo $u > $out")
r = build("--json", "--repeat", "1", rnd2)
check(r.returncode == 1 and results(r)[rnd2]["status"] == "NotDeterministic" and "differs from previous round" in r.stderr,
      f"--repeat: {r.returncode} {r.stderr[:300]}")
rnd2_out = out_of(rnd2)
check(run("store", "path-info", "--store", store, rnd2_out).returncode != 0, "nothing registered after differing rounds")
det = drv("det", "echo same > $out")
r = build("-L", "--repeat", "2", det)
check(r.returncode == 0 and "(round 3/3)" in r.stderr, f"--repeat 2 of a deterministic build: {r.stderr[:300]}")

# --repair replaces a corrupted output.
os.chmod(real(leaf_out), 0o644)
open(real(leaf_out), "w").write("corrupt\n")
check(run("store", "verify", "--store", store, "--check-contents", leaf_out).returncode != 0, "corruption seen")
r = build("--repair", leaf)
check(r.returncode == 0 and open(real(leaf_out)).read() == "leaf\n", f"--repair: {r.stderr[:300]}")
check(run("store", "verify", "--store", store, "--check-contents", leaf_out).returncode == 0, "repaired path verifies")

# -L shows lines as they come, prefixed with the name.
shout = drv("shout", "echo hello from the builder; echo > $out")
r = build("-L", shout)
check("shout> hello from the builder" in r.stderr, f"-L: {r.stderr[:300]}")

# --keep-failed keeps the build directory of a failed build.
keep = drv("keep", "echo kept > marker; exit 1")
r = build("--keep-failed", keep)
import re
m = re.search(r"keeping build directory '([^']+)'", r.stderr)
check(m and open(m.group(1) + "/marker").read() == "kept\n", f"--keep-failed: {r.stderr[:300]}")

# The environment: PATH, HOME, NIX_BUILD_TOP, passAsFile.
envd = drv("envd", "echo $PATH $HOME $NIX_STORE $NIX_BUILD_CORES > $out; /bin/cat $fooPath >> $out; echo >> $out; "
           "[ \"$PWD\" = \"$NIX_BUILD_TOP\" ] && echo pwd-ok >> $out", env={"foo": "passed as file", "passAsFile": "foo"})
r = build("--option", "cores", "3", envd)
out = open(real(r.stdout.strip())).read() if r.returncode == 0 else r.stderr
check(out == "/path-not-set /homeless-shelter /nix/store 3\npassed as file\npwd-ok\n", f"builder environment: {out!r}")

# post-build-hook gets OUT_PATHS and DRV_PATH.
hook = f"{tmp}/hook.sh"
open(hook, "w").write(f"#!/bin/sh\necho \"$DRV_PATH $OUT_PATHS\" > {events}/hook\n")
os.chmod(hook, 0o755)
hooked = drv("hooked", "echo > $out")
r = build("--option", "post-build-hook", hook, hooked)
check(r.returncode == 0 and open(f"{events}/hook").read().strip() == f"{hooked} {r.stdout.strip()}",
      f"post-build-hook: {r.stderr[:200]}")

# Signing with secret-key-files.
key, pub = f"{tmp}/key", f"{tmp}/key.pub"
r = run("key", "generate", "test-1", key, pub)
check(r.returncode == 0, f"key pair made: {r.stderr}")
signed = drv("signed", "echo signed > $out")
r = build("--option", "secret-key-files", key, signed)
signed_out = r.stdout.strip()
info = run("store", "path-info", "--store", store, "--json", "--sigs", signed_out).stdout
check(r.returncode == 0 and "test-1:" in info, f"output signed: {info} {r.stderr[-300:]}")

# Substituted: another store holding the output, signed by a trusted key, is copied from, not built.
# Unsigned or untrusted paths are refused (then built); ?trusted=1 takes them as they are.
mirror = f"local:{tmp}/mirror"
marker = f"{events}/subst-built"
open(marker, "w").close()
os.chmod(marker, 0o666)


def both(name, script, inputs=()):
    """The same derivation in the test store and in the mirror store."""
    d = drv(name, script, inputs=inputs)
    f = f"{tmp}/d{counter[0]}.json"
    r = run("drv", "add", "--store", mirror, "--json", f)
    assert r.returncode == 0 and r.stdout.strip() == d, r.stderr
    return d


dep_script = f"echo built >> {marker}; echo dep > $out"
sub_dep = both("subdep", dep_script)
sub_dep_out = out_of(sub_dep)
sub = both("subtop", f"echo built >> {marker}; echo {sub_dep_out} > $out", inputs=[sub_dep])
r = run("build", "--store", mirror, "--option", "secret-key-files", key, sub)
check(r.returncode == 0, f"mirror built: {r.stderr[-300:]}")
open(marker, "w").close()
trusted = open(pub).read()
r = build("--json", "--option", "substituters", mirror, "--option", "trusted-public-keys", trusted, sub)
res = results(r) if r.returncode == 0 else {}
sub_out = res.get(sub, {}).get("builtOutputs", {}).get("out", "")
check(res.get(sub, {}).get("status") == "Substituted" and open(marker).read() == "",
      f"Substituted, nothing built: {r.stdout[:300]} {r.stderr[-300:]} {open(marker).read()!r}")
check(sub_out and open(real(sub_out)).read() == f"{sub_dep_out}\n" and os.path.exists(real(sub_dep_out)),
      f"the output and the path it refers to were copied: {sub_out!r} {sub_dep_out!r}")
check(run("store", "verify", "--store", store, "--check-contents", sub_out, sub_dep_out).returncode == 0,
      "substituted paths verify")
unsigned = both("subunsigned", f"echo built >> {marker}; echo u > $out")
check(run("build", "--store", mirror, unsigned).returncode == 0, "mirror built an unsigned path")
open(marker, "w").close()
r = build("--json", "--option", "substituters", mirror, "--option", "trusted-public-keys", trusted, unsigned)
res = results(r) if r.returncode == 0 else {}
check(res.get(unsigned, {}).get("status") == "Built" and open(marker).read() == "built\n",
      f"an unsigned substitute is refused and the path built: {r.stdout[:300]} {r.stderr[-300:]}")
unsigned2 = both("subunsigned2", f"echo built >> {marker}; echo u2 > $out")
check(run("build", "--store", mirror, unsigned2).returncode == 0, "mirror built another unsigned path")
open(marker, "w").close()
r = build("--json", "--option", "substituters", f"{mirror}?trusted=1", unsigned2)
check(r.returncode == 0 and results(r)[unsigned2]["status"] == "Substituted" and open(marker).read() == "",
      f"?trusted=1 takes unsigned paths: {r.stdout[:300]} {r.stderr[-300:]}")
r = build("--json", "--option", "substituters", "https://cache.example.org", drv("subhttps", "echo > $out"))
check(r.returncode == 0 and list(results(r).values())[0]["status"] == "Built",
      f"an unsupported substituter is skipped, the path built: {r.stderr[-300:]}")

# Slots: 6 builds that each take 0.4 s with -j 2: never more than 2 at once, and 2 do run together.
log = f"{events}/slots"
open(log, "w").close()
os.chmod(log, 0o666)  # appended to by builds of different build users
wide = [drv(f"slot{i}", f"echo S >> {log}; /bin/sleep 0.4; echo E >> {log}; echo > $out") for i in range(6)]
wtop = drv("slottop", "echo > $out", inputs=wide)
r = build("-j", "2", wtop)
inflight = peak = 0
for line in open(log).read().split():
    inflight += 1 if line == "S" else -1
    peak = max(peak, inflight)
check(r.returncode == 0 and peak == 2, f"slots: peak {peak} rc {r.returncode} with -j 2 ({r.stderr[-300:]})")

# Two kiln build processes on overlapping graphs: each derivation built once.
blog = f"{events}/builds"
open(blog, "w").close()
os.chmod(blog, 0o666)
shared = [drv(f"shared{i}", f"echo shared{i} >> {blog}; /bin/sleep 0.3; echo > $out") for i in range(4)]
ga = drv("graph-a", f"echo graph-a >> {blog}; echo > $out", inputs=shared)
gb = drv("graph-b", f"echo graph-b >> {blog}; echo > $out", inputs=shared[1:])
pa = subprocess.Popen([kiln, "build", "--store", store, "-j", "2", ga], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
pb = subprocess.Popen([kiln, "build", "--store", store, "-j", "2", gb], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
ra, rb = pa.wait(timeout=120), pb.wait(timeout=120)
built = open(blog).read().split()
check(ra == 0 and rb == 0, f"both processes succeed: {ra} {rb} {pb.stderr.read()[:300]}")
check(sorted(built) == sorted(["graph-a", "graph-b"] + [f"shared{i}" for i in range(4)]),
      f"each derivation built once: {sorted(built)}")

# Bad input: not a derivation, not in the store, bad options.
r = build("/nix/store/" + "a" * 32 + "-x.drv")
check(r.returncode == 1 and "is not valid" in r.stderr, f"invalid drv: {r.stderr[:200]}")
r = build(leaf_out)
check(r.returncode == 1 and "is not a derivation" in r.stderr, f"not a drv: {r.stderr[:200]}")
r = build("--check", "--repair", leaf)
check(r.returncode == 1 and "exclude each other" in r.stderr, f"exclusive modes: {r.stderr[:200]}")
r = build("--option", "max-jobs", "many", leaf)
check(r.returncode == 1 and "max-jobs" in r.stderr, f"bad max-jobs: {r.stderr[:200]}")
r = build("-j", "0", "--json", drv("nojobs", "echo > $out"))
check(r.returncode == 1 and "unable to start any build" in r.stderr, f"-j 0: {r.stderr[:200]}")
check(run("build", "--help").returncode == 0 and "Usage: kiln build" in run("build", "--help").stdout, "--help")
check(run("log", "--help").returncode == 0, "log --help")

# The store is consistent afterwards, and no build directories are left.
r = run("store", "verify", "--store", store, "--check-contents", "--all")
check(r.returncode == 0, f"store verifies: {r.stdout[-300:]} {r.stderr[-300:]}")

print(f"{checks - failures}/{checks} checks passed")
subprocess.run(["rm", "-rf", tmp])
sys.exit(1 if failures else 0)
