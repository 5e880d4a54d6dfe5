"""Start latency of `minirun run --rm busybox /bin/true` against its peers (as root):

    .venv/bin/python benchmarks/start.py [RUNS] [FIXTURES_DIR]      (default 20 runs)

Every command runs from a cold process each time, RUNS times in each of two
orders, and the script reports the median of each:

    interleaved   round after round, one run of each command per round: a load
                  that comes and goes on the host hits every command alike
    blocked       as hyperfine does: 3 warmup runs of one command, then all its
                  runs, then the next command

The commands:

    python -I -S -c pass     the interpreter alone
    python -c pass           ... with site (the venv's site-packages)
    floor                    unshare -m -p -f + mount overlay of the image's layers + chroot /bin/true
    runc run                 on an unpacked bundle of the same rootfs, with runc's own defaults:
                             no --root, so its state lives in /run/runc (tmpfs)
    crun run                 the same bundle with crun's defaults (state in /run/crun), if
                             crun is installed; see CrunTimer for the one change it needs here
    podman run --rm          busybox loaded into a private podman store, if podman is installed
    minirun run --rm         the console script, on the busybox image in a private store

Each runc and crun run gets a container id of its own (`runc run` deletes its
container when the process exits); anything left at the end (state dirs,
cgroups, /run/runc or /run/crun if this script made them) is removed, and the
last line says whether anything had to be.

With MINIRUN_BENCH_BASELINE=DIR (a checkout of another commit, e.g. a `git
worktree`), "minirun run --rm (baseline)" runs the same console script with
DIR first on PYTHONPATH, in the same rounds: an A/B of two versions.

Targets (issue 14): minirun <= 1.0x runc in both orders, and <= 0.2x podman.
Also prints the `python -X importtime` total of one `minirun run`, and what
making and removing an entry costs in the store's directory: minirun makes 13
per run there and runc none, and on this machine's root ext4 that cost moves
between ~30 and ~500 us from one work dir to the next. Needs root.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks import common  # noqa: E402
from tests.integration.peers import PODMAN_CONF  # noqa: E402 - the settings PEERS.md says podman needs here

VENV_BIN = Path(sys.executable).parent
WARMUP = 3
PREFIX = f"mrbench-{os.getpid()}-"          # the ids of this script's runc and crun containers

# Timed runs use byte-code caches, as an installed minirun does: a shell with
# PYTHONDONTWRITEBYTECODE=1 would recompile every module on every run.
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)


def check(argv: list[str], env: dict | None = None) -> str:
    proc = subprocess.run(argv, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def timed(argv: list[str], env: dict | None = None) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    took = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.decode().strip()}")
    return took


def runc_bundle(work: Path, rootfs_from: str) -> Path:
    bundle = work / "bundle"
    (bundle / "rootfs").mkdir(parents=True)
    check(["cp", "-a", rootfs_from + "/.", str(bundle / "rootfs")])
    check(["runc", "spec", "--bundle", str(bundle)])
    spec = json.loads((bundle / "config.json").read_text())
    spec["process"]["terminal"] = False
    spec["process"]["args"] = ["/bin/true"]
    spec["root"]["readonly"] = False
    (bundle / "config.json").write_text(json.dumps(spec))
    return bundle


class Ids:
    """A fresh container id for each run: a run that failed half-way can never make
    the next one fail on a name in use."""

    def __init__(self, tool: str):
        self.tool, self.count = tool, 0

    def next(self) -> str:
        self.count += 1
        return f"{PREFIX}{self.tool}-{self.count}"


class Command:
    """One line of the table: how to time one run of it."""

    def __init__(self, name: str, argv=None, env: dict | None = None, before=None, timer=None):
        self.name, self.argv, self.env, self.before, self.timer = name, argv, env, before, timer

    def run(self) -> float:
        if self.before:
            self.before()
        argv = self.argv() if callable(self.argv) else self.argv
        return self.timer(argv) if self.timer else timed(argv, self.env)


# The timing loop of CrunTimer, run by a python in a private mount namespace.
_CRUN_SERVER = r"""
import subprocess, sys, time
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=755", "mrbench",
                "/sys/fs/cgroup/unified"], check=True)
