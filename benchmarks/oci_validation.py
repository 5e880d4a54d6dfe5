"""The OCI runtime-tools validation suite against OCI runtimes, side by side.

    sudo python3 benchmarks/oci_validation.py [--work DIR] [--timeout S] [--jobs N] [RUNTIME ...]

RUNTIME is a name on PATH or NAME=PATH (default: runc, and crun and minirun-oci
when installed; for a checkout, minirun-oci=SCRIPT where SCRIPT runs
`PYTHONPATH=CHECKOUT exec python -m minirun.ociruntime "$@"`). It builds the suite from the offline tarball
(/work/shared/peers/runtime-tools-*.tar.gz, or $RUNTIME_TOOLS_TARBALL) in --work
(default: a new dir under /var/tmp), with Debian's golang-go (Go 1.19) and the
vendored modules, no network; a --work that already holds the built suite is
reused. Then it runs every validation/*/*.t program with RUNTIME=that runtime,
from the suite's dir (they read ./runtimetest and ./rootfs-amd64.tar.gz).

A program passes when it exits 0, printed at least one `ok` and no `not ok`
line (TAP). crun refuses cgroups in hybrid mode (v1 plus an empty v2
hierarchy) when no systemd runs the host, so on such a host its programs run in
a private mount namespace with /sys/fs/cgroup/unified unmounted. Needs root and golang-go; not run by CI.
Prints a table (program, one column per runtime), the totals (programs passed,
assertions ok/total) and the union (programs some runtime passes).
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

TARBALL = os.environ.get("RUNTIME_TOOLS_TARBALL", "/work/shared/peers/runtime-tools-260e151.tar.gz")
HYBRID_V2 = "/sys/fs/cgroup/unified"
_UNMOUNT_V2 = f'umount {HYBRID_V2} 2>/dev/null; exec "$@"'


def build(work: Path) -> Path:
    """The suite's dir with runtimetest and the .t programs, built unless they are there."""
    suite = work / "runtime-tools"
    if (suite / "runtimetest").is_file() and glob.glob(str(suite / "validation/*/*.t")):
        return suite
    if shutil.which("go") is None:
        raise SystemExit("oci_validation: no go compiler: apt-get install -y golang-go")
    if not suite.is_dir():
        subprocess.run(["tar", "-xzf", TARBALL, "-C", str(work)], check=True)
    env = dict(os.environ, GOFLAGS="-mod=vendor", GOPROXY="off", GOCACHE=str(work / "gocache"))
    print(f"building runtime-tools in {suite} ...", file=sys.stderr, flush=True)
    subprocess.run(["make", "runtimetest", "validation-executables"], cwd=suite, env=env, check=True,
                   stdout=subprocess.DEVNULL)
    return suite


def runtimes(names: list[str]) -> dict[str, str]:
    """name -> absolute path of each runtime asked for (default: runc, crun, minirun-oci if present)."""
    if not names:
        names = [n for n in ("runc", "crun", "minirun-oci") if shutil.which(n)]
    found = {}
    for item in names:
        name, _, path = item.partition("=")
        path = path or shutil.which(name) or ""
        if not path or not os.access(path, os.X_OK):
            raise SystemExit(f"oci_validation: runtime {name!r} not found (give NAME=PATH)")
        found[name] = os.path.abspath(path)
    return found


def _hybrid() -> bool:
    """An empty v2 hierarchy beside v1 that no systemd manages (this project's VM): crun
    fails to make its cgroup there. Under systemd's own hybrid set-up (the Debian 12
    VM booted with cgroup v1) crun works as it is, and fails without that mount."""
    if os.path.isdir("/run/systemd/system"):
        return False
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == HYBRID_V2 for line in f)


def run_one(suite: Path, program: str, name: str, path: str, timeout: float) -> tuple[bool, int, int, str]:
    """(passed, ok, total, note) of one program under one runtime."""
    argv = [program]
    if name == "crun" and _hybrid():
        argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", _UNMOUNT_V2, "sh", program]
    try:
        done = subprocess.run(argv, cwd=suite, env=dict(os.environ, RUNTIME=path), stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, errors="replace", timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        ok, bad = _tap(out)
        return False, ok, ok + bad, f"timeout {timeout:g}s"
    ok, bad = _tap(done.stdout)
    passed = done.returncode == 0 and ok > 0 and bad == 0
    note = "" if passed else f"exit {done.returncode}" if done.returncode else f"{bad} not ok" if bad else "no ok"
    return passed, ok, ok + bad, note


def _tap(out: str) -> tuple[int, int]:
    ok = bad = 0
    for line in out.splitlines():
        if line.startswith("not ok"):
            bad += 1
        elif line.startswith("ok"):
            ok += 1
    return ok, bad


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runtime", nargs="*", help="NAME or NAME=PATH (default: runc, crun)")
    parser.add_argument("--work", help="where the suite is built (kept; reused when built)")
    parser.add_argument("--timeout", type=float, default=120, help="seconds per program (default 120)")
    parser.add_argument("--jobs", type=int, default=1, help="programs run at once per runtime (default 1)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("benchmarks/oci_validation.py: run as root (the runtimes make containers)")
    work = Path(args.work or tempfile.mkdtemp(prefix="minirun-oci-validation-", dir="/var/tmp"))
    work.mkdir(parents=True, exist_ok=True)
    suite = build(work)
    chosen = runtimes(args.runtime)
    programs = sorted(os.path.relpath(p, suite) for p in glob.glob(str(suite / "validation/*/*.t")))
    results: dict[str, dict[str, tuple]] = {}
    for name, path in chosen.items():
        started = time.monotonic()
        with ThreadPoolExecutor(max(1, args.jobs)) as pool:
            outcomes = pool.map(lambda p: run_one(suite, "./" + p, name, path, args.timeout), programs)
            results[name] = dict(zip(programs, outcomes))
        print(f"{name}: {len(programs)} programs in {time.monotonic() - started:.0f} s",
              file=sys.stderr, flush=True)
    report(programs, results)
    return 0


def report(programs: list[str], results: dict[str, dict[str, tuple]]) -> None:
    names = list(results)
    width = max(len(_short(p)) for p in programs)
    print(f"{'program':<{width}}  " + "  ".join(f"{n:<18}" for n in names))
    for program in programs:
        cells = []
        for name in names:
            passed, ok, total, note = results[name][program]
            cells.append(f"{'pass' if passed else 'FAIL'} {ok}/{total}{' ' + note if note else ''}"[:18])
        print(f"{_short(program):<{width}}  " + "  ".join(f"{c:<18}" for c in cells))
    print()
    for name in names:
        rows = results[name].values()
        passed = sum(1 for r in rows if r[0])
        print(f"{name}: {passed}/{len(programs)} programs passed, "
              f"{sum(r[1] for r in rows)}/{sum(r[2] for r in rows)} assertions ok")
    union = [p for p in programs if any(results[n][p][0] for n in names)]
    print(f"union ({' or '.join(names)}): {len(union)}/{len(programs)} programs passed")


def _short(program: str) -> str:
    return os.path.basename(program).removesuffix(".t")


if __name__ == "__main__":
    sys.exit(main())
