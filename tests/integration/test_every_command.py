"""Every command of the CLI, with generated bad arguments, environments and store
states, must end without a Python traceback (issue 14, item 12).

The commands come from the CLI's own command table (the typer app, subcommands
included), so a command added later is covered without touching this file. For
each command, a seeded generator makes cases: argument and option values from
a pool of hostile strings (huge, empty, control characters, undecodable bytes,
out-of-range numbers, paths to devices and FIFOs, names of real images and
containers), a few bad environment variables, and one store state. The states
go through every pairing of a record (images.json, a container's config.json
and state.json, a layer's meta.json and file manifest, a config and a layer
blob, the address allocations) with a kind of damage (damage.RECORD_DAMAGE),
every store directory (and a container's upper/, work/ and init/, a layer's
diff/) replaced by each of damage.DIR_DAMAGE, and store roots that are not
directories, in a seeded order; a clean store is among them.

Each case runs the real CLI in a subprocess, on a hard-linked copy of one base
store, in a network namespace of its own (no registry is ever reached, and no
bridge is made on the host), with its memory capped (a read of /dev/zero must
not take the machine down) and a timeout (a FIFO must not block it).

MINIRUN_FUZZ_SEED picks another seed, MINIRUN_FUZZ_PER_COMMAND another number of
cases per command (default 8: about 230 cases, ~45 s on two cores, enough for
every pairing above).
"""

from __future__ import annotations

import json
import os
import random
import re
import resource
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from .conftest import REPO, Minirun, overlay_mounts_under, processes_using
from .damage import DIR_DAMAGE, RECORD_DAMAGE, clone, damage, damage_dir, directories

SEED = int(os.environ.get("MINIRUN_FUZZ_SEED", "14"))
PER_COMMAND = int(os.environ.get("MINIRUN_FUZZ_PER_COMMAND", "8"))
TIMEOUT = 40
MEMORY_CAP = 2 << 30

# A Python exception's last line ("OSError: [Errno 22] ...") or a traceback.
PYTHON_ERROR = re.compile(r"^(Traceback \(most recent call last\)|[A-Za-z_][\w.]*(Error|Exception)(: |$))")


def command_table() -> list[tuple[tuple[str, ...], list]]:
    """(words, click params) of every command, subcommands included."""
    import typer.main
    from minirun.cli import typer_app
    out = []

    def walk(group, words):
        for name, command in sorted(group.commands.items()):
            if hasattr(command, "commands"):
                walk(command, words + (name,))
            else:
                out.append((words + (name,), list(command.params)))
    walk(typer.main.get_command(typer_app()), ())
    return out


@pytest.fixture(scope="module")
def base(tmp_path_factory, fixtures):
    """busybox and myapp loaded, an exited container c1 and a --rm'd one gone,
    and an address allocations file to damage."""
    root = tmp_path_factory.mktemp("fuzz-base") / "store"
    cli = Minirun(root, fixtures)
    cli.load("busybox", "myapp")
    cli.ok("run", "--name", "c1", "busybox", "sh", "-c", "echo x > /x")
    (root / "networks").mkdir(mode=0o700)
    (root / "networks" / "allocations.json").write_text(json.dumps({"allocations": {}, "last": {}}))
    doc = json.loads((root / "images.json").read_text())
    cid = os.listdir(root / "containers")[0]
    facts = {"image_ids": sorted(doc["images"]), "container": cid,
             "blobs": sorted(os.listdir(root / "blobs" / "sha256")),
             "fixture": cli.fixture_path("busybox"), "archive": cli.fixture_path("myapp", "docker-archive")}
    yield root, facts
    from minirun.lib.fsutil import remove_tree
    remove_tree(str(root))


def value_pool(facts: dict, scratch: Path) -> list:
    """Hostile and plausible argument values; bytes are passed undecoded."""
    (scratch / "nul.env").write_bytes(b"A=1\0\n")
    image = facts["image_ids"][0]
    return ["", "-", "x", "a" * 5000, "\n", "bad\nline", "\x1b[2J\x07", "\r", " ", "../../..",
            "/dev/zero", "/dev/null", str(scratch / "nul.env"), "/proc/self/mem", "/",
            "999", "0", "-1", "99999999999999999999", "1e400", "nan", "3.5",
            "=", "=x", "K=V", "A=\x1b", "%s%n", "{{", "{{.Bogus}}", "{{json .}}", "json", "table {{.ID}}",
            "UPPER/Case", "busybox", "myapp", "c1", "localhost/busybox:latest", image, image[7:19],
            facts["container"][:12], facts["container"], "sha256:" + "0" * 64, "sha256:", "x@sha256:1",
            "127.0.0.1:9/x/y:z", "a:b:c:d", "docker.io/", "nofile=1:0", "nofile=-5",
            "4:3:ro:x", "/tmp:/x:ro", "/x:size=1e400", "ALL", "SYS_ADMIN", "no-new-privileges:maybe",
            "dangling=true", "status=running", "reference=*", "KILL", "SIGRTMAX+1",
            "none", "host", "bridge", "oci-dir", "docker-archive",
            facts["fixture"], facts["archive"], b"\xff\xfe", b"name-\xc3(",
            "\u202e\u2028", "\udcff"]


