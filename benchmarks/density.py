"""Density (issue 7, item 5), as root:

    .venv/bin/python benchmarks/density.py [COUNT] [FIXTURES_DIR]     (default 50 containers)

Starts COUNT containers from one busybox image at the same time (COUNT parallel
`minirun run -d` processes), each writing a different small file and then
sleeping, checks that every one started and runs, and measures the disk they
use: `du` of the store before and while they run. Nothing of the image is copied
(layers/ and blobs/ must not grow), so the extra disk is their upper dirs (what
they wrote) plus each container's fixed bookkeeping (config.json, state.json,
the /etc files bound in, its empty init/, work/ and merged/ dirs); both are
printed, per container and summed, and the sums must add up to the growth.
Then every container is removed (`rm -f`), and the store must be back where it
started. Prints the wall time of the starts and of the whole run.

The store lives in a temp dir under /var/tmp (ext4, as /var/lib/minirun would be).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MINIRUN = str(Path(sys.executable).parent / "minirun")


def disk_usage(path: str, seen: set | None = None) -> tuple[int, int]:
    """(bytes allocated, entries) under path, as du counts them: st_blocks, dirs
    included, each inode once (within `seen`), never following symlinks."""
    seen = set() if seen is None else seen
    total, count = 0, 0
    stack = [path]
    while stack:
        current = stack.pop()
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            continue
        if (st.st_dev, st.st_ino) not in seen:
            seen.add((st.st_dev, st.st_ino))
            total += st.st_blocks * 512
            count += 1
        if stat.S_ISDIR(st.st_mode):
            with os.scandir(current) as entries:
                stack.extend(entry.path for entry in entries)
    return total, count


def du(path: Path) -> int:
    """The `du -s -B1` of path, bytes allocated."""
    out = subprocess.run(["du", "-s", "-B1", str(path)], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[0])


def cli(env: dict, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([MINIRUN, *args], env=env, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise SystemExit(f"minirun {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def busybox_layout(fixtures: Path | None, work: Path) -> str:
    for candidate in ([fixtures] if fixtures else []) + [REPO / "fixtures-out"]:
        path = candidate / "oci" / "busybox"
        if (path / "index.json").exists():
            return str(path)
    out = work / "fixtures"
    subprocess.run([sys.executable, str(REPO / "rootfs-fixtures" / "build.py"), str(out),
                    "--image", "busybox"], check=True, stdout=subprocess.DEVNULL)
    return str(out / "oci" / "busybox")


def start_all(env: dict, count: int) -> tuple[float, list[str]]:
    """COUNT `run -d` processes at once; returns the wall time and the failures."""
    start = time.perf_counter()
    procs = [subprocess.Popen(
        [MINIRUN, "run", "-d", "--name", f"dense{i}", "busybox", "sh", "-c",
         f"echo 'container {i} was here' > /written-by-{i}.txt && exec sleep 600"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(count)]
    failures = []
    for i, proc in enumerate(procs):
        out, err = proc.communicate()
        if proc.returncode != 0:
            failures.append(f"dense{i}: exit {proc.returncode}: {err.strip()}")
    return time.perf_counter() - start, failures


def wait_written(root: Path, ids: dict[str, str], timeout: float = 30) -> list[str]:
    """Names whose file is not in their upper dir yet (run -d returns at exec)."""
    deadline = time.monotonic() + timeout
    missing = list(ids)
    while missing and time.monotonic() < deadline:
        missing = [name for name in missing
                   if not (root / "containers" / ids[name] / "upper" / f"written-by-{name[5:]}.txt").exists()]
        time.sleep(0.05)
    return missing


def kib(n: int) -> str:
    return f"{n / 1024:,.0f} KiB"


def main() -> None:
    if os.geteuid() != 0:
        raise SystemExit("benchmarks/density.py needs root (namespaces, mounts)")
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    fixtures = Path(sys.argv[2]) if len(sys.argv) > 2 else None
    began = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="minirun-density-", dir="/var/tmp"))
    root = work / "store"
    env = dict(os.environ, MINIRUN_ROOT=str(root))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    try:
        cli(env, "load", busybox_layout(fixtures, work))
        cli(env, "run", "--rm", "busybox", "true")            # the store's dirs exist; caches warm
        before = {sub: du(root / sub) for sub in ("layers", "blobs")}
        before_total = du(root)

        took, failures = start_all(env, count)
        print(f"{count} concurrent `minirun run -d busybox`: {count - len(failures)} started, "
              f"{len(failures)} failed, {took:.2f} s wall")
        for line in failures:
            print("  " + line)
        ids = {}                     # name -> full id, from each container's config.json
        for cid in os.listdir(root / "containers"):
            config = json.loads((root / "containers" / cid / "config.json").read_text())
            ids[config["name"]] = cid
        running = cli(env, "ps", "-q").stdout.split()
        missing = wait_written(root, ids)
        print(f"running now: {len(running)} of {count}; files not yet written: {len(missing)}")

        after_total = du(root)
        after = {sub: du(root / sub) for sub in ("layers", "blobs")}
        report(root, ids, before_total, after_total, before, after)

        start = time.perf_counter()
        cli(env, "rm", "-f", *ids)
        print(f"\nrm -f of {len(ids)} containers: {time.perf_counter() - start:.2f} s; "
              f"containers left: {len(cli(env, 'ps', '-a', '-q').stdout.split())}; "
              f"store now {du(root) - before_total:+,d} bytes against before the runs")
        if failures or len(running) != count or missing:
            raise SystemExit("FAILED: not every container started, ran and wrote its file")
    finally:
        subprocess.run([MINIRUN, "rm", "-f", *[f"dense{i}" for i in range(count)]], env=env,
                       capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
        print(f"total wall time: {time.perf_counter() - began:.1f} s")


def report(root: Path, ids: dict[str, str], before_total: int, after_total: int,
           before: dict, after: dict) -> None:
    extra = after_total - before_total
    uppers, books, rows = 0, 0, []
    for name, cid in sorted(ids.items(), key=lambda item: int(item[0][5:])):
        cdir = root / "containers" / cid
        seen: set = set()
        upper, upper_entries = disk_usage(str(cdir / "upper"), seen)
        whole, _ = disk_usage(str(cdir), seen)          # the rest of the container dir
        written = sorted(p.name for p in (cdir / "upper").iterdir())
        rows.append((name, upper, upper_entries, whole, written))
        uppers += upper
        books += whole
    other = extra - uppers - books
    print(f"\nstore (du -s -B1) before the runs: {before_total:,d} B; with {len(ids)} running: "
          f"{after_total:,d} B; extra: {extra:,d} B ({kib(extra)})")
    print(f"  layers/ grew {after['layers'] - before['layers']:+,d} B, blobs/ grew "
          f"{after['blobs'] - before['blobs']:+,d} B (the image is shared, never copied)")
    for label, value in ((f"sum of the {len(ids)} upper dirs (what the runs wrote)", uppers),
                         ("sum of the rest of their container dirs (bookkeeping)", books),
                         ("elsewhere in the store (locks, ...)", other)):
        print(f"  {label + ':':<56}{value:>11,d} B  ({kib(value)})")
    print(f"  upper dirs + bookkeeping + elsewhere = {uppers + books + other:,d} B = extra: "
          f"{'yes' if uppers + books + other == extra and abs(other) < 64 * 1024 else 'NO'}")
    print(f"\nper container (upper dir: bytes allocated / entries incl. the dir itself; then the rest):")
    print(f"  {'name':<8} {'upper':>8} {'entries':>7} {'rest':>8}  upper holds")
    shown = rows if len(rows) <= 12 else rows[:5] + [None] + rows[-5:]
    for row in shown:
        if row is None:
            print(f"  ... {len(rows) - 10} more alike ...")
            continue
        name, upper, entries, rest, written = row
        print(f"  {name:<8} {upper:>8,d} {entries:>7d} {rest:>8,d}  {' '.join(written)}")
    sizes = {(r[1], r[2], len(r[4])) for r in rows}
    print(f"  distinct (upper bytes, entries, files) among all {len(rows)}: {len(sizes)}")
    first = root / "containers" / ids[rows[0][0]]
    parts = []
    for item in sorted(os.listdir(first)):
        if item != "upper":
            parts.append(f"{item} {disk_usage(str(first / item))[0] // 1024}K")
    print(f"  the rest, item by item ({rows[0][0]}; the dir itself 4K): {', '.join(parts)}")


if __name__ == "__main__":
    main()
