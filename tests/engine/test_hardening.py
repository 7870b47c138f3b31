"""Bad settings and key files: a clear error at start, before any build,
nothing on stdout (so --json stays parseable), exit 1."""
import os
import signal
import subprocess
import time

import pytest

from host_processes import running
from kiln_testing import explain, peak_rss


def assert_refused_at_start(both, r, fragment):
    assert r.returncode == 1 and r.stdout == "", explain(r)
    assert fragment in r.stderr and "building" not in r.stderr and "unhandled" not in r.stderr, explain(r)


@pytest.mark.parametrize("key_file, fragment", [
    ("/nonexistent/key", "setting 'secret-key-files': opening '/nonexistent/key': No such file or directory"),
    ("BAD", "setting 'secret-key-files': key file '{BAD}': secret key is not of the form 'name:base64'"),
])
def test_a_missing_or_malformed_secret_key_file_is_an_error_at_start(both, key_file, fragment):
    bad = f"{both.dir}/bad.sk"
    with open(bad, "w") as f:
        f.write("not a key\n")
    key_file = key_file.replace("BAD", bad)
    d = both.drv("signed", "echo x > $out")
    r = both.kiln_build("--json", "--option", "secret-key-files", key_file, d)
    assert_refused_at_start(both, r, fragment.replace("{BAD}", bad))
    assert not both.kiln_valid(both.outputs(d)["out"])


@pytest.mark.parametrize("args, fragment", [
    (["--timeout", "99999999999999"], "--timeout: setting 'timeout': 99999999999999 is out of range"),
    (["--max-silent-time", "18446744073709551616"], "setting 'max-silent-time': 18446744073709551616 is out of range"),
    (["--option", "build-pids-max", "999999999999999999"], "setting 'build-pids-max': 999999999999999999 is out"),
    (["-j", "many"], "setting 'max-jobs': should be 'auto' or an integer, got 'many'"),
])
def test_a_setting_out_of_range_is_an_error_at_start(both, args, fragment):
    d = both.drv("limited", "echo x > $out")
    assert_refused_at_start(both, both.kiln_build("--json", *args, d), fragment)


def test_the_largest_timeout_is_not_an_instant_one(both):
    d = both.drv("patient", "sleep 1; echo x > $out")
    r = both.kiln_build("--json", "--timeout", "4294967295", "--max-silent-time", "4294967295", d)
    assert r.returncode == 0 and '"Built"' in r.stdout, explain(r)


@pytest.mark.parametrize("script", [
    "yes 'a line of build output' | head -c 33554432",  # 32 MiB of lines
    "head -c 33554432 /dev/zero | tr '\\0' x",  # one 32 MiB line
])
def test_a_builds_log_does_not_grow_kilns_memory(both, script):
    # bzip2 is the slowest writer: without back-pressure its backlog piled
    # up in memory (and every finished line was kept besides).
    with open(both.env["KILN_CONF"], "a") as f:
        f.write("compress-build-log = bzip2\n")
    d = both.drv("chatty", f"{script}; echo done > $out")
    rc, _, mib = peak_rss(both.kiln, [both.kiln, "build", "--store", both.store, d], env=both.env)
    assert rc == 0
    assert mib < 48, f"kiln's peak RSS was {mib:.1f} MiB for a 32 MiB log"
    log = both.kiln_run("log", "--store", both.store, d)
    assert len(log.stdout) == 32 << 20, "the log file still has every byte"