BAD_ENV = {
    "MINIRUN_LOG_LEVEL": ["bogus", "\n", "DEBUG"],
    "MINIRUN_LOCK_TIMEOUT": ["-1", "nan", "1e400", "x", "0"],
    "SOURCE_DATE_EPOCH": [str(10 ** 30), "-1", "\u00b2", "x", "99999999999999"],
    "MINIRUN_MAX_LAYER_BYTES": ["-1", "x", "1e400", "0"],
    "MINIRUN_MAX_LAYER_ENTRIES": ["-1", "x", "0"],
    "MINIRUN_OVERLAY_API": ["bogus", "new", "legacy"],
    "MINIRUN_CGROUPS": ["always", "bogus"],
    "MINIRUN_INSECURE_REGISTRIES": [",,,", "\n"],
    "MINIRUN_BRIDGE_SUBNET": ["bogus", "10.0.0.0/31", "::/0"],
    "MINIRUN_BRIDGE": ["a" * 40, "\n"],
    "MINIRUN_CONFIG": ["/dev/zero", "/dev/null/config.toml", "/", "CONFIG_DEEP", "CONFIG_BAD"],
    "DOCKER_CONFIG": ["/dev/null", "/dev/null/docker"],
    "TERM": ["\x1b"],
}


def record_targets(root: Path, facts: dict) -> list[Path]:
    cid = facts["container"]
    layer = sorted(os.listdir(root / "layers" / "sha256"))[0]
    blobs = root / "blobs" / "sha256"
    return [root / "images.json", root / "containers" / cid / "config.json",
            root / "containers" / cid / "state.json", root / "layers" / "sha256" / layer / "meta.json",
            root / "layers" / "sha256" / layer / "files.jsonl.gz", root / "networks" / "allocations.json",
            blobs / facts["image_ids"][0][7:], blobs / facts["blobs"][0]]


def dir_targets(root: Path, facts: dict) -> list[Path]:
    """The store's directories, and a container's and a layer's own."""
    layer = sorted(os.listdir(root / "layers" / "sha256"))[0]
    container = root / "containers" / facts["container"]
    return directories(root) + [container / "upper", container / "init", container / "work",
                                root / "layers" / "sha256" / layer / "diff"]


DIR_TARGETS = len(directories(Path("/"))) + 4


def states(rng: random.Random, count: int) -> list[tuple]:
    """count store states, cycling through every record x damage and dir x damage pair."""
    records = [("record", r, k) for r in range(8) for k in RECORD_DAMAGE]
    dirs = [("dir", d, k) for d in range(DIR_TARGETS) for k in DIR_DAMAGE]
    roots = [("root", value) for value in ("/dev/null", "MISSING", "/proc/self/status", "FILE")]
    for group in (records, dirs, roots):
        rng.shuffle(group)
    plan = []
    cycle = {"record": iter(records * 10), "dir": iter(dirs * 10), "root": iter(roots * 100)}
    for i in range(count):
        kind = ("clean", "record", "record", "dir", "root", "record")[i % 6]
        plan.append(("clean",) if kind == "clean" else next(cycle[kind]))
    if count >= 6 * len(dirs):         # the default: every pairing at least once
        assert {s for s in plan if s[0] == "record"} == set(records)
        assert {s for s in plan if s[0] == "dir"} == set(dirs)
    return plan


# A FIFO nobody writes to: --env-file must not wait on one. (load, import and save -o
# do, as `cat FIFO` and `cat > FIFO` would: that is how they stream.)
READ_FROM = ("env_file",)


def make_args(rng: random.Random, words: tuple[str, ...], params: list, pool: list, fifo: str) -> list:
    args: list = list(words)

    def value(param):
        return fifo if param.name in READ_FROM and rng.random() < 0.3 else rng.choice(pool)
    for param in params:
        if param.param_type_name == "option":
            if rng.random() < 0.3:
                name = rng.choice(param.opts)
                args.append(name)
                if not param.is_flag:
                    args.append(value(param))
        else:
            count = rng.randint(1, 3) if param.nargs == -1 else 1
            if param.required or rng.random() < 0.7:
                args += [value(param) for _ in range(count)]
    if rng.random() < 0.08:
        args.append(rng.choice(["--help", "--bogus", "--", "-"]))
    return args


def make_env(rng: random.Random, scratch: Path) -> dict:
    env = {}
    for name in rng.sample(sorted(BAD_ENV), rng.choice([0, 0, 1, 2])):
        value = rng.choice(BAD_ENV[name])
        if value == "CONFIG_DEEP":
            value = str(scratch / "deep.toml")
        elif value == "CONFIG_BAD":
            value = str(scratch / "bad.toml")
        env[name] = value
    return env


