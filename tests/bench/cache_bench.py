#!/usr/bin/env python3
"""Substitution from binary caches, Kiln vs Nix 2.8, side by side in one run
(by hand, as root, after scripts/setup; never in CI):

    python3 tests/bench/cache_bench.py build/bin/kiln [--paths 500] [--mib 1024]
        [--rounds 3] [--settle 20] [--clients 16] [--skip-nginx]

Makes a closure of --paths store paths of about --mib MiB in a Kiln store
(mixed sizes, mostly incompressible: 90% small files of 1-64 KiB, 9% of
1-8 MiB, the rest large; a top path refers to all of them), writes it as
a file:// zstd cache with `kiln copy --to`, and serves the store with
`kiln serve` (zstd on the fly). Then, round by round and interleaved, it
substitutes the whole closure into a fresh store from each source with
`kiln copy --from` and with Nix 2.8's `nix copy --from` (into a chroot
Nix store), and measures the disk's durable-write rate in the same run
(the closure's bytes written and fsynced as one file each, as a floor for
any store that makes its paths durable). Printed: MB/s of NAR and paths/s,
medians of --rounds, each run after --settle seconds of quiet.

Then `kiln serve` against nginx serving the pre-made file:// cache (the
static-file limit; nginx-light is installed with apt-get if missing):
narinfo latency p50 over 2,000 requests, and NAR throughput downloading
the whole closure's NARs from 1 and from --clients clients."""
import argparse
import concurrent.futures
import http.client
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

p = argparse.ArgumentParser()
p.add_argument("kiln")
p.add_argument("--paths", type=int, default=500)
p.add_argument("--mib", type=int, default=1024)
p.add_argument("--rounds", type=int, default=3)
p.add_argument("--settle", type=int, default=20)
p.add_argument("--clients", type=int, default=16)
p.add_argument("--skip-nginx", action="store_true")
p.add_argument("--serve-only", action="store_true", help="only kiln serve vs nginx (no substitution rounds)")
a = p.parse_args()
a.kiln = os.path.abspath(a.kiln)
tmp = tempfile.mkdtemp(prefix="kiln-cache-bench-", dir="/var/tmp")
os.chmod(tmp, 0o755)  # nginx's workers (www-data) read the cache in it
NIX = ["nix", "--extra-experimental-features", "nix-command"]


def kiln(*args, **kw):
    return subprocess.run([a.kiln, *args], check=True, capture_output=True, text=True, **kw).stdout


def settle():
    os.sync()
    time.sleep(a.settle)


