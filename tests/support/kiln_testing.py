"""The one helper Kiln's pytest suites share: a Kiln store and a Nix 2.8
store side by side in a temporary directory, derivations added to the first
and exported to the second, and both tools run on them.

Both build sandboxed with the host's shell and tools bound in, as the
benchmarks give Nix; Nix gets `--option substituters ''` (no network here).
"""
import base64
import http.server
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time

HOST_TOOLS = "/bin /lib /lib64 /usr"


def run(argv, input=None, timeout=180, env=None):
    """Runs a command and keeps its output as text."""
    return subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout, env=env)


def text(data):
    return data if isinstance(data, str) else data.decode(errors="replace")


def explain(r):
    """A finished command as a failure message shows it."""
    return f"exit {r.returncode}\n--- stdout\n{text(r.stdout)[-1500:]}\n--- stderr\n{text(r.stderr)[-1500:]}"


def refused(r, fragment):
    """Asserts that a command failed as it should: a non-zero exit, `fragment`
    on stderr, nothing on stdout."""
    assert r.returncode != 0 and fragment in text(r.stderr) and not text(r.stdout).strip(), \
        f"wanted a refusal naming {fragment!r}\n" + explain(r)


def make_vector_tree(tree, path):
    """Writes a tree as the vectors' manifest describes one (type, contents, entries)."""
    if tree["type"] == "regular":
        c = tree.get("contents", {"text": ""})
        data = c["text"].encode() if "text" in c else base64.b64decode(c["b64"])
        with open(path, "wb") as f:
            f.write(data)
        os.chmod(path, 0o755 if tree.get("executable") else 0o644)
    elif tree["type"] == "symlink":
        os.symlink(tree["target"], path)
    else:
        os.mkdir(path)
        for name, sub in tree["entries"].items():
            make_vector_tree(sub, os.path.join(path, name))


