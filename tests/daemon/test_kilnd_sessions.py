"""kilnd's sessions under stress, through the protocol itself: hostile bytes
from many connections at once, clients that vanish mid-build, and clients
that want the same build."""
import hashlib
import json
import os
import random
import socket
import subprocess
import threading
import time

import pytest

from kiln_testing import DaemonClient, Kilnd, build, build_started, explain, processes, serving


@pytest.fixture
def kilnd(both):
    yield from serving(Kilnd(both, "--option", "build-users-group", ""))


def closes(sock, timeout=10):
    """True once the daemon has closed the connection (whatever it said first)."""
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
        return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


def hostile_round(path, rng):
    """One of each kind of bad client; returns what went wrong, if anything."""
    problems = []

    def raw(data, half_close=True):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(path)
        try:
            s.sendall(data)
        except BrokenPipeError:
            pass
        if half_close:
            s.shutdown(socket.SHUT_WR)
        if not closes(s):
            problems.append(f"not closed after {data[:32]!r}")
        s.close()

    raw(rng.randbytes(rng.randrange(1, 4096)))                      # noise instead of a handshake
    raw(DaemonClient.encode(0x6E697863, 0x122))                      # a handshake cut short
    raw(DaemonClient.encode(0x12345678, 0x122, 0, 0))                 # the wrong magic
    raw(b"", half_close=True)                                        # connect, say nothing, hang up
    hello = DaemonClient.encode(0x6E697863, 0x122, 0, 0)
    raw(hello + DaemonClient.encode(999))                            # an unknown operation
    raw(hello + DaemonClient.encode(1) + (1 << 40).to_bytes(8, "little"))  # a huge length
    raw(hello + DaemonClient.encode(1, "/nix/store/" + "a" * 20)[:40])      # a truncated frame
    raw(hello + DaemonClient.encode(31, 1 << 50))                    # a list of 2^50 paths

    # An unknown operation is refused by name, as Nix refuses it.
    c = DaemonClient(path)
    c.send(999)
    err, _ = c.stream()
    if not err or "999" not in err:
        problems.append(f"unknown operation answered {err!r}")
    c.close()
    return problems


