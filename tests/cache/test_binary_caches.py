"""Binary caches with Nix 2.8 on the other side. Caches `kiln copy --to`
writes (each compression, signed) are read by Nix's `nix copy --from`,
checked by `nix store verify --trusted-public-keys`, and used as the only
substituter of `nix-store --realise`; caches Nix writes are read by `kiln
copy --from`; copies between Kiln stores check signatures as Nix does."""
import concurrent.futures
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest

from kiln_testing import FileServer, explain, refused, run

NIX = ["nix", "--extra-experimental-features", "nix-command"]
COMPRESSIONS = ["none", "xz", "bzip2", "zstd"]


def built_closure(both, tag):
    """Two outputs built in the Kiln store, the second referring to the first."""
    dep = both.drv(f"{tag}dep", "echo dep > $out; head -c 100000 /dev/urandom >> $out")
    dep_out = both.outputs(dep)["out"]
    top = both.drv(f"{tag}top", f"mkdir $out; echo {dep_out} > $out/ref; ln -s {dep_out} $out/link", inputs=[dep])
    top_out = both.outputs(top)["out"]
    r = both.kiln_build(top)
    assert r.returncode == 0, explain(r)
    return top, top_out, dep_out


def key_pair(both, name="kiln-cache-1"):
    key, pub = f"{both.dir}/{name}.sec", f"{both.dir}/{name}.pub"
    r = both.kiln_run("key", "generate", name, key, pub)
    assert r.returncode == 0, explain(r)
    return key, open(pub).read().strip()


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_nix_reads_a_cache_kiln_writes(both, compression):
    top, top_out, dep_out = built_closure(both, compression)
    key, pub = key_pair(both)
    cache = f"{both.dir}/cache"
    r = both.kiln_run("copy", "--store", both.store, "--to",
                      f"file://{cache}?compression={compression}&secret-key={key}", top_out)
    assert r.returncode == 0 and "copied 2 paths" in r.stderr, explain(r)
    ext = {"none": ".nar", "xz": ".nar.xz", "bzip2": ".nar.bz2", "zstd": ".nar.zst"}[compression]
    assert all(n.endswith(ext) for n in os.listdir(f"{cache}/nar")), os.listdir(f"{cache}/nar")

    # nix copy --from, checking signatures against the key Kiln signed with.
    r = run([*NIX, "copy", "--store", both.nix_root, "--from", f"file://{cache}",
             "--option", "trusted-public-keys", pub, top_out])
    assert r.returncode == 0, explain(r)
    r = run([*NIX, "store", "verify", "--store", both.nix_root, "--trusted-public-keys", pub, "-r", top_out])
    assert r.returncode == 0, explain(r)
    assert open(both.nix_real(top_out) + "/ref").read() == f"{dep_out}\n"
    # The same bytes as Kiln's store holds (NarHash as both record it).
    for p in (top_out, dep_out):
        nix_hash = run(["nix-store", "--store", both.nix_root, "-q", "--hash", p]).stdout.strip()
        kiln_info = json.loads(both.kiln_run("store", "path-info", "--json", "--store", both.store, p).stdout)
        kiln_info = kiln_info[0] if isinstance(kiln_info, list) else kiln_info[p]
        assert nix_hash == kiln_info["narHash"]

    # The cache as nix-store --realise's only substituter, into another store.
    other = f"{both.dir}/nix-other"
    r = run(["nix-store", "--store", other, "--realise", top_out, "--option", "substituters", f"file://{cache}",
             "--option", "trusted-public-keys", pub])
    assert r.returncode == 0 and r.stdout.strip() == top_out, explain(r)

    # A key Nix does not trust: refused.
    _, stranger = key_pair(both, "stranger-1")
    r = run([*NIX, "copy", "--store", f"{both.dir}/nix-third", "--from", f"file://{cache}",
             "--option", "trusted-public-keys", stranger, top_out])
    assert r.returncode != 0 and "lacks a valid signature" in r.stderr, explain(r)


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_kiln_copies_from_a_cache_nix_wrote(both, compression):
    top, top_out, dep_out = built_closure(both, compression)
    key, pub = key_pair(both)
    cache = both.nix_cache([dep_out, top_out], compression, key)
    fresh = f"local:{both.dir}/fresh"
    r = both.kiln_run("copy", "--store", fresh, "--from", f"file://{cache}", "--json",
                      "--option", "trusted-public-keys", pub, top_out)
    assert r.returncode == 0 and json.loads(r.stdout) == {"copied": [dep_out, top_out], "present": []}, explain(r)
    r = both.kiln_run("store", "verify", "--store", fresh, "--all", "--check-contents")
    assert r.returncode == 0, explain(r)
    # Again: everything is there, nothing copied.
    r = both.kiln_run("copy", "--store", fresh, "--from", f"file://{cache}", "--json",
                      "--option", "trusted-public-keys", pub, top_out)
    assert json.loads(r.stdout) == {"copied": [], "present": [top_out]}, explain(r)


