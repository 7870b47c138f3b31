"""kilnd's worker processes under faults (issue 16): builds and
substitutions run in kiln-worker processes linked to kilnd by a socketpair
each; a worker that is killed or stopped costs a retry of its work, never
the daemon; a worker that crashes at every start is given up on with a
clear report; one gone bad gets nothing through its front; kilnd killed
leaves no process of its builds behind."""
import json
import os
import shutil
import signal
import subprocess
import threading
import time

import pytest

from kiln_testing import (FileServer, Kilnd, build, build_started, children_named, explain, parent_of, processes,
                          wait_until)


def start(both, *options, env=None):
    return Kilnd(both, "--option", "build-users-group", "", "--option", "workers", "2", *options, env=env)


@pytest.fixture
def kilnd(both):
    d = start(both)
    yield d
    assert d.proc.poll() is None, "kilnd died\n" + d.output()
    assert d.stop() == 0, d.output()


def build_in_background(c, drv, *argv):
    """Builds DRV through client `c` on a thread; once `argv` runs (the
    builder), returns the thread, where its (error, messages) will be, and
    the builder's pid."""
    result = {}
    t = threading.Thread(target=lambda: result.update(r=build(c, drv)))
    t.start()
    sleeper = wait_until(lambda: processes(*argv))
    assert sleeper, f"the build of {drv} never started"
    return t, result, sleeper[0]


def worker_of(kilnd, pid):
    """The kiln-worker process `pid` descends from (None if none)."""
    workers = set(kilnd.workers())
    while pid and pid > 1:
        if pid in workers:
            return pid
        pid = parent_of(pid)
    return None


