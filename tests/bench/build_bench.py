#!/usr/bin/env python3
"""Build throughput: Kiln vs Nix 2.8 on the same freshly made graphs.

Usage: build_bench.py KILN [--wide 500] [--chain 200] [--valid 100000] [--rounds 3]
Wide: N trivial leaves + one top; chain: N steps, each depending on the last.
Each graph twice: unsandboxed (sandbox false) and sandboxed (sandbox true),
both with sandbox-paths '/bin /lib /lib64 /usr' (the builders are /bin/sh).
Kiln: `kiln build -j 8` on a temporary store. Nix: `nix-store --realise
--option sandbox ... -j 8` on the same .drv files (exported from Kiln's
store), run in a private mount namespace whose /nix is a temporary directory,
so the machine's own store is never touched. Prints ms per derivation and the
ratio; then asks for every derivation of a graph whose outputs are all valid
(made by kiln-bench-valid-graph next to KILN), printing the time and peak
RSS of that `kiln build`. Each figure is the median of --rounds runs on fresh
graphs; before every timed run the machine is left to settle (sync, then
--settle seconds), so no timed run pays for work done before it: the
kernel tears network namespaces down after the builds that used them have
gone, and on ext4 without a journal (this VM's root file system) every new
inode is found by skipping those deleted in the last minute, so making a
graph (thousands of temporary files) just before would be charged to the
build that follows. --settle 3 shows that effect. --modes picks plain,
sandboxed or both. Run by hand (root, nix-bin installed), not in CI.
"""
import argparse, json, os, statistics, subprocess, sys, tempfile, time

ap = argparse.ArgumentParser()
ap.add_argument("kiln")
ap.add_argument("--wide", type=int, default=500)
ap.add_argument("--chain", type=int, default=200)
ap.add_argument("--valid", type=int, default=100000)
ap.add_argument("--rounds", type=int, default=3)
ap.add_argument("--settle", type=float, default=65, help="seconds of quiet before every timed run")
ap.add_argument("--modes", default="plain,sandboxed", help="plain, sandboxed or both (comma-separated)")
a = ap.parse_args()
tmp = tempfile.mkdtemp(prefix="kiln-build-bench-")


def kiln(*args, **kw):
    return subprocess.run([a.kiln, *args], capture_output=True, text=True, check=True, **kw).stdout


def make_graph(store, kind, n, tag):
    """Adds the graph's derivations to `store`; returns (top drv, all drvs)."""
    drvs, prev = [], None
    for i in range(n):
        body = {"name": f"{kind}-{tag}-{i}", "outputs": {"out": {}}, "inputSrcs": [],
                "inputDrvs": ({prev: ["out"]} if kind == "chain" and prev else {}), "system": "x86_64-linux",
                "builder": "/bin/sh", "args": ["-c", "echo x > $out"], "env": {}}
        f = f"{tmp}/g.json"
        json.dump(body, open(f, "w"))
        prev = kiln("drv", "add", "--store", store, "--json", f).strip()
        drvs.append(prev)
    if kind == "wide":
        body = {"name": f"wide-{tag}-top", "outputs": {"out": {}}, "inputSrcs": [],
                "inputDrvs": {d: ["out"] for d in drvs}, "system": "x86_64-linux",
                "builder": "/bin/sh", "args": ["-c", "echo x > $out"], "env": {}}
        json.dump(body, open(f"{tmp}/g.json", "w"))
        prev = kiln("drv", "add", "--store", store, "--json", f"{tmp}/g.json").strip()
        drvs.append(prev)
    return prev, drvs


SANDBOX_PATHS = "/bin /lib /lib64 /usr"


def settle():
    os.sync()
    time.sleep(a.settle)


