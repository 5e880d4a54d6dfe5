"""Attacks on the trust boundary, run the way an attacker would run them: a
hostile image, a hostile container, a careless caller. Each one aims at a
canary the test made (a directory, a file, a mount only the host has, or a
jail whose "/" is a directory of the test's), never at a real system path.

    working dir     -w / WorkingDir / exec -w through a caller's descriptor
    exec window     a watcher in the container races `minirun exec` children
    mount targets   /proc, /dev, /sys, /etc files, -v and --tmpfs through
                    symlinks in the image, inside a jail
    devices         the container's nodes are its own; -d output is a pipe
    capabilities    every number up to cap_last_cap, --init's PID 1 included
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from .conftest import REPO
from .imagebuild import busybox_layer, entry, layer_tar, write_layout

PROBES = Path(__file__).parent / "probes"


def load_image(mr, tmp_path: Path, name: str, extra: list, config: dict | None = None,
               mount_points: bool = True) -> str:
    """busybox plus extra entries as one image, loaded as localhost/NAME."""
    layout = tmp_path / f"layout-{name}"
    write_layout(layout, [busybox_layer(extra, with_mount_points=mount_points)],
                 config or {"Cmd": ["/bin/sh"]})
    mr.ok("load", "--tag", f"localhost/{name}", str(layout))
    return f"localhost/{name}"


def one_line_refusal(result, *words: str) -> None:
    assert result.returncode == 125, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for word in words:
        assert word in lines[0], lines[0]


def build_probe(tmp_path: Path, name: str) -> bytes:
    out = tmp_path / name
    subprocess.run(["gcc", "-static", "-O2", "-o", str(out), str(PROBES / f"{name}.c")], check=True)
    return out.read_bytes()


# ---------------------------------------------------------------- 1. the working dir

@pytest.fixture
def canary_dir(tmp_path) -> Path:
    canary = tmp_path / "canary"
    canary.mkdir()
    (canary / "secret").write_text("host secret\n")
    (canary / "sub").mkdir()
    (canary / "sub" / "secret").write_text("host secret\n")
    return canary


def with_dir_fd(path: Path):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    os.set_inheritable(fd, True)
    return fd


WHERE = ("run -w", "WorkingDir", "exec -w", "run -w /proc/self/fd/N/sub")


@pytest.mark.parametrize("where", WHERE)
def test_a_working_dir_through_a_callers_descriptor_is_refused(mr, tmp_path, canary_dir, where):
    """CVE-2024-21626's pattern: a directory descriptor the caller left open, named
    /proc/self/fd/N as the working dir, would start the command in the host's tree."""
    fd = with_dir_fd(canary_dir)
    try:
        cwd = f"/proc/self/fd/{fd}" + ("/sub" if where.endswith("sub") else "")
        script = "pwd; ls; cat secret; echo pwned > written; ls /proc/self/cwd/ >&2"
        if where == "WorkingDir":
            load_image(mr, tmp_path, "wd", [], {"WorkingDir": cwd, "Cmd": ["sh", "-c", script]})
            result = mr("run", "--rm", "localhost/wd", pass_fds=(fd,))
        elif where == "exec -w":
            mr.load("busybox")
            mr.ok("run", "-d", "--name", "target", "busybox", "sleep", "60")
            result = mr("exec", "-w", cwd, "target", "sh", "-c", script, pass_fds=(fd,))
        else:
            mr.load("busybox")
            result = mr("run", "--rm", "-w", cwd, "busybox", "sh", "-c", script, pass_fds=(fd,))
    finally:
        os.close(fd)
    one_line_refusal(result, "working directory")
    listed = result.stdout.split()
    assert "host secret" not in result.stdout and "secret" not in listed and "canary" not in listed
    assert sorted(os.listdir(canary_dir)) == ["secret", "sub"]
    assert os.listdir(canary_dir / "sub") == ["secret"]


def test_no_descriptor_of_the_caller_reaches_the_container(mr, canary_dir):
    mr.load("busybox")
    fd = with_dir_fd(canary_dir)
    try:
        out = mr.ok("run", "--rm", "busybox", "ls", "/proc/self/fd", pass_fds=(fd,)).stdout.split()
    finally:
        os.close(fd)
    assert str(fd) not in out
    assert set(out) <= {"0", "1", "2", "3"}        # 3: ls's own directory fd


# ---------------------------------------------------------------- 2. the exec window

def test_exec_never_shows_the_container_a_process_with_the_hosts_root(mr, tmp_path, canary_dir):
    """With CAP_SYS_PTRACE a container may open /proc/PID/root and /proc/PID/mountinfo
    of any process in its PID namespace. An exec child that appears there before it
    has entered the container's root and mount namespace lets it write host files
    (CVE-2019-5736's kind of window). A watcher races 40 execs for it."""
    watcher = build_probe(tmp_path, "procwatch")
    load_image(mr, tmp_path, "watch", [entry("bin/procwatch", data=watcher, mode=0o755)])
    marker_dir = tmp_path / "host-only-mount"
    marker_dir.mkdir()
    marker = f"minirun-host-marker-{os.getpid()}"
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4k", marker, str(marker_dir)], check=True)
    try:
        target = canary_dir / "pwned"
        mr.ok("run", "-d", "--name", "w", "--cap-add", "SYS_PTRACE", "localhost/watch",
              "sh", "-c", f"procwatch 25 {target} {marker} > /report; sleep 60")
        for _ in range(40):
            mr.ok("exec", "w", "true")
        report = ""
        for _ in range(300):
            report = mr("exec", "w", "cat", "/report").stdout
            if "scanned" in report:
                break
            time.sleep(0.1)
    finally:
        subprocess.run(["umount", str(marker_dir)], check=True)
    assert "scanned" in report, report
    assert not target.exists(), target.read_text()
    assert "root " not in report and "mountinfo " not in report, report


def test_exec_of_a_container_that_just_ended_is_one_line(mr):
    """A pid that can be recycled is pinned with a pidfd; a container that exits while
    exec joins it is 'not running', never a traceback."""
    mr.load("busybox")
    for attempt in range(25):
        name = f"brief{attempt}"
        mr.ok("run", "-d", "--name", name, "busybox", "sh", "-c", f"sleep 0.{attempt % 5}")
        for _ in range(3):
            result = mr("exec", name, "true")
            assert "Traceback" not in result.stderr and "Error" not in result.stdout, result.stderr
            assert len(result.stderr.strip().splitlines()) <= 1, result.stderr
            assert result.returncode in (0, 1, 125, 137), (result.returncode, result.stderr)
        mr("rm", "-f", name)
