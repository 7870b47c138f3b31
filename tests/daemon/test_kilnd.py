"""kilnd against nix-daemon: the same Nix 2.8 client commands, each daemon
serving a fresh store at /nix (its own private mount namespace), and the
answers compared. Differences that are not the daemon's (timestamps, the
version string) are taken out by name, nothing else."""
import json
import os
import re

import pytest

from kiln_testing import against_daemon

NIX = "--extra-experimental-features nix-command"
NOBODY = "setpriv --reuid=65534 --regid=65534 --clear-groups env HOME=$TMPDIR"

FILES = {
    "src/greeting": "hello from a source directory\n",
    "src/sub/more": "more\n",
    "default.nix": """
let
  src = ./src;
  sh = name: script: derivation {
    inherit name; system = "x86_64-linux"; builder = "/bin/sh"; args = [ "-c" script ];
  };
in rec {
  hello = sh "hello" "echo building hello; while read l; do echo \\"$l\\"; done < ${src}/greeting > $out";
  wrapper = sh "wrapper" "echo ${hello} > $out";
  unbuilt = sh "unbuilt" "echo ${wrapper} > $out";
  first = sh "first" "echo making first; echo 1 > $out";
  second = sh "second" "echo ${first} > $out";
  remote = sh "remote" "echo building remotely; while read l; do echo \\"$l\\"; done < ${hello} > $out";
  cached = sh "cached" "echo made once > $out";
  hooked = sh "hooked" "echo hooked > $out";
  hooked-json = sh "hooked-json" "echo hooked > $out";
  repaired = sh "repaired" "echo repaired once > $out";
  signed = sh "signed" "echo signed once > $out";
  failing = sh "failing" "for i in 1 2 3 4 5 6 7 8 9 10 11 12; do echo line $i; done; exit 3";
}
""",
    "other/file": "a path made in another store\n",
    # Prints no OUT_PATHS: Nix 2.8 gives the hook an empty one (NixOS/nix#6446), Kiln the outputs.
    "bin/hook": "#!/bin/sh\necho hook ran for $DRV_PATH\necho and wrote to stderr >&2\n",
    # An ssh stand-in for ssh-ng:// builders: runs the remote command (its
    # last argument) here, where remote-daemon is the daemon under test.
    "bin/ssh": "#!/bin/sh\nfor last; do :; done\nexec sh -c \"$last\"\n",
}

DRV = "$(nix-instantiate default.nix -A hello 2>/dev/null)"
OUT = "$(nix-build default.nix -A hello --no-out-link 2>/dev/null)"
WRAPPER = "$(nix-build default.nix -A wrapper --no-out-link 2>/dev/null)"

REMOTE = ("printf '#!/bin/sh\\nexec DAEMON \"$@\"\\n' > bin/remote-daemon && chmod +x bin/* && "
          "PATH=$PWD/bin:$PATH nix-build --store $PWD/builder-client default.nix --no-out-link --max-jobs 0 "
          "--builders 'ssh-ng://localhost?remote-program=remote-daemon x86_64-linux'")

