"""The caller's stdin, stdout and stderr never reach a container. A descriptor it
holds is a way out: through /proc/self/fd/N (or /proc/PID/fd/N of an exec'd
process) its root reopens, rewrites or chmods whatever the descriptor names on
the host: the file an admin redirected output into, the input file of `run -i`,
the host's /dev/null, the admin's terminal. So a container gets pipes of its
own (copied onto ours by minirun, as docker's shim does) and, without -i, its
own /dev/null. Every attack here aims at a canary file the test made.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.root


def minirun(mr, *args: str, **kwargs) -> subprocess.CompletedProcess:
    """The CLI with our own stdio choices (mr() captures both outputs)."""
    kwargs.setdefault("stderr", subprocess.PIPE)
    return subprocess.run([sys.executable, "-m", "minirun", *args], env=mr.env, text=True, timeout=60, **kwargs)


def canary(tmp_path, name: str, text: str, mode: int):
    path = tmp_path / name
    path.write_text(text)
    os.chmod(path, mode)
    return path


# what the container tries on the descriptor it got, then how it describes it
STEAL = "chmod 4777 /proc/self/fd/{n} 2>/dev/null; echo pwned > /proc/self/fd/{n}; stat -L -c %F /proc/self/fd/{n}"


@pytest.mark.parametrize("flags", [(), ("--log-driver", "none")], ids=["log", "no-log"])
def test_output_redirected_to_a_file_stays_out_of_reach(mr, tmp_path, flags):
    mr.load("busybox")
    out = canary(tmp_path, "out.txt", "", 0o600)
    with open(out, "w") as f:
        result = minirun(mr, "run", "--rm", *flags, "busybox", "sh", "-c", STEAL.format(n=1), stdout=f)
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    # "pwned" came through the pipe as output, like any line: the file was not reopened
    assert out.read_text().split() == ["pwned", "fifo"], out.read_text()


def test_run_i_feeds_our_stdin_through_a_pipe(mr, tmp_path):
    mr.load("busybox")
    source = canary(tmp_path, "input.txt", "the admin's input\n", 0o444)
    with open(source) as f:
        result = minirun(mr, "run", "--rm", "-i", "busybox", "sh", "-c", "cat; " + STEAL.format(n=0),
                         stdin=f, stdout=subprocess.PIPE)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[0] == "the admin's input"
    assert result.stdout.split()[-1] == "fifo"
    assert source.read_text() == "the admin's input\n"
    assert stat.S_IMODE(os.stat(source).st_mode) == 0o444


@pytest.mark.parametrize("detach", [False, True], ids=["foreground", "detached"])
def test_without_i_stdin_is_the_containers_own_dev_null(mr, detach):
    """Not the host's /dev/null, which a chmod through /proc/self/fd/0 would change
    for the whole host (only looked at here: stat, never chmod)."""
    mr.load("busybox")
    probe = ("busybox", "stat", "-L", "-c", "%d:%i %F", "/proc/self/fd/0")
    if detach:
        cid = mr.ok("run", "-d", *probe).stdout.strip()
        deadline = time.monotonic() + 30
        while mr.inspect(cid)["State"]["status"] == "running" and time.monotonic() < deadline:
            time.sleep(0.05)
        said = mr.ok("logs", cid).stdout.split()
    else:
        said = mr.ok("run", "--rm", *probe).stdout.split()
    host = os.stat("/dev/null")
    assert said[0] != f"{host.st_dev}:{host.st_ino}", said
    assert said[1:] == ["character", "special", "file"], said


def test_exec_stdio_stays_out_of_reach(mr, tmp_path):
    mr.load("busybox")
    mr.ok("run", "-d", "--name", "held", "busybox", "sleep", "120")
    try:
        out = canary(tmp_path, "exec-out.txt", "", 0o600)
        with open(out, "w") as f:
            result = minirun(mr, "exec", "held", "sh", "-c", STEAL.format(n=1) + "; stat -L -c %F /proc/self/fd/0",
                             stdout=f)
        assert result.returncode == 0, result.stderr
        assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
        assert out.read_text().split() == ["pwned", "fifo", "character", "special", "file"], out.read_text()

        source = canary(tmp_path, "input.txt", "typed\n", 0o444)
        with open(source) as f:
            result = minirun(mr, "exec", "-i", "held", "sh", "-c", "cat; " + STEAL.format(n=0),
                             stdin=f, stdout=subprocess.PIPE)
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == ["typed", "fifo"], result.stdout
        assert source.read_text() == "typed\n" and stat.S_IMODE(os.stat(source).st_mode) == 0o444
    finally:
        mr("rm", "-f", "held")


def test_exec_output_is_not_visible_to_the_containers_other_processes(mr, tmp_path):
    """PID 1 of a hostile container watches /proc for an exec'd process whose stdout is
    a host file, and chmods it through /proc/PID/fd/1 (an outside review did it)."""
    mr.load("busybox")
    watch = ("while :; do for p in /proc/[0-9]*; do [ $p = /proc/1 ] && continue; "
             "l=$(readlink $p/fd/1 2>/dev/null); case \"$l\" in /*) chmod 4777 $p/fd/1; "
             "echo \"stolen: $l\" > /found;; esac; done; done")
    mr.ok("run", "-d", "--name", "watcher", "busybox", "sh", "-c", watch)
    try:
        out = canary(tmp_path, "report.txt", "", 0o600)
        with open(out, "w") as f:
            result = minirun(mr, "exec", "watcher", "sleep", "2", stdout=f)
        assert result.returncode == 0, result.stderr
        assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
        assert mr("exec", "watcher", "cat", "/found").returncode != 0       # it found nothing to steal
    finally:
        mr("rm", "-f", "watcher")


def test_exec_waits_for_what_its_command_left_in_the_background(mr):
    """As `docker exec`: the pipes stay read until every holder closes them, so a
    process the command left running is never killed by SIGPIPE at its next write
    (its 4.5 s outlast the 2 s grace a run gives each pipe after its end)."""
    mr.load("busybox")
    mr.ok("run", "-d", "--name", "bg", "busybox", "sleep", "120")
    try:
        result = mr.ok("exec", "bg", "sh", "-c", "(sleep 4.5; echo later; echo alive > /alive) & echo started")
        assert result.stdout.split() == ["started", "later"], result.stdout
        assert mr.ok("exec", "bg", "cat", "/alive").stdout.strip() == "alive"
    finally:
        mr("rm", "-f", "bg")


def test_log_driver_none_still_shows_everything(mr):
    mr.load("busybox")
    result = mr.ok("run", "--rm", "--log-driver", "none", "busybox", "sh", "-c",
                   "head -c 3000000 /dev/zero | tr '\\0' x; echo; echo to-stderr >&2")
    assert result.stdout == "x" * 3000000 + "\n"
    assert result.stderr.strip() == "to-stderr"


# the caller's file holds a line for root whose home, and a group of root's, are secrets
SECRET_TABLE = ("root:x:0:0:root:/HOST-SECRET-home:/bin/sh\n"
                "secretgrp:x:4242:root\n")


@pytest.mark.parametrize("table", ["etc/passwd", "etc/group"])
@pytest.mark.parametrize("fd", [0, 1], ids=["stdin", "stdout"])
def test_an_image_user_table_cannot_read_the_callers_stdio(mr, tmp_path, table, fd):
    """An image whose /etc/passwd or /etc/group is a link to /proc/self/fd/0 (or 1)
    while the runtime, as root in the container's root, looked up the user: the
    caller's stdin or stdout file was reopened and read as the table, and its
    home and groups reached the container (an outside review did it)."""
    from .test_bounds import hostile_image
    from .hostile import SYM, e
    image = hostile_image(mr, tmp_path, "stdio-table", [e(table, SYM, link=f"/proc/self/fd/{fd}")])
    held = canary(tmp_path, "held.txt", SECRET_TABLE, 0o600)
    # not `id -G`: it would read the table too, its own stdout pipe through the link
    probe = (image, "sh", "-c", "echo HOME=$HOME; grep ^Groups: /proc/self/status")
    if fd == 0:
        with open(held) as f:
            result = minirun(mr, "run", "--rm", *probe, stdin=f, stdout=subprocess.PIPE)
        said = result.stdout
    else:
        with open(held, "a") as f:
            result = minirun(mr, "run", "--rm", *probe, stdout=f)
        said = held.read_text()[len(SECRET_TABLE):]
    assert result.returncode == 0, result.stderr
    assert "SECRET" not in said + result.stderr and "4242" not in said, said
    # the table that leads to our descriptor reads as missing: no home from passwd
    # (root's is then /), no supplementary group from group
    assert said.split()[0] == ("HOME=/root" if table == "etc/group" else "HOME=/"), said
    assert held.read_text().startswith(SECRET_TABLE) and stat.S_IMODE(os.stat(held).st_mode) == 0o600
