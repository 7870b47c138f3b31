#!/usr/bin/env python3
"""kilnd against nix-daemon, side by side in one run on one store (run by hand,
as root, after scripts/setup; never in CI):

    python3 tests/bench/daemon_bench.py build/bin [--rounds 3] [--calls 10000]
        [--idle 1000] [--wide 200] [--chain 100] [--settle 20]

Both daemons serve the same fresh store at /nix (a tmpfs in a private mount
namespace) on sockets of their own. Printed, for each daemon, interleaved
round by round: connection + handshake + SetOptions latency (p50, p99);
IsValidPath and QueryPathInfo calls per second from 1 and from 16 clients,
and the floor under one client's figure (round trips to a process that only
echoes);
the daemon's RSS idle and with --idle connections held open (nix-daemon:
all its processes); and ms per derivation of a wide and a chain graph
built with `nix-store --realise` as the client (each daemon its own graph
of the same shape, sandbox off, so the daemons are compared, not
sandboxes)."""
import argparse
import os
import subprocess
import tempfile

SCRIPT = r"""
set -e
mount -t tmpfs kiln-bench /nix
mkdir -p /nix/store /nix/var/nix/daemon-socket
export NIX_CONF_DIR={work}/conf HOME={work} TMPDIR={work}/tmp
KILN={kilnd}; BENCH={bench}
$KILN --socket /nix/var/nix/daemon-socket/kiln.sock 2>{work}/kilnd.log & kilnd=$!
NIX_DAEMON_SOCKET_PATH=/nix/var/nix/daemon-socket/nix.sock nix-daemon 2>{work}/nix-daemon.log & nixd=$!
for i in $(seq 200); do [ -S /nix/var/nix/daemon-socket/kiln.sock ] && [ -S /nix/var/nix/daemon-socket/nix.sock ] && break; sleep 0.05; done
echo payload > {work}/payload
P=$(NIX_REMOTE=unix:///nix/var/nix/daemon-socket/kiln.sock nix-store --add {work}/payload)
rss() {{ ps -o rss= -p $(pgrep -d, -f "$1") | awk '{{s+=$1}} END {{print s}}'; }}
sleep {settle}
for round in $(seq {rounds}); do
  echo "@ round $round: $($BENCH floor {calls})"
  for d in kiln nix; do
    S=/nix/var/nix/daemon-socket/$d.sock
    echo "@ $d round $round: $($BENCH connect $S 1000)"
    echo "@ $d round $round: $($BENCH query $S 1 {calls} 1 $P)"
    echo "@ $d round $round: $($BENCH query $S 1 {calls} 16 $P)"
    echo "@ $d round $round: $($BENCH query $S 26 {calls} 1 $P)"
    echo "@ $d round $round: $($BENCH query $S 26 {calls} 16 $P)"
  done
done
echo "@ kiln idle: RSS $(rss "$KILN --socket") KiB"
echo "@ nix idle: RSS $(rss nix-daemon) KiB"
for d in kiln nix; do
  $BENCH idle /nix/var/nix/daemon-socket/$d.sock {idle} 8 > /dev/null & held=$!
  sleep 6
  if [ $d = kiln ]; then r=$(rss "$KILN --socket"); else r=$(rss nix-daemon); fi
  echo "@ $d with {idle} idle connections: RSS $r KiB"
  wait $held
done
for d in kiln nix; do
  export NIX_REMOTE=unix:///nix/var/nix/daemon-socket/$d.sock
  for shape in wide chain; do
    drv=$(nix-instantiate {work}/$shape.nix --argstr seed $d 2>/dev/null)
    n=$(nix-store -qR $drv | grep -c '\.drv$')
    sleep {settle}
    t0=$(date +%s%N)
    nix-store --realise -j 8 $drv > /dev/null 2>&1
    t1=$(date +%s%N)
    echo "@ $d $shape: $n drvs, $(( (t1 - t0) / 1000 / n )) us/drv"
  done
done
kill $kilnd $nixd
"""

WIDE = """{ seed }: let leaf = i: derivation { name = "leaf-${toString i}"; system = "x86_64-linux";
  builder = "/bin/sh"; args = [ "-c" "echo ${seed} ${toString i} > $out" ]; };
in derivation { name = "top"; system = "x86_64-linux"; builder = "/bin/sh";
  args = [ "-c" "echo ${toString (map leaf (builtins.genList (x: x) N))} > $out" ]; }
"""

CHAIN = """{ seed }: let step = i: derivation { name = "step-${toString i}"; system = "x86_64-linux";
  builder = "/bin/sh"; args = [ "-c" "echo ${seed} ${if i == 0 then "" else step (i - 1)} > $out" ]; };
in step (N - 1)
"""


def make_work(prefix, wide, chain):
    """A work directory: Nix's configuration for the clients (sandbox off,
    8 jobs), the wide and chain graphs of these sizes as wide.nix and chain.nix."""
    work = tempfile.mkdtemp(prefix=prefix)
    os.makedirs(f"{work}/conf")
    os.makedirs(f"{work}/tmp")
    with open(f"{work}/conf/nix.conf", "w") as f:
        f.write("sandbox = false\nbuild-users-group =\nsubstituters =\nmax-jobs = 8\n")
    with open(f"{work}/wide.nix", "w") as f:
        f.write(WIDE.replace("N", str(wide)))
    with open(f"{work}/chain.nix", "w") as f:
        f.write(CHAIN.replace("N", str(chain)))
    return work


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bin", help="the build's bin directory (kilnd, kiln-bench-daemon)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--calls", type=int, default=10000)
    ap.add_argument("--idle", type=int, default=1000)
    ap.add_argument("--wide", type=int, default=200)
    ap.add_argument("--chain", type=int, default=100)
    ap.add_argument("--settle", type=int, default=20)
    a = ap.parse_args()
    work = make_work("kiln-daemon-bench-", a.wide, a.chain)
    bindir = os.path.abspath(a.bin)
    script = SCRIPT.format(work=work, kilnd=f"{bindir}/kilnd", bench=f"{bindir}/kiln-bench-daemon",
                           rounds=a.rounds, calls=a.calls, idle=a.idle, settle=a.settle)
    r = subprocess.run(["unshare", "-m", "--propagation", "private", "bash", "-c", script],
                       capture_output=True, text=True)
    for line in r.stdout.splitlines():
        if line.startswith("@ "):
            print(line[2:])
    if r.returncode != 0:
        print(r.stderr[-3000:])
    subprocess.run(["rm", "-rf", work])
    return r.returncode


if __name__ == "__main__":
    raise SystemExit(main())
