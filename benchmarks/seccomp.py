"""What the seccomp filter costs a start (as root):

    .venv/bin/python benchmarks/seccomp.py [RUNS] [FIXTURES_DIR]      (default 40 runs)

In interleaved rounds, from a cold CLI process each time (the installed command,
byte-code caches on), medians of wall time and of CPU time (the minirun process
and its container, from RUSAGE_CHILDREN, which a busy machine disturbs less):

    --security-opt seccomp=unconfined    no filter (the session keyring is still made)
    the default filter, cache warm        one file read before the fork, one seccomp(2) after

then the one-off cost of a miss: a run with an empty seccomp/ (libseccomp
compiles the default profile) against the warm run that follows it.
"""

from __future__ import annotations

import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import common  # noqa: E402

os.environ.pop("PYTHONDONTWRITEBYTECODE", None)     # an installed minirun runs from byte code


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(argv: list[str], env: dict) -> tuple[float, float]:
    cpu, start = _children_cpu(), time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start, _children_cpu() - cpu


def ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:6.2f} ms"


def main() -> None:
    runs, fixtures, work = common.start("seccomp.py", 40, "namespaces and mounts")
    minirun = str(Path(sys.executable).parent / "minirun")
    env = dict(os.environ, MINIRUN_ROOT=str(work / "store"))
    try:
        subprocess.run([minirun, "load", str(fixtures / "oci" / "busybox")], env=env, check=True,
                       stdout=subprocess.DEVNULL)
        variants = {
            "seccomp=unconfined": [minirun, "run", "--rm", "--security-opt", "seccomp=unconfined",
                                   "busybox", "/bin/true"],
            "default filter (warm)": [minirun, "run", "--rm", "busybox", "/bin/true"],
        }
        for argv in variants.values():
            for _ in range(3):
                timed(argv, env)
        wall: dict[str, list[float]] = {name: [] for name in variants}
        cpu: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(runs):
            for name, argv in variants.items():
                took, used = timed(argv, env)
                wall[name].append(took)
                cpu[name].append(used)
        for name in variants:
            print(f"{name:24s} wall {ms(wall[name])}   cpu {ms(cpu[name])}   ({runs} runs)")
        filtered = variants["default filter (warm)"]
        miss, warm = [], []
        for _ in range(max(5, runs // 4)):
            shutil.rmtree(work / "store" / "seccomp", ignore_errors=True)
            miss.append(timed(filtered, env)[0])
            warm.append(timed(filtered, env)[0])
        print(f"{'cache miss (compiles)':24s} wall {ms(miss)}   the warm run after it {ms(warm)}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
