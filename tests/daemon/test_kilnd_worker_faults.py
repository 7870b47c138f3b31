"""kilnd's worker processes under faults (issue 16): a worker that is
killed or stopped costs a retry of its work, never the daemon; a worker
that crashes at every start is given up on with a clear report; kilnd
killed or stopped leaves no process of its builds behind (and the next
kilnd kills a worker a killed one left wedged); detached builds outlive a
killed kilnd."""
import json
import os
import signal
import threading
import time

import pytest

from kiln_testing import (all_gone, build, build_in_background, build_started, describe_processes,
                          kilnd_with_hostile_worker, kilnd_with_workers, processes, serving, threads, wait_until,
                          worker_of)


@pytest.fixture
def kilnd(both):
    yield from serving(kilnd_with_workers(both))


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
    d = kilnd_with_workers(both)
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
    d, _, _, lingering = kilnd_with_hostile_worker(both, "linger", linger=True)
    began = time.monotonic()
    assert d.stop() == 0, d.output()
    took = time.monotonic() - began
    assert "had not ended 5 s after kilnd's stop: killed" in d.output(), d.output()
    assert 5 <= took < 15, f"kilnd took {took:.1f} s to stop"
    assert wait_until(lambda: all_gone([lingering]), 5), "the lingering worker outlived kilnd"


def test_a_build_whose_workers_keep_dying_fails_after_its_retries(both):
    """max-build-retries 1: the worker is killed twice under one build, which
    then fails with the reason; the daemon goes on."""
    shared = both.share_with_builders("doomed")
    d = kilnd_with_workers(both, "--option", "max-build-retries", "1")
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
        assert wait_until(lambda: not processes("sleep", "5678"), 5), \
            describe_processes(processes("sleep", "5678")) + "\n" + d.output()
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
    d = kilnd_with_workers(both, "--option", "workers", "1", env={"KILN_WORKER_PROGRAM": crash})
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
    d = kilnd_with_workers(both)
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
    again = kilnd_with_workers(both)
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
    d, _, _, wedged = kilnd_with_hostile_worker(both, "wedged", linger=True)
    registry = f"{both.dir}/kiln/nix/var/kiln/workers"
    assert os.listdir(registry) == [str(wedged)]
    d.proc.kill()
    d.proc.wait()
    time.sleep(1)
    assert not all_gone([wedged]), "the wedged worker ended with kilnd: nothing left to test"
    again = kilnd_with_workers(both)
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
    d = kilnd_with_workers(both, "--option", "max-jobs", "4", "--option", "max-build-retries", "10")
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
    d = kilnd_with_workers(both, "--option", "sandbox", "false", "--option", "max-build-retries", "0")
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
    d = kilnd_with_workers(both)
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
    again = kilnd_with_workers(both)
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
    d = kilnd_with_workers(both)
    store = f"unix://{d.socket}"
    drv = both.drv("timed", f"echo run >> {shared}/runs; sleep 10; echo done > $out")
    r = both.kiln_run("build", "--store", store, "--detach", "--json", "--option", "timeout", "3", drv)
    assert r.returncode == 0, r.stderr
    ident = json.loads(r.stdout)["id"]
    assert wait_until(lambda: os.path.exists(f"{shared}/runs")), "the detached build never started\n" + d.output()
    d.proc.kill()
    d.proc.wait()
    again = kilnd_with_workers(both)
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