def test_a_killed_kiln_leaves_no_build_directory_behind_after_the_next_run(both):
    slow = both.drv("slow", "echo started; exec sleep 6073")
    p = subprocess.Popen([both.kiln, "build", "--store", both.store, slow], env=both.env, stderr=subprocess.PIPE)
    tmp = f"{both.dir}/tmp"
    deadline = time.monotonic() + 60
    while not any(os.listdir(os.path.join(tmp, d)) for d in os.listdir(tmp)) and time.monotonic() < deadline:
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    time.sleep(1)  # a builder still being set up when Kiln died must not start after it
    deadline = time.monotonic() + 10
    while running([b"sleep", b"6073"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not running([b"sleep", b"6073"]), "the builder died with its Kiln"
    left = os.listdir(tmp)
    assert left and left[0].startswith(f"kiln-builds-{p.pid}-"), left  # what a killed Kiln leaves
    failed = both.drv("fails", "echo kept > $out; exit 1")
    r = both.kiln_build("--keep-failed", failed)
    assert r.returncode == 100 and "note: keeping build directory" in r.stderr, explain(r)
    ok = both.drv("fine", "echo ok > $out")
    assert both.kiln_build(ok).returncode == 0
    # The killed engine's directory is gone; the kept one stays for the user.
    left = os.listdir(tmp)
    assert len(left) == 1 and not left[0].startswith(f"kiln-builds-{p.pid}-"), left
    kept = os.listdir(os.path.join(tmp, left[0]))
    assert len([k for k in kept if k != "kept"]) == 1, kept


def test_an_unsandboxed_builder_dies_with_a_killed_kiln(both):
    slow = both.drv("slow-unsandboxed", "echo started; exec sleep 6074")
    p = subprocess.Popen([both.kiln, "build", "--store", both.store, "--option", "sandbox", "false", slow],
                         env=both.env, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not running([b"sleep", b"6074"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert running([b"sleep", b"6074"]), "the builder started"
    p.send_signal(signal.SIGKILL)
    p.wait()
    deadline = time.monotonic() + 10
    while running([b"sleep", b"6074"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not running([b"sleep", b"6074"]), "the builder died with its Kiln"


def test_a_fork_bomb_stops_at_the_default_process_limit(both):
    # 3,000 processes at once (sleeping; killed with the build): past the
    # default build-pids-max (auto: 2048), forks fail and so does the build;
    # with the limit off, the same builder builds.
    # (The sleeps outlast the loop however slow forking is; the build's end kills them.)
    script = "i=0; while [ $i -lt 3000 ]; do sleep 600 & i=$((i+1)); done; echo ok > $out"
    d = both.drv("forks", script)
    r = both.kiln_build("--json", d, timeout=300)
    assert r.returncode == 100, explain(r)
    off = both.kiln_build("--json", "--option", "build-pids-max", "0", d, timeout=300)
    assert off.returncode == 0, explain(off)


def test_a_killed_nar_restore_leaves_nothing_after_the_next_one(both, tmp_path):
    # A restore killed midway leaves its staging directory (named with its
    # pid); the next restore beside it removes it, never a live one's.
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "f").write_text("x")
    nar = subprocess.run([both.kiln, "nar", "dump", str(tree)], capture_output=True, check=True).stdout
    dead = subprocess.Popen(["true"])
    dead.wait()
    out = tmp_path / "out"
    out.mkdir()
    (out / f".kiln-restore-{dead.pid}-x-AAAAAA").mkdir()  # as a killed restore leaves it
    (out / f".kiln-restore-{os.getpid()}-x-BBBBBB").mkdir()  # a live process's
    r = subprocess.run([both.kiln, "nar", "restore", str(out / "restored")], input=nar, capture_output=True)
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(out)) == [f".kiln-restore-{os.getpid()}-x-BBBBBB", "restored"]


@pytest.mark.parametrize("writer", [
    "mkdir $out; i=0; while true; do head -c 1000000 /dev/zero > $out/f$i; i=$((i+1)); done",  # many files
    "mkdir $out; echo > $out/small; yes > /build/endless",  # one endless file, in the build directory
])
def test_a_runaway_writer_fails_its_build_at_build_size_max(both, writer):
    d = both.drv("runaway", writer)
    r = both.kiln_build("--option", "build-size-max", "20M", d)
    assert r.returncode == 100 and r.stdout == "", explain(r)
    assert f"error: builder for '{d}' killed: " in r.stderr, explain(r)
    assert "(build-size-max is 20971520 bytes)" in r.stderr, explain(r)
    assert not both.kiln_valid(both.outputs(d)["out"])
    assert os.listdir(f"{both.dir}/tmp") == [], "the build directory is removed"
    assert not os.path.exists(both.real(both.outputs(d)["out"])), "the partial output is removed"
    # Under the limit, a build is not disturbed by it.
    ok = both.drv("modest", "mkdir $out; head -c 5000000 /dev/zero > $out/f; sleep 1.2")
    r = both.kiln_build("--option", "build-size-max", "20M", ok)
    assert r.returncode == 0, explain(r)
