"""SIGKILL minirun at random points and check that the store survives (as root):

    .venv/bin/python tools/crash_stress.py [--trials 120] [--seed N] [FIXTURES_DIR]

Each trial starts one command (load, pull, run, run -d, commit, rm, rmi,
prune) in its own process group against a store prepared for it, kills it
(or its whole group, monitor and container included) after a random delay
spread over the command's usual duration, and then checks:

    * `minirun fsck` exits 0: every layer matches its file manifest, every blob
      its digest, images.json only names what exists;
    * every listed image runs (`run --rm IMAGE true`);
    * tmp/ holds nothing of dead processes after the next command;
    * no container claims to be running without a live process, and `rm -f`
      removes every container;
    * the same command, run again to the end, succeeds (a killed load or pull
      resumes).

Prints a table per command and exits 1 if any trial found a problem.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


class Store:
    def __init__(self, root: Path, fixtures: Path, registry: str):
        self.root, self.fixtures, self.registry = root, fixtures, registry
        self.env = dict(os.environ, MINIRUN_ROOT=str(root), PYTHONPATH=str(REPO))

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "minirun", *args]

    def __call__(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(self.argv(*args), env=self.env, capture_output=True, text=True, timeout=timeout)

    def ok(self, *args: str) -> str:
        proc = self(*args)
        if proc.returncode != 0:
            raise RuntimeError(f"minirun {' '.join(args)}: {proc.stderr.strip()}")
        return proc.stdout


def setups(store: Store) -> dict:
    """command -> (prepare the store, the argv to kill, a check after re-running it)."""
    fx = store.fixtures

    def loaded(*names):
        return lambda: [store.ok("load", "-q", str(fx / "oci" / n)) for n in names]

    def container():
        loaded("myapp")()
        store("rm", "-f", "c")
        store.ok("run", "--name", "c", "myapp", "sh", "-c", "head -c 3000000 /dev/urandom > /big; echo x > /y")

    return {
        "load": (lambda: None, ["load", str(fx / "oci-archive" / "layers200.tar")]),
        "load-big": (lambda: None, ["load", str(fx / "docker-archive" / "myapp.tar")]),
        "pull": (lambda: None, ["pull", f"{store.registry}/stress/myapp:latest"]),
        "run": (loaded("busybox"), ["run", "--rm", "busybox", "sh", "-c", "echo hi > /f; sleep 0.2"]),
        "run-d": (loaded("busybox"), ["run", "-d", "--name", "d", "busybox", "sleep", "5"]),
        "commit": (container, ["commit", "c", "c:committed"]),
        "rm": (container, ["rm", "-f", "c"]),
        "rmi": (loaded("myapp", "myotherapp"), ["rmi", "myapp"]),
        "prune": (lambda: (loaded("myapp", "myotherapp")(), store("run", "--name", "p", "myotherapp", "true"),
                           store("rmi", "-f", "myotherapp")),
                  ["prune", "-f", "--containers"]),
    }


def check(store: Store) -> list[str]:
    problems = []
    fsck = store("fsck")
    if fsck.returncode != 0:
        problems.append("fsck: " + (fsck.stdout + fsck.stderr).strip().splitlines()[0])
    for image in store("images", "-q", "--no-trunc").stdout.split():
        ran = store("run", "--rm", image, "true")
        if ran.returncode != 0:
            problems.append(f"image {image[7:19]} does not run: {ran.stderr.strip()}")
    tmp = store.root / "tmp"
    leftovers = [n for n in os.listdir(tmp) if not n.startswith("empty-lower")] if tmp.exists() else []
    if leftovers:
        problems.append(f"tmp/ not cleaned: {leftovers[:3]}")
    for line in store("ps", "-a", "--format", "json").stdout.splitlines():
        record = json.loads(line)                  # docker's keys: State is a word
        if record["State"] == "running":
            shown = store("inspect", record["ID"])
            state = json.loads(shown.stdout)[0]["State"] if shown.returncode == 0 else {}
            if not _alive(state.get("Pid")):
                problems.append(f"container {record['Names']} says running with no process")
    ids = [json.loads(line)["ID"] for line in store("ps", "-a", "--format", "json").stdout.splitlines()]
    if ids:
        removed = store("rm", "-f", *ids)
        if removed.returncode != 0:
            problems.append(f"rm -f failed: {removed.stderr.strip()}")
    return problems


def _alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
        return True
    except (OSError, TypeError, ValueError):
        return False


def durations(store: Store, plan: dict) -> dict[str, float]:
    out = {}
    for name, (prepare, argv) in plan.items():
        _reset(store)
        prepare()
        began = time.monotonic()
        store(*argv)
        out[name] = time.monotonic() - began
    return out


def _reset(store: Store) -> None:
    ids = [json.loads(line)["ID"] for line in store("ps", "-a", "--format", "json").stdout.splitlines()]
    if ids:
        store("rm", "-f", *ids)
    from minirun.lib.fsutil import remove_tree
    if store.root.exists():
        remove_tree(str(store.root))


def trial(store: Store, name: str, prepare, argv: list[str], duration: float, rng: random.Random) -> list[str]:
    _reset(store)
    prepare()
    proc = subprocess.Popen(store.argv(*argv), env=store.env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    time.sleep(rng.uniform(0, duration * 1.1))
    try:
        if rng.random() < 0.3:
            os.killpg(proc.pid, signal.SIGKILL)      # monitor and container too
        else:
            proc.kill()
    except ProcessLookupError:
        pass
    proc.wait()
    store("prune", "--dry-run")                       # "the next start": opens the store, cleans stale tmp/
    problems = check(store)
    prepare()
    again = store(*argv)
    if again.returncode != 0 and name not in ("rm", "rmi"):   # rm/rmi may have finished already
        problems.append(f"re-run failed: {again.stderr.strip()}")
    problems += check(store)
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=120)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("fixtures", nargs="?", default=str(REPO / "fixtures-out"))
    args = parser.parse_args()
    rng = random.Random(args.seed)
    from tests.integration.registry import Registry
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        registry = Registry(Path(tmp) / "registry")
        try:
            from tests.integration.peers import sealed
            subprocess.run(sealed(["skopeo", "copy", "--quiet", "--dest-tls-verify=false",
                                   f"oci:{args.fixtures}/oci/myapp:latest",
                                   f"docker://{registry.address}/stress/myapp:latest"]), check=True)
            store = Store(Path(tmp) / "store", Path(args.fixtures), registry.address)
            plan = setups(store)
            took = durations(store, plan)
            results: dict[str, list] = defaultdict(list)
            began = time.monotonic()
            names = sorted(plan)
            for i in range(args.trials):
                name = names[i % len(names)]
                prepare, argv = plan[name]
                results[name].append(trial(store, name, prepare, argv, took[name], rng))
            _reset(store)
        finally:
            registry.stop()
    print(f"seed {args.seed}, {args.trials} trials in {time.monotonic() - began:.0f} s")
    print(f"{'command':<10}{'usual':>8}{'trials':>8}{'clean':>7}  first problem")
    failed = 0
    for name in names:
        runs = results[name]
        bad = [p for p in runs if p]
        failed += len(bad)
        print(f"{name:<10}{took[name]:>7.2f}s{len(runs):>8}{len(runs) - len(bad):>7}  {bad[0][0] if bad else ''}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