def test_copies_between_kiln_stores_need_signatures_as_nix_does(both):
    top, top_out, dep_out = built_closure(both, "sig")
    other = f"local:{both.dir}/other"
    # Built here, signed by nobody: a store refuses it, and takes none of the closure.
    r = both.kiln_run("copy", "--store", both.store, "--to", other, top_out)
    refused(r, "because it lacks a signature by a trusted key")
    assert both.kiln_run("store", "path-info", "--store", other, dep_out).returncode != 0
    r = both.kiln_run("copy", "--store", both.store, "--to", other, "--no-check-sigs", top_out)
    assert r.returncode == 0, explain(r)
    # Signed, and the key trusted: accepted.
    key, pub = key_pair(both)
    third = f"local:{both.dir}/third"
    assert both.kiln_run("store", "sign", "--store", both.store, "--key-file", key, top_out, dep_out).returncode == 0
    r = both.kiln_run("copy", "--store", both.store, "--to", third, "--option", "trusted-public-keys", pub, top_out)
    assert r.returncode == 0, explain(r)
    r = both.kiln_run("store", "verify", "--store", third, "--all", "--check-contents")
    assert r.returncode == 0, explain(r)


def test_bad_requests_are_refused_clearly(both):
    top, top_out, dep_out = built_closure(both, "bad")
    cache = f"{both.dir}/cache"
    refused(both.kiln_run("copy", "--store", both.store, top_out), "--to DEST or --from SRC")
    refused(both.kiln_run("copy", "--store", both.store, "--to", f"file://{cache}?compression=br", top_out),
            "unknown compression 'br'")
    refused(both.kiln_run("copy", "--store", both.store, "--to", f"file://{cache}?colour=blue", top_out),
            "unknown parameter 'colour'")
    refused(both.kiln_run("copy", "--store", f"local:{both.dir}/fresh", "--from", f"file://{both.dir}/nothing",
                          top_out), "has no nix-cache-info")
    absent = "/nix/store/" + "1" * 32 + "-absent"
    refused(both.kiln_run("copy", "--store", both.store, "--to", f"file://{cache}", absent), "is not in")
    assert not os.path.exists(f"{cache}/nar") or os.listdir(f"{cache}/nar") == []


@pytest.fixture
def http_cache(both):
    """A cache Nix 2.8 wrote (zstd, signed) holding a built closure, served
    over HTTP; the closure is deleted from Kiln's store. Yields
    (serve(trouble, directory), drv, top_out, dep_out, public key, cache directory)."""
    top, top_out, dep_out = built_closure(both, "http")
    key, pub = key_pair(both)
    cache = both.nix_cache([dep_out, top_out], "zstd", key)
    r = both.kiln_run("store", "delete", "--store", both.store, top_out, dep_out)
    assert r.returncode == 0, explain(r)
    servers = []

    def serve(trouble=None, directory=cache):
        servers.append(FileServer(directory, trouble))
        return servers[-1]
    yield serve, top, top_out, dep_out, pub, cache
    for s in servers:
        s.close()


def substitute(both, pub, substituters, drv, options=()):
    return both.kiln_build("--json", "--option", "substituters", " ".join(substituters),
                           "--option", "trusted-public-keys", pub, "--option", "download-attempts", "3",
                           *options, drv, timeout=120)