for line in sys.stdin:
    argv = line.split()
    start = time.perf_counter()
    proc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    took = time.perf_counter() - start
    print(took if proc.returncode == 0 else "error " + proc.stderr.decode().strip().replace("\n", " "),
          flush=True)
"""


class CrunTimer:
    """crun refuses this host's hybrid cgroups ("cgroups in hybrid mode not supported"
    while the cgroup2 mount at /sys/fs/cgroup/unified has a controller). So crun runs
    from a python that lives in a private mount namespace, where a small tmpfs
    covers that mount: crun then sees cgroup v1, its default, and the cgroup.procs
    file it writes for the systemd hierarchy goes to that tmpfs, which vanishes
    with the namespace (unmounting the cgroup2 mount instead, as this script once
    did, leaves a directory per run on the tmpfs under /sys/fs/cgroup). Everything
    else is crun's own defaults. The timer is the same loop as timed(); only the
    time of the run itself crosses the pipe."""

    def __init__(self):
        self.proc = subprocess.Popen(["unshare", "-m", "--propagation", "private", sys.executable, "-c",
                                      _CRUN_SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def __call__(self, argv: list[str]) -> float:
        self.proc.stdin.write(" ".join(argv) + "\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline().strip()
        if not answer or answer.startswith("error"):
            raise SystemExit(f"{' '.join(argv)} failed: {answer or 'the timer in its namespace died'}")
        return float(answer)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=10)


class Podman:
    def __init__(self, base: Path, archive: str):
        for sub in ("root", "runroot", "tmp"):
            (base / sub).mkdir(parents=True)
        (base / "containers.conf").write_text(PODMAN_CONF)
        self.base = base
        self.env = dict(os.environ, CONTAINERS_CONF=str(base / "containers.conf"), TMPDIR=str(base / "tmp"))
        self.prefix = ["podman", "--root", str(base / "root"), "--runroot", str(base / "runroot"),
                       "--storage-driver", "overlay"]
        self.archive, self.image = archive, ""

    def load(self) -> None:
        check([*self.prefix, "load", "-q", "-i", self.archive], self.env)
        self.image = check([*self.prefix, "images", "-q"], self.env).split()[0]

    def argv(self) -> list[str]:
        return [*self.prefix, "run", "--rm", "--network", "none", self.image, "/bin/true"]

    def cleanup(self) -> None:
        subprocess.run([*self.prefix, "rmi", "-a", "-f"], env=self.env, capture_output=True)
        subprocess.run([*self.prefix, "system", "reset", "-f"], env=self.env, capture_output=True)
        mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
                  if line.split()[4].startswith(str(self.base))]
        for point in sorted(mounts, reverse=True):
            subprocess.run(["umount", "-l", point], capture_output=True)


def importtime_total(env: dict) -> float:
    return common.importtime([str(VENV_BIN / "minirun"), "run", "--rm", "busybox", "/bin/true"], env)


def interleaved(commands: list[Command], runs: int) -> dict[str, list[float]]:
    for command in commands:                      # warm caches once
        command.run()
    times: dict[str, list[float]] = {c.name: [] for c in commands}
    for _ in range(runs):
        for command in commands:
            times[command.name].append(command.run())
    return times


def blocked(commands: list[Command], runs: int) -> dict[str, list[float]]:
    times = {}
    for command in commands:
        for _ in range(WARMUP):
            command.run()
        times[command.name] = [command.run() for _ in range(runs)]
    return times


def leftovers(made_run_dirs: list[Path]) -> list[str]:
    """Remove what runc and crun runs of this script left, and name it: containers
    (runc, crun delete), their cgroups, and /run/runc or /run/crun if made here."""
    found = []
    for tool, state in (("runc", Path("/run/runc")), ("crun", Path("/run/crun"))):
        if not state.is_dir():
            continue
        for entry in sorted(state.iterdir()):
            if entry.name.startswith(PREFIX):
                found.append(f"{tool} container {entry.name}")
                subprocess.run([tool, "delete", "-f", entry.name], capture_output=True)
                shutil.rmtree(entry, ignore_errors=True)
        if state in made_run_dirs:
            try:
                state.rmdir()
            except OSError:
                found.append(f"{state} (not empty, kept)")
    for parent in _cgroup_parents():
        for cgroup in parent.glob(PREFIX + "*"):
            found.append(f"cgroup {cgroup}")
            try:
                cgroup.rmdir()
            except OSError:
                pass
    return found


def _cgroup_parents() -> set[Path]:
    """Where runc and crun put a container's cgroups: at the top of each hierarchy,
    or (runc, for memory here) under the caller's own cgroup."""
    top = Path("/sys/fs/cgroup")
    parents = {h for h in top.iterdir() if h.is_dir()}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        name = controllers.removeprefix("name=") or "unified"
        if (top / name).is_dir() and path != "/":
            parents.add(top / name / path.lstrip("/"))
    return {p for p in parents if p.is_dir()}


