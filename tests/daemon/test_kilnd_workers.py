"""kilnd's worker processes (issue 16): builds and substitutions run in
kiln-worker processes linked to kilnd by a socketpair each, which nobody
else can reach; a worker keeps only the capabilities builds need; one gone
bad gets nothing through its front; a run's end stops its downloads on
the workers; limits and streamed logs hold through workers. Their faults
are in test_kilnd_worker_faults.py."""
import os
import shutil
import signal
import subprocess
import threading
import time

import pytest

from kiln_testing import (FileServer, all_gone, build, build_started, children_named, explain, kilnd_with_hostile_worker,
                          kilnd_with_workers, processes, serving, threads, wait_until, worker_of)


@pytest.fixture
def kilnd(both):
    yield from serving(kilnd_with_workers(both))


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
    d = kilnd_with_workers(both, "--option", "substituters", server.url, "--option", "trusted-public-keys", pub)
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
    d = kilnd_with_workers(both, "--option", "substituters", f"{silent.url}?priority=1 {good.url}?priority=2",
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
    and closing such a log, a request passed on to a builder as kilnd's
    goals have it done, stopping whoever said hello as kilnd's worker pool and
    leasing a builder of it, a message outside the
    front's interface, and (as a substituter) asking back whoever asked it
    (the front, not the run's substituter pool). Each
    is refused, nothing is written, the front still answers, and kilnd
    stays up and still builds on that worker; it ends with kilnd. Its hello
    comes from its front, not from kilnd's worker pool, and through all that
    (a build's log lines and report, a substituter's copies and probes) the
    front is the one kilnd actor it ever holds a handle of: any other, the
    run's logger or its substituter pool, it could kill."""
    cache = f"{both.dir}/empty-cache"
    os.makedirs(cache)
    with open(f"{cache}/nix-cache-info", "w") as f:
        f.write("StoreDir: /nix/store\n")
    d, report, plant, hostile = kilnd_with_hostile_worker(both, "hostile", "--option", "substituters", f"file://{cache}")
    try:
        with open(report) as f:
            answers = dict(line.split(": ", 1) for line in f.read().splitlines() if ": " in line)
        for attempt in ("log", "close", "run", "pool stop", "pool lease", "unexpected", "close again"):
            assert answers[attempt].startswith("refused"), answers
        assert "unexpected_message" in answers["run"], answers  # not passed on to its builder
        assert "unexpected_message" in answers["pool stop"], answers  # not "no worker took long to stop"
        # kilnd's worker pool (a worker could kill it) never shows itself:
        # its requests come through the front.
        assert open(report + ".hello").read().strip() == "front"
        assert "unexpected_message" in answers["close again"], answers  # refused as before, not gone
        assert not os.path.exists(plant), "the worker had kilnd open a file of its choosing"
        assert d.proc.poll() is None, d.output()
        drv = both.drv("after-hostile", "echo a line for the log; echo ok > $out")
        c = d.client()
        c.set_options()
        assert build(c, drv)[0] is None, d.output()
        assert c.is_valid(both.outputs(drv)["out"])
        # The build asked the worker's substituter first, which asked back.
        turned = lambda: "subst pool: " in open(report).read()
        assert wait_until(turned, 10), open(report).read() + d.output()
        turned_on = [line for line in open(report).read().splitlines() if line.startswith("subst pool: ")]
        assert all("refused" in line and "unexpected_message" in line for line in turned_on), turned_on
        assert "a line for the log" in both.kiln_run("log", "--store", both.store, drv).stdout, d.output()
        # Within its reach: its front, and two actors of CAF's own (BASP's
        # spawn server in kilnd, and the helper kilnd's BASP sent to ask
        # this worker's), which it killed at no cost: kilnd built since.
        assert sorted(open(report + ".reach").read().split()) == ["front", "scheduled_actor", "spawn_server"]
        assert int(answers["killed"]) >= 1, answers
        assert hostile in children_named(d.proc.pid, "kiln-test-hosti"), d.output()
    finally:
        assert d.stop() == 0, d.output()
    assert wait_until(lambda: all_gone([hostile]), 5), "the hostile worker outlived kilnd"


def test_a_worker_that_kills_every_kilnd_actor_it_can_number_costs_only_another_worker(both):
    """A worker can address by number any kilnd actor whose handle some
    worker was sent (CAF's BASP keeps those in kilnd's registry), and an exit
    message (kill) cannot be refused. One that sends it to every number: the
    other worker's front is among them, so that worker is taken for lost and
    started again; nothing else that kilnd needs goes (no worker was ever
    sent the worker pool's handle, nor a run's), and kilnd builds on."""
    scan = f"{both.dir}/scan"
    d, _, _, hostile = kilnd_with_hostile_worker(both, "scanner", scan=scan)
    try:
        assert int(open(scan).read().split("tried: ")[1].split()[0]) > 1000
        lost = lambda: "lost its front in kilnd (exit_reason(kill))" in d.output()
        assert wait_until(lost, 10), d.output()
        workers = lambda: children_named(d.proc.pid, "kiln-test-hosti")
        assert wait_until(lambda: set(workers()) - set(hostile), 10), d.output()  # the one started again
        hostile = set(hostile) | set(workers())
        drvs = [both.drv(f"after-scan-{i}", f"echo {i} > $out") for i in range(4)]
        c = d.client()
        c.set_options()
        for drv in drvs:
            assert build(c, drv)[0] is None, d.output()
            assert c.is_valid(both.outputs(drv)["out"])
        assert d.proc.poll() is None, d.output()
    finally:
        assert d.stop() == 0, d.output()
    assert wait_until(lambda: all_gone(hostile), 5), "a hostile worker outlived kilnd"


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
