"""minirun-oci's speed against runc, in one run (as root):

    .venv/bin/python benchmarks/oci_speed.py [RUNS] [FIXTURES_DIR]      (default 10 runs)

Two measures, each from cold processes, RUNS rounds with one run of every
command per round (a load that comes and goes hits them alike), medians:

    podman --runtime R run --rm busybox /bin/true    R = runc, then minirun-oci; the
                                                     same private podman store (overlay)
    create -> start -> wait -> delete                the runtime's four steps on one
                                                     bundle (`runc spec`'s config, busybox's
                                                     rootfs); wait is a pidfd on the pid
                                                     file's process, as a shim waits

Both runtimes keep their defaults: runc's state in /run/runc, minirun-oci's in
/run/minirun-oci (both tmpfs); each run has a container id of its own. Targets
(issue 18): <= 1.1x runc under podman, <= 1.5x runc's cycle. Also prints the
`python -X importtime` total of each minirun-oci command of the cycle.
"""

from __future__ import annotations

import os
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks import common  # noqa: E402
from benchmarks.start import Ids, Podman, check, runc_bundle, timed  # noqa: E402

VENV_BIN = Path(sys.executable).parent
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)


def _quiet(argv: list[str]) -> None:
    """stderr through a file, not a pipe: a created container's init keeps create's
    stdio open, so a pipe would never reach its end."""
    with tempfile.TemporaryFile() as err:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        if proc.returncode != 0:
            err.seek(0)
            raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}): {err.read().decode().strip()}")


def cycle(runtime: str, bundle: Path, ids: Ids, work: Path) -> float:
    """create, start, wait for the process to end, delete: seconds."""
    cid = ids.next()
    pid_file = work / f"{cid}.pid"
    start = time.perf_counter()
    _quiet([runtime, "create", "--bundle", str(bundle), "--pid-file", str(pid_file), cid])
    pidfd = os.pidfd_open(int(pid_file.read_text()))
    try:
        _quiet([runtime, "start", cid])
        select.select([pidfd], [], [], 30)
    finally:
        os.close(pidfd)
    _quiet([runtime, "delete", cid])
    took = time.perf_counter() - start
    pid_file.unlink()
    return took


def main() -> None:
    runs, fixtures, work = common.start("oci_speed.py", 10, "namespaces and mounts")
    oci = str(VENV_BIN / "minirun-oci")
    made = [p for p in (Path("/run/runc"), Path("/run/minirun-oci")) if not p.exists()]
    podman = None
    try:
        env = dict(os.environ, MINIRUN_ROOT=str(work / "store"))
        minirun = str(VENV_BIN / "minirun")
        check([minirun, "load", str(fixtures / "oci" / "busybox")], env)
        check([minirun, "bundle", "busybox", str(work / "image"), "--copy"], env)
        bundle = runc_bundle(work, str(work / "image" / "rootfs"))
        podman = Podman(work / "podman", str(fixtures / "docker-archive" / "busybox.tar"))
        podman.load()
        on_podman = {name: [*podman.prefix, "--runtime", path, *podman.argv()[len(podman.prefix):]]
                     for name, path in (("runc", shutil.which("runc")), ("minirun-oci", oci))}
        runc_ids, oci_ids = Ids("runc"), Ids("oci")
        commands = {
            "podman --runtime runc": lambda: timed(on_podman["runc"], podman.env),
            "podman --runtime minirun-oci": lambda: timed(on_podman["minirun-oci"], podman.env),
            "runc cycle": lambda: cycle("runc", bundle, runc_ids, work),
            "minirun-oci cycle": lambda: cycle(oci, bundle, oci_ids, work),
        }
        for run in commands.values():          # warm the caches once
            run()
        times = {name: [] for name in commands}
        for _ in range(runs):
            for name, run in commands.items():
                times[name].append(run())
        med = {name: statistics.median(t) * 1000 for name, t in times.items()}
        print(f"minirun-oci vs runc, busybox /bin/true, {runs} interleaved cold rounds, medians "
              f"({os.cpu_count()} CPUs, kernel {os.uname().release}, load {os.getloadavg()[0]:.1f})")
        for name, ms in med.items():
            print(f"  {name:30} {ms:8.1f} ms   (fastest {min(times[name]) * 1000:.1f})")
        for what, ours, theirs, target in (("under podman", "podman --runtime minirun-oci",
                                            "podman --runtime runc", 1.1),
                                           ("create/start/wait/delete", "minirun-oci cycle", "runc cycle", 1.5)):
            ratio = med[ours] / med[theirs]
            print(f"{what:26} {ratio:.2f}x runc   target <= {target}x: {'met' if ratio <= target else 'MISSED'}")
        cid = oci_ids.next()
        _quiet([oci, "create", "--bundle", str(bundle), cid])
        figures = [f"{step} {common.importtime([oci, step, cid]):.1f}" for step in ("state", "start")]
        time.sleep(0.2)
        figures.append(f"delete {common.importtime([oci, 'delete', '--force', cid]):.1f}")
        print("minirun-oci python -X importtime totals, ms: " + ", ".join(figures))
    finally:
        if podman is not None:
            podman.cleanup()
        shutil.rmtree(work, ignore_errors=True)
        for path in made:
            left = sorted(n for n in os.listdir(path) if n != ".cache") if path.exists() else []
            if not left:
                shutil.rmtree(path, ignore_errors=True)
            print(f"{path}: " + (f"LEFT {left}" if left else "removed (this script made it)"))


if __name__ == "__main__":
    main()