def test_kiln_substitutes_over_http(both, http_cache):
    serve, top, top_out, dep_out, pub, _ = http_cache
    server = serve()
    r = substitute(both, pub, [server.url], top)
    assert r.returncode == 0 and both.results(r)[top]["status"] == "Substituted", explain(r)
    assert ("GET", "/nix-cache-info") in server.requests
    v = both.kiln_run("store", "verify", "--store", both.store, "--check-contents", top_out, dep_out)
    assert v.returncode == 0, explain(v)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_kiln_substitutes_over_http2_with_tls(both, http_cache):
    """The cache behind nghttpd, which speaks HTTP/2 only, over TLS with a
    certificate of a test CA: trusted through ssl-cert-file (as Nix's
    setting), the closure is substituted; without it, the certificate is
    refused, nothing is registered, and the build falls back to building."""
    _, top, top_out, dep_out, pub, cache = http_cache
    key, cert = f"{both.dir}/tls.key", f"{both.dir}/tls.crt"
    r = run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=127.0.0.1",
             "-addext", "subjectAltName=IP:127.0.0.1"])
    assert r.returncode == 0, explain(r)
    port = free_port()
    server = subprocess.Popen(["nghttpd", "--htdocs", cache, str(port), key, cert],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        url = f"https://127.0.0.1:{port}"
        untrusted = substitute(both, pub, [url], top, ["--option", "ssl-cert-file", "/dev/null"])
        assert untrusted.returncode == 0 and both.results(untrusted)[top]["status"] == "Built", explain(untrusted)
        assert "certificate" in untrusted.stderr, explain(untrusted)
        r = both.kiln_run("store", "delete", "--store", both.store, top_out, dep_out)
        assert r.returncode == 0, explain(r)
        r = substitute(both, pub, [url], top, ["--option", "ssl-cert-file", cert])
        assert r.returncode == 0 and both.results(r)[top]["status"] == "Substituted", explain(r)
        v = both.kiln_run("store", "verify", "--store", both.store, "--check-contents", top_out, dep_out)
        assert v.returncode == 0, explain(v)
    finally:
        server.terminate()
        server.wait(10)


def test_transient_http_failures_are_retried_and_cut_downloads_resumed(both, http_cache):
    serve, top, top_out, dep_out, pub, _ = http_cache

    # Each narinfo answers 500, then 429 with Retry-After, before it is
    # served; each NAR is cut off halfway once, then sent whole.
    def trouble(method, path, count):
        if path.endswith(".narinfo") and method == "GET" and count < 2:
            return 500 if count == 0 else (429, {"Retry-After": "1"})
        if path.startswith("/nar/") and count == 0:
            return "cut"
        return None
    server = serve(trouble)
    r = substitute(both, pub, [server.url], top)
    assert r.returncode == 0 and both.results(r)[top]["status"] == "Substituted", explain(r)
    gets = [p for m, p in server.requests if m == "GET"]
    assert sum(p.endswith(".narinfo") for p in gets) >= 6 and sum(p.startswith("/nar/") for p in gets) == 4, gets
    v = both.kiln_run("store", "verify", "--store", both.store, "--check-contents", top_out, dep_out)
    assert v.returncode == 0, explain(v)


HOSTILE = {
    # name: (trouble for a path, what the message names)
    "status-500": (lambda path: 500 if path.endswith(".narinfo") else None, "HTTP status 500"),
    # Not waited for (the next has the paths): nothing to say about it.
    "never-answers": (lambda path: "hang" if path.endswith(".narinfo") else None, None),
    "endless-narinfo": (lambda path: "endless" if path.endswith(".narinfo") else None, "sends more than"),
    # Noise: the decompression stops it (FileSize would, were it valid data).
    "endless-nar": (lambda path: "endless" if path.startswith("/nar/") else None, "/nar/"),
    "garbage-nar": (None, "/nar/"),
}


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_a_hostile_http_cache_is_passed_over_for_the_next(both, http_cache, kind):
    """Each leaves nothing registered; the next substituter (the same cache,
    behaving) supplies the paths, and the message names what went wrong."""
    serve, top, top_out, dep_out, pub, cache = http_cache
    trouble, why = HOSTILE[kind]
    directory = cache
    if kind == "garbage-nar":
        directory = noisy_copy(cache, f"{both.dir}/garbage-cache")
    bad = serve((lambda m, path, n: trouble(path)) if trouble else None, directory)
    good = serve()
    # One attempt: a bad answer comes before the next cache is taken (a
    # cache that answers only after the others' is not waited for).
    r = substitute(both, pub, [bad.url, good.url], top,
                   options=("--option", "stalled-download-timeout", "2", "--option", "download-attempts", "1"))
    assert r.returncode == 0 and both.results(r)[top]["status"] == "Substituted", explain(r)
    assert any(p.endswith(".narinfo") for m, p in good.requests), good.requests
    assert why is None or (why in r.stderr and bad.url in r.stderr), explain(r)
    v = both.kiln_run("store", "verify", "--store", both.store, "--check-contents", top_out, dep_out)
    assert v.returncode == 0, explain(v)


def test_what_would_be_fetched_is_counted_from_the_caches(both, http_cache):
    serve, top, top_out, dep_out, pub, cache = http_cache
    server = serve()
    r = both.kiln_run("store", "missing", "--json", "--store", both.store, "--option", "substituters",
                      f"file://{both.dir}/nothing-here {server.url}", top)
    assert r.returncode == 0, explain(r)
    plan = json.loads(r.stdout)
    sizes = {}
    for p in (top_out, dep_out):
        narinfo = dict(l.split(": ", 1) for l in open(f"{cache}/{p[11:43]}.narinfo").read().splitlines())
        sizes[p] = (int(narinfo["FileSize"]), int(narinfo["NarSize"]))
    assert sorted(plan["willSubstitute"]) == sorted([top_out, dep_out]) and plan["willBuild"] == [], plan
    assert plan["downloadSize"] == sum(f for f, _ in sizes.values()), plan
    assert plan["narSize"] == sum(n for _, n in sizes.values()), plan


def test_caches_are_asked_at_once_not_one_after_another(both, http_cache):
    """What would be fetched: the first cache answers each narinfo slowly
    (404 after a second); the second, which has the paths, is asked before
    those answers come, and the plan names them as fetched."""
    serve, top, top_out, dep_out, pub, cache = http_cache
    empty = f"{both.dir}/empty-cache"
    os.makedirs(empty)
    shutil.copy(f"{cache}/nix-cache-info", empty)
    events = []

    def slow(method, path, count):
        if path.endswith(".narinfo"):
            time.sleep(1)
            events.append(("slow answered", path))
            return 404
    slow_server = serve(slow, empty)
    fast = serve(lambda method, path, count: events.append(("fast asked", path)) if path.endswith(".narinfo") else None)
    r = both.kiln_run("store", "missing", "--json", "--store", both.store, "--option", "substituters",
                      f"{slow_server.url} {fast.url}", top_out)
    assert r.returncode == 0 and sorted(json.loads(r.stdout)["willSubstitute"]) == sorted([top_out, dep_out]), explain(r)
    asked = [p for what, p in events if what == "fast asked"]
    assert asked and events.index(("fast asked", asked[0])) < events.index(("slow answered", asked[0])), events


def test_a_silent_cache_does_not_hold_up_a_substitution_another_can_give(both, http_cache):
    """The first cache (by priority) accepts narinfo requests and never
    answers; the second has the closure: the build substitutes from it
    without waiting for the first's stall timeout (60 s here)."""
    serve, top, top_out, dep_out, pub, cache = http_cache
    silent = serve(lambda method, path, count: "hang" if path.endswith(".narinfo") else None)
    good = serve()
    started = time.monotonic()
    r = substitute(both, pub, [f"{silent.url}?priority=1", f"{good.url}?priority=2"], top,
                   options=("--option", "stalled-download-timeout", "60"))
    took = time.monotonic() - started
    assert r.returncode == 0 and both.results(r)[top]["status"] == "Substituted", explain(r)
    assert any(p.endswith(".narinfo") for _, p in silent.requests), "the first cache was not asked"
    assert took < 30, f"the substitution waited {took:.1f} s for the silent cache"


def test_a_remote_cache_s_answers_are_remembered_for_their_ttl(both, http_cache):
    """narinfo-cache-positive-ttl and -negative-ttl: what an HTTP cache said
    is asked again only when it is older than that."""
    serve, top, top_out, dep_out, pub, cache = http_cache
    server = serve()
    absent = "/nix/store/" + "1" * 32 + "-absent"

    def missing(*options):
        before = len(server.requests)
        r = both.kiln_run("store", "missing", "--json", "--store", both.store, "--option", "substituters",
                          server.url, *options, top_out, absent)
        assert r.returncode == 0, explain(r)
        plan = json.loads(r.stdout)
        assert sorted(plan["willSubstitute"]) == sorted([dep_out, top_out]), plan
        assert plan["unknown"] == [absent], plan
        return [p for m, p in server.requests[before:] if p.endswith(".narinfo")]
    assert len(missing()) == 3  # top, dep and the absent path, asked once each
    assert missing() == []      # all remembered
    assert [p[1:33] for p in missing("--option", "narinfo-cache-negative-ttl", "0")] == [absent[11:43]]
    assert len(missing("--option", "narinfo-cache-positive-ttl", "0", "--option", "narinfo-cache-negative-ttl",
                       "0")) == 3
    assert os.path.exists(f"{both.dir}/cache-home/kiln/narinfo-v1.sqlite")


def noisy_copy(cache, directory):
    """A copy of `cache` whose NAR files are noise of the right length."""
    shutil.copytree(cache, directory)
    for name in os.listdir(f"{directory}/nar"):
        path = f"{directory}/nar/{name}"
        os.chmod(path, 0o644)
        size = os.path.getsize(path)
        with open(path, "wb") as f:
            f.write(os.urandom(size))
    return directory


def test_substituters_are_tried_in_priority_order(both, http_cache):
    """Lower Priority first (nix-cache-info's, or ?priority=), ties in the
    order given; a noisy cache shows whether it was tried."""
    serve, top, top_out, dep_out, pub, cache = http_cache
    bad = noisy_copy(cache, f"{both.dir}/noisy-cache")
    for substituters, bad_tried in (([f"file://{cache}", f"file://{bad}"], False),
                                    ([f"file://{cache}", f"file://{bad}?priority=10"], True),
                                    ([f"file://{bad}", f"file://{cache}?priority=10"], False)):
        r = substitute(both, pub, substituters, top)
        assert r.returncode == 0 and both.results(r)[top]["status"] == "Substituted", explain(r)
        assert (bad in r.stderr) == bad_tried, (substituters, r.stderr)
        assert both.kiln_run("store", "delete", "--store", both.store, top_out, dep_out).returncode == 0


def test_substitutions_have_their_own_slots(both):
    """max-substitution-jobs: NAR downloads at once, counted at the server
    (each held for half a second), not the build slots (-j 1 here)."""
    drvs = [both.drv(f"par{i}", f"echo {i} > $out; head -c 4096 /dev/urandom >> $out") for i in range(4)]
    outs = [both.outputs(d)["out"] for d in drvs]
    r = both.kiln_build(*drvs)
    assert r.returncode == 0, explain(r)
    key, pub = key_pair(both)
    cache = both.nix_cache(outs, "zstd", key)
    lock, state = threading.Lock(), {"now": 0, "peak": 0}

    def slow_nars(method, path, count):
        if path.startswith("/nar/"):
            with lock:
                state["now"] += 1
                state["peak"] = max(state["peak"], state["now"])
            time.sleep(0.5)
            with lock:
                state["now"] -= 1
        return None
    server = FileServer(cache, slow_nars)
    try:
        for jobs, check in (("1", lambda peak: peak == 1), ("4", lambda peak: peak > 1)):
            assert both.kiln_run("store", "delete", "--store", both.store, *outs).returncode == 0
            state["peak"] = 0
            r = both.kiln_build("--json", "-j", "1", "--option", "substituters", server.url, "--option",
                                "trusted-public-keys", pub, "--option", "max-substitution-jobs", jobs, *drvs)
            assert r.returncode == 0 and all(both.results(r)[d]["status"] == "Substituted" for d in drvs), explain(r)
            assert check(state["peak"]), (jobs, state["peak"])
    finally:
        server.close()


def test_repair_takes_the_contents_from_a_substituter_first(both):
    """kiln build --repair: a damaged output whose contents a substituter has
    (the same NarHash, signed) is repaired from it, nothing rebuilt, and the
    derivation reported AlreadyValid (as Nix reports it); without one it is
    rebuilt, as before."""
    top, top_out, dep_out = built_closure(both, "repair")
    key, pub = key_pair(both)
    cache = f"{both.dir}/repair-cache"
    r = both.kiln_run("copy", "--store", both.store, "--to", f"file://{cache}?compression=zstd&secret-key={key}",
                      top_out)
    assert r.returncode == 0, explain(r)
    damaged = both.real(top_out) + "/ref"
    for substituters, status in (([f"file://{cache}"], "AlreadyValid"), ([], "Built")):
        with open(damaged, "w") as f:
            f.write("damaged\n")
        r = both.kiln_build("--json", "--repair", "--option", "substituters", " ".join(substituters),
                            "--option", "trusted-public-keys", pub, top)
        assert r.returncode == 0 and both.results(r)[top]["status"] == status, explain(r)
        assert f"path '{top_out}' is corrupted or missing!" in r.stderr, explain(r)
        assert open(damaged).read() == f"{dep_out}\n"
        v = both.kiln_run("store", "verify", "--store", both.store, "--check-contents", top_out, dep_out)
        assert v.returncode == 0, explain(v)


def test_nix_reads_a_cache_kiln_uploads_over_http(both):
    top, top_out, dep_out = built_closure(both, "put")
    key, pub = key_pair(both)
    directory = f"{both.dir}/uploaded"
    os.makedirs(directory)
    server = FileServer(directory)
    try:
        r = both.kiln_run("copy", "--store", both.store, "--to", f"{server.url}?compression=xz&secret-key={key}",
                          top_out)
        assert r.returncode == 0, explain(r)
        assert any(m == "PUT" and p.endswith(".narinfo") for m, p in server.requests), server.requests
        # both.env: Nix's narinfo cache of its own for this test (the
        # server's URL is a loopback port an earlier test may have used).
        r = run([*NIX, "copy", "--store", both.nix_root, "--from", server.url,
                 "--option", "trusted-public-keys", pub, top_out], env=both.env)
        assert r.returncode == 0, explain(r)
        r = run([*NIX, "store", "verify", "--store", both.nix_root, "--trusted-public-keys", pub, "-r", top_out])
        assert r.returncode == 0, explain(r)
        # And back, over HTTP, into a fresh Kiln store.
        r = both.kiln_run("copy", "--store", f"local:{both.dir}/fresh", "--from", server.url, "--json",
                          "--option", "trusted-public-keys", pub, top_out)
        assert r.returncode == 0 and json.loads(r.stdout)["copied"] == [dep_out, top_out], explain(r)
    finally:
        server.close()


@pytest.fixture(params=[[], ["--long-distance"]], ids=["zstd", "zstd-long-distance"])
def served_store(both, request):
    """`kiln serve` on the Kiln store, signing with a fresh key (NARs in zstd,
    with and without long-distance matching); yields (base URL, public key,
    top_out, dep_out, top drv); stopped by SIGTERM."""
    top, top_out, dep_out = built_closure(both, "serve")
    key, pub = key_pair(both)
    proc = subprocess.Popen([both.kiln, "serve", "--listen", "127.0.0.1:0", "--store", both.store,
                             "--secret-key", key, *request.param], env=both.env, stderr=subprocess.PIPE, text=True)
    line = proc.stderr.readline()
    assert "serving the store as a binary cache on http://127.0.0.1:" in line, line
    url = line.split(" on ")[1].strip()
    yield url, pub, top_out, dep_out, top
    proc.terminate()
    assert proc.wait(timeout=10) == 0 and "stopped" in proc.stderr.read()


def test_nix_substitutes_from_kiln_serve(both, served_store):
    url, pub, top_out, dep_out, top = served_store
    other = f"{both.dir}/nix-other"
    # both.env: Nix's narinfo cache of its own (see above).
    r = run(["nix-store", "--store", other, "--realise", top_out, "--option", "substituters", url,
             "--option", "trusted-public-keys", pub], env=both.env)
    assert r.returncode == 0 and r.stdout.strip() == top_out, explain(r)
    r = run([*NIX, "copy", "--store", both.nix_root, "--from", url, "--option", "trusted-public-keys", pub, top_out],
            env=both.env)
    assert r.returncode == 0, explain(r)
    r = run([*NIX, "store", "verify", "--store", both.nix_root, "--trusted-public-keys", pub, "-r", top_out])
    assert r.returncode == 0, explain(r)
    # Kiln's own build substitutes from it too.
    fresh = f"local:{both.dir}/fresh"
    r = both.kiln_run("copy", "--store", fresh, "--from", url, "--option", "trusted-public-keys", pub, top_out)
    assert r.returncode == 0, explain(r)
    assert both.kiln_run("store", "verify", "--store", fresh, "--all", "--check-contents").returncode == 0


def get(url, headers=None, method="GET"):
    req = urllib.request.Request(url, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def test_kiln_serve_answers_as_a_cache_does(both):
    """Plain NARs with byte ranges, listings, logs, 404s, HEAD, a malformed
    request answered 400 without harm, and 32 clients at once."""
    top, top_out, dep_out = built_closure(both, "plain")
    proc = subprocess.Popen([both.kiln, "serve", "--listen", "127.0.0.1:0", "--store", both.store,
                             "--compression", "none"], env=both.env, stderr=subprocess.PIPE, text=True)
    try:
        url = proc.stderr.readline().split(" on ")[1].strip()
        nar = subprocess.run([both.kiln, "store", "dump", "--store", both.store, dep_out], env=both.env,
                             capture_output=True).stdout
        status, _, body = get(f"{url}/{dep_out[11:43]}.narinfo")
        info = dict(l.split(": ", 1) for l in body.decode().splitlines())
        assert status == 200 and info["Compression"] == "none" and int(info["FileSize"]) == len(nar)
        status, headers, body = get(f"{url}/{info['URL']}")
        assert status == 200 and body == nar and headers["Content-Length"] == str(len(nar))
        status, headers, body = get(f"{url}/{info['URL']}", {"Range": "bytes=100-1099"})
        assert status == 206 and body == nar[100:1100] and headers["Content-Range"] == f"bytes 100-1099/{len(nar)}"
        status, _, body = get(f"{url}/{info['URL']}", {"Range": "bytes=-10"})
        assert status == 206 and body == nar[-10:]
        assert get(f"{url}/{info['URL']}", {"Range": f"bytes={len(nar)}-"})[0] == 416
        status, headers, body = get(f"{url}/{info['URL']}", method="HEAD")
        assert status == 200 and body == b"" and headers["Content-Length"] == str(len(nar))
        status, _, body = get(f"{url}/{top_out[11:43]}.ls")
        listing = json.loads(body)
        assert status == 200 and listing["version"] == 1 and set(listing["root"]["entries"]) == {"ref", "link"}
        status, _, body = get(f"{url}/log/{top[11:]}")
        assert status == 200, body
        for missing in ("/" + "1" * 32 + ".narinfo", "/nar/" + dep_out[11:43] + "-wrong.nar", "/log/x.drv",
                        "/../etc/passwd", "/nix-cache-info/../x"):
            assert get(url + missing)[0] == 404, missing
        # A malformed request: 400, and the server goes on.
        host, port = url[7:].split(":")
        with socket.create_connection((host, int(port)), timeout=10) as s:
            s.sendall(b"NONSENSE\r\n\r\n")
            assert s.recv(100).startswith(b"HTTP/1.1 400")
        with socket.create_connection((host, int(port)), timeout=10) as s:
            s.sendall(b"GET /" + b"x" * 10000 + b" HTTP/1.1\r\n\r\n")
            assert s.recv(100).startswith(b"HTTP/1.1 400")
        with concurrent.futures.ThreadPoolExecutor(32) as pool:
            answers = list(pool.map(lambda _: get(f"{url}/{dep_out[11:43]}.narinfo")[0], range(64)))
        assert answers == [200] * 64
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
