"""The package's layers hold: lint-imports checks the contracts in pyproject.toml
(cli above api above run ... above lib; typer, rich, pyroute2 and python-prctl
each in their one place), so an upward import fails the suite, and CI with it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_every_import_follows_the_layers():
    lint = shutil.which("lint-imports", path=os.path.dirname(sys.executable)) or shutil.which("lint-imports")
    if lint is None:
        pytest.fail("lint-imports is missing: install the test extra (pip install -e '.[test]')")
    # this checkout's minirun, not an installed one
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([lint, "--no-cache", "--config", str(REPO / "pyproject.toml")], cwd=REPO, env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "broken" in proc.stdout and "0 broken" in proc.stdout