def sizes(n, total):
    """Mixed sizes summing to about `total` bytes."""
    rng = random.Random(20261202)
    small = [rng.randint(1 << 10, 64 << 10) for _ in range(n * 90 // 100)]
    medium = [rng.randint(1 << 20, 8 << 20) for _ in range(n * 9 // 100)]
    rest = n - len(small) - len(medium)
    left = max(total - sum(small) - sum(medium), rest << 20)
    return small + medium + [left // rest] * rest


def make_closure():
    store = f"local:{tmp}/src"
    os.makedirs(f"{tmp}/files")
    paths = []
    for i, size in enumerate(sizes(a.paths - 1, a.mib << 20)):
        f = f"{tmp}/files/blob{i}"
        with open(f, "wb") as out:
            out.write(os.urandom(size - size // 8) + b"\0" * (size // 8))  # mostly incompressible
        paths.append(f)
    added = []
    for i in range(0, len(paths), 100):
        added += kiln("store", "add", "--store", store, *paths[i:i + 100]).split()
    with open(f"{tmp}/top.txt", "w") as f:
        f.write("\n".join(added) + "\n")
    top = kiln("store", "add-text", "--store", store, "top", f"{tmp}/top.txt").strip()
    shutil.rmtree(f"{tmp}/files")
    nar = sum(int(l.split()[-1]) for l in kiln("store", "path-info", "--store", store, "-r", top).splitlines())
    return store, top, nar


def timed(argv):
    t0 = time.perf_counter()
    r = subprocess.run(argv, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"{' '.join(argv[:4])}... failed: {r.stderr[-500:]}")
    return time.perf_counter() - t0


def durable_write(total):
    """Seconds to write `total` bytes as --paths files, each fsynced, then the directory."""
    d = f"{tmp}/durable"
    os.makedirs(d)
    chunk = os.urandom(1 << 20)
    per = total // a.paths
    t0 = time.perf_counter()
    for i in range(a.paths):
        fd = os.open(f"{d}/f{i}", os.O_WRONLY | os.O_CREAT, 0o644)
        left = per
        while left:
            left -= os.write(fd, chunk[:min(left, len(chunk))])
        os.fsync(fd)
        os.close(fd)
    dfd = os.open(d, os.O_RDONLY)
    os.fsync(dfd)
    os.close(dfd)
    took = time.perf_counter() - t0
    shutil.rmtree(d)
    return took


def start_serve(store):
    proc = subprocess.Popen([a.kiln, "serve", "--listen", "127.0.0.1:0", "--store", store],
                            stderr=subprocess.PIPE, text=True)
    return proc, proc.stderr.readline().split(" on ")[1].strip()


store, top, nar_bytes = make_closure()
cache = f"{tmp}/cache"
kiln("copy", "--store", store, "--to", f"file://{cache}?compression=zstd", top)
serve, serve_url = start_serve(store)
print(f"closure: {a.paths} paths, {nar_bytes / 1e6:.0f} MB of NAR; cache {cache}; kiln serve at {serve_url}",
      flush=True)

results = {}
for rnd in range(0 if a.serve_only else a.rounds):
    for source, url in (("file:// zstd", f"file://{cache}"), ("kiln serve", serve_url)):
        for tool in ("kiln", "nix"):
            dest = f"{tmp}/dest-{tool}-{rnd}"
            settle()
            if tool == "kiln":
                secs = timed([a.kiln, "copy", "--store", f"local:{dest}", "--from", url, "--no-check-sigs", top])
            else:
                secs = timed([*NIX, "copy", "--store", dest, "--from", url, "--no-check-sigs", top])
            results.setdefault((source, tool), []).append(secs)
            subprocess.run(["rm", "-rf", dest])
    settle()
    results.setdefault(("disk", "durable"), []).append(durable_write(nar_bytes))
    print(f"round {rnd + 1}: " + ", ".join(f"{s}/{t} {v[-1]:.2f} s" for (s, t), v in results.items()), flush=True)

durable = statistics.median(results[("disk", "durable")]) if results else 0
if results:
    print(f"\ndisk, durable writes (each file fsynced): {nar_bytes / durable / 1e6:7.0f} MB/s")
for source in ("file:// zstd", "kiln serve") if results else ():
    k, n = statistics.median(results[(source, "kiln")]), statistics.median(results[(source, "nix")])
    print(f"{source:13} kiln {nar_bytes / k / 1e6:5.0f} MB/s {a.paths / k:6.0f} paths/s   "
          f"nix 2.8 {nar_bytes / n / 1e6:5.0f} MB/s {a.paths / n:6.0f} paths/s   ratio {n / k:4.1f}x   "
          f"kiln at {durable / k * 100:3.0f}% of the durable-write rate")


# kiln serve vs nginx: narinfo latency and NAR throughput.
def narinfo_latency(base, names, n=2000):
    host, port = base[7:].split(":")
    conn = http.client.HTTPConnection(host, int(port))
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        conn.request("GET", f"/{names[i % len(names)]}")
        r = conn.getresponse()
        r.read()
        times.append(time.perf_counter() - t0)
        assert r.status == 200, r.status
    return statistics.median(times) * 1000


def nar_throughput(base, urls, clients):
    host, port = base[7:].split(":")

    def fetch(part):
        conn = http.client.HTTPConnection(host, int(port))
        got = 0
        for u in part:
            conn.request("GET", f"/{u}")
            r = conn.getresponse()
            while chunk := r.read(1 << 20):
                got += len(chunk)
        return got
    parts = [urls[i::clients] for i in range(clients)]
    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        total = sum(pool.map(fetch, parts))
    return total / (time.perf_counter() - t0) / 1e6


narinfos = [n for n in os.listdir(cache) if n.endswith(".narinfo")]
cache_nars = ["nar/" + n for n in os.listdir(f"{cache}/nar")]
served_nars = []
for n in narinfos:
    host, port = serve_url[7:].split(":")
    c = http.client.HTTPConnection(host, int(port))
    c.request("GET", f"/{n}")
    served_nars.append(next(l[5:] for l in c.getresponse().read().decode().splitlines() if l.startswith("URL: ")))
servers = [("kiln serve (zstd on the fly)", serve_url, served_nars)]
nginx = None
if not a.skip_nginx:
    if not shutil.which("nginx"):
        subprocess.run(["apt-get", "install", "-y", "-q", "nginx-light"], check=True, capture_output=True)
    conf = f"{tmp}/nginx.conf"
    with open(conf, "w") as f:
        f.write(f"daemon off; worker_processes 2; pid {tmp}/nginx.pid; error_log {tmp}/nginx.err;\n"
                f"events {{ worker_connections 1024; }}\nhttp {{ access_log off; sendfile on; server {{\n"
                f"listen 127.0.0.1:18473; root {cache}; }} }}\n")
    nginx = subprocess.Popen(["nginx", "-c", conf])
    time.sleep(1)
    servers.append(("nginx (the pre-made cache)", "http://127.0.0.1:18473", cache_nars))
print()
try:
    for name, base, nars in servers:
        settle()
        lat = narinfo_latency(base, narinfos)
        one = nar_throughput(base, nars, 1)
        many = nar_throughput(base, nars, a.clients)
        print(f"{name:30} narinfo p50 {lat:6.3f} ms   NARs: 1 client {one:6.0f} MB/s, "
              f"{a.clients} clients {many:6.0f} MB/s", flush=True)
finally:
    serve.terminate()
    if nginx:
        nginx.terminate()
    subprocess.run(["rm", "-rf", tmp])
