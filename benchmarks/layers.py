"""Start latency against the number of layers (issue 7, item 4), as root:

    .venv/bin/python benchmarks/layers.py [RUNS]            (default 20 runs)

Builds (once, cached in /var/cache/minirun-bench/layers/, or MINIRUN_BENCH_CACHE)
OCI layouts of busybox plus N-1 tiny layers (one small file /layer-<i> each) for
N = 1, 100, 250, 500 and 501. busybox has no /etc here, so every run needs an
init layer (/etc/hosts, /etc/hostname, /etc/resolv.conf): the hard case, where
500 image layers plus the init layer exceed the kernel's 500.

Loads them into a temporary MINIRUN_ROOT and times `minirun run --rm IMAGE
/bin/true` from a cold CLI process in interleaved rounds (one run of each image
per round), and reports medians. Target: 500 layers <= 2x 1 layer. Then shows
where a 500-layer start spends its time (the same steps minirun takes, timed in
this process) and the one line a 501-layer image gets.

The runs write bytecode caches (PYTHONDONTWRITEBYTECODE is dropped for them), as
an installed minirun does; without them every run recompiles ~40 modules.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "integration"))

from imagebuild import busybox_layer, entry, layer_tar, write_layout  # noqa: E402

CACHE = Path(os.environ.get("MINIRUN_BENCH_CACHE", "/var/cache/minirun-bench")) / "layers"
COUNTS = (1, 100, 250, 500)
TOO_MANY = 501
TARGET = 2.0
BUILD_VERSION = "1"          # bump when the images' recipe changes
MINIRUN = str(Path(sys.executable).parent / "minirun")


def image_name(count: int) -> str:
    return f"layers{count}"


def build_images(counts: list[int]) -> dict[int, Path]:
    """OCI layouts in the cache; each is built in a temp dir and renamed into place."""
    CACHE.mkdir(parents=True, exist_ok=True)
    base = busybox_layer()
    tiny = [layer_tar([entry(f"layer-{i}", data=f"layer {i}\n".encode())]) for i in range(1, max(counts))]
    out = {}
    for count in counts:
        path = CACHE / f"v{BUILD_VERSION}" / image_name(count)     # loads as localhost/layersN
        if not (path / "index.json").exists():
            path.parent.mkdir(exist_ok=True)
            staged = Path(tempfile.mkdtemp(prefix=".building-", dir=path.parent))
            shutil.rmtree(staged)
            write_layout(staged, [base] + tiny[:count - 1], config={"Cmd": ["/bin/sh"]})
            staged.rename(path)
        out[count] = path
    return out


def run_env(root: Path) -> dict:
    env = dict(os.environ, MINIRUN_ROOT=str(root))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop("MINIRUN_OVERLAY_API", None)
    return env


def timed_run(image: str, env: dict) -> float:
    start = time.perf_counter()
    proc = subprocess.run([MINIRUN, "run", "--rm", image, "/bin/true"], env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    took = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"minirun run --rm {image} /bin/true failed ({proc.returncode}): "
                         f"{proc.stderr.decode().strip()}")
    return took


def load(paths: list[Path], env: dict) -> float:
    start = time.perf_counter()
    proc = subprocess.run([MINIRUN, "load", *map(str, paths)], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"minirun load failed ({proc.returncode}): {proc.stderr.strip()}")
    return time.perf_counter() - start


def breakdown(root: Path, image: str, env: dict) -> list[tuple[str, float]]:
    """The steps of a start that grow with the layer count, timed here (medians of 9)."""
    os.environ["MINIRUN_ROOT"] = str(root)
    from minirun.linux import overlay
    from minirun.run.plan import lower_dirs
    from minirun.layer.lowerview import LowerView
    from minirun.sandbox import mounts
    from minirun.store import open_store

    store = open_store()
    _, record = store.images.resolve(image)
    lowers = lower_dirs(store, record)
    points = mounts.mount_points(list(mounts.etc_mounts(
        {n: "/x" for n in ("hosts", "hostname", "resolv.conf")})))
    steps = [
        ("resolve the image (images.json)", lambda: store.images.resolve(image)),
        ("layer dirs (lower_dirs)", lambda: lower_dirs(store, record)),
        ("init entries, lstat in every layer (old)",
         lambda: mounts.init_entries(LowerView(lowers).lookup, points)),
        ("init entries, top dirs listed once (now)",
         lambda: mounts.init_entries(mounts.image_lookup(lowers), points)),
        ("plan (nested: 500 + init)", lambda: overlay.plan(lowers, "/u", "/w", "/b", ["/i"])),
    ]
    out = [(label, _median_ms(fn)) for label, fn in steps]
    out.append(("mount the overlay (500 lowerdir+, nested)", _mount_ms(lowers)))
    return out


def _median_ms(fn, n: int = 9) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def _mount_ms(lowers: list[str]) -> float:
    """In a child with its own mount namespace: plan + mount as run does, 9 times."""
    from minirun import linux
    from minirun.linux import overlay
    work = Path(tempfile.mkdtemp(prefix="minirun-layers-mount-", dir="/var/tmp"))
    for sub in ("upper", "work", "merged", "init"):
        (work / sub).mkdir()
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        try:
            os.close(read_fd)
            linux.unshare(linux.CLONE_NEWNS)
            linux.mount(None, "/", None, linux.MS_REC | linux.MS_PRIVATE)
            times = []
            for _ in range(9):
                spec = overlay.plan(lowers, str(work / "upper"), str(work / "work"), str(work),
                                    [str(work / "init")])
                start = time.perf_counter()
                overlay.mount(spec, str(work / "merged"))
                times.append(time.perf_counter() - start)
                for _ in range(2 if spec.below else 1):
                    linux.umount2(str(work / "merged"), linux.MNT_DETACH)
            os.write(write_fd, json.dumps(statistics.median(times) * 1000).encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd) as f:
        said = f.read()
    os.waitpid(pid, 0)
    shutil.rmtree(work)
    return json.loads(said) if said else float("nan")


def too_many_line(env: dict) -> tuple[int, str, int]:
    proc = subprocess.run([MINIRUN, "run", "--rm", image_name(TOO_MANY), "/bin/true"], env=env,
                          capture_output=True, text=True)
    left = subprocess.run([MINIRUN, "ps", "-a", "-q"], env=env, capture_output=True, text=True)
    return proc.returncode, proc.stderr.strip(), len(left.stdout.split())


def main() -> None:
    if os.geteuid() != 0:
        raise SystemExit("benchmarks/layers.py needs root (namespaces, mounts)")
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    start = time.perf_counter()
    paths = build_images([*COUNTS, TOO_MANY])
    print(f"images built or found in {CACHE} in {time.perf_counter() - start:.1f} s")
    work = Path(tempfile.mkdtemp(prefix="minirun-layers-", dir="/var/tmp"))
    root = work / "store"
    env = run_env(root)
    try:
        took = load([paths[c] for c in (*COUNTS, TOO_MANY)], env)
        print(f"minirun load of all five images: {took:.1f} s (tiny layers are shared between them)")
        for count in COUNTS:                     # warm up: bytecode caches, page cache
            for _ in range(2):
                timed_run(image_name(count), env)
        times: dict[int, list[float]] = {c: [] for c in COUNTS}
        for _ in range(runs):
            for count in COUNTS:
                times[count].append(timed_run(image_name(count), env))
        report(times, runs)
        print("\nwhere a 500-layer start spends the time that grows with layers (medians, in-process):")
        for label, ms in breakdown(root, image_name(500), env):
            print(f"  {label:<44} {ms:7.2f} ms")
        code, line, left = too_many_line(env)
        print(f"\n{TOO_MANY} layers: `minirun run --rm {image_name(TOO_MANY)} /bin/true` exits {code}:")
        print(f"  {line}")
        print(f"  containers left behind: {left}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def report(times: dict[int, list[float]], runs: int) -> None:
    base = statistics.median(times[1])
    print(f"\nminirun run --rm IMAGE /bin/true, median of {runs} (interleaved rounds):")
    print(f"  {'layers':>6}  {'median':>9}  {'min':>9}  {'vs 1 layer':>10}")
    for count in COUNTS:
        med = statistics.median(times[count])
        print(f"  {count:>6}  {med * 1000:7.1f}ms  {min(times[count]) * 1000:7.1f}ms  {med / base:9.2f}x")
    ratio = statistics.median(times[500]) / base
    verdict = "meets" if ratio <= TARGET else "MISSES"
    print(f"  500-layer / 1-layer = {ratio:.2f}x: {verdict} the target <= {TARGET:.0f}x")


if __name__ == "__main__":
    main()