def main() -> None:
    runs, fixtures, work = common.start("start.py", 20, "namespaces and mounts")
    made_run_dirs = [p for p in (Path("/run/runc"), Path("/run/crun")) if not p.exists()]
    podman = crun = None
    try:
        env = dict(os.environ, MINIRUN_ROOT=str(work / "store"))
        minirun = str(VENV_BIN / "minirun")
        check([minirun, "load", str(fixtures / "oci" / "busybox")], env)
        record = json.loads((work / "store" / "images.json").read_text())["images"]
        layers = [str(work / "store" / "layers" / "sha256" / layer["key"].split(":")[-1] / "diff")
                  for layer in next(iter(record.values()))["layers"]]
        if len(layers) != 1:
            raise SystemExit("the busybox fixture is expected to have one layer")
        for sub in ("upper", "fwork", "merged"):
            (work / sub).mkdir()
        options = (f"lowerdir={':'.join(reversed(layers))},upperdir={work / 'upper'},"
                   f"workdir={work / 'fwork'}")

        def fresh_upper() -> None:
            shutil.rmtree(work / "upper")
            (work / "upper").mkdir()
        bundle = runc_bundle(work, layers[0])
        runc_ids, crun_ids = Ids("runc"), Ids("crun")
        commands = [
            Command("python -I -S -c pass", [sys.executable, "-I", "-S", "-c", "pass"]),
            Command("python -c pass", [sys.executable, "-c", "pass"]),
            Command("floor (unshare+overlay+chroot)",
                    ["unshare", "-m", "-p", "-f", "sh", "-c",
                     f"mount -t overlay overlay -o {options} {work / 'merged'} && "
                     f"exec chroot {work / 'merged'} /bin/true"], before=fresh_upper),
            Command("runc run", lambda: ["runc", "run", "--bundle", str(bundle), runc_ids.next()]),
        ]
        if shutil.which("crun"):
            crun = CrunTimer()
            commands.append(Command("crun run", lambda: ["crun", "run", "--bundle", str(bundle),
                                                         crun_ids.next()], timer=crun))
        if shutil.which("podman"):
            podman = Podman(work / "podman", str(fixtures / "docker-archive" / "busybox.tar"))
            podman.load()                  # after the assignment: a failed load is still cleaned up
            commands.append(Command("podman run --rm", podman.argv(), podman.env))
        baseline = os.environ.get("MINIRUN_BENCH_BASELINE")
        if baseline:                       # an A/B: the same console script on another checkout,
            base_env = dict(env, PYTHONPATH=os.path.abspath(baseline),    # on a store of its own
                            MINIRUN_ROOT=str(work / "store-baseline"))    # (its records' version)
            check([minirun, "load", str(fixtures / "oci" / "busybox")], base_env)
            commands.append(Command("minirun run --rm (baseline)", [minirun, "run", "--rm", "busybox", "/bin/true"],
                                    base_env))
        commands.append(Command("minirun run --rm", [minirun, "run", "--rm", "busybox", "/bin/true"], env))

        mixed = interleaved(commands, runs)
        apart = blocked(commands, runs)
        report(commands, runs, mixed, apart)
        print(f"minirun run: python -X importtime total {importtime_total(env):.1f} ms "
              f"(-X importtime itself inflates it)")
        made, removed = entry_cost(work / "store" / "tmp")
        print(f"the store's file system: {made:.0f} us to make a directory or file there, {removed:.0f} us "
              f"to remove one (medians); `run --rm busybox` makes and removes {ENTRIES_PER_RUN} of them, "
              f"runc none")
    finally:
        if crun is not None:
            crun.close()
        if podman is not None:
            podman.cleanup()
        subprocess.run(["umount", "-l", str(work / "merged")], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
        found = leftovers(made_run_dirs)
        print("left behind: " + ("; ".join(found) + " (removed)" if found else "nothing"))


# What one `minirun run --rm busybox` makes in the store and removes at exit: the
# container's dir, upper/, work/, init/, init/etc/, the init layer's hosts and
# resolv.conf (busybox has neither), config.json and state.json; and overlayfs's
# own work/work/, incompat/, volatile/ and dirty, made at each mount.
ENTRIES_PER_RUN = 13


def entry_cost(directory: Path, trials: int = 30) -> tuple[float, float]:
    """(us to make, us to remove) one directory or empty file in directory, medians.
    On this machine's root ext4 it ranges from ~30 to ~500 us to make one, by the
    block group a directory happens to land in (the same code, a new mkdtemp)."""
    made, removed = [], []
    for n in range(trials):
        probe = directory / f"probe-{os.getpid()}-{n}"
        start = time.perf_counter()
        probe.mkdir()
        (probe / "d").mkdir()
        os.close(os.open(probe / "f", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        middle = time.perf_counter()
        (probe / "f").unlink()
        (probe / "d").rmdir()
        probe.rmdir()
        end = time.perf_counter()
        made.append((middle - start) / 3)
        removed.append((end - middle) / 3)
    return statistics.median(made) * 1e6, statistics.median(removed) * 1e6


def report(commands: list[Command], runs: int, mixed: dict, apart: dict) -> None:
    """Medians in ms for each order, each against runc's in the same order, and the
    fastest run of either order: on a busy host the least disturbed figure."""
    medians = [{name: statistics.median(t) * 1000 for name, t in order.items()} for order in (mixed, apart)]
    fastest = {name: min(mixed[name] + apart[name]) * 1000 for name in mixed}
    print(f"start latency, busybox /bin/true, {runs} cold runs per order, medians "
          f"({os.cpu_count()} CPUs, kernel {os.uname().release}, load {os.getloadavg()[0]:.1f})")
    print(f"{'command':32} {'interleaved':>11} {'vs runc':>7} {'blocked':>9} {'vs runc':>7} "
          f"{'fastest':>9} {'vs runc':>7}")
    for c in commands:
        cells = [(order[c.name], order["runc run"]) for order in (*medians, fastest)]
        print(f"{c.name:32} " + " ".join(f"{value:8.1f} ms {value / runc:6.2f}x" for value, runc in cells))
    print()
    mine = "minirun run --rm"
    for peer, target in (("runc run", 1.0), ("crun run", None), ("podman run --rm", 0.2),
                         ("minirun run --rm (baseline)", None)):
        if peer not in mixed:
            continue
        ratios = [order[mine] / order[peer] for order in medians]
        shown = f"interleaved {ratios[0]:.2f}x, blocked {ratios[1]:.2f}x"
        if target is None:
            print(f"minirun vs {peer:16} {shown}  (no target)")
        else:
            verdict = "met" if max(ratios) <= target else "MISSED"
            print(f"minirun vs {peer:16} {shown}  target <= {target}x: {verdict}")

if __name__ == "__main__":
    main()
