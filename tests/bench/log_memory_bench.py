#!/usr/bin/env python3
"""Memory of a build's log: peak RSS of `kiln build` (and of `nix-store
--realise` on the same .drv, side by side) for a builder that prints 1 GiB
of log lines, and for one that prints one 256 MiB line without a newline.

Usage: log_memory_bench.py KILN [--lines-bytes 1073741824] [--line-bytes 268435456] [--no-nix]
                             [--compress-build-log zstd|bzip2|none]
Peak RSS is the process's own (wait4's ru_maxrss through kiln-test-peak-rss,
built next to KILN; the builder's processes are small: yes/head/tr). Kiln streams a build's log with back-pressure (a
window of 256 KiB on its way to the logger) and keeps at most 8 KiB of any
line for the failure tail, so its figure should not grow with the log.
Run by hand (root, nix-bin installed), not in CI.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
from kiln_testing import SideBySide, HOST_TOOLS, peak_rss  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("kiln")
    ap.add_argument("--lines-bytes", type=int, default=1 << 30)
    ap.add_argument("--line-bytes", type=int, default=256 << 20)
    ap.add_argument("--no-nix", action="store_true")
    ap.add_argument("--compress-build-log", default="zstd", help="zstd (Kiln's default), bzip2 (Nix's) or none")
    a = ap.parse_args()
    cases = [
        ("log lines", a.lines_bytes, f"yes 'a line of build output, as builders print them' | head -c {a.lines_bytes}"),
        ("one line", a.line_bytes, f"head -c {a.line_bytes} /dev/zero | tr '\\0' x"),
    ]
    s = SideBySide(os.path.abspath(a.kiln))
    with open(s.env["KILN_CONF"], "a") as f:
        f.write(f"compress-build-log = {a.compress_build_log}\n")
    try:
        for what, size, script in cases:
            d = s.drv(f"log-{what.replace(' ', '-')}", f"{script}; echo done > $out")
            rc, secs, mib = peak_rss(s.kiln, [s.kiln, "build", "--store", s.store, d], env=s.env)
            print(f"{what} ({size / (1 << 20):.0f} MiB of log): kiln exit {rc}, {secs:.1f} s, peak RSS {mib:.1f} MiB")
            if a.no_nix:
                continue
            s.nix_realise(d, options=["--dry-run"])  # imports the .drv; builds nothing
            rc, secs, mib = peak_rss(s.kiln, ["nix-store", "--store", s.nix_root, "--realise", d, "--option", "substituters",
                                      "", "--option", "sandbox", "true", "--option", "sandbox-paths", HOST_TOOLS])
            print(f"{what} ({size / (1 << 20):.0f} MiB of log): nix  exit {rc}, {secs:.1f} s, peak RSS {mib:.1f} MiB")
    finally:
        s.close()


if __name__ == "__main__":
    main()