def listening_inodes():
    """Socket inodes of every listening TCP socket on the host."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                for line in f.readlines()[1:]:
                    fields = line.split()
                    if fields[3] == "0A":  # LISTEN
                        inodes.add(fields[9])
        except OSError:
            pass
    return inodes


def sockets_of(pid):
    found = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            found.add(target[8:-1])
    return found


def test_builds_run_in_workers_that_nobody_else_can_reach(kilnd, both):
    """The builds run in kiln-worker processes, which listen on no port
    (neither does kilnd), and a build inherits no socket of its worker."""
    shared = both.share_with_builders("where")
    kilnd.reload()
    assert wait_until(lambda: len(kilnd.workers()) == 2), "kilnd did not start 2 workers\n" + kilnd.output()
    drv = both.drv("where", f"ls -l /proc/self/fd > {shared}/fds; exec sleep 4321")
    c = kilnd.client()
    c.set_options()
    sleeper = build_started(c, drv, "sleep", "4321")
    assert worker_of(kilnd, sleeper[0]), "the builder does not run under a kiln-worker"
    listening = listening_inodes()
    for pid in [kilnd.proc.pid, *kilnd.workers()]:
        assert not sockets_of(pid) & listening, f"process {pid} listens on a TCP port"
    assert not sockets_of(sleeper[0]), "the builder inherited a socket"
    with open(f"{shared}/fds") as f:
        assert "socket:" not in f.read(), "the builder inherited a socket"
    c.close()


def connected_to(port):
    """Pids of processes with a TCP connection established to 127.0.0.1:`port`."""
    inodes = set()
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[3] == "01" and int(fields[2].split(":")[1], 16) == port:
                inodes.add(fields[9])
    return [int(pid) for pid in filter(str.isdigit, os.listdir("/proc"))
            if inodes and sockets_of_or_none(int(pid)) & inodes]


def sockets_of_or_none(pid):
    try:
        return sockets_of(pid)
    except OSError:
        return set()


def cached_closure(both, name):
    """A derivation with one input, both built, copied to a signed file
    cache and deleted from the store: (top drv, its output, the input's
    output, the cache's directory, the public key)."""
    dep = both.drv(f"{name}-dep", "echo dep > $out; head -c 100000 /dev/urandom >> $out")
    dep_out = both.outputs(dep)["out"]
    top = both.drv(f"{name}-top", f"mkdir $out; echo {dep_out} > $out/ref", inputs=[dep])
    top_out = both.outputs(top)["out"]
    assert both.kiln_build(top).returncode == 0
    key, pub = f"{both.dir}/{name}.sec", f"{both.dir}/{name}.pub"
    assert both.kiln_run("key", "generate", f"{name}-1", key, pub).returncode == 0
    cache = f"{both.dir}/{name}-cache"
    r = both.kiln_run("copy", "--store", both.store, "--to", f"file://{cache}?compression=zstd&secret-key={key}", top_out)
    assert r.returncode == 0, explain(r)
    assert both.kiln_run("store", "delete", "--store", both.store, top_out, dep_out).returncode == 0
    return top, top_out, dep_out, cache, open(pub).read().strip()


def test_substitutions_run_in_workers_and_a_killed_one_is_retried(both):
    """Substitution from an http cache runs in a kiln-worker (the download's
    connection is the worker's, not kilnd's); SIGKILL to that worker
    mid-download leaves nothing registered, and the copy is asked again of
    a worker and succeeds."""
    top, top_out, dep_out, cache, pub = cached_closure(both, "subst")
    first = threading.Event()

    def hang_first_nar(method, path, count):
        if method == "GET" and path.startswith("/nar/") and not first.is_set():
            first.set()
            return "hang"
        return None
    server = FileServer(cache, hang_first_nar)
    d = start(both, "--option", "substituters", server.url, "--option", "trusted-public-keys", pub)
    try:
        c = d.client()
        c.set_options()
        result = {}
        t = threading.Thread(target=lambda: result.update(r=build(c, top)))
        t.start()
        assert wait_until(first.is_set), "no NAR was asked for\n" + d.output()
        port = int(server.url.rsplit(":", 1)[1])
        fetchers = wait_until(lambda: [p for p in connected_to(port) if p != os.getpid()])
        assert fetchers, "nobody holds the download's connection"
        assert d.proc.pid not in fetchers, "kilnd itself downloads"
        assert all(p in d.workers() for p in fetchers), (fetchers, d.workers())
        os.kill(fetchers[0], signal.SIGKILL)
        t.join(60)
        err, _ = result["r"]
        assert err is None, f"the substitution failed after its worker was lost: {err}\n{d.output()}"
        nars = [p for m, p in server.requests if m == "GET" and p.startswith("/nar/")]
        assert len(nars) == 3 and nars[0] == nars[1], nars  # the lost one asked again, then the other
        assert c.is_valid(top_out) and c.is_valid(dep_out)
        assert f"pid {fetchers[0]})" in d.wait_for("starting it again")
        # The run over, its substituters in the workers end, and their temp
        # roots with them; the killed worker's were removed when it was reaped.
        c.close()
        temproots = f"{both.dir}/kiln/nix/var/nix/temproots"
        left = wait_until(lambda: not [f for f in os.listdir(temproots) if "-subst" in f], 10)
        assert left, (os.listdir(temproots), d.output())
        v = both.kiln_run("store", "verify", "--store", both.store, "--check-contents", "--all")
        assert v.returncode == 0, explain(v)
    finally:
        server.close()
        assert d.stop() == 0, d.output()


def test_a_lookup_stuck_in_a_silent_cache_stops_when_its_run_ends(both):
    """A cache first in priority that takes narinfo requests and never
    answers: the closure comes from the next cache, and once the run is
    over the worker's lookup in the silent one stops at once (kilnd cancels
    the run's substituters on their workers), not at
    stalled-download-timeout (120 s here)."""
    top, top_out, dep_out, cache, pub = cached_closure(both, "silent")
    quiet = f"{both.dir}/silent-quiet"
    os.makedirs(quiet)
    shutil.copy(f"{cache}/nix-cache-info", quiet)
    silent = FileServer(quiet, lambda method, path, count: "hang" if path.endswith(".narinfo") else None)
    good = FileServer(cache)
    silent_port = int(silent.url.rsplit(":", 1)[1])
    d = start(both, "--option", "substituters", f"{silent.url}?priority=1 {good.url}?priority=2",
              "--option", "trusted-public-keys", pub, "--option", "stalled-download-timeout", "120")
    try:
        c = d.client()
        c.set_options()
        result = {}
        t = threading.Thread(target=lambda: result.update(r=build(c, top)))
        t.start()
        waiting = wait_until(lambda: [p for p in connected_to(silent_port) if p in d.workers()])
        assert waiting, "no worker asked the silent cache\n" + d.output()
        t.join(60)
        assert result["r"][0] is None, d.output()
        assert c.is_valid(top_out) and c.is_valid(dep_out)
        c.close()
        began = time.monotonic()
        stopped = wait_until(lambda: not [p for p in connected_to(silent_port) if p != os.getpid()], 10)
        assert stopped, f"a worker still waits for the silent cache {time.monotonic() - began:.1f} s after the run"
        assert d.proc.poll() is None, d.output()
    finally:
        silent.close()
        good.close()
        assert d.stop() == 0, d.output()


def all_gone(pids):
    """Whether every one of `pids` has ended (a zombie counts: init reaps late here)."""
    def gone(pid):
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] == "Z"
        except OSError:
            return True
    return all(gone(p) for p in pids)


