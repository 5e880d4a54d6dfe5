"""One SIGKILL trial per command (load, pull, run, run -d, commit, rm, rmi,
prune) through tools/crash_stress.py: after each kill fsck is clean, every
image runs, tmp/ is cleaned, no container claims to run without a process,
and the command re-run succeeds. The long run is the script with --trials 120."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from .conftest import REPO


@pytest.mark.skipif(shutil.which("docker-registry") is None or shutil.which("skopeo") is None,
                    reason="needs docker-registry and skopeo for the pull trials")
def test_one_kill_per_command_leaves_a_whole_store(fixtures):
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "crash_stress.py"), "--trials", "9",
                           "--seed", "3", str(fixtures)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = [line.split() for line in proc.stdout.splitlines()[2:]]
    assert len(rows) == 9 and all(row[2] == row[3] for row in rows), proc.stdout