def peak_rss(kiln, argv, env=None):
    """Runs argv (output discarded) under kiln-test-peak-rss (built next to
    `kiln`); returns (exit status, seconds, peak RSS in MiB of that process)."""
    start = time.monotonic()
    meter = os.path.join(os.path.dirname(kiln), "kiln-test-peak-rss")
    r = subprocess.run([meter, *argv], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    kib = int(r.stderr.rstrip().rsplit("\n", 1)[-1].split()[-1])
    return r.returncode, time.monotonic() - start, kib / 1024


class FileServer:
    """A directory served over HTTP on loopback: GET and HEAD read it, PUT
    writes it (as a binary cache's uploads need). Every request is recorded
    in `requests` as (method, path). `trouble(method, path, count)` (count: how
    many times that path was asked for before) may answer instead: an HTTP
    status (optionally (status, {header: value})), "hang" (accept and never
    answer), "endless" (a body that never ends), "cut" (the file's length
    promised, half of it sent, the connection closed), or None to serve
    normally."""

    def __init__(self, directory, trouble=None):
        self.directory, self.requests, self._stop = directory, [], threading.Event()
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def __init__(self, *a, **kw):
                super().__init__(*a, directory=directory, **kw)

            def log_message(self, *a):
                pass

            def troubled(self):
                count = server.requests.count((self.command, self.path))
                server.requests.append((self.command, self.path))
                answer = trouble(self.command, self.path, count) if trouble else None
                if answer is None:
                    return False
                if answer == "hang":
                    server._stop.wait(600)
                elif answer == "cut":
                    with open(os.path.join(directory, self.path.lstrip("/")), "rb") as f:
                        data = f.read()
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data[:len(data) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)
                elif answer == "endless":
                    self.send_response(200)
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.close_connection = True
                    try:
                        while not server._stop.is_set():
                            self.wfile.write(b"x" * 65536)
                    except OSError:
                        pass
                else:
                    status, headers = answer if isinstance(answer, tuple) else (answer, {})
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                return True

            def do_GET(self):
                if not self.troubled():
                    super().do_GET()

            def do_HEAD(self):
                if not self.troubled():
                    super().do_HEAD()

            def do_PUT(self):
                if self.troubled():
                    return
                target = os.path.join(directory, self.path.lstrip("/"))
                os.makedirs(os.path.dirname(target), exist_ok=True)
                data = self.rfile.read(int(self.headers["Content-Length"]))
                with open(target + ".part", "wb") as f:
                    f.write(data)
                os.rename(target + ".part", target)
                self.send_response(201)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def close(self):
        self._stop.set()
        self._httpd.shutdown()
        self._httpd.server_close()


class SideBySide:
    """A temporary Kiln store (`local:DIR/kiln`) and Nix store (`DIR/nix`)."""

    def __init__(self, kiln):
        self.kiln = kiln
        self.dir = tempfile.mkdtemp(prefix="kiln-pytest-")
        # Build users must reach what tests bind in; build directories stay inside.
        os.chmod(self.dir, 0o755)
        os.makedirs(f"{self.dir}/tmp")
        # XDG_CACHE_HOME: the narinfo lookups Kiln remembers stay with the test.
        self.env = dict(os.environ, TMPDIR=f"{self.dir}/tmp", KILN_CONF=f"{self.dir}/kiln.conf",
                        XDG_CACHE_HOME=f"{self.dir}/cache-home")
        with open(self.env["KILN_CONF"], "w") as f:
            f.write(f"sandbox-paths = {HOST_TOOLS}\n")
        self.store = f"local:{self.dir}/kiln"
        self.nix_root = f"{self.dir}/nix"
        self._count = 0
        self._shared = []

    def close(self):
        # rm, not shutil.rmtree: that recurses, and tests make trees deeper than Python's stack.
        subprocess.run(["chmod", "-R", "u+w", self.dir], capture_output=True)
        subprocess.run(["rm", "-rf", self.dir], capture_output=True)

    def real(self, store_path):
        """Where the Kiln store keeps a store path."""
        return f"{self.dir}/kiln{store_path}"

    def kiln_run(self, *args, input=None, timeout=180):
        return run([self.kiln, *args], input=input, timeout=timeout, env=self.env)

    def drv(self, name, script, outputs=("out",), env=None, inputs=(), fixed=None, system="x86_64-linux",
            builder="/bin/sh", args=None, input_srcs=(), structured=None, store=None):
        """Adds a derivation (builder /bin/sh -c SCRIPT) to the Kiln store (or to `store`); returns its path.
        With `structured` (a dict), its attributes are that dict as __json alone.
        An `env` entry set to None removes that variable (e.g. PATH)."""
        self._count += 1
        body = {"name": name, "outputs": {o: {} for o in outputs}, "inputSrcs": list(input_srcs),
                "inputDrvs": {d: ["out"] for d in inputs}, "system": system, "builder": builder,
                "args": ["-c", script] if args is None else args,
                "env": {k: v for k, v in {"PATH": "/bin:/usr/bin", **(env or {})}.items() if v is not None}}
        if structured is not None:
            body["env"] = {"__json": json.dumps(structured, sort_keys=True, separators=(",", ":"))}
        if fixed:
            body["outputs"] = {"out": fixed}
        path = f"{self.dir}/drv{self._count}.json"
        with open(path, "w") as f:
            json.dump(body, f)
        r = self.kiln_run("drv", "add", "--store", store or self.store, "--json", path)
        assert r.returncode == 0, explain(r)
        return r.stdout.strip()

    def outputs(self, drv):
        """A derivation's output paths by name."""
        r = self.kiln_run("drv", "show", "--json", self.real(drv))
        assert r.returncode == 0, explain(r)
        return {n: o["path"] for n, o in json.loads(r.stdout)[drv]["outputs"].items()}

    def nix_real(self, store_path):
        """Where the Nix store keeps a store path."""
        return f"{self.nix_root}{store_path}"

    def kiln_build(self, *args, timeout=180):
        return self.kiln_run("build", "--store", self.store, *args, timeout=timeout)

    def results(self, r):
        """`kiln build --json`'s results by .drv path."""
        return {x["path"]: x for x in json.loads(r.stdout)}

    def share_with_builders(self, name):
        """A directory builders may read and write (bound into the sandbox)."""
        path = f"{self.dir}/{name}"
        os.makedirs(path, exist_ok=True)
        os.chmod(path, 0o777)
        self._shared.append(path)
        with open(self.env["KILN_CONF"], "w") as f:
            f.write(f"sandbox-paths = {HOST_TOOLS}\nextra-sandbox-paths = {' '.join(self._shared)}\n")
        return path

    def nix_realise(self, *drvs, options=(), timeout=180):
        """`nix-store --realise` of the same .drv files (exported from Kiln's store)."""
        closure = self.kiln_run("store", "query", "--store", self.store, "--requisites", *drvs)
        assert closure.returncode == 0, explain(closure)
        exp = subprocess.run([self.kiln, "store", "export", "--store", self.store, *closure.stdout.split()],
                             env=self.env, capture_output=True)
        assert exp.returncode == 0, exp.stderr.decode()
        imp = subprocess.run(["nix-store", "--store", self.nix_root, "--import"], input=exp.stdout,
                             capture_output=True)
        assert imp.returncode == 0, imp.stderr.decode()
        return run(["nix-store", "--store", self.nix_root, "--realise", *drvs, "--option", "substituters", "",
                    "--option", "sandbox", "true", "--option", "sandbox-paths", HOST_TOOLS, *options],
                   timeout=timeout)

    def nix_cache(self, paths, compression, key):
        """A file:// binary cache written by Nix 2.8 (nix copy --to) holding
        `paths` (valid in the Kiln store: exported to the Nix store first),
        signed with the secret key file `key`; returns its directory."""
        exp = subprocess.run([self.kiln, "store", "export", "--store", self.store, *paths], env=self.env,
                             capture_output=True)
        assert exp.returncode == 0, exp.stderr.decode()
        imp = subprocess.run(["nix-store", "--store", self.nix_root, "--import"], input=exp.stdout,
                             capture_output=True)
        assert imp.returncode == 0, imp.stderr.decode()
        cache = f"{self.dir}/cache-{compression}"
        r = run(["nix", "--extra-experimental-features", "nix-command", "copy", "--store", self.nix_root,
                 "--to", f"file://{cache}?compression={compression}&secret-key={key}", *paths])
        assert r.returncode == 0, explain(r)
        return cache

    def nix_valid(self, path):
        return run(["nix-store", "--store", self.nix_root, "--check-validity", path]).returncode == 0

    def kiln_valid(self, path):
        return self.kiln_run("store", "path-info", "--store", self.store, path).returncode == 0


DAEMON_SOCKET = "/nix/var/nix/daemon-socket/socket"


def against_daemon(daemon_argv, steps, nix_conf="sandbox = false\nbuild-users-group =\nsubstituters =\n", files=None,
                   timeout=600):
    """Runs `steps` (name -> shell commands, in order) as Nix clients of one
    daemon serving a fresh, empty store at /nix: a tmpfs over /nix in a
    private mount namespace, so the host's /nix is never touched. `files`
    (path -> text) are written first. Returns (name -> (exit status,
    output)), stdout and stderr together, and the daemon's own log."""
    work = tempfile.mkdtemp(prefix="kiln-daemon-")
    os.chmod(work, 0o755)
    try:
        os.makedirs(f"{work}/conf")
        with open(f"{work}/conf/nix.conf", "w") as f:
            f.write(nix_conf)
        for path, content in (files or {}).items():
            os.makedirs(os.path.dirname(f"{work}/{path}"), exist_ok=True)
            with open(f"{work}/{path}", "w") as f:
                f.write(content)
        script = [
            "set -u",
            "mount -t tmpfs kiln-test /nix",
            "mkdir -p /nix/store /nix/var/nix",
            f"export NIX_CONF_DIR={work}/conf HOME={work}/home TMPDIR={work}/tmp",
            f"mkdir -p {work}/home {work}/tmp; chmod 777 {work}/tmp; cd {work}",
            f"{' '.join(daemon_argv)} > {work}/daemon.log 2>&1 & daemon=$!",
            f"for i in $(seq 200); do [ -S {DAEMON_SOCKET} ] && break; sleep 0.05; done",
            "export NIX_REMOTE=daemon",
        ]
        for name, commands in steps.items():
            # The exit line on a line of its own, even after output without a newline.
            script += [f"echo '@@@ {name}'", f"( {commands} ) 2>&1", "printf '\\n@@@ exit %s\\n' $?"]
        script += ["kill $daemon; wait $daemon"]
        with open(f"{work}/script.sh", "w") as f:
            f.write("\n".join(script) + "\n")
        r = run(["unshare", "-m", "--propagation", "private", "bash", f"{work}/script.sh"], timeout=timeout)
        results, name, lines = {}, None, []
        for line in r.stdout.split("\n"):
            if line.startswith("@@@ exit "):
                results[name] = (int(line[9:]), "\n".join(lines).strip("\n").replace(work, "WORK"))
                name, lines = None, []
            elif line.startswith("@@@ "):
                name = line[4:]
            elif name is not None:
                lines.append(line)
        with open(f"{work}/daemon.log") as f:
            log = f.read()
        missing = [n for n in steps if n not in results]
        assert not missing, f"steps {missing} did not run\n{explain(r)}\n--- daemon\n{log}"
        return results, log
    finally:
        subprocess.run(["rm", "-rf", work])


class DaemonClient:
    """A worker-protocol client as small as a test needs (worker-protocol.md):
    the handshake, requests as lists of u64s, strings and string lists, and
    the stderr stream read to its end."""
    MAGIC_1, MAGIC_2, VERSION = 0x6E697863, 0x6478696F, 0x122
    NEXT, LAST, ERROR = 0x6F6C6D67, 0x616C7473, 0x63787470
    START, STOP, RESULT = 0x53545254, 0x53544F50, 0x52534C54

    def __init__(self, socket_path=None, handshake=True, timeout=30, sock=None, version=VERSION, features=()):
        """`version` is the protocol version the client claims (Nix 2.8's
        1.34 by default); from 1.38 it sends `features` and reads the
        daemon's (daemon_features), from 1.35 it reads its trust (trust)."""
        import socket
        if sock is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(socket_path)
        self.sock = sock
        self.sock.settimeout(timeout)
        self.buf = b""
        self.daemon_features = self.trust = None
        if handshake:
            self.send(self.MAGIC_1)
            assert self.u64() == self.MAGIC_2
            self.daemon_version = self.u64()
            self.version = min(version, self.daemon_version)
            minor = self.version & 0xFF
            if minor >= 38:
                self.send(version, sorted(features))
                self.daemon_features = self.strings()
                self.send(0, 0)
            else:
                self.send(version, 0, 0)
            self.nix_version = self.str()
            if minor >= 35:
                self.trust = self.u64()
            assert self.u64() == self.LAST

    @staticmethod
    def encode(*parts):
        out = b""
        for p in parts:
            if isinstance(p, int):
                out += p.to_bytes(8, "little")
            elif isinstance(p, (str, bytes)):
                data = p.encode() if isinstance(p, str) else p
                out += len(data).to_bytes(8, "little") + data + b"\0" * (-len(data) % 8)
            elif isinstance(p, dict):  # a map: its size, then each key and value
                out += DaemonClient.encode(len(p), *[x for kv in sorted(p.items()) for x in kv])
            else:
                out += DaemonClient.encode(len(p), *p)
        return out

    def send(self, *parts):
        self.sock.sendall(self.encode(*parts))

    def read(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("the daemon closed the connection")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def u64(self):
        return int.from_bytes(self.read(8), "little")

    def str(self):
        n = self.u64()
        data = self.read(n + (-n % 8))[:n]
        return data.decode(errors="replace")

    def strings(self):
        return [self.str() for _ in range(self.u64())]

    def fields(self):
        return [self.u64() if self.u64() == 0 else self.str() for _ in range(self.u64())]

    def stream(self):
        """Reads the stderr stream: (error text or None, [(code, payload), ...])."""
        seen = []
        while True:
            code = self.u64()
            if code == self.LAST:
                return None, seen
            if code == self.ERROR:
                self.str(), self.u64(), self.str()
                msg = self.str()
                self.u64()
                for _ in range(self.u64()):
                    self.u64(), self.str()
                return msg, seen
            if code == self.NEXT:
                seen.append((code, self.str()))
            elif code == self.START:
                act, _level, kind, text = self.u64(), self.u64(), self.u64(), self.str()
                seen.append((code, (act, kind, text, self.fields(), self.u64())))
            elif code == self.STOP:
                seen.append((code, self.u64()))
            elif code == self.RESULT:
                seen.append((code, (self.u64(), self.u64(), self.fields())))
            else:
                raise AssertionError(f"unknown stderr code {code:#x}")

    def set_options(self, verbosity=3, overrides=(), max_jobs=1):
        self.send(19, 0, 0, 0, verbosity, max_jobs, 0, 1, 0, 0, 0, 0, 1, len(overrides))
        for k, v in overrides:
            self.send(k, v)
        err, _ = self.stream()
        assert err is None, err

    def is_valid(self, path):
        self.send(1, path)
        err, _ = self.stream()
        assert err is None, err
        return self.u64() == 1

    def close(self):
        self.sock.close()


def processes(*argv):
    """Pids of host processes running exactly argv (builders are in a pid
    namespace of their own: their own idea of their pid is no use here)."""
    want = "\0".join(argv).encode() + b"\0"
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if f.read() == want:
                    found.append(int(pid))
        except OSError:
            pass
    return found


def wait_until(predicate, timeout=30, step=0.02):
    """Polls `predicate` until it gives something true or `timeout` passes; returns its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return predicate()


def build_started(client, drv, *argv):
    """Sends BuildPaths of DRV!* without reading the answer, then waits until
    a host process runs exactly `argv` (the builder); returns their pids."""
    client.send(9, [f"{drv}!*"], 0)
    pids = wait_until(lambda: processes(*argv))
    assert pids, f"the build of {drv} never started"
    return pids


def parent_of(pid):
    """The parent pid of `pid` (None once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def describe_processes(pids):
    """What a failure message should say of processes that outlived their
    end: each one's state, parent, control group and command line."""
    lines = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                state = next((l.split(":", 1)[1].strip() for l in f if l.startswith("State:")), "?")
            with open(f"/proc/{pid}/cgroup") as f:
                group = f.read().strip().replace("\n", "; ")
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            lines.append(f"{pid}: gone")
            continue
        lines.append(f"{pid}: {state}, parent {parent_of(pid)}, threads waiting in {waits(pid)}, cgroup {group}: "
                     f"{argv}")
    return "\n".join(lines)


def waits(pid):
    """Where in the kernel `pid`'s threads wait, with how many wait there
    ("0": running)."""
    counts = {}
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/wchan") as f:
                    where = f.read().strip() or "0"
            except OSError:
                continue
            counts[where] = counts.get(where, 0) + 1
    except OSError:
        return "?"
    return ", ".join(f"{w} x{n}" for w, n in sorted(counts.items()))


def descendants(pid):
    """Every process below `pid`, children first."""
    parents = {}
    for p in filter(str.isdigit, os.listdir("/proc")):
        parents.setdefault(parent_of(p), []).append(int(p))
    found, todo = [], [pid]
    while todo:
        children = parents.get(todo.pop(0), [])
        found += children
        todo += children
    return found


def children_named(parent, name):
    """Pids of `parent`'s children whose command is `name`."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/comm") as f:
                comm = f.read().strip()
        except OSError:
            continue
        if comm == name and parent_of(pid) == parent:
            found.append(int(pid))
    return found


def build(client, *drvs):
    """BuildPaths of each DRV!* through a DaemonClient: (error or None, messages seen)."""
    client.send(9, [f"{d}!*" for d in drvs], 0)
    err, seen = client.stream()
    if err is None:
        assert client.u64() == 1
    return err, seen


class Kilnd:
    """kilnd serving a SideBySide's Kiln store on a socket of its own."""

    def __init__(self, both, *options, store=None, socket=None, run_as=(), env=None):
        """`run_as` prefixes the command (e.g. setpriv to another user);
        `store`, `socket` and `env` (entries added) replace the defaults."""
        self.socket = socket or f"{both.dir}/daemon.sock"
        binary = os.path.join(os.path.dirname(both.kiln), "kilnd")
        self.log_path = f"{both.dir}/kilnd.log"
        self.log = open(self.log_path, "w")
        env = dict(both.env, NIX_CONF_DIR=f"{both.dir}/no-nix-conf", **(env or {}))
        self.proc = subprocess.Popen([*run_as, binary, "--store", store or both.store, "--socket", self.socket,
                                      *options], env=env, stdout=self.log, stderr=subprocess.STDOUT)
        # kilnd says so once its socket is in place (a killed kilnd's stale
        # socket file may be there before).
        ready = wait_until(lambda: "kilnd: listening on" in self.output() or "kilnd: serving the socket" in self.output()
                           or self.proc.poll() is not None, 10, 0.01)
        assert ready and self.proc.poll() is None and os.path.exists(self.socket), self.output()

    def client(self, **kw):
        return DaemonClient(self.socket, **kw)

    def output(self):
        with open(self.log_path) as f:
            return f.read()

    def reload(self):
        """SIGHUP: the configuration is read again (for new connections)."""
        before = self.output().count("configuration reloaded")
        self.proc.send_signal(1)
        for _ in range(500):
            if self.output().count("configuration reloaded") > before:
                return
            time.sleep(0.01)
        raise AssertionError("kilnd did not reload its configuration\n" + self.output())

    def wait_for(self, fragment, count=1, timeout=30):
        """Waits until kilnd's output has `fragment` `count` times; returns the output."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = self.output()
            if out.count(fragment) >= count:
                return out
            time.sleep(0.01)
        raise AssertionError(f"kilnd never said {fragment!r} ({count}x)\n" + self.output())

    def workers(self):
        """Pids of the kiln-worker processes kilnd started (its children)."""
        return children_named(self.proc.pid, "kiln-worker")

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            return int(next(l for l in f if l.startswith("VmRSS:")).split()[1])

    def stop(self):
        self.proc.terminate()
        status = self.proc.wait(timeout=30)
        self.log.close()
        return status

def serving(daemon):
    """For a fixture: yields the kilnd `daemon`, then asserts it stayed up
    and stops cleanly."""
    yield daemon
    assert daemon.proc.poll() is None, "kilnd died\n" + daemon.output()
    assert daemon.stop() == 0, daemon.output()


def kilnd_with_workers(both, *options, env=None):
    """kilnd building in 2 kiln-worker processes (unless `options` say otherwise)."""
    return Kilnd(both, "--option", "build-users-group", "", "--option", "workers", "2", *options, env=env)


def kilnd_with_hostile_worker(both, name, *options, linger=False, scan=None):
    """kilnd whose one worker is kiln-test-hostile-worker (tests/daemon/
    hostile_worker.cpp), once its tries at its front are over: (kilnd, the
    file the worker reported its tries in, the file it tried to have kilnd
    write, its pid). `options` go to kilnd. `linger`: it stays when its
    link ends, as a wedged worker would. `scan` (a file): two such workers,
    and the first to create the file kills every kilnd actor by number, once
    done (the pid is then the list of both)."""
    report, plant = f"{both.dir}/{name}-report", f"{both.dir}/{name}-planted"
    env = {"KILN_WORKER_PROGRAM": os.path.join(os.path.dirname(both.kiln), "kiln-test-hostile-worker"),
           "KILN_HOSTILE_REPORT": report, "KILN_HOSTILE_PLANT": plant}
    if linger:
        env["KILN_HOSTILE_LINGER"] = "1"
    if scan:
        env["KILN_HOSTILE_SCAN"] = scan
    d = kilnd_with_workers(both, "--option", "workers", "2" if scan else "1", *options, env=env)
    done = lambda f: os.path.exists(f) and "done" in open(f).read()
    assert wait_until(lambda: done(report) and (not scan or done(scan))), d.output()
    pids = children_named(d.proc.pid, "kiln-test-hosti")  # the command name, cut to 15 characters
    if scan:
        return d, report, plant, pids
    (pid,) = pids
    return d, report, plant, pid


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