STEPS = {
    "ping": f"nix {NIX} store ping 2>&1 | grep -v '^Version'",
    "instantiate": "nix-instantiate default.nix -A wrapper",
    "build": "nix-build default.nix -A wrapper --no-out-link",
    "built content": f"cat {WRAPPER} {OUT}",
    "failing build": "nix-build default.nix -A failing --no-out-link",
    "failing, new CLI": f"nix {NIX} build -f default.nix failing --no-link",
    # What nix build's progress bar is drawn from: the activities, their
    # progress and their results, in order.
    "internal-json": f"nix {NIX} build --log-format internal-json -f default.nix second --no-link",
    "internal-json, failing": f"nix {NIX} build --log-format internal-json -f default.nix failing --no-link",
    # The post-build hook's activity and its lines, as nix-build shows them and as they come.
    "post-build hook": "chmod +x bin/hook && nix-build default.nix -A hooked --no-out-link "
                       "--option post-build-hook $PWD/bin/hook",
    "internal-json, post-build hook": f"nix {NIX} build --log-format internal-json -f default.nix hooked-json "
                                      "--no-link --option post-build-hook $PWD/bin/hook",
    "realise": f"nix-store --realise {DRV}",
    "references": f"nix-store -q --references {WRAPPER}",
    "referrers": f"nix-store -q --referrers {OUT}",
    "requisites": f"nix-store -q --requisites {WRAPPER}",
    "deriver": f"nix-store -q --deriver {OUT}",
    "outputs": f"nix-store -q --outputs {DRV}",
    "tree": f"nix-store -q --tree {DRV}",
    "path-info": f"nix {NIX} path-info --json -r {WRAPPER}",
    "add": "nix-store --add src",
    "add-fixed": "nix-store --add-fixed sha256 src/greeting && nix-store --add-fixed --recursive sha1 src",
    "add-file": f"nix {NIX} store add-file src/sub/more",
    "dry-run": "nix-build --dry-run default.nix -A unbuilt",
    "copy to the daemon": (
        f"p=$(nix-store --store $PWD/other-store --add other/file) && "
        f"nix {NIX} copy --no-check-sigs --from $PWD/other-store $p && nix-store --check-validity $p && echo $p"),
    "copy from the daemon": (
        f"nix {NIX} copy --no-check-sigs --to $PWD/copy-dest {WRAPPER} && "
        f"nix-store --store $PWD/copy-dest -q --requisites {WRAPPER}"),
    # Built, put in a file:// cache unsigned, deleted: the daemon says it
    # would be fetched (QueryMissing, QuerySubstitutablePathInfos); then,
    # the client's require-sigs being no business of the daemon's store
    # (as Nix's), it is passed over with Nix's warning and built.
    "substitutable, dry-run": (
        "o=$(nix-build default.nix -A cached --no-out-link 2>/dev/null) && "
        f"nix {NIX} copy --to \"file://$PWD/subst-cache?compression=none\" $o && nix-store --delete $o >/dev/null 2>&1 && "
        "nix-build --dry-run default.nix -A cached --option substituters file://$PWD/subst-cache"),
    "substituted": (
        "nix-build default.nix -A cached --no-out-link --option substituters file://$PWD/subst-cache "
        "--option require-sigs false && cat $(nix-build default.nix -A cached --no-out-link 2>/dev/null)"),
    # Signed by a key the client trusts: copied, as nix-build tells it.
    "substituted, signed": (
        "o=$(nix-build default.nix -A signed --no-out-link 2>/dev/null) && "
        "nix-store --generate-binary-cache-key test-1 sk pk && "
        f"nix {NIX} copy --to \"file://$PWD/signed-cache?compression=none&secret-key=$PWD/sk\" $o && "
        "nix-store --delete $o >/dev/null 2>&1 && "
        "nix-build default.nix -A signed --no-out-link --option substituters file://$PWD/signed-cache "
        "--option trusted-public-keys \"$(cat pk)\" && cat $o"),
    "export, import": (
        f"p=$(nix-store --store $PWD/export-src --add src/sub) && nix-store --store $PWD/export-src --export $p > exp && "
        f"nix-store --import < exp && nix-store -q --hash $p"),
    "nix log": f"nix {NIX} log {DRV}",
    "nix-store -l": f"nix-store -l {DRV}",
    "untrusted: repair": f"{NOBODY} nix-store --realise --repair {DRV}",
    "untrusted: unsigned import": (
        f"p=$(nix-store --store $PWD/unsigned --add default.nix) && nix-store --store $PWD/unsigned --export $p > u && "
        f"{NOBODY} nix-store --import < u"),
    "untrusted: verify --repair": f"{NOBODY} nix-store --verify --repair",
    "untrusted: queries": f"{NOBODY} nix-store -q --requisites {WRAPPER}",
    "verify": "nix-store --verify --check-contents",
    "gc --print-dead": "nix-store --gc --print-dead | sort",
    "delete": f"p=$(nix {NIX} store add-file other/file) && nix-store --delete $p && nix-store --check-validity $p",
    "optimise": "nix-store --optimise",
    # Kiln's own client through either daemon (logs are read from /nix/var/log, as Nix's client reads them).
    "kiln store query": f"KILN store query --store daemon --requisites {WRAPPER}",
    "kiln path-info": f"KILN store path-info --store daemon --json -r {WRAPPER} | sed 's/\"registrationTime\":[0-9]*//g'",
    "kiln log": f"KILN log --store daemon {DRV}",
    "kiln build": "KILN build --store daemon $(nix-instantiate default.nix -A unbuilt 2>/dev/null)",
    "kiln add": ("KILN store add --store daemon src && KILN store add-fixed --store daemon --type sha256 src/greeting"
                 " && KILN store add-fixed --store daemon --recursive --type sha1 src"),
    "kiln delete": "p=$(KILN store add --store daemon other/file) && KILN store delete --store daemon $p 2>&1 | tail -1"
                   " && nix-store --check-validity $p",
    # A Nix that builds elsewhere: its store is a directory here, its only
    # builder the daemon under test over ssh-ng:// (BuildDerivation, with the
    # inputs copied first and the outputs copied back).
    "remote build": f"{REMOTE} -A remote && cat $PWD/builder-client/nix/store/*-remote",
    "failing remote build": f"{REMOTE} -A failing",
    # After the collector's steps: Nix 2.8 leaves the checked output's lock and a rewritten copy
    # of it in the store, which would show in the collector's answers.
    "realise --check": f"nix-store --realise --check {DRV}",
    # Then the store damaged on purpose. An output is rebuilt from its
    # deriver; a path with no deriver (and nothing to substitute it from)
    # cannot be, and is removed after. Each is replaced, not written
    # through: after --optimise its file is a hard link others share.
    "verify --repair": (f"o={OUT}; rm -f $o && echo changed > $o && nix-store --verify --check-contents --repair"
                        f" && cat $o && nix-store --verify --check-contents"),
    "verify --repair, no deriver": ("p=$(nix-store --add other/file) && rm -f $p && echo junk > $p && "
                                    "nix-store --verify --check-contents --repair; s=$?; nix-store --delete $p "
                                    ">/dev/null 2>&1; exit $s"),
    # ... unless a substituter has it: then it is copied from there (a
    # path added is content-addressed, so needs no signature).
    "verify --repair, from a substituter": (
        "p=$(nix-store --add other/file) && "
        f"nix {NIX} copy --to \"file://$PWD/repair-cache?compression=none\" $p && rm -f $p && echo junk > $p && "
        "nix-store --verify --check-contents --repair --option substituters file://$PWD/repair-cache; s=$?; "
        "cat $p; nix-store --verify --check-contents; nix-store --delete $p >/dev/null 2>&1; exit $s"),
    # A derivation's damaged output repaired from a signed substituter:
    # reported AlreadyValid (Kiln's own client shows the status).
    "kiln build --repair from a substituter": (
        "d=$(nix-instantiate default.nix -A repaired 2>/dev/null) && o=$(nix-store --realise $d 2>/dev/null) && "
        "nix-store --generate-binary-cache-key test-1 sk pk && "
        f"nix {NIX} copy --to \"file://$PWD/repair-cache-2?compression=none&secret-key=$PWD/sk\" $o && "
        "rm -f $o && echo damaged > $o && KILN build --store daemon --repair --json "
        "--option substituters file://$PWD/repair-cache-2 --option trusted-public-keys \"$(cat pk)\" $d; cat $o"),
    # A file of .links written through: the link is removed, every path
    # sharing it repaired if it can be (hello) or reported (its source).
    "verify --repair, a modified link": (f"nix-store --optimise >/dev/null 2>&1; o={OUT}; echo changed > $o && "
                                         "nix-store --verify --check-contents --repair; "
                                         "nix-store --verify --check-contents"),
}