def prepare(state: tuple, case_root: Path, base_root: Path, facts: dict) -> str:
    """Make the case's store; returns the MINIRUN_ROOT to use."""
    clone(base_root, case_root)
    if state[0] == "record":
        damage(record_targets(case_root, facts)[state[1]], state[2])
    elif state[0] == "dir":
        damage_dir(dir_targets(case_root, facts)[state[1]], state[2])
    elif state[0] == "root":
        if state[1] == "FILE":
            (case_root.parent / "rootfile").write_text("x")
            return str(case_root.parent / "rootfile")
        if state[1] == "MISSING":                     # made by the first command that writes
            return str(case_root.parent / "missing" / "store")
        return state[1]
    return str(case_root)


def _limits():
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))
    os.setsid()


def run_case(case: dict) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MINIRUN_", "SOURCE_DATE"))}
    env.update({"MINIRUN_ROOT": case["root"], "DOCKER_CONFIG": case["home"], "HOME": case["home"],
                "PYTHONPATH": str(REPO)})
    env.update(case["env"])
    argv = ["unshare", "-n", sys.executable, "-m", "minirun", *case["args"]]
    # cwd: the case's own dir, so that `-o x` writes there (PYTHONPATH picks this tree's code)
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env, cwd=case["home"], preexec_fn=_limits)
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
        hung = False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        hung = True
    return dict(case, code=proc.returncode, stdout=out, stderr=err.decode(errors="replace"), hung=hung)


def problems(result: dict) -> list[str]:
    found = []
    if result["hung"]:
        found.append(f"hung for {TIMEOUT}s")
    for line in result["stderr"].splitlines():
        if PYTHON_ERROR.match(line) or "SystemError" in line:
            found.insert(0, line)           # the exception's own line, last, is shown first
        if line.startswith("Error:") and any(ord(c) < 32 or 0x7f <= ord(c) < 0xa0 for c in line):
            found.append(f"raw control character in {line!r}")
    return found


def cases_for(base_root: Path, facts: dict, scratch: Path) -> list[dict]:
    rng = random.Random(SEED)
    (scratch / "deep.toml").write_text("a = " + "[" * 50000 + "]" * 50000)
    (scratch / "bad.toml").write_text("root = 5\n[network]\ndefault = []\n")
    pool = value_pool(facts, scratch)
    fifo = scratch / "fifo"
    os.mkfifo(fifo)
    table = command_table()
    plan = states(rng, PER_COMMAND * len(table))
    cases = []
    for index, (words, params) in enumerate(t for t in table for _ in range(PER_COMMAND)):
        case_dir = scratch / f"case{index}"
        case_dir.mkdir()
        (case_dir / "home").mkdir()
        root = prepare(plan[index], case_dir / "store", base_root, facts)
        cases.append({"index": index, "state": plan[index], "root": root,
                      "store": str(case_dir / "store"), "home": str(case_dir / "home"),
                      "args": make_args(rng, words, params, pool, str(fifo)), "env": make_env(rng, scratch)})
    return cases


def _running(containers: Path) -> list[str]:
    """Ids of the containers whose state (a regular file) says running."""
    found = []
    for cid in os.listdir(containers):
        state = containers / cid / "state.json"
        try:
            if state.is_file() and not state.is_symlink() and state.stat().st_size < 1 << 16 and \
                    json.loads(state.read_text()).get("status") == "running":
                found.append(cid)
        except (OSError, ValueError, AttributeError):
            continue
    return found


def cleanup(case: dict) -> list[str]:
    """Remove what a case may have left (containers still running with -d, its store);
    returns what could not be cleaned."""
    store = Path(case["store"])
    containers = store / "containers"
    left = []
    if containers.is_dir() and not containers.is_symlink():
        running = _running(containers)
        if running:
            try:
                subprocess.run([sys.executable, "-m", "minirun", "rm", "-f", *running], cwd=str(REPO),
                               env=dict(os.environ, MINIRUN_ROOT=str(store)), capture_output=True,
                               timeout=60)
            except subprocess.TimeoutExpired:
                left.append(f"case {case['index']}: rm -f of its running containers hung")
    for pid in processes_using(store):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if overlay_mounts_under(store):
        left.append(f"case {case['index']}: overlay mounts left")
        return left
    from minirun.lib.fsutil import remove_tree
    remove_tree(case["store"])
    return left


def test_every_command_survives_bad_arguments_environment_and_store(base, tmp_path):
    base_root, facts = base
    table = command_table()
    assert len(table) >= 25 and ("run",) in [w for w, _ in table] and ("system", "df") in [w for w, _ in table]
    cases = cases_for(base_root, facts, tmp_path)
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(run_case, cases))
    failures = []
    for result in results:
        found = problems(result)
        if found:
            shown = [a if isinstance(a, str) else repr(a) for a in result["args"]]
            failures.append(f"case {result['index']}: minirun {' '.join(repr(a) for a in shown)[:300]}\n"
                            f"  env {result['env']}, store {result['state']}, exit {result['code']}\n"
                            f"  {found[0][:300]}")
    left = [line for case in cases for line in cleanup(case)]
    covered = {tuple(c["args"][:len(w)]) for c in cases for w, _ in table if tuple(c["args"][:len(w)]) == w}
    assert covered == {w for w, _ in table}
    assert not failures, f"{len(failures)} of {len(results)} cases failed (seed {SEED}):\n" + "\n".join(failures)
    assert not left, left
