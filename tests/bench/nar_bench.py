#!/usr/bin/env python3
"""NAR dump + hash throughput, Kiln vs Nix 2.8 side by side, by hand (not in CI).

Usage: tests/bench/nar_bench.py [--gib 1.0] [--dir /tmp] [--keep]
Builds a tree of mixed sizes (large files, 1 MiB files, 4-64 KiB files, small
files and symlinks; >= 1 GiB in all), warms the page cache, then times, best
of 3 runs each:
  kiln hash path TREE                   (dump + sha256 in one process)
  kiln nar dump TREE | sha256sum
  nix-store --dump TREE | sha256sum     (Nix 2.8)
  nix-hash --type sha256 TREE           (Nix 2.8, dump + hash in one process)
on the whole tree and on its large files alone, then the reference scan
(build/bin/kiln-bench-refscan) over the same tree. Prints GB/s (10^9 bytes of
NAR per second) and the Kiln/Nix ratios.
"""
import argparse, os, random, shutil, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KILN = os.path.join(ROOT, "build/bin/kiln")
REFSCAN = os.path.join(ROOT, "build/bin/kiln-bench-refscan")


def make_tree(root, gib):
    rng = random.Random(1)
    block = os.urandom(1 << 20)
    total = 0

    def write(path, size):
        nonlocal total
        with open(path, "wb") as f:
            left = size
            while left > 0:
                n = min(left, len(block))
                off = rng.randrange(0, len(block) - n + 1)
                f.write(block[off:off + n])
                left -= n
        total += size

    target = int(gib * (1 << 30))
    os.makedirs(os.path.join(root, "large"))
    for i in range(4):  # half the bytes in 4 large files
        write(os.path.join(root, "large", f"big{i}.bin"), target // 8)
    d = os.path.join(root, "mib")
    os.makedirs(d)
    for i in range(int(target * 0.25) // (1 << 20)):
        write(os.path.join(d, f"m{i:05}"), (1 << 20) + rng.randint(-9, 9))
    i = 0
    while total < target * 0.95:
        sub = os.path.join(root, "mixed", f"d{i // 200:04}")
        os.makedirs(sub, exist_ok=True)
        write(os.path.join(sub, f"f{i:06}"), rng.randint(4 << 10, 64 << 10))
        i += 1
    j = 0
    while total < target:
        sub = os.path.join(root, "small", f"d{j // 500:04}")
        os.makedirs(sub, exist_ok=True)
        write(os.path.join(sub, f"s{j:06}"), rng.randint(0, 4096))
        if j % 10 == 0:
            os.symlink(f"s{j:06}", os.path.join(sub, f"l{j:06}"))
        j += 1
    return total


def best_of(cmd, runs=3):
    times, out = [], b""
    for _ in range(runs):
        t0 = time.perf_counter()
        p = subprocess.run(cmd, shell=True, capture_output=True, check=True)
        times.append(time.perf_counter() - t0)
        out = p.stdout
    return min(times), out


def nar_size(path):
    p = subprocess.run(f"{KILN} nar dump '{path}' | wc -c", shell=True, capture_output=True, check=True)
    return int(p.stdout)


def bench(label, path):
    size = nar_size(path)
    subprocess.run(f"{KILN} nar dump '{path}' > /dev/null", shell=True, check=True)  # warm the cache
    rows = [
        ("kiln hash path", f"{KILN} hash path --base16 '{path}'"),
        ("kiln nar dump | sha256sum", f"{KILN} nar dump '{path}' | sha256sum"),
        ("nix-store --dump | sha256sum", f"nix-store --dump '{path}' | sha256sum"),
        ("nix-hash --type sha256", f"nix-hash --type sha256 '{path}'"),
    ]
    print(f"\n{label}: NAR of {size / (1 << 20):.0f} MiB, best of 3")
    results, digests = {}, set()
    for name, cmd in rows:
        t, out = best_of(cmd)
        results[name] = size / t / 1e9
        digests.add(out.split()[0])
        print(f"  {name:32} {results[name]:6.2f} GB/s  ({t:.3f} s)")
    assert len(digests) == 1, f"the four commands disagree on the hash: {digests}"
    print(f"  kiln hash path / nix-store --dump|sha256sum: "
          f"{results['kiln hash path'] / results['nix-store --dump | sha256sum']:.2f}x;"
          f"  / nix-hash: {results['kiln hash path'] / results['nix-hash --type sha256']:.2f}x;"
          f"  pipe vs pipe: {results['kiln nar dump | sha256sum'] / results['nix-store --dump | sha256sum']:.2f}x")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gib", type=float, default=1.0)
    ap.add_argument("--dir", default=tempfile.gettempdir())
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    for tool in [KILN, REFSCAN]:
        if not os.access(tool, os.X_OK):
            sys.exit(f"{tool} is missing: run scripts/setup")
    if not shutil.which("nix-store"):
        sys.exit("nix-store is missing: apt-get install nix-bin")
    work = tempfile.mkdtemp(prefix="kiln-bench-", dir=args.dir)
    try:
        tree = os.path.join(work, "tree")
        t0 = time.perf_counter()
        total = make_tree(tree, args.gib)
        files = sum(len(f) for _, _, f in os.walk(tree))
        print(f"tree: {total / (1 << 30):.2f} GiB in {files} files and symlinks "
              f"(made in {time.perf_counter() - t0:.1f} s); CPU: {os.cpu_count()} cores")
        bench("whole tree (mixed sizes)", tree)
        bench("large files only", os.path.join(tree, "large"))
        print()
        subprocess.run([REFSCAN, "1024", "500", tree], check=True)
    finally:
        if not args.keep:
            shutil.rmtree(work)


if __name__ == "__main__":
    main()