STALE_LINK = re.compile(r"gcroots/auto/[0-9a-z]+' to 'WORK/tmp/nix-build-[0-9]+-0/result'")


ACTIVITY_ID = re.compile(r'"(id|parent)":([0-9]+)')
ANSI = re.compile(r"\\u001b\[[0-9;]*m")


def normalise(name, output):
    """Takes out what differs by time and process ids, and only that; and
    in internal-json, the colours inside an error's text (Nix's daemon
    colours the path in "builder for '...' failed", kilnd does not)."""
    if name.startswith("internal-json"):
        ids = {}
        output = ACTIVITY_ID.sub(lambda m: f'"{m[1]}":{ids.setdefault(m[2], len(ids) + 1)}', output)
        return "\n".join(ANSI.sub("", l) if '"action":"msg"' in l else l for l in output.split("\n"))
    if "removing stale link" in output:
        lines = [STALE_LINK.sub("gcroots/auto/HASH' to 'WORK/tmp/nix-build-PID-0/result'", l)
                 for l in output.split("\n")]
        return "\n".join(sorted(lines))
    if name == "path-info":
        infos = json.loads(output.strip().split("\n")[-1])
        for i in infos:
            i.pop("registrationTime", None)
        return json.dumps(infos, sort_keys=True)
    return output


@pytest.fixture(scope="module")
def answers(kiln):
    kilnd = os.path.join(os.path.dirname(kiln), "kilnd")
    def steps(daemon):
        return {name: command.replace("KILN", kiln).replace("DAEMON", daemon) for name, command in STEPS.items()}
    ours, log = against_daemon([kilnd], steps(kilnd), files=FILES)
    theirs, _ = against_daemon(["nix-daemon"], steps("nix-daemon"), files=FILES)
    return ours, theirs, log


@pytest.mark.parametrize("step", list(STEPS))
def test_same_answer(answers, step):
    ours, theirs, log = answers
    (our_exit, our_out), (their_exit, their_out) = ours[step], theirs[step]
    if step.startswith("internal-json"):  # the stream is there to compare: the builds activity and a build
        assert '"type":104' in their_out and '"type":105' in their_out, their_out
    assert (our_exit, normalise(step, our_out)) == (their_exit, normalise(step, their_out)), \
        f"kilnd said:\n{our_out}\nnix-daemon said:\n{their_out}\n--- kilnd's log\n{log[-3000:]}"