def threads(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("Threads:"))
    except OSError:
        return 0


def capabilities(pid, which):
    """Capability numbers in `which` (CapBnd, CapEff, ...) of process `pid`."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(which + ":"):
                mask = int(line.split()[1], 16)
                return {cap for cap in range(64) if mask >> cap & 1}
    raise AssertionError(f"no {which} for {pid}")


def test_workers_keep_only_the_capabilities_builds_need(kilnd, both):
    """A worker's bounding set (so everything it starts) lacks what no build
    needs: modules, raw I/O, the clock, reboot, MAC administration, BPF; it
    keeps what builds and sandboxes take. A
    sandboxed build still runs (the rest of this suite builds through
    workers), and kilnd itself keeps its own."""
    # Started: each drops its capabilities before its first thread.
    started = lambda: len(kilnd.workers()) == 2 and all(threads(w) > 1 for w in kilnd.workers())
    assert wait_until(started), kilnd.output()
    CAP_SYS_MODULE, CAP_SYS_RAWIO, CAP_SYS_BOOT, CAP_SYS_TIME, CAP_MAC_ADMIN, CAP_BPF = 16, 17, 22, 25, 33, 39
    CAP_CHOWN, CAP_SETUID, CAP_SYS_ADMIN = 0, 7, 21
    dropped = {CAP_SYS_MODULE, CAP_SYS_RAWIO, CAP_SYS_BOOT, CAP_SYS_TIME, CAP_MAC_ADMIN, CAP_BPF}
    for w in kilnd.workers():
        for which in ("CapBnd", "CapEff", "CapPrm"):
            caps = capabilities(w, which)
            assert not caps & dropped, (w, which, sorted(caps & dropped))
            assert {CAP_CHOWN, CAP_SETUID, CAP_SYS_ADMIN} <= caps, (w, which, sorted(caps))
    assert dropped <= capabilities(kilnd.proc.pid, "CapBnd")
    drv = both.drv("capable", "echo built > $out")
    c = kilnd.client()
    c.set_options()
    assert build(c, drv)[0] is None
    assert c.is_valid(both.outputs(drv)["out"])


def test_a_hostile_worker_gets_nothing_through_its_front(both):
    """A kiln-worker gone bad (hostile_worker.cpp) tries its front in kilnd:
    a log file of its choosing for a build nobody leased to it, writing to
    and closing such a log, a message outside the front's interface. Each
    is refused, nothing is written, the front still answers, and kilnd
    stays up and still builds on that worker; it ends with kilnd."""
    report, plant = f"{both.dir}/hostile-report", f"{both.dir}/planted"
    program = os.path.join(os.path.dirname(both.kiln), "kiln-test-hostile-worker")
    d = start(both, "--option", "workers", "1",
              env={"KILN_WORKER_PROGRAM": program, "KILN_HOSTILE_REPORT": report, "KILN_HOSTILE_PLANT": plant})
    try:
        done = lambda: os.path.exists(report) and "done" in open(report).read()
        assert wait_until(done), d.output()
        with open(report) as f:
            answers = dict(line.split(": ", 1) for line in f.read().splitlines() if ": " in line)
        for attempt in ("log", "close", "unexpected", "close again"):
            assert answers[attempt].startswith("refused"), answers
        assert "unexpected_message" in answers["close again"], answers  # refused as before, not gone
        assert not os.path.exists(plant), "the worker had kilnd open a file of its choosing"
        assert d.proc.poll() is None, d.output()
        drv = both.drv("after-hostile", "echo ok > $out")
        c = d.client()
        c.set_options()
        assert build(c, drv)[0] is None, d.output()
        assert c.is_valid(both.outputs(drv)["out"])
        hostile = children_named(d.proc.pid, "kiln-test-hosti")  # the command name, cut to 15 characters
        assert hostile, d.output()
    finally:
        assert d.stop() == 0, d.output()
    assert wait_until(lambda: all_gone(hostile), 5), "the hostile worker outlived kilnd"


def test_a_killed_worker_costs_a_retry_of_its_build(kilnd, both):
    """SIGKILL to the worker running a build: its builder dies with it,
    nothing of it is registered, the build runs again on a worker and
    succeeds, and the worker is started again."""
    shared = both.share_with_builders("retry")
    kilnd.reload()
    drv = both.drv("retried", f"echo run >> {shared}/runs; sleep 3; echo done > $out")
    out = both.outputs(drv)["out"]
    c = kilnd.client()
    c.set_options()
    t, result, sleeper = build_in_background(c, drv, "sleep", "3")
    worker = worker_of(kilnd, sleeper)
    assert worker, "no worker runs the build"
    os.kill(worker, signal.SIGKILL)
    assert wait_until(lambda: not os.path.exists(f"/proc/{sleeper}"), 2), "the build outlived its worker"
    t.join(60)
    err, seen = result["r"]
    assert err is None, f"the build failed after its worker was lost: {err}\n{kilnd.output()}"
    assert "its worker was lost" in str(seen), seen
    with open(f"{shared}/runs") as f:
        assert f.read() == "run\nrun\n"
    assert c.is_valid(out)
    log = kilnd.wait_for("starting it again")
    assert f"pid {worker})" in log, log
    assert wait_until(lambda: len(kilnd.workers()) == 2 and worker not in kilnd.workers()), \
        "the worker was not started again\n" + kilnd.output()
    r = both.kiln_run("store", "verify", "--store", both.store, "--check-contents", "--all")
    assert r.returncode == 0, r.stderr


def test_a_stopped_worker_is_noticed_within_two_seconds(kilnd, both):
    """SIGSTOP to the worker running a build: kilnd takes it for lost within
    2 s (the link's heartbeat), kills it, and the build finishes elsewhere."""
    shared = both.share_with_builders("stopped")
    kilnd.reload()
    drv = both.drv("stopped", f"echo run >> {shared}/runs; sleep 2.2; echo done > $out")
    c = kilnd.client()
    c.set_options()
    t, result, sleeper = build_in_background(c, drv, "sleep", "2.2")
    worker = worker_of(kilnd, sleeper)
    os.kill(worker, signal.SIGSTOP)
    stopped = time.monotonic()
    kilnd.wait_for("stopped answering", timeout=10)
    noticed = time.monotonic() - stopped
    assert noticed < 2.0, f"a stopped worker was noticed after {noticed:.2f} s"
    t.join(60)
    err, _ = result["r"]
    assert err is None, f"the build did not finish elsewhere: {err}\n{kilnd.output()}"
    assert wait_until(lambda: not os.path.exists(f"/proc/{worker}"), 5), "the stopped worker was not killed"


def test_a_worker_stopped_as_kilnd_stops_ends_with_it(both):
    """SIGSTOP to an idle worker, then SIGTERM to kilnd before it can notice:
    kilnd resumes the worker as it cuts the links, so the worker ends
    cleanly before kilnd does (not killed at the deadline, nor by the
    kernel's SIGHUP to a stopped process group orphaned by kilnd's exit)."""
    d = start(both)
    started = lambda: len(d.workers()) == 2 and all(threads(w) > 1 for w in d.workers())
    assert wait_until(started), d.output()
    workers = d.workers()
    os.kill(workers[0], signal.SIGSTOP)
    assert d.stop() == 0, d.output()
    assert "stopped answering" not in d.output(), "kilnd noticed the stop first: the test did not test the stop"
    assert "had not ended" not in d.output(), "the stopped worker had to be killed: it was not resumed"
    assert wait_until(lambda: all_gone(workers), 5), f"a worker outlived kilnd\n{d.output()}"


def test_a_worker_that_will_not_end_is_killed_at_kilnd_s_stop(both):
    """A worker that ignores the end of its link (the hostile worker told to
    linger) is killed once worker_stop_deadline (5 s) has passed after the
    stop, and kilnd says so; kilnd still exits cleanly."""
    report, plant = f"{both.dir}/linger-report", f"{both.dir}/linger-planted"
    program = os.path.join(os.path.dirname(both.kiln), "kiln-test-hostile-worker")
    d = start(both, "--option", "workers", "1",
              env={"KILN_WORKER_PROGRAM": program, "KILN_HOSTILE_REPORT": report, "KILN_HOSTILE_PLANT": plant,
                   "KILN_HOSTILE_LINGER": "1"})
    assert wait_until(lambda: os.path.exists(report) and "done" in open(report).read()), d.output()
    lingering = children_named(d.proc.pid, "kiln-test-hosti")
    assert lingering, d.output()
    began = time.monotonic()
    assert d.stop() == 0, d.output()
    took = time.monotonic() - began
    assert "had not ended 5 s after kilnd's stop: killed" in d.output(), d.output()
    assert 5 <= took < 15, f"kilnd took {took:.1f} s to stop"
    assert wait_until(lambda: all_gone(lingering), 5), "the lingering worker outlived kilnd"


def test_a_build_whose_workers_keep_dying_fails_after_its_retries(both):
    """max-build-retries 1: the worker is killed twice under one build, which
    then fails with the reason; the daemon goes on."""
    shared = both.share_with_builders("doomed")
    d = start(both, "--option", "max-build-retries", "1")
    drv = both.drv("doomed", f"echo run >> {shared}/runs; exec sleep 5678")
    c = d.client()
    c.set_options()
    result = {}
    t = threading.Thread(target=lambda: result.update(r=build(c, drv)))
    t.start()
    for attempt in range(2):
        sleeper = wait_until(lambda: processes("sleep", "5678"))
        assert sleeper, f"attempt {attempt} never started\n" + d.output()
        os.kill(worker_of(d, sleeper[0]), signal.SIGKILL)
        assert wait_until(lambda: not processes("sleep", "5678"), 5)
    t.join(60)
    err, _ = result["r"]
    assert err and "its worker was lost" in err and "not tried again" in err, err
    with open(f"{shared}/runs") as f:
        assert f.read() == "run\nrun\n"
    c = d.client()
    c.set_options()
    assert not c.is_valid(both.outputs(drv)["out"])
    assert d.stop() == 0, d.output()


def test_a_worker_that_crashes_at_start_is_given_up_on(both):
    """A kiln-worker that dies at every start: kilnd starts it again after
    100, 200, 400, 800 ms, then gives up and says so; it stays up, answers,
    and a build fails with the reason instead of waiting."""
    crash = f"{both.dir}/crashing-worker"
    with open(crash, "w") as f:
        f.write("#!/bin/sh\necho 'crashing on purpose' >&2\nexit 3\n")
    os.chmod(crash, 0o755)
    d = start(both, "--option", "workers", "1", env={"KILN_WORKER_PROGRAM": crash})
    log = d.wait_for("is not started again", timeout=20)
    for backoff in ("100 ms", "200 ms", "400 ms", "800 ms"):
        assert f"starting it again in {backoff}" in log, log
    assert "ended: failed with exit code 3" in log and "crashing on purpose" in log, log
    assert d.proc.poll() is None, "kilnd died"
    drv = both.drv("never", "echo x > $out")
    c = d.client()
    c.set_options()
    err, _ = build(c, drv)
    assert err and "no worker process is running" in err, err
    assert d.stop() == 0, d.output()


def test_kilnd_killed_leaves_no_worker_and_no_build(both):
    """SIGKILL to kilnd mid-build: its workers kill their builds and exit;
    the store opens consistent for the next kilnd, which drops the killed
    processes' temp roots, builds the killed build again (its lock is not
    stuck), and no build directory is left once it has stopped."""
    shared = both.share_with_builders("orphans")
    d = start(both)
    assert wait_until(lambda: len(d.workers()) == 2)
    workers = d.workers()
    drv = both.drv("orphan", f"echo run >> {shared}/runs; test -e {shared}/again && echo done > $out && exit 0; "
                             "exec sleep 8765")
    c = d.client()
    c.set_options()
    build_started(c, drv, "sleep", "8765")
    d.proc.kill()
    d.proc.wait()
    assert wait_until(lambda: not processes("sleep", "8765"), 5), "a build outlived kilnd"
    assert wait_until(lambda: all_gone(workers), 5), "a worker outlived kilnd"
    r = both.kiln_run("store", "verify", "--store", both.store, "--check-contents", "--all")
    assert r.returncode == 0, r.stderr
    temproots = f"{both.dir}/kiln/nix/var/nix/temproots"
    killed = {str(p) for p in [d.proc.pid, *workers]}
    assert {n.split("-")[0] for n in os.listdir(temproots)} & killed, "the killed kilnd had no temp roots"
    again = start(both)
    left = [n for n in os.listdir(temproots) if n.split("-")[0] in killed]
    assert not left, f"the killed processes' temp roots are still there: {left}"
    open(f"{shared}/again", "w").close()
    quick = both.drv("after", "echo after > $out")
    c = again.client()
    c.set_options()
    assert build(c, quick)[0] is None
    assert build(c, drv)[0] is None, again.output()
    assert c.is_valid(both.outputs(drv)["out"])
    assert again.stop() == 0, again.output()
    # The killed workers' build directories were swept by the next build;
    # the new workers removed theirs when they ended.
    tmp = both.env["TMPDIR"]
    left = wait_until(lambda: not [n for n in os.listdir(tmp) if n.startswith("kiln-builds-")], 5)
    assert left, f"build directories left in {tmp}: {os.listdir(tmp)}"


def test_a_worker_left_wedged_by_a_killed_kilnd_is_killed_by_the_next(both):
    """kilnd SIGKILLed while a worker ignores the end of its link (the
    hostile worker told to linger, as a wedged worker would): it stays;
    the next kilnd on the store finds it in nix/var/kiln/workers, kills it
    and says so, records only its own workers, and none once stopped. (A
    worker merely stopped at kilnd's death needs none of this: the kernel
    sends SIGHUP and SIGCONT to a stopped process group it orphans.)"""
    report, plant = f"{both.dir}/wedged-report", f"{both.dir}/wedged-planted"
    program = os.path.join(os.path.dirname(both.kiln), "kiln-test-hostile-worker")
    d = start(both, "--option", "workers", "1",
              env={"KILN_WORKER_PROGRAM": program, "KILN_HOSTILE_REPORT": report, "KILN_HOSTILE_PLANT": plant,
                   "KILN_HOSTILE_LINGER": "1"})
    assert wait_until(lambda: os.path.exists(report) and "done" in open(report).read()), d.output()
    (wedged,) = children_named(d.proc.pid, "kiln-test-hosti")
    registry = f"{both.dir}/kiln/nix/var/kiln/workers"
    assert os.listdir(registry) == [str(wedged)]
    d.proc.kill()
    d.proc.wait()
    time.sleep(1)
    assert not all_gone([wedged]), "the wedged worker ended with kilnd: nothing left to test"
    again = start(both)
    try:
        assert f"killed worker process {wedged}, left behind by a kilnd that is gone" in \
            again.wait_for(f"killed worker process {wedged}"), again.output()
        assert all_gone([wedged]), "the wedged worker is still there"
        assert wait_until(lambda: len(again.workers()) == 2)
        assert wait_until(lambda: sorted(os.listdir(registry)) == sorted(str(p) for p in again.workers())), \
            (os.listdir(registry), again.workers())
        drv = both.drv("after-wedged", "echo ok > $out")
        c = again.client()
        c.set_options()
        assert build(c, drv)[0] is None, again.output()
    finally:
        assert again.stop() == 0, again.output()
    assert wait_until(lambda: not os.listdir(registry), 5), os.listdir(registry)


def started_seconds_ago(pid):
    """How long ago process `pid` started (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            start = int(f.read().rsplit(")", 1)[1].split()[19]) / os.sysconf("SC_CLK_TCK")
        with open("/proc/uptime") as f:
            return float(f.read().split()[0]) - start
    except (OSError, IndexError, ValueError):
        return 0


def test_five_hundred_derivations_through_twenty_worker_kills(both):
    """A 500-derivation graph built while workers running builds are
    SIGKILLed at random, 20 times or more: it completes, every output is
    valid and verifies, no build process is left, and kilnd's memory stays
    where it was."""
    import random
    rng = random.Random(16)
    drvs = []
    for i in range(500):
        inputs = rng.sample(drvs[-40:], min(2, len(drvs))) if i % 5 else []
        drvs.append(both.drv(f"g{i}", f"sleep 0.1; echo {i} > $out", inputs=inputs))
    d = start(both, "--option", "max-jobs", "4", "--option", "max-build-retries", "10")
    c = d.client()
    c.set_options()
    result = {}
    t = threading.Thread(target=lambda: result.update(r=build(c, *drvs)))
    t.start()
    kills, rss = 0, []
    while t.is_alive() and kills < 40:
        time.sleep(0.25)
        # Workers that have run a while (a worker lost right after its
        # start counts towards giving up on it) and run a build now.
        busy = {worker_of(d, p) for p in processes("sleep", "0.1")}
        victims = [w for w in busy if w and started_seconds_ago(w) > 1.2]
        if victims:
            os.kill(rng.choice(victims), signal.SIGKILL)
            kills += 1
            if kills in (5, 20):
                rss.append(d.rss_kib())
    t.join(300)
    err, _ = result["r"]
    assert err is None, f"the graph failed: {err}\n{d.output()[-3000:]}"
    assert kills >= 20, f"only {kills} worker kills happened during the build"
    assert d.output().count("starting it again") >= 20, d.output()[-3000:]
    c = d.client()
    c.set_options()
    invalid = [x for x in drvs if not c.is_valid(both.outputs(x)["out"])]
    assert not invalid, f"{len(invalid)} outputs are not valid"
    r = both.kiln_run("store", "verify", "--store", both.store, "--check-contents", "--all")
    assert r.returncode == 0, r.stderr
    assert not processes("sleep", "0.1"), "a build process outlived its build"
    assert len(rss) == 2 and rss[1] - rss[0] < 20 * 1024, f"kilnd's RSS grew from {rss[0]} to {rss[1]} KiB"
    assert d.stop() == 0, d.output()


def test_what_a_lost_worker_s_build_started_dies_with_it(both):
    """Without a sandbox, a builder's own children are outside any PID
    namespace: when its worker is killed, kilnd kills the build's control
    group, so a daemon the build started does not outlive it."""
    shared = both.share_with_builders("daemonized")
    d = start(both, "--option", "sandbox", "false", "--option", "max-build-retries", "0")
    drv = both.drv("daemonizer", f"sleep 9753 & echo started > {shared}/started; exec sleep 8642")
    c = d.client()
    c.set_options()
    sleeper = build_started(c, drv, "sleep", "8642")
    assert wait_until(lambda: processes("sleep", "9753")), "the build's daemon never started\n" + d.output()
    os.kill(worker_of(d, sleeper[0]), signal.SIGKILL)
    assert wait_until(lambda: not processes("sleep", "9753") and not processes("sleep", "8642"), 3), \
        "a process the build started outlived its worker"
    assert d.stop() == 0, d.output()


def test_a_detached_build_outlives_its_client_and_a_killed_kilnd(both):
    """`kiln build --detach` returns an id at once; kilnd SIGKILLed while it
    builds leaves a store that verifies; restarted, kilnd runs the request
    again from its durable queue, and `--attach ID` gets the result."""
    shared = both.share_with_builders("detached")
    d = start(both)
    store = f"unix://{d.socket}"
    drv = both.drv("detached", f"echo run >> {shared}/runs; sleep 2.3; echo done > $out")
    began = time.monotonic()
    r = both.kiln_run("build", "--store", store, "--detach", "--json", drv)
    assert r.returncode == 0, r.stderr
    assert time.monotonic() - began < 2, "--detach waited for the build"
    ident = json.loads(r.stdout)["id"]
    r = both.kiln_run("status", "--store", store, "--json", str(ident))
    assert r.returncode == 0 and json.loads(r.stdout)["done"] is False, r.stdout + r.stderr
    assert wait_until(lambda: os.path.exists(f"{shared}/runs")), "the detached build never started\n" + d.output()
    d.proc.kill()
    d.proc.wait()
    assert wait_until(lambda: not processes("sleep", "2.3"), 5), "the build outlived kilnd"
    r = both.kiln_run("store", "verify", "--store", both.store, "--check-contents", "--all")
    assert r.returncode == 0, r.stderr
    again = start(both)
    again.wait_for(f"resuming detached build {ident}")
    r = both.kiln_run("build", "--store", store, "--attach", str(ident), "--json")
    assert r.returncode == 0, r.stderr
    results = json.loads(r.stdout)
    mine = [x for x in results if x["path"] == drv]
    assert mine and mine[0]["status"] == "Built", results
    out = mine[0]["builtOutputs"]["out"]
    with open(both.real(out)) as f:
        assert f.read() == "done\n"
    with open(f"{shared}/runs") as f:
        assert f.read() == "run\nrun\n", "the request did not run again after the restart"
    r = both.kiln_run("build", "--store", store, "--attach", str(ident))
    assert r.returncode == 0 and r.stdout.strip() == out, r.stdout + r.stderr
    r = both.kiln_run("status", "--store", store, "--json", str(ident))
    assert json.loads(r.stdout)["done"] is True
    r = both.kiln_run("status", "--store", store, "987654")
    assert r.returncode != 0 and "there is no detached build 987654" in r.stderr, r.stderr
    r = both.kiln_run("build", "--store", store, "--attach", "x1")
    assert r.returncode != 0 and "is not a detached build's id" in r.stderr, r.stderr
    r = both.kiln_run("build", "--store", both.store, "--detach", drv)
    assert r.returncode != 0 and "--detach needs kilnd" in r.stderr, r.stderr
    assert again.stop() == 0, again.output()


def test_a_detached_build_keeps_its_client_s_settings_across_a_restart(both):
    """The client's settings (here `--option timeout 3`) go into the durable
    queue with the request: the run resumed after kilnd was SIGKILLed still
    times out, where kilnd's own settings would let it finish."""
    shared = both.share_with_builders("timed")
    d = start(both)
    store = f"unix://{d.socket}"
    drv = both.drv("timed", f"echo run >> {shared}/runs; sleep 10; echo done > $out")
    r = both.kiln_run("build", "--store", store, "--detach", "--json", "--option", "timeout", "3", drv)
    assert r.returncode == 0, r.stderr
    ident = json.loads(r.stdout)["id"]
    assert wait_until(lambda: os.path.exists(f"{shared}/runs")), "the detached build never started\n" + d.output()
    d.proc.kill()
    d.proc.wait()
    again = start(both)
    again.wait_for(f"resuming detached build {ident}")
    r = both.kiln_run("build", "--store", store, "--attach", str(ident), "--json", timeout=60)
    mine = [x for x in json.loads(r.stdout) if x["path"] == drv]
    assert mine and mine[0]["status"] == "TimedOut", r.stdout + r.stderr
    assert r.returncode != 0
    with open(f"{shared}/runs") as f:
        assert f.read() == "run\nrun\n", "the request did not run again after the restart"
    r = both.kiln_run("build", "--store", store, "--detach", "--option", "timeout", "soon", drv)
    assert r.returncode != 0 and "timeout" in r.stderr, r.stderr
    assert again.stop() == 0, again.output()


def test_limits_and_streamed_logs_through_workers(kilnd, both):
    """Builds in workers keep their limits (max-log-size, max-silent-time,
    timeout: the statuses and messages of an embedded build) and their log
    lines reach the client as they come, before the build ends."""
    store = f"unix://{kilnd.socket}"
    chatty = both.drv("w-chatty", "i=0; while [ $i -lt 2000 ]; do echo 'a line of log output'; i=$((i+1)); done; "
                                  "echo > $out")
    r = both.kiln_run("build", "--store", store, "--json", "--max-log-size", "1000", chatty)
    assert r.returncode == 1 and both.results(r)[chatty]["status"] == "LogLimitExceeded", r.stdout + r.stderr
    assert "more than 1000 bytes" in r.stderr
    silent = both.drv("w-silent", "echo hi; sleep 30")
    r = both.kiln_run("build", "--store", store, "--json", "--max-silent-time", "1", silent)
    assert r.returncode == 101 and both.results(r)[silent]["status"] == "TimedOut", r.stdout + r.stderr
    assert "seconds of silence" in r.stderr
    slow = both.drv("w-slow", "echo started; sleep 31.5")
    r = both.kiln_run("build", "--store", store, "--json", "--timeout", "1", slow)
    assert r.returncode == 101 and both.results(r)[slow]["status"] == "TimedOut", r.stdout + r.stderr
    assert "timed out after 1 seconds" in r.stderr
    assert wait_until(lambda: not processes("sleep", "31.5"), 5)
    streamed = both.drv("w-streamed", "echo first-line; sleep 3.3; echo > $out")
    p = subprocess.Popen([both.kiln, "build", "--store", store, "-L", streamed], env=both.env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        for line in p.stderr:
            if "first-line" in line:
                assert processes("sleep", "3.3"), "the line came only after the build ended"
                break
        else:
            raise AssertionError("the build's line never came")
        assert p.wait(30) == 0
    finally:
        p.kill()
