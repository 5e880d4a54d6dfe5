"""Every container keeps a log (issue 17 §4): stdout and stderr apart, docker's
--tail, --since, --until, -t and -f, and a size bound a noisy container cannot pass."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest

STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z"


def wait_exited(mr, name: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while mr.inspect(name)["State"]["Status"] != "exited":
        assert time.monotonic() < deadline, f"{name} never exited"
        time.sleep(0.05)


def log_files(mr, name: str) -> dict[str, int]:
    cid = mr.inspect(name)["Id"]
    directory = mr.root / "containers" / cid
    return {n: os.path.getsize(directory / n) for n in os.listdir(directory) if n.startswith("container.log")}


def test_a_foreground_run_shows_its_output_and_keeps_it_stream_by_stream(mr):
    mr.load("busybox")
    result = mr("run", "--name", "fg", "busybox", "sh", "-c",
                "echo out1; echo err1 >&2; printf 'no newline'; sleep 0.1; echo ' ended'; exit 3")
    assert result.returncode == 3
    assert result.stdout == "out1\nno newline ended\n"
    assert result.stderr == "err1\n"
    logs = mr.ok("logs", "fg")
    assert (logs.stdout, logs.stderr) == ("out1\nno newline ended\n", "err1\n")


def test_the_log_gives_back_the_bytes_exactly(mr):
    """A last line without its newline stays without one; carriage returns and
    bytes that are not UTF-8 come back as written."""
    mr.load("busybox")
    shown = subprocess.run([sys.executable, "-m", "minirun", "run", "--name", "b", "busybox", "printf",
                            r"a\r\n\377\nlast"], env=mr.env, capture_output=True)
    assert shown.stdout == b"a\r\n\xff\nlast"
    out = subprocess.run([sys.executable, "-m", "minirun", "logs", "b"], env=mr.env, capture_output=True)
    assert out.stdout == b"a\r\n\xff\nlast"


def test_tail_and_timestamps(mr):
    mr.load("busybox")
    mr.ok("run", "--name", "t", "busybox", "sh", "-c", "for i in 1 2 3 4 5; do echo line$i; done; sleep 0.2; echo e >&2")
    # (the two streams are copied apart: only time orders one's lines against the other's)
    assert mr.ok("logs", "--tail", "2", "t").stdout == "line5\n"       # the last line is stderr's
    assert mr.ok("logs", "--tail", "2", "t").stderr == "e\n"
    assert mr.ok("logs", "-n", "0", "t").stdout == ""
    assert mr.ok("logs", "--tail", "all", "t").stdout.count("\n") == 5
    stamped = mr.ok("logs", "-t", "--tail", "3", "t").stdout.splitlines()
    assert [re.fullmatch(STAMP + r" (line\d)", line).group(1) for line in stamped] == ["line4", "line5"]
    bad = mr("logs", "--tail", "x", "t")
    assert bad.returncode != 0 and "--tail" in bad.stderr and "Traceback" not in bad.stderr


def test_since_and_until_split_the_output_by_time(mr):
    mr.load("busybox")
    mr.ok("run", "--name", "s", "busybox", "sh", "-c", "echo early; sleep 1.2; echo late")
    stamped = mr.ok("logs", "-t", "s").stdout.splitlines()
    first, second = (line.split(" ", 1)[0] for line in stamped)
    assert mr.ok("logs", "--since", second, "s").stdout == "late\n"
    assert mr.ok("logs", "--until", first, "s").stdout == "early\n"
    unix_second = f"{time.mktime(time.strptime(second[:19], '%Y-%m-%dT%H:%M:%S')) - time.timezone:.0f}"
    assert "late" in mr.ok("logs", "--since", unix_second, "s").stdout
    assert mr.ok("logs", "--since", "1h", "s").stdout == "early\nlate\n"
    assert mr.ok("logs", "--until", "1h", "s").stdout == ""
    bad = mr("logs", "--since", "yesterday-ish", "s")
    assert bad.returncode != 0 and "--since" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_follow_prints_as_it_comes_and_ends_with_the_container(mr):
    mr.load("busybox")
    mr.ok("run", "-d", "--name", "f", "busybox", "sh", "-c", "echo one; sleep 1.5; echo two >&2; sleep 0.5")
    follower = mr.popen("logs", "-f", "f", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        first = follower.stdout.readline()
        assert first == b"one\n"
        assert follower.poll() is None              # still following: "two" is not written yet
        out, err = follower.communicate(timeout=20)
    finally:
        follower.kill()
        follower.wait()
    assert (out, err) == (b"", b"two\n")
    assert follower.returncode == 0


def test_a_noisy_container_cannot_pass_the_bound(mr):
    """5 MB of output with max-size=64k and max-file=2: at most two files of 64 KiB
    are kept, and they hold the newest lines."""
    mr.load("busybox")
    mr.ok("run", "-d", "--name", "noisy", "--log-opt", "max-size=64k", "--log-opt", "max-file=2",
          "busybox", "sh", "-c", "i=0; while [ $i -lt 50000 ]; do echo line-$i-padding-to-make-it-100-bytes; "
          "i=$((i+1)); done")
    wait_exited(mr, "noisy", timeout=120)
    sizes = log_files(mr, "noisy")
    assert set(sizes) == {"container.log", "container.log.1"}, sizes
    assert all(size <= 64 * 1024 for size in sizes.values()), sizes
    lines = mr.ok("logs", "noisy").stdout.splitlines()
    assert lines[-1].startswith("line-49999-") and 500 < len(lines) < 2000


def test_the_default_bound(mr):
    """Without --log-opt: 10 MiB a file, 3 files."""
    mr.load("busybox")
    subprocess.run([sys.executable, "-m", "minirun", "run", "--name", "big", "busybox", "sh", "-c",
                    "head -c 40000000 /dev/zero | tr '\\0' 'x' | fold -w 1000"],
                   env=mr.env, stdout=subprocess.DEVNULL, check=True, timeout=300)
    sizes = log_files(mr, "big")
    assert set(sizes) == {"container.log", "container.log.1", "container.log.2"}, sizes
    assert all(size <= 10 * 1024 * 1024 for size in sizes.values()), sizes


def test_log_driver_none_keeps_nothing_and_says_so(mr):
    mr.load("busybox")
    result = mr.ok("run", "--name", "n", "--log-driver", "none", "busybox", "sh", "-c", "echo hi; echo e >&2")
    assert (result.stdout, result.stderr) == ("hi\n", "e\n")
    assert log_files(mr, "n") == {}
    refused = mr("logs", "n")
    assert refused.returncode == 1 and "--log-driver none" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("flags", [("--log-opt", "max-size=0"), ("--log-opt", "max-file=x"),
                                   ("--log-opt", "colour=blue"), ("--log-driver", "syslog"),
                                   ("--log-driver", "none", "--log-opt", "max-size=1m")])
def test_bad_log_flags_are_refused_before_anything_exists(mr, flags):
    mr.load("busybox")
    result = mr("run", *flags, "busybox", "true")
    assert result.returncode == 125, result
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert mr.ok("ps", "-a", "-q").stdout == ""


def test_json_file_means_the_same_log(mr):
    mr.load("busybox")
    mr.ok("run", "--name", "j", "--log-driver", "json-file", "--log-opt", "max-size=1m", "busybox", "echo", "hi")
    assert mr.ok("logs", "j").stdout == "hi\n"


def test_a_terminal_is_logged_as_stdout(mr):
    mr.load("busybox")
    mr.ok("run", "-t", "--name", "tty", "busybox", "sh", "-c", "echo out; echo err >&2")
    logs = subprocess.run([sys.executable, "-m", "minirun", "logs", "tty"], env=mr.env, capture_output=True)
    assert (logs.stdout, logs.stderr) == (b"out\r\nerr\r\n", b"")


def test_a_restarted_container_adds_to_its_log(mr):
    mr.load("busybox")
    mr.ok("create", "--name", "r", "busybox", "sh", "-c", "date +%N; echo run >&2")
    for _ in range(2):
        mr.ok("start", "-a", "r")
    logs = mr.ok("logs", "r")
    assert logs.stderr == "run\nrun\n" and len(logs.stdout.splitlines()) == 2


def test_a_reader_that_leaves_ends_the_container_as_a_pipe_would(mr):
    """`minirun run ... yes | head -1`: once head has gone, yes gets EPIPE and ends."""
    mr.load("busybox")
    pipeline = subprocess.run(f"{sys.executable} -m minirun run --rm busybox yes | head -1", shell=True,
                              env=mr.env, capture_output=True, text=True, timeout=30)
    assert pipeline.stdout == "y\n"


@pytest.mark.parametrize("mode", ["run", "run -d"])
def test_the_container_holds_a_pipe_never_the_log_file_nor_our_terminal(mr, mode):
    """Through /proc/self/fd it could chmod or chown what its stdout is."""
    mr.load("busybox")
    script = ("readlink /proc/self/fd/1; readlink /proc/self/fd/2; chmod 6777 /proc/self/fd/1 /proc/self/fd/2; "
              "chown 1:1 /proc/self/fd/1 /proc/self/fd/2; echo done")
    mr.ok(*mode.split(), "--name", "p", "busybox", "sh", "-c", script)
    wait_exited(mr, "p")
    lines = mr.ok("logs", "p").stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == ["pipe", "pipe", "done"], lines
    directory = mr.root / "containers" / mr.inspect("p")["Id"]
    st = os.stat(directory / "container.log")
    assert (st.st_mode & 0o7777, st.st_uid, st.st_gid) == (0o640, 0, 0)


@pytest.mark.parametrize("closed", ["stdout", "stderr"])
def test_a_closed_stdout_or_stderr_is_no_traceback(mr, closed):
    """`minirun run ... >&-`: the output is dropped, as into /dev/null, and the log keeps it."""
    mr.load("busybox")
    redirect = ">&-" if closed == "stdout" else "2>&-"
    done = subprocess.run(f"{sys.executable} -m minirun run --name c busybox sh -c 'echo out; echo err >&2' "
                          f"{redirect}", shell=True, env=mr.env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "Traceback" not in done.stderr + done.stdout, done
    logs = mr.ok("logs", "c")
    assert (logs.stdout, logs.stderr) == ("out\n", "err\n")
