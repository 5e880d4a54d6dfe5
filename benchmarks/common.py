"""What the benchmark scripts share: the root check, their two optional arguments
(runs, fixtures dir) and a private work dir under /var/tmp (not tmpfs)."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def start(script: str, default_runs: int, why: str = "") -> tuple[int, Path, Path]:
    """(runs, fixtures dir, a fresh work dir) for `script [RUNS] [FIXTURES_DIR]`, as root."""
    if os.geteuid() != 0:
        raise SystemExit(f"benchmarks/{script}: run as root{f' ({why})' if why else ''}")
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else default_runs
    fixtures = Path(sys.argv[2] if len(sys.argv) > 2 else REPO / "fixtures-out")
    work = Path(tempfile.mkdtemp(prefix=f"minirun-{script.removesuffix('.py')}-", dir="/var/tmp"))
    return runs, fixtures, work


def importtime(argv: list[str], env: dict | None = None) -> float:
    """ms of imports `python -X importtime` reports for one run of argv (a script and
    its arguments): the sum of the top-level imports' cumulative times."""
    import subprocess
    proc = subprocess.run([sys.executable, "-X", "importtime", *argv], env=env, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL)
    total = 0
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and "|" in line and not line.split("|")[2].startswith("  "):
            cumulative = line.split("|")[1].strip()
            if cumulative.isdigit():
                total += int(cumulative)
    return total / 1000

