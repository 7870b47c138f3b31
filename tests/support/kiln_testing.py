"""The one helper Kiln's pytest suites share: a Kiln store and a Nix 2.8
store side by side in a temporary directory, derivations added to the first
and exported to the second, and both tools run on them.

Both build sandboxed with the host's shell and tools bound in, as the
benchmarks give Nix; Nix gets `--option substituters ''` (no network here).
"""
import base64
import json
import os
import shutil
import subprocess
import tempfile
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


class SideBySide:
    """A temporary Kiln store (`local:DIR/kiln`) and Nix store (`DIR/nix`)."""

    def __init__(self, kiln):
        self.kiln = kiln
        self.dir = tempfile.mkdtemp(prefix="kiln-pytest-")
        # Build users must reach what tests bind in; build directories stay inside.
        os.chmod(self.dir, 0o755)
        os.makedirs(f"{self.dir}/tmp")
        self.env = dict(os.environ, TMPDIR=f"{self.dir}/tmp", KILN_CONF=f"{self.dir}/kiln.conf")
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
            builder="/bin/sh", args=None, input_srcs=(), structured=None):
        """Adds a derivation (builder /bin/sh -c SCRIPT) to the Kiln store; returns its path.
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
        r = self.kiln_run("drv", "add", "--store", self.store, "--json", path)
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

    def nix_valid(self, path):
        return run(["nix-store", "--store", self.nix_root, "--check-validity", path]).returncode == 0

    def kiln_valid(self, path):
        return self.kiln_run("store", "path-info", "--store", self.store, path).returncode == 0
