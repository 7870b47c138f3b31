#!/usr/bin/env python3
"""Builds through kilnd's worker processes against builds in kilnd's own
process (workers = 0), side by side in one run (run by hand, as root, after
scripts/setup; never in CI):

    python3 tests/bench/workers_bench.py build/bin [--rounds 3] [--wide 500]
        [--chain 200] [--workers 2] [--settle 10]

Each round starts kilnd twice on a fresh store at /nix (a tmpfs in a private
mount namespace), once with `workers = 0` and once with `--workers`, the two
interleaved, and builds a wide graph (N leaves and a top) and a chain of N
steps with `nix-store --realise -j 8` as the client (sandbox off, so the
cost of the worker link is measured, not the sandbox's). Printed: ms per
derivation for each, and the difference (wide: percent; chain: ms per step),
of the best of each and the median of the rounds' paired differences."""
import argparse
import os
import re
import statistics
import subprocess

from daemon_bench import make_work

SCRIPT = r"""
set -e
mount -t tmpfs kiln-bench /nix
export NIX_CONF_DIR={work}/conf HOME={work} TMPDIR={work}/tmp
for round in $(seq {rounds}); do
  for workers in 0 {workers}; do
    rm -rf /nix/store /nix/var; mkdir -p /nix/store /nix/var/nix/daemon-socket
    S=/nix/var/nix/daemon-socket/socket
    {kilnd} --socket $S --option workers $workers 2>>{work}/kilnd.log & kilnd=$!
    for i in $(seq 200); do [ -S $S ] && break; sleep 0.05; done
    export NIX_REMOTE=unix://$S
    for shape in wide chain; do
      drv=$(nix-instantiate {work}/$shape.nix --argstr seed $round 2>/dev/null)
      n=$(nix-store -qR $drv | grep -c '\.drv$')
      sleep {settle}
      t0=$(date +%s%N)
      nix-store --realise -j 8 $drv > /dev/null
      t1=$(date +%s%N)
      echo "@ round $round workers=$workers $shape: $n drvs, $(( (t1 - t0) / 1000 / n )) us/drv"
    done
    kill $kilnd; wait $kilnd || true
  done
done
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bin", help="the build's bin directory (kilnd, kiln-worker)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--wide", type=int, default=500)
    ap.add_argument("--chain", type=int, default=200)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--settle", type=int, default=10)
    a = ap.parse_args()
    work = make_work("kiln-workers-bench-", a.wide, a.chain)
    bindir = os.path.abspath(a.bin)
    script = SCRIPT.format(work=work, kilnd=f"{bindir}/kilnd", rounds=a.rounds, workers=a.workers,
                           settle=a.settle)
    r = subprocess.run(["unshare", "-m", "--propagation", "private", "bash", "-c", script],
                       capture_output=True, text=True)
    figures = {}
    for line in r.stdout.splitlines():
        if line.startswith("@ "):
            print(line[2:])
            m = re.match(r"@ round \d+ workers=(\d+) (\w+): \d+ drvs, (\d+) us/drv", line)
            if m:
                figures.setdefault((m.group(2), m.group(1) != "0"), []).append(int(m.group(3)))
    for shape in ("wide", "chain"):
        inproc, workers = figures.get((shape, False)), figures.get((shape, True))
        if inproc and workers:
            a_, b_ = min(inproc) / 1000, min(workers) / 1000
            print(f"{shape}: in-process {a_:.2f} ms/drv, workers {b_:.2f} ms/drv (best of each): "
                  f"{(b_ - a_) / a_ * 100:+.1f}%, {b_ - a_:+.2f} ms per derivation")
            # Each round's two runs were next to each other: their difference
            # drifts less with the machine's load than either figure does.
            paired = sorted((w - i) / 1000 for i, w in zip(inproc, workers))
            print(f"{shape}: median of the {len(paired)} rounds' differences: {statistics.median(paired):+.2f} ms "
                  f"per derivation ({statistics.median(paired) / statistics.median(inproc) * 1000 * 100:+.1f}%)")
    if r.returncode != 0:
        print(r.stderr[-3000:])
    subprocess.run(["rm", "-rf", work])
    return r.returncode


if __name__ == "__main__":
    raise SystemExit(main())