def test_hostile_clients_get_an_error_or_a_close_and_the_daemon_stays_up(kilnd, both):
    rng = random.Random(15)
    # Many connections at once, each misbehaving in its own way.
    problems = []
    threads = [threading.Thread(target=lambda: problems.extend(hostile_round(kilnd.socket, random.Random(rng.random()))))
               for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not problems, problems
    warm = kilnd.rss_kib()
    for _ in range(5):
        problems = hostile_round(kilnd.socket, rng)
        assert not problems, problems
    grown = kilnd.rss_kib() - warm
    assert grown < 4096, f"kilnd grew by {grown} KiB over 5 rounds of hostile clients"
    # Others are still served.
    c = kilnd.client()
    c.set_options()
    assert not c.is_valid("/nix/store/" + "0" * 32 + "-missing")


def test_a_bad_upload_registers_nothing_and_the_connection_goes_on(kilnd, both):
    c = kilnd.client()
    c.set_options()
    path = "/nix/store/" + "1" * 32 + "-bad-nar"
    garbage = b"not a NAR at all" * 10
    # AddToStoreNar: the record, repair, dontCheckSigs, then the framed "NAR".
    c.send(39, path, "", "0" * 64, [], 0, len(garbage), 0, [], "", 0, 1)
    c.sock.sendall(len(garbage).to_bytes(8, "little") + garbage + (0).to_bytes(8, "little"))
    err, _ = c.stream()
    assert err, "a garbage NAR was accepted"
    assert not c.is_valid(path)
    assert not os.path.exists(both.real(path))


def test_a_client_that_goes_away_has_its_build_killed(kilnd, both):
    shared = both.share_with_builders("shared")
    kilnd.reload()  # builders see the shared directory from the next connection on
    slow = both.drv("slow", f"echo started > {shared}/started; exec sleep 6543")
    quick = both.drv("quick", "sleep 2; echo done > $out")
    leaver, stayer = kilnd.client(), kilnd.client()
    for c in (leaver, stayer):
        c.set_options(overrides=[("max-jobs", "2")])
    leaver.send(9, [f"{slow}!*"], 0)
    other = {}
    t = threading.Thread(target=lambda: other.update(result=build(stayer, quick)))
    t.start()
    for _ in range(600):
        if processes("sleep", "6543"):
            break
        time.sleep(0.05)
    assert processes("sleep", "6543"), "the slow build never started\n" + kilnd.output()
    leaver.sock.close()  # as a killed client's socket closes
    gone_at = time.monotonic()
    while processes("sleep", "6543") and time.monotonic() - gone_at < 5:
        time.sleep(0.02)
    waited = time.monotonic() - gone_at
    assert not processes("sleep", "6543"), "the builder outlived its client"
    assert waited < 1.0, f"the builder died {waited:.2f} s after its client"
    t.join(60)
    err, _ = other["result"]
    assert err is None, f"the other client's build failed: {err}\n{kilnd.output()}"


def test_two_clients_wanting_one_derivation_build_it_once(kilnd, both):
    shared = both.share_with_builders("count")
    kilnd.reload()
    drv = both.drv("once", f"echo run >> {shared}/runs; sleep 1; echo x > $out")
    results = []
    clients = [kilnd.client() for _ in range(4)]
    threads = []
    for c in clients:
        c.set_options()
        threads.append(threading.Thread(target=lambda c=c: results.append(build(c, drv))))
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert [err for err, _ in results] == [None] * 4, results
    with open(f"{shared}/runs") as f:
        assert f.read() == "run\n", "the derivation was built more than once"


def read_until_message(client, fragment):
    """Reads the stderr stream until a message containing `fragment`."""
    while True:
        code = client.u64()
        assert code in (client.NEXT, client.START, client.STOP, client.RESULT), hex(code)
        if code == client.NEXT:
            if fragment in client.str():
                return
        elif code == client.START:
            client.u64(), client.u64(), client.u64(), client.str(), client.fields(), client.u64()
        elif code == client.STOP:
            client.u64()
        else:
            client.u64(), client.u64(), client.fields()


def wait_for_file(path):
    for _ in range(600):
        if os.path.exists(path):
            return
        time.sleep(0.05)
    raise AssertionError(f"{path} never appeared")


def join_then_leave(kilnd, runs, drv, op):
    """A client starts building `drv`; once its builder has written `runs`,
    a second one asks for it with `op` (BuildPaths or ...WithResults) and
    joins its goal; then the first hangs up. Returns the second, its
    stream read to the end without an error."""
    starter, joiner = kilnd.client(), kilnd.client()
    for c in (starter, joiner):
        c.set_options(verbosity=7)
    starter.send(9, [f"{drv}!*"], 0)
    wait_for_file(runs)
    joiner.send(op, [f"{drv}!*"], 0)
    read_until_message(joiner, f"waiting for another client's build of '{drv}'")
    starter.sock.close()
    err, _ = joiner.stream()
    assert err is None, err + "\n" + kilnd.output()
    return joiner


def test_a_build_another_client_wants_outlives_the_client_that_started_it(kilnd, both):
    """Kill the client whose build is running while another has joined its
    goal for the same derivation: the build goes on for the one still there
    (and is not run a second time)."""
    shared = both.share_with_builders("outlive")
    kilnd.reload()
    drv = both.drv("wanted-twice", f"echo run >> {shared}/runs; sleep 2; echo x > $out")
    waiter = join_then_leave(kilnd, f"{shared}/runs", drv, 9)
    assert waiter.u64() == 1
    with open(f"{shared}/runs") as f:
        assert f.read() == "run\n", "the build was killed with its client and run again"


def test_a_joined_goal_keeps_what_it_waits_for_when_its_starter_leaves(kilnd, both):
    """The second client joins the first one's goal for `top` while that goal
    still waits for its input; the first client leaves: the input's build
    and then top's go on for the second client, each run once, and it gets
    top as Built, with its outputs."""
    shared = both.share_with_builders("joined")
    kilnd.reload()
    dep = both.drv("slow-dep", f"echo dep >> {shared}/runs; sleep 2; echo dep > $out")
    top = both.drv("joined-top", f"echo top >> {shared}/runs; cat {both.outputs(dep)['out']} > $out", inputs=[dep])
    joiner = join_then_leave(kilnd, f"{shared}/runs", top, 46)
    assert joiner.u64() == 1
    assert joiner.str() == f"{top}!*"
    result = read_build_result(joiner, joiner.version & 0xFF)
    assert result["status"] == 0, result  # Built
    assert [json.loads(v)["outPath"] for v in result["outputs"].values()] == [both.outputs(top)["out"].split("/")[-1]]
    with open(f"{shared}/runs") as f:
        assert f.read() == "dep\ntop\n", "a build was killed with its client and run again"


def test_a_failure_in_one_client_s_run_spares_what_another_joined(both):
    """Client A builds `slow` and `failing` without --keep-going; client B has
    joined A's goal for `slow`. A's failure cancels A's run, but not what B
    waits for: B gets `slow` built, run once, with the log lines it wrote
    after B joined, and A hears of its failure."""
    shared = both.share_with_builders("failing-run")
    slow = both.drv("joined-slow", f"echo run >> {shared}/runs; while [ ! -e {shared}/joined ]; do sleep 0.05; done; "
                                   "echo after the join; sleep 1; echo x > $out")
    failing = both.drv("fails-once-joined", f"while [ ! -e {shared}/joined ]; do sleep 0.05; done; exit 1")
    d = Kilnd(both, "--option", "build-users-group", "", "--option", "max-jobs", "2")
    try:
        a, b = d.client(), d.client()
        for c in (a, b):
            c.set_options(verbosity=7, max_jobs=2)
        a.send(9, [f"{slow}!*", f"{failing}!*"], 0)
        wait_for_file(f"{shared}/runs")
        b.send(46, [f"{slow}!*"], 0)
        read_until_message(b, f"waiting for another client's build of '{slow}'")
        open(f"{shared}/joined", "w").close()  # now `failing` fails, and A's run is cancelled
        err, _ = a.stream()
        assert err and failing in err, err
        err, seen = b.stream()
        assert err is None, err + "\n" + d.output()
        assert (b.RESULT, (101, ["after the join"])) in [(c, (p[1], p[2])) for c, p in seen if c == b.RESULT], seen
        assert b.u64() == 1 and b.str() == f"{slow}!*"
        assert read_build_result(b, b.version & 0xFF)["status"] == 0  # Built
        with open(f"{shared}/runs") as f:
            assert f.read() == "run\n", "the joined build was cancelled with the failing run"
    finally:
        assert d.stop() == 0, d.output()


def test_fifty_clients_building_overlapping_graphs(both):
    """50 clients at once, each wanting three of 15 derivations that share
    10 inputs, which share 5 more: every client gets its results, each
    derivation is built once; a 51st client killed mid-build loses the
    build only it wanted, within a second, and nobody else notices."""
    shared = both.share_with_builders("graph")
    with open(f"{shared}/runs", "w"):
        pass
    os.chmod(f"{shared}/runs", 0o666)  # builders of different uids all append to it
    d = Kilnd(both, "--option", "build-users-group", "", "--option", "max-jobs", "4")
    try:
        # A build is counted when it has run to its end: the 51st client's
        # builds that nobody else wanted yet when it went are killed first.
        def step(name, inputs=()):
            return both.drv(name, f"sleep 0.1; echo {name} > $out; echo {name} >> {shared}/runs", inputs=inputs)
        base = [step(f"base{i}") for i in range(5)]
        middle = [step(f"middle{i}", (base[i % 5], base[(i + 1) % 5])) for i in range(10)]
        top = [step(f"top{i}", (middle[i % 10], middle[(i + 3) % 10])) for i in range(15)]
        lonely = both.drv("lonely", "exec sleep 7654")
        rng = random.Random(50)
        wants = [rng.sample(top, 3) for _ in range(50)]
        results = [None] * 50

        def client(i):
            c = d.client(timeout=120)
            c.set_options(max_jobs=4)
            c.send(9, [f"{t}!*" for t in wants[i]], 0)
            err, _ = c.stream()
            results[i] = err if err else c.u64()
            c.close()

        leaver = d.client()
        leaver.set_options(max_jobs=4)
        leaver.send(9, [f"{lonely}!*", f"{top[0]}!*"], 0)
        threads = [threading.Thread(target=client, args=(i,)) for i in range(50)]
        for t in threads:
            t.start()
        for _ in range(600):
            if processes("sleep", "7654"):
                break
            time.sleep(0.05)
        assert processes("sleep", "7654"), "the lonely build never started\n" + d.output()
        leaver.sock.close()
        gone_at = time.monotonic()
        while processes("sleep", "7654") and time.monotonic() - gone_at < 5:
            time.sleep(0.02)
        assert not processes("sleep", "7654"), "the lonely build outlived its client"
        assert time.monotonic() - gone_at < 1.0, "the lonely build died more than a second after its client"
        for t in threads:
            t.join(180)
        assert not any(t.is_alive() for t in threads), "a client is still waiting (deadlock?)\n" + d.output()
        assert results == [1] * 50, [r for r in results if r != 1][:3]
        with open(f"{shared}/runs") as f:
            runs = f.read().split()
        wanted = {t for ts in wants for t in ts}
        assert len(runs) == len(set(runs)), f"built more than once: {sorted(runs)}"
        for t in wanted:
            assert t.rsplit("-", 1)[-1][:-4] in runs, " ".join(sorted(runs))
        assert all(f"base{i}" in runs for i in range(5))
    finally:
        assert d.stop() == 0, d.output()


def test_a_store_wiped_between_connections_is_made_again(kilnd, both):
    """Nix's own tests remove the store under a running daemon and start
    again: the next connection finds an empty store, and builds in it."""
    drv = both.drv("wiped", "echo w > $out")
    out = both.outputs(drv)["out"]
    c = kilnd.client()
    c.set_options()
    assert build(c, drv)[0] is None and c.is_valid(out)
    c.close()
    subprocess.run(["rm", "-rf", f"{both.dir}/kiln"], check=True)
    c = kilnd.client()
    c.set_options()
    assert not c.is_valid(out)
    c.close()
    drv = both.drv("wiped", "echo w > $out")  # the same derivation, in the new store
    c = kilnd.client()
    c.set_options()
    assert build(c, drv)[0] is None and c.is_valid(out)
    with open(both.real(out)) as f:
        assert f.read() == "w\n"


def test_an_ordinary_user_runs_kilnd_without_sandbox_or_build_users(both):
    """A single-user install: kilnd, its store and its client all belong to
    one ordinary user; builds run as that user, with no sandbox and no
    build users (kilnd's defaults when it is not root)."""
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    home = f"{both.dir}/user"
    store = f"local:{home}/store"
    os.makedirs(f"{home}/tmp")
    drv = both.drv("mine", "echo mine > $out", store=store)
    subprocess.run(["chown", "-R", "65534:65534", home], check=True)
    d = Kilnd(both, "--option", "sandbox", "false", store=store, socket=f"{home}/sock", run_as=nobody,
              env={"TMPDIR": f"{home}/tmp", "HOME": home})
    try:
        assert os.stat(f"{home}/sock").st_uid == 65534  # the daemon is the user's
        r = subprocess.run([*nobody, both.kiln, "build", "--store", f"unix://{home}/sock", drv],
                           env=dict(both.env, HOME=home), capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, explain(r) + d.output()
        out = r.stdout.strip()
        real = f"{home}/store{out}"
        with open(real) as f:
            assert f.read() == "mine\n"
        assert os.stat(real).st_uid == 65534  # built as the user, not a build user
        assert "(trusted)" not in d.output()  # root alone is in trusted-users
    finally:
        assert d.stop() == 0, d.output()


def test_a_client_of_kilnd_gets_substitutes_from_its_binary_cache(both):
    """kilnd's own substituters (here a file:// cache Nix 2.8 wrote) serve its
    clients' builds: substituted, nothing built. Asked first, kilnd says what
    the cache has (QuerySubstitutablePaths, ...PathInfos) and what would be
    fetched (QueryMissing), with the sizes the narinfo gives."""
    key, pub = f"{both.dir}/key", f"{both.dir}/key.pub"
    both.kiln_run("key", "generate", "kilnd-cache-1", key, pub)
    drv = both.drv("cached", "echo cached > $out")
    out = both.outputs(drv)["out"]
    assert both.kiln_build(drv).returncode == 0
    cache = both.nix_cache([out], "zstd", key)
    assert both.kiln_run("store", "delete", "--store", both.store, out).returncode == 0
    with open(pub) as f:
        trusted = f.read()
    d = Kilnd(both, "--option", "build-users-group", "", "--option", "substituters", f"file://{cache}",
              "--option", "trusted-public-keys", trusted)
    try:
        c = d.client(version=0x125)
        c.set_options()
        absent = "/nix/store/" + "1" * 32 + "-absent"
        c.send(32, [out, absent])  # QuerySubstitutablePaths
        assert c.stream()[0] is None and c.strings() == [out]
        c.send(30, {out: "", absent: ""})  # QuerySubstitutablePathInfos
        assert c.stream()[0] is None and c.u64() == 1 and c.str() == out
        deriver, refs, download, nar = c.str(), c.strings(), c.u64(), c.u64()
        narinfo = open(f"{cache}/{out[11:43]}.narinfo").read()
        assert deriver == drv and refs == [] and f"FileSize: {download}\n" in narinfo and f"NarSize: {nar}\n" in narinfo
        c.send(40, [f"{drv}!out"])  # QueryMissing
        assert c.stream()[0] is None
        assert (c.strings(), c.strings(), c.strings(), c.u64(), c.u64()) == ([], [out], [], download, nar)
        c.send(46, [f"{drv}!out"], 0)
        err, _ = c.stream()
        assert err is None, err
        assert c.u64() == 1 and c.str() == f"{drv}!out"
        assert read_build_result(c, 37)["status"] == 1  # Substituted
        with open(both.real(out)) as f:
            assert f.read() == "cached\n"
    finally:
        assert d.stop() == 0, d.output()


def test_a_socket_handed_over_by_systemd_is_served(both):
    """Socket activation as systemd does it: the listening socket on fd 3,
    LISTEN_PID naming kilnd and LISTEN_FDS=1."""
    path = f"{both.dir}/activated.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(16)
    kilnd = os.path.join(os.path.dirname(both.kiln), "kilnd")
    env = dict(both.env, NIX_CONF_DIR=f"{both.dir}/no-nix-conf")
    proc = subprocess.Popen(
        ["bash", "-c", f"exec 3<&{listener.fileno()}; LISTEN_PID=$$ LISTEN_FDS=1 exec {kilnd} --store {both.store}"],
        env=env, pass_fds=[listener.fileno()], stderr=subprocess.PIPE, text=True)
    listener.close()
    try:
        c = DaemonClient(path)
        c.set_options()
        assert not c.is_valid("/nix/store/" + "0" * 32 + "-missing")
        assert c.nix_version.startswith("2.8.0")
    except Exception:
        proc.terminate()
        raise AssertionError("kilnd: " + proc.communicate(timeout=30)[1])
    proc.terminate()
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "serving the socket systemd handed over" in err
    assert os.path.exists(path), "kilnd removed a socket it did not make"


def test_build_slots_are_shared_between_clients_in_turn(both):
    """kilnd's max-jobs bounds all clients' builds together, and a client with
    many builds queued does not make another's single build wait behind them."""
    shared = both.share_with_builders("slots")

    def stamp(what, who):
        return f"echo {what} $(date +%s.%N) {who} >> {shared}/log"
    busy = [both.drv(f"busy{i}", f"{stamp('start', 'busy')}; sleep 1; {stamp('end', 'busy')}; echo > $out")
            for i in range(5)]
    single = both.drv("single", f"{stamp('start', 'single')}; {stamp('end', 'single')}; echo > $out")
    d = Kilnd(both, "--option", "build-users-group", "", "--option", "max-jobs", "1")
    try:
        many, one = d.client(), d.client()
        many.set_options(max_jobs=5)  # the client would take 5; the daemon has 1
        one.set_options()
        results = {}
        t = threading.Thread(target=lambda: results.update(many=build(many, *busy)))
        t.start()
        time.sleep(0.5)
        err, _ = build(one, single)
        t.join(60)
        assert err is None and results["many"][0] is None, (err, results)
        # Counted, not timed: the single build gets the slot after the busy
        # build running when it asked (and at most the one granted meanwhile),
        # not after all five.
        lines = sorted((l.split() for l in open(f"{shared}/log")), key=lambda l: float(l[1]))
        before = [l[2] for l in lines[:lines.index(next(l for l in lines if l[2] == "single"))] if l[0] == "start"]
        assert len(before) <= 2, f"the single build started after {len(before)} of the other client's builds"
        running, most = 0, 0
        for what, _, _ in lines:
            running += 1 if what == "start" else -1
            most = max(most, running)
        assert most == 1, f"{most} builds ran at once with max-jobs 1"
    finally:
        assert d.stop() == 0, d.output()


def test_kiln_through_the_daemon_answers_as_on_the_embedded_store(kilnd, both):
    dep = both.drv("dep", "echo making dep; echo dep > $out")
    dep_out = both.outputs(dep)["out"]
    top = both.drv("top", f"echo making top; echo {dep_out} > $out", inputs=[dep])
    failing = both.drv("failing", "echo about to fail; exit 1")
    daemon = f"unix://{kilnd.socket}"

    built = both.kiln_run("build", "--store", daemon, "-L", top)
    assert built.returncode == 0, explain(built) + kilnd.output()
    assert "building '" + top + "'..." in built.stderr and "top> making top" in built.stderr, built.stderr
    out = built.stdout.strip()
    assert out == both.outputs(top)["out"]
    assert both.kiln_build(top).stdout == built.stdout  # the embedded engine finds it built

    for args in (["store", "query", "--requisites", out], ["store", "query", "--references", out],
                 ["store", "query", "--referrers", dep_out], ["store", "query", "--deriver", out],
                 ["store", "query", "--outputs", top], ["store", "path-info", "--json", "-r", out],
                 ["store", "missing", top], ["store", "missing", failing]):
        ours = both.kiln_run(*args[:2], "--store", daemon, *args[2:])
        embedded = both.kiln_run(*args[:2], "--store", both.store, *args[2:])
        assert (ours.returncode, ours.stdout) == (embedded.returncode, embedded.stdout), \
            f"{args}\n--- through the daemon\n{explain(ours)}\n--- embedded\n{explain(embedded)}"
    # Equal answers could be equally wrong: these are known.
    refs = both.kiln_run("store", "query", "--store", daemon, "--references", out)
    assert refs.stdout.split() == [dep_out], explain(refs)
    outs = both.kiln_run("store", "query", "--store", daemon, "--outputs", top)
    assert outs.stdout.split() == [out], explain(outs)

    # Adding through the daemon names the paths the embedded store names.
    tree = os.path.join(both.dir, "tree")
    os.makedirs(f"{tree}/sub")
    with open(f"{tree}/sub/file", "w") as f:
        f.write("content\n")
    for args in (["add", tree], ["add-fixed", "--type", "sha256", f"{tree}/sub/file"],
                 ["add-fixed", "--recursive", "--type", "sha1", tree]):
        ours = both.kiln_run("store", args[0], "--store", daemon, *args[1:])
        embedded = both.kiln_run("store", args[0], "--store", both.store, *args[1:])
        assert ours.returncode == 0 and ours.stdout == embedded.stdout, f"{args}\n{explain(ours)}\n{explain(embedded)}"
    roots = both.kiln_run("store", "gc", "--store", daemon, "--print-roots")
    assert roots.returncode == 0 and roots.stdout == both.kiln_run(
        "store", "gc", "--store", both.store, "--print-roots").stdout, explain(roots)
    dead = both.kiln_run("store", "gc", "--store", daemon, "--print-dead")
    assert dead.stdout == both.kiln_run("store", "gc", "--store", both.store, "--print-dead").stdout, explain(dead)
    added = both.kiln_run("store", "add", "--store", daemon, f"{tree}/sub/file").stdout.strip()
    gone = both.kiln_run("store", "delete", "--store", daemon, added)
    assert gone.returncode == 0 and f"deleting '{added}'" in gone.stderr, explain(gone)
    assert both.kiln_run("store", "path-info", "--store", both.store, added).returncode == 1

    r = both.kiln_run("build", "--store", daemon, failing)
    assert r.returncode == 100 and "builder for '" + failing + "' failed with exit code 1" in r.stderr, explain(r)

    # The NAR, an export stream, a text path, signatures, the whole store's check: the same bytes.
    text = os.path.join(both.dir, "text")
    with open(text, "w") as f:
        f.write(f"refers to {dep_out}\n")
    key = os.path.join(both.dir, "key")
    assert both.kiln_run("key", "generate", "test-1", key, key + ".pub").returncode == 0
    with open(key + ".pub") as f:
        public = f.read().strip()
    for args in (["dump", dep_out], ["export", out, dep_out], ["add-text", "note", text],
                 ["sign", "--key-file", key, out], ["verify-sigs", "--trusted-public-keys", public, out, dep_out],
                 ["verify", "--check-contents", "--all"]):
        ours = subprocess.run([both.kiln, "store", args[0], "--store", daemon, *args[1:]], env=both.env,
                              capture_output=True)
        embedded = subprocess.run([both.kiln, "store", args[0], "--store", both.store, *args[1:]], env=both.env,
                                  capture_output=True)
        assert (ours.returncode, ours.stdout) == (embedded.returncode, embedded.stdout), \
            f"{args}\n{explain(ours)}\n{explain(embedded)}"
    sigs = both.kiln_run("store", "verify-sigs", "--store", daemon, "--trusted-public-keys", public, out)
    assert sigs.returncode == 0 and "signed by a trusted key" in sigs.stdout, explain(sigs)  # signed through the daemon
    # An export through the daemon imports through it elsewhere, and as the embedded store reads it.
    exported = subprocess.run([both.kiln, "store", "export", "--store", daemon, dep_out], env=both.env,
                              capture_output=True).stdout
    other = f"local:{both.dir}/other"
    imported = subprocess.run([both.kiln, "store", "import", "--store", other], input=exported, env=both.env,
                              capture_output=True)
    assert imported.returncode == 0 and imported.stdout.decode().split() == [dep_out], explain(imported)
    # A command that needs the local store says so.
    refused = both.kiln_run("store", "verify", "--store", daemon, out)
    assert refused.returncode == 1 and "give --all" in refused.stderr, explain(refused)
    # Optimised through the daemon: the three copies of tree/sub/file added above
    # are linked there, so the store itself has nothing left to link.
    opt = both.kiln_run("store", "optimise", "--store", daemon, "--json")
    assert opt.returncode == 0, explain(opt)
    report = json.loads(opt.stdout)
    assert set(report) == {"filesLinked", "bytesSaved"} and report["filesLinked"] >= 2, report
    again = both.kiln_run("store", "optimise", "--store", both.store, "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["filesLinked"] == 0, explain(again)


def test_stdio_serves_one_trusted_client(both):
    """kilnd --stdio, as `ssh-ng://` runs nix-daemon --stdio remotely: no
    socket, no SetOptions, trusted; NarFromPath gives the path's NAR."""
    src = os.path.join(both.dir, "hello.txt")
    with open(src, "w") as f:
        f.write("hello\n")
    path = both.kiln_run("store", "add", "--store", both.store, src).stdout.strip()
    ours, theirs = socket.socketpair()
    kilnd = os.path.join(os.path.dirname(both.kiln), "kilnd")
    env = dict(both.env, NIX_CONF_DIR=f"{both.dir}/no-nix-conf")
    proc = subprocess.Popen([kilnd, "--stdio", "--store", both.store], stdin=theirs, stdout=theirs,
                            stderr=subprocess.PIPE, env=env, text=True)
    theirs.close()
    c = DaemonClient(sock=ours)
    assert c.is_valid(path)
    c.send(38, path)
    err, _ = c.stream()
    assert err is None, err
    expected = subprocess.run([both.kiln, "store", "dump", "--store", both.store, path], capture_output=True,
                              env=both.env).stdout
    assert expected and c.read(len(expected)) == expected
    c.close()
    assert proc.wait(timeout=30) == 0, proc.stderr.read()


def test_sigterm_with_shutdown_cancels_builds_hangs_up_at_once(both):
    both.share_with_builders("unused")
    slow = both.drv("slow-term", "exec sleep 7654")
    d = Kilnd(both, "--option", "build-users-group", "", "--option", "shutdown-cancels-builds", "true")
    c = d.client()
    c.set_options()
    build_started(c, slow, "sleep", "7654")
    stopped = time.monotonic()
    assert d.stop() == 0, d.output()
    took = time.monotonic() - stopped
    assert took < 5, f"kilnd took {took:.1f} s to stop"
    assert not processes("sleep", "7654"), "a build outlived kilnd's SIGTERM"
    assert closes(c.sock), "the client was not hung up on"


def test_sigterm_lets_builds_under_way_finish_then_cancels_at_the_deadline(both):
    """SIGTERM: no new connection is taken, an idle client is hung up on, a
    build under way finishes and its client gets the result; with a build
    longer than shutdown-timeout, it is cancelled at the deadline."""
    shared = both.share_with_builders("drain")
    short = both.drv("drained", f"echo started > {shared}/short; sleep 2; echo done > $out")
    d = Kilnd(both, "--option", "build-users-group", "")
    idle, busy = d.client(), d.client()
    idle.set_options()
    busy.set_options()
    result = {}
    t = threading.Thread(target=lambda: result.update(r=build(busy, short)))
    t.start()
    wait_for_file(f"{shared}/short")
    d.proc.terminate()
    assert closes(idle.sock, 5), "an idle client was not hung up on"
    for _ in range(100):
        if not os.path.exists(d.socket):
            break
        time.sleep(0.02)
    with pytest.raises(OSError):
        DaemonClient(d.socket)
    t.join(30)
    err, _ = result["r"]
    assert err is None, f"the build under way did not finish: {err}\n{d.output()}"
    with open(both.real(both.outputs(short)["out"])) as f:
        assert f.read() == "done\n"
    assert d.proc.wait(timeout=15) == 0, d.output()

    long = both.drv("cut", f"echo started > {shared}/long; exec sleep 8765")
    d = Kilnd(both, "--option", "build-users-group", "", "--option", "shutdown-timeout", "1")
    c = d.client()
    c.set_options()
    c.send(9, [f"{long}!*"], 0)
    wait_for_file(f"{shared}/long")
    stopped = time.monotonic()
    d.proc.terminate()
    assert d.proc.wait(timeout=15) == 0, d.output()
    took = time.monotonic() - stopped
    assert 0.9 < took < 6, f"kilnd stopped {took:.1f} s after SIGTERM (deadline 1 s)"
    assert not processes("sleep", "8765"), "a build outlived the deadline"


def test_mutated_real_conversations_never_hurt_the_daemon(kilnd, both, vectors):
    """A fuzz loop: every captured Nix 2.8 client conversation, replayed with
    random bytes changed, cut short or given a huge length, from 8
    connections at once. Each connection must end (an error or a close),
    kilnd must stay up with flat memory, and the store must still verify."""
    raw = os.path.join(vectors, "worker-protocol", "raw")
    conversations = []
    for name in sorted(os.listdir(raw)):
        with open(os.path.join(raw, name)) as f:
            data = b"".join(bytes.fromhex(json.loads(l)["hex"]) for l in f if '"C2D"' in l)
        if len(data) > 40:
            conversations.append(data)
    rng = random.Random(1515)

    def mutate(data):
        data = bytearray(data)
        for _ in range(rng.randrange(1, 6)):
            at = rng.randrange(32, len(data))  # past the handshake, or nothing would get that far
            kind = rng.randrange(3)
            if kind == 0:
                data[at] = rng.randrange(256)
            elif kind == 1:
                data[at:at + 8] = rng.choice([(1 << 40), (1 << 63), 999, 0]).to_bytes(8, "little")
            else:
                del data[at:]
                break
        return bytes(data)

    def replay(data, problems):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(kilnd.socket)
        s.settimeout(20)
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass
        if not closes(s, timeout=20):
            problems.append(f"a connection was left open after {len(data)} bytes")
        s.close()

    def fuzz(rounds):
        problems = []
        for _ in range(rounds):
            batch = [threading.Thread(target=replay, args=(mutate(rng.choice(conversations)), problems))
                     for _ in range(8)]
            for t in batch:
                t.start()
            for t in batch:
                t.join(60)
        return problems

    assert not fuzz(5)
    warm = kilnd.rss_kib()
    problems = fuzz(60)
    assert not problems, problems[:5]
    assert kilnd.proc.poll() is None, "kilnd died\n" + kilnd.output()
    grown = kilnd.rss_kib() - warm
    assert grown < 8192, f"kilnd grew by {grown} KiB over 480 mutated conversations"
    c = kilnd.client()
    c.set_options()
    assert not c.is_valid("/nix/store/" + "0" * 32 + "-missing")
    v = both.kiln_run("store", "verify", "--store", both.store, "--all", "--check-contents")
    assert v.returncode == 0, explain(v)


def read_build_result(c, minor):
    """A BuildResult as the daemon writes it at protocol 1.`minor` (34 and later)."""
    r = {"status": c.u64(), "error": c.str(), "times_built": c.u64(), "non_deterministic": c.u64(),
         "start": c.u64(), "stop": c.u64()}
    if minor >= 37:
        r["cpu"] = [c.u64() if c.u64() == 1 else None for _ in range(2)]
    r["outputs"] = dict((c.str(), c.str()) for _ in range(c.u64()))
    return r


def test_newer_clients_meet_kilnd_at_their_version(kilnd, both):
    """1.35 to 1.38 as each version's change describes it: the trust flag,
    AddPermRoot, CPU times in build results, the feature exchange."""
    assert DaemonClient(kilnd.socket).daemon_version == 0x126, "kilnd should announce 1.38"
    absent = "/nix/store/" + "0" * 32 + "-absent"
    for minor in (34, 35, 36, 37, 38):
        c = kilnd.client(version=0x100 | minor, features=("a-feature-kilnd-lacks",))
        assert c.trust == (1 if minor >= 35 else None)  # root is in trusted-users
        assert c.daemon_features == ([] if minor >= 38 else None)
        c.set_options()
        assert not c.is_valid(absent)
        c.close()

    # 1.37: the build's CPU time comes with its result; 1.34 has no room for it.
    drv = both.drv("cpu", "i=0; while [ $i -lt 30000 ]; do i=$((i+1)); done; echo x > $out")
    out = both.outputs(drv)["out"]
    for minor in (37, 34):
        c = kilnd.client(version=0x100 | minor)
        c.set_options()
        c.send(46, [f"{drv}!out"], 0)
        err, _ = c.stream()
        assert err is None, err
        assert c.u64() == 1 and c.str() == f"{drv}!out"
        r = read_build_result(c, minor)
        assert r["status"] == (0 if minor == 37 else 2), r  # built, then already valid
        # Already valid or not, the outputs come with the result (as Nix's daemon sends them).
        assert [v["outPath"] for v in map(json.loads, r["outputs"].values())] == [out.split("/")[-1]]
        if minor == 37:
            assert r["times_built"] == 1 and r["start"] <= r["stop"]
            # Measured by the build's control group: present, and the loop took some.
            assert None not in r["cpu"] and sum(r["cpu"]) > 0, r
        c.close()

    # 1.36: AddPermRoot makes the link and registers it as an indirect root.
    c = kilnd.client(version=0x126)
    c.set_options()
    link = f"{both.dir}/result"
    c.send(47, out, link)
    err, _ = c.stream()
    assert err is None, err
    assert c.str() == link
    assert os.readlink(link) == out
    auto = f"{both.dir}/kiln/nix/var/nix/gcroots/auto"
    assert [os.readlink(f"{auto}/{n}") for n in os.listdir(auto)] == [link]
    # Never over a user's file, never inside the store; the connection goes on.
    with open(f"{both.dir}/precious", "w") as f:
        f.write("mine")
    for where, fragment in ((f"{both.dir}/precious", "already exists"),
                            (f"/nix/store/{'1' * 32}-x", "in the Nix store is forbidden"),
                            ("relative/link", "not an absolute path")):
        c.send(47, out, where)
        err, _ = c.stream()
        assert err and fragment in err, err
    with open(f"{both.dir}/precious") as f:
        assert f.read() == "mine"
    assert c.is_valid(out)


def basic_derivation(both, drv, store_root):
    """BuildDerivation's arguments for `drv` (no input derivations), read
    from the store at `store_root`."""
    r = both.kiln_run("drv", "show", "--json", f"{store_root}{drv}")
    assert r.returncode == 0, explain(r)
    d = json.loads(r.stdout)[drv]
    outputs = []
    for name, o in sorted(d["outputs"].items()):
        outputs += [name, o.get("path", ""), o.get("hashAlgo", ""), o.get("hash", "")]
    env = sorted(d["env"].items())
    return [drv, len(d["outputs"]), *outputs, sorted(d["inputSrcs"]), d["system"], d["builder"], d["args"],
            len(env), *[x for kv in env for x in kv]]


def build_derivation(c, args, mode=0):
    c.send(36, *args, mode)
    err, _ = c.stream()
    return err, (None if err else read_build_result(c, c.version & 0xFF))


def test_build_derivation_builds_what_it_is_given(both):
    """BuildDerivation (what a remote-building Nix sends): the derivation
    comes with the request and need not be in the daemon's store; an
    untrusted client may build only a fixed-output one."""
    elsewhere = f"{both.dir}/elsewhere"
    drv = both.drv("given", "echo given > $out", store=f"local:{elsewhere}")
    args = basic_derivation(both, drv, elsewhere)
    out = args[3]
    d = Kilnd(both, "--option", "build-users-group", "")
    try:
        c = d.client(version=0x125)
        c.set_options()
        err, r = build_derivation(c, args)
        assert err is None, err
        assert r["status"] == 0 and r["times_built"] == 1, r
        assert [json.loads(v)["outPath"] for v in r["outputs"].values()] == [out.split("/")[-1]]
        assert c.is_valid(out) and not c.is_valid(drv)  # the output is registered, the .drv was never written
        with open(both.real(out)) as f:
            assert f.read() == "given\n"
        err, r = build_derivation(c, args)
        assert err is None and r["status"] == 2, r  # already valid
        # A build that fails says so in its result, with the log's tail.
        bad = basic_derivation(both, both.drv("fails", "echo the-last-words; exit 3", store=f"local:{elsewhere}"),
                               elsewhere)
        err, r = build_derivation(c, bad)
        assert err is None and r["status"] != 0 and "the-last-words" in r["error"], r
        c.close()
    finally:
        assert d.stop() == 0, d.output()

    def fixed(name, content):
        return both.drv(name, f"printf fixed > $out", store=f"local:{elsewhere}",
                        fixed={"hashAlgo": "sha256", "hash": hashlib.sha256(content).hexdigest()})
    right, wrong = fixed("fixed", b"fixed"), fixed("mislabelled", b"something else")
    d = Kilnd(both, "--option", "build-users-group", "", "--option", "trusted-users", "nobody")
    try:
        c = d.client(version=0x126)
        assert c.trust == 2
        c.set_options()
        err, _ = build_derivation(c, basic_derivation(both, both.drv("other", "echo o > $out",
                                                                     store=f"local:{elsewhere}"), elsewhere))
        assert err and "not privileged to build input-addressed derivations" in err, err
        err, r = build_derivation(c, basic_derivation(both, right, elsewhere))
        assert err is None and r["status"] == 0, (err, r)
        # Built under the derivation's own path: the output is what its hash says.
        assert c.is_valid(basic_derivation(both, right, elsewhere)[3])
        err, r = build_derivation(c, basic_derivation(both, wrong, elsewhere))
        assert err is None and r["status"] != 0 and "hash mismatch" in r["error"], (err, r)
        assert not c.is_valid(basic_derivation(both, wrong, elsewhere)[3])
        c.send(47, out, f"{both.dir}/root")
        err, _ = c.stream()
        assert err and "not privileged to create perm roots" in err, err
        c.close()
    finally:
        assert d.stop() == 0, d.output()


def test_a_client_gone_while_kilnd_drains_has_its_build_cancelled(both):
    """While kilnd drains on SIGTERM, a client that closes its connection
    still has its build killed: draining waits only for builds somebody
    waits for."""
    slow = both.drv("drain-gone", "exec sleep 6789")
    d = Kilnd(both, "--option", "build-users-group", "")
    c = d.client()
    c.set_options()
    build_started(c, slow, "sleep", "6789")
    d.proc.terminate()
    time.sleep(0.3)
    c.sock.close()
    assert d.proc.wait(timeout=10) == 0, d.output()
    assert not processes("sleep", "6789"), "a build nobody waited for outlived kilnd's stop"
