"""Start latency of `minirun run --rm busybox /bin/true` against its peers (as root):

    .venv/bin/python benchmarks/start.py [RUNS] [FIXTURES_DIR]      (default 20 runs)

Everything is measured in this one run, in interleaved rounds (one of each per
round), from a cold CLI process each time, and reported as medians:

    python -I -S -c pass     the interpreter alone
    python -c pass           ... with site (the venv's site-packages)
    floor                    unshare -m -p -f + mount overlay of the image's layers + chroot /bin/true
    runc run                 on an unpacked bundle of the same rootfs
    crun run                 the same bundle, if crun is installed (in a private mount
                             namespace without the empty cgroup2 mount it refuses)
    podman run --rm          busybox loaded into a private podman store, if podman is installed
    minirun run --rm         the console script, on the busybox image in a private store

Targets (issue 7): minirun <= 1.0x runc and <= 0.2x podman. Also prints the
`python -X importtime` total of one `minirun run`. Needs root (namespaces, mounts).
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
    proc = subprocess.run([sys.executable, "-X", "importtime", str(VENV_BIN / "minirun"), "run", "--rm",
                           "busybox", "/bin/true"], env=env, capture_output=True, text=True)
    total = 0
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and "|" in line and not line.split("|")[2].startswith("  "):
            cumulative = line.split("|")[1].strip()
            if cumulative.isdigit():
                total += int(cumulative)
    return total / 1000


def main() -> None:
    runs, fixtures, work = common.start("start.py", 20, "namespaces and mounts")
    podman = None
    try:
        env = dict(os.environ, MINIRUN_ROOT=str(work / "store"))
        minirun = str(VENV_BIN / "minirun")
        check([minirun, "load", str(fixtures / "oci" / "busybox")], env)
        record = json.loads((work / "store" / "images.json").read_text())["images"]
        layers = [str(work / "store" / "layers" / "sha256" / layer["key"].split(":")[-1] / "diff")
                  for layer in next(iter(record.values()))["layers"]]
        for sub in ("upper", "fwork", "merged"):
            (work / sub).mkdir()
        options = (f"lowerdir={':'.join(reversed(layers))},upperdir={work / 'upper'},"
                   f"workdir={work / 'fwork'}")
        floor = ["unshare", "-m", "-p", "-f", "sh", "-c",
                 f"mount -t overlay overlay -o {options} {work / 'merged'} && "
                 f"exec chroot {work / 'merged'} /bin/true"]
        commands: dict[str, tuple[list[str], dict | None]] = {
            "python -I -S -c pass": ([sys.executable, "-I", "-S", "-c", "pass"], None),
            "python -c pass": ([sys.executable, "-c", "pass"], None),
            "floor (unshare+overlay+chroot)": (floor, None),
        }
        if len(layers) != 1:
            raise SystemExit("the busybox fixture is expected to have one layer")
        bundle = runc_bundle(work, layers[0])
        commands["runc run"] = (["runc", "--root", str(work / "runc-state"), "run", "--bundle", str(bundle),
                                 "bench-runc"], None)
        if shutil.which("crun"):
            commands["crun run"] = (["unshare", "-m", "sh", "-c",
                                     "umount /sys/fs/cgroup/unified 2>/dev/null; exec crun --root "
                                     f"{work / 'crun-state'} run --bundle {bundle} bench-crun"], None)
        if shutil.which("podman"):
            podman = Podman(work / "podman", str(fixtures / "docker-archive" / "busybox.tar"))
            podman.load()                  # after the assignment: a failed load is still cleaned up
            commands["podman run --rm"] = (podman.argv(), podman.env)
        commands["minirun run --rm"] = ([minirun, "run", "--rm", "busybox", "/bin/true"], env)

        for argv, cmd_env in commands.values():       # warm caches once
            timed(argv, cmd_env)
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(runs):
            for name, (argv, cmd_env) in commands.items():
                if name == "floor (unshare+overlay+chroot)":
                    shutil.rmtree(work / "upper")
                    (work / "upper").mkdir()
                times[name].append(timed(argv, cmd_env))
        medians = {name: statistics.median(t) * 1000 for name, t in times.items()}
        runc = medians["runc run"]
        print(f"start latency, busybox /bin/true, median of {runs} cold runs "
              f"({os.cpu_count()} CPUs, kernel {os.uname().release})")
        print(f"{'command':34} {'median ms':>10} {'vs runc':>8}")
        for name, value in medians.items():
            print(f"{name:34} {value:10.1f} {value / runc:7.2f}x")
        mine = medians["minirun run --rm"]
        print()
        print(f"target minirun <= 1.0x runc:   {mine / runc:.2f}x  "
              f"{'met' if mine <= runc else 'MISSED'}")
        if "podman run --rm" in medians:
            ratio = mine / medians["podman run --rm"]
            print(f"target minirun <= 0.2x podman: {ratio:.2f}x  {'met' if ratio <= 0.2 else 'MISSED'}")
        print(f"minirun run: python -X importtime total {importtime_total(env):.1f} ms "
              f"(-X importtime itself inflates it)")
    finally:
        if podman is not None:
            podman.cleanup()
        subprocess.run(["umount", "-l", str(work / "merged")], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
