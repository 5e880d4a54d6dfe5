"""Small inputs that would make minirun do unbounded work (issue 14, item 8):
an image's /etc/passwd or /etc/group that is a FIFO, a link to /dev/zero or
huge. `run` and `exec` read them to resolve the user; each must end at once
with one line naming the file (exit 125), never wait or read without end.

Every run here goes through `prlimit --as` (the runtime and its container may
map at most AS_LIMIT bytes), so that the old code, which read /dev/zero into
memory, fails fast instead of taking the machine's memory with it.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from .hostile import FIFO, SYM, Case, build_image, e, sparse

AS_LIMIT = str(1 << 30)
GUARD = ("prlimit", f"--as={AS_LIMIT}", "--")


def hostile_image(mr, tmp_path: Path, name: str, entries: list) -> str:
    """busybox plus one layer of `entries`, loaded as localhost/hostile."""
    image = tmp_path / name
    build_image(image, Path(mr.fixture_path("busybox")), Case(name, entries, expect={}), str(tmp_path))
    mr.ok("load", str(image))
    return "localhost/hostile"


def refused(result, *words: str) -> str:
    assert result.returncode == 125, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    assert "MemoryError" not in lines[0]
    return lines[0]


USER_FILES = [
    ("passwd-is-dev-zero", [e("etc/passwd", SYM, link="/dev/zero")], (), "/etc/passwd", "character device"),
    ("passwd-is-a-fifo", [e("etc/passwd", FIFO)], (), "/etc/passwd", "FIFO"),
    ("group-is-a-fifo", [e("etc/group", FIFO)], ("-u", "0:0"), "/etc/group", "FIFO"),
    ("group-is-dev-zero", [e("etc/group", SYM, link="../dev/zero")], ("-u", "root"), "/etc/group",
     "character device"),
    ("passwd-is-a-directory", [e("etc/passwd/x", data=b"x")], (), "/etc/passwd", "directory"),
    ("passwd-of-a-gigabyte", [sparse("etc/passwd", 1 << 30)], (), "/etc/passwd", "4194304"),
    ("group-just-over-the-cap", [e("etc/group", data=b"g:x:1:\n" * ((4 << 20) // 7 + 1))], ("-u", "0"),
     "/etc/group", "4194304"),
]


@pytest.mark.parametrize("name, entries, flags, path, why", USER_FILES, ids=[c[0] for c in USER_FILES])
def test_run_refuses_an_unbounded_user_file(mr, tmp_path, name, entries, flags, path, why):
    image = hostile_image(mr, tmp_path, name, entries)
    result = mr("run", "--rm", *flags, image, "true", prefix=GUARD, timeout=30)
    refused(result, path, why)
    assert mr.ok("ps", "-aq").stdout.strip() == ""


def test_run_accepts_a_user_file_at_the_cap(mr, tmp_path):
    """The cap is a size, not a guess: a 4 MiB /etc/passwd is read and used."""
    line = b"u:x:1:1::/home/u:/bin/sh\n"
    body = line * ((4 << 20) // len(line) - 2) + b"last:x:4242:4243::/home/last:/bin/sh\n"
    assert len(body) <= 4 << 20
    image = hostile_image(mr, tmp_path, "big-passwd", [e("etc/passwd", data=body)])
    out = mr.ok("run", "--rm", "-u", "last", image, "sh", "-c", "id -u; id -g; echo $HOME", prefix=GUARD)
    assert out.lines == ["4242", "4243", "/home/last"]


@pytest.mark.parametrize("make, why", [("mkfifo /etc/passwd", "FIFO"),
                                       ("ln -s /dev/zero /etc/passwd", "character device")])
def test_exec_refuses_a_passwd_the_container_replaced(mr, make, why):
    """exec reads the running container's files: the container controls them."""
    mr.load("busybox")
    mr.ok("run", "-d", "--name", "c", "busybox", "sleep", "60")
    mr.ok("exec", "c", "sh", "-c", f"rm /etc/passwd && {make}")
    refused(mr("exec", "c", "true", prefix=GUARD, timeout=30), "/etc/passwd", why)
    mr.ok("rm", "-f", "c")


def test_the_guard_lets_a_normal_run_through(mr):
    mr.load("busybox")
    assert mr.ok("run", "--rm", "-u", "1000", "busybox", "id", "-u", prefix=GUARD).lines == ["1000"]


def test_a_host_resolv_conf_that_is_a_fifo_or_huge_is_skipped(tmp_path):
    """network/files.py reads the host's resolv.conf on every run: bounded too (a
    file it cannot use reads as missing). In a subprocess, guarded like the runs."""
    import os
    import sys
    fifo = tmp_path / "resolv.conf"
    os.mkfifo(fifo)
    big = tmp_path / "big.conf"
    with open(big, "wb") as f:
        f.truncate(1 << 40)
    code = ("from minirun.network.files import resolv_text; "
            f"print(repr(resolv_text('host', ({str(fifo)!r},))), repr(resolv_text('host', ({str(big)!r},))))")
    proc = subprocess.run([*GUARD, sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["''", "''"]