def bench_once(kind, n, sandboxed):
    """One fresh graph, built by each side: (kiln ms/drv, nix ms/drv, drvs)."""
    tag = str(time.time_ns())  # fresh names: nothing valid anywhere yet
    mode = "sandboxed" if sandboxed else "plain"
    kstore = f"local:{tmp}/k-{kind}-{mode}"
    top, drvs = make_graph(kstore, kind, n, tag)
    opts = ["--option", "sandbox", "true" if sandboxed else "false", "--option", "sandbox-paths", SANDBOX_PATHS]
    settle()
    t0 = time.perf_counter()
    kiln("build", "--store", kstore, "-j", "8", *opts, top)
    k_ms = (time.perf_counter() - t0) * 1000 / len(drvs)
    nixroot = f"{tmp}/n-{kind}-{mode}"
    os.makedirs(f"{nixroot}/store", exist_ok=True)
    exp = subprocess.run([a.kiln, "store", "export", "--store", kstore, *drvs], capture_output=True, check=True).stdout
    settle()  # the import below is not timed; the realise is
    script = (f"mount --bind {nixroot} /nix && nix-store --import > /dev/null && "
              f"start=$(date +%s%N) && nix-store --realise --option sandbox {'true' if sandboxed else 'false'} "
              f"--option sandbox-paths '{SANDBOX_PATHS}' --option substituters '' -j 8 {top} "
              f"> /dev/null && echo $(( ($(date +%s%N) - start) / 1000000 ))")
    r = subprocess.run(["unshare", "-m", "sh", "-c", script], input=exp, capture_output=True)
    if r.returncode != 0:
        sys.exit(f"{kind}: nix failed: {r.stderr.decode()[-400:]}")
    return k_ms, int(r.stdout.decode().split()[-1]) / len(drvs), len(drvs)


def bench(kind, n, sandboxed):
    runs = [bench_once(kind, n, sandboxed) for _ in range(a.rounds)]
    k_ms = statistics.median(r[0] for r in runs)
    n_ms = statistics.median(r[1] for r in runs)
    mode = "sandboxed" if sandboxed else "plain"
    print(f"{kind:5} {mode:9} {runs[0][2]:4} drvs: kiln {k_ms:6.2f} ms/drv   nix 2.8 {n_ms:6.2f} ms/drv   "
          f"ratio {n_ms / k_ms:5.1f}x   (median of {a.rounds}; kiln {' '.join(f'{r[0]:.2f}' for r in runs)}, "
          f"nix {' '.join(f'{r[1]:.2f}' for r in runs)})", flush=True)


modes = a.modes.split(",")
if not set(modes) <= {"plain", "sandboxed"}:
    sys.exit(f"--modes: plain, sandboxed or both, not {a.modes!r}")
for sandboxed in (False, True):
    if ("sandboxed" if sandboxed else "plain") not in modes:
        continue
    if a.wide:
        bench("wide", a.wide, sandboxed)
    if a.chain:
        bench("chain", a.chain, sandboxed)

# All-valid graph: N derivations whose outputs are all valid (made directly
# by kiln-bench-valid-graph: building them first would take minutes), all
# of them asked for at once, then only the top one.
def timed(args, stdin=None):
    """Runs `args`; returns (seconds, peak RSS in MB) of that process alone."""
    t0 = time.perf_counter()
    p = subprocess.Popen(args, stdin=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(p.pid, 0)
    elapsed = time.perf_counter() - t0
    if status != 0:
        sys.exit(f"{args[:2]} failed: {p.stderr.read().decode()[-400:]}")
    return elapsed, usage.ru_maxrss / 1024


if a.valid <= 0:
    subprocess.run(["rm", "-rf", tmp])
    sys.exit(0)
maker = os.path.join(os.path.dirname(os.path.abspath(a.kiln)), "kiln-bench-valid-graph")
root = f"{tmp}/valid"
t0 = time.perf_counter()
with open(f"{tmp}/valid.list", "w") as listing:
    subprocess.run([maker, root, str(a.valid)], stdout=listing, check=True)
made = time.perf_counter() - t0
drvs = open(f"{tmp}/valid.list").read().split()
with open(f"{tmp}/valid.list") as listing:
    secs, rss = timed([a.kiln, "build", "--store", f"local:{root}", "-j", "8", "--stdin"], stdin=listing)
top_secs, top_rss = timed([a.kiln, "build", "--store", f"local:{root}", drvs[-1]])
print(f"valid {len(drvs)} drvs all valid, all asked for: {secs:.2f} s, peak RSS {rss:.0f} MB"
      f"   (only the top asked for: {top_secs:.2f} s, {top_rss:.0f} MB; graph made in {made:.0f} s)")
subprocess.run(["rm", "-rf", tmp])
