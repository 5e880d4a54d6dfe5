"""minirun doctor asks the real kernel, reports every check, and leaves nothing behind."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from .conftest import overlay_mounts_under

pytestmark = pytest.mark.kernel

CHECKS = {"root", "store filesystem", "d_type", "overlayfs", "overlay lowerdir+", "pivot_root",
          "cgroups", "capabilities", "rlimits"}


def test_doctor_passes_here_and_leaves_nothing(mr, tmp_path):
    before = set(os.listdir(tmp_path))
    result = mr("doctor", "--json")
    checks = {c["Check"]: c for c in map(json.loads, result.stdout.splitlines())}
    assert set(checks) == CHECKS
    assert result.returncode == 0, result.stdout
    assert checks["overlayfs"]["Status"] == "ok" and checks["pivot_root"]["Status"] == "ok"
    # this kernel (6.18) has lowerdir+; CAP_SYS_RESOURCE is missing here (PEERS.md)
    assert checks["overlay lowerdir+"]["Status"] == "ok"
    assert "CAP_SYS_RESOURCE" in checks["capabilities"]["Detail"]
    assert set(os.listdir(tmp_path)) == before                  # not even the store was made
    assert not overlay_mounts_under(tmp_path)
    text = mr("doctor").stdout
    assert text.count("\n") >= len(CHECKS) and "fix:" in text   # the warning carries its fix


def test_doctor_fails_a_store_on_overlayfs_and_prints_the_fix(mr, tmp_path):
    for sub in ("lower", "upper", "work", "merged"):
        (tmp_path / sub).mkdir()
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                    f"lowerdir={tmp_path}/lower,upperdir={tmp_path}/upper,workdir={tmp_path}/work",
                    str(tmp_path / "merged")], check=True)
    try:
        result = mr("doctor", env={"MINIRUN_ROOT": str(tmp_path / "merged" / "store")})
    finally:
        subprocess.run(["umount", str(tmp_path / "merged")], check=True)
    assert result.returncode == 3
    lines = result.stdout.splitlines()
    failing = [i for i, line in enumerate(lines) if line.startswith("FAIL")]
    assert [lines[i].split()[1:3] for i in failing] == [["store", "filesystem"]]
    assert "fix: set MINIRUN_ROOT" in lines[failing[0] + 1]
