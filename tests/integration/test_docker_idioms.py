"""What a Docker user types without thinking (issue 17.3): stop and kill of a stopped
container, rm of several names with one missing, ps STATUS, TERM under -t."""

from __future__ import annotations

import json
import re
import subprocess
import time

import pytest

from .test_process import run_in_pty


def test_stop_and_kill_of_a_stopped_container_exit_0(mr):
    mr.load("busybox")
    mr.ok("run", "--name", "done", "busybox", "true")
    assert mr.ok("stop", "done").stdout == "done\n"
    assert mr.ok("kill", "done").stdout == "done\n"
    assert mr.ok("kill", "-s", "HUP", "done").stdout == "done\n"
    assert mr.inspect("done")["State"]["Status"] == "exited"
    missing = mr("stop", "nosuch")
    assert missing.returncode == 1 and "no such container: nosuch" in missing.stderr


@pytest.mark.parametrize("verb", ["rm", "stop", "kill"])
def test_a_missing_name_among_several_is_reported_and_the_rest_are_done(mr, verb):
    mr.load("busybox")
    for name in ("a", "b"):
        mr.ok("run", "-d", "--name", name, "busybox", "sleep", "60")
    if verb == "rm":
        mr.ok("stop", "-t", "0", "a", "b")
    result = mr(verb, "a", "nosuch", "b")
    assert result.returncode == 1, result
    assert result.stdout.split() == ["a", "b"]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "no such container: nosuch" in lines[0], result.stderr
    if verb == "rm":
        assert mr.ok("ps", "-a", "-q").stdout == ""
    else:
        states = {mr.inspect(name)["State"]["Status"] for name in ("a", "b")}
        assert states == {"exited"}
        mr.ok("rm", "a", "b")


def test_ps_status_reads_like_dockers(mr):
    mr.load("busybox")
    mr.ok("run", "-d", "--name", "up", "busybox", "sleep", "60")
    assert mr("run", "--name", "ended", "busybox", "sh", "-c", "exit 3").returncode == 3
    rows = {line.split()[-1]: line for line in mr.ok("ps", "-a").lines[1:]}
    assert re.search(r"\bUp (Less than a second|\d+ seconds?)\b", rows["up"]), rows["up"]
    assert re.search(r"\bExited \(3\) (Less than a second|\d+ seconds?) ago\b", rows["ended"]), rows["ended"]
    status = mr.ok("ps", "-a", "--format", "{{.Names}} {{.Status}}").lines
    assert any(line.startswith("up Up ") for line in status), status
    mr.ok("rm", "-f", "up", "ended")


def test_a_terminal_brings_term_xterm_unless_told_otherwise(mr):
    mr.load("busybox")
    code, out = run_in_pty(mr, "run", "--rm", "-t", "busybox", "sh", "-c", 'echo "term=$TERM"')
    assert code == 0 and b"term=xterm\r" in out, out
    code, out = run_in_pty(mr, "run", "--rm", "-t", "-e", "TERM=vt100", "busybox", "sh", "-c", 'echo "term=$TERM"')
    assert code == 0 and b"term=vt100\r" in out, out
    assert mr.ok("run", "--rm", "busybox", "sh", "-c", 'echo "term=${TERM-unset}"').stdout == "term=unset\n"
    mr.ok("run", "-d", "--name", "t", "busybox", "sleep", "60")
    code, out = run_in_pty(mr, "exec", "-t", "t", "sh", "-c", 'echo "term=$TERM"')
    assert code == 0 and b"term=xterm\r" in out, out
    assert mr.ok("exec", "t", "sh", "-c", 'echo "term=${TERM-unset}"').stdout == "term=unset\n"
    mr.ok("rm", "-f", "t")


def test_inspect_takes_several_names_and_prints_one_array(mr):
    mr.load("busybox")
    mr.ok("run", "--name", "c1", "busybox", "true")
    docs = json.loads(mr.ok("inspect", "c1", "busybox").stdout)
    assert [doc["Id"][:7] for doc in docs] == [mr.inspect("c1")["Id"][:7], "sha256:"]
    assert len(json.loads(mr.ok("inspect", "c1").stdout)) == 1
    result = mr("inspect", "c1", "nosuch", "busybox")
    assert result.returncode == 1 and len(json.loads(result.stdout)) == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: no such container or image: nosuch"), lines
    assert mr.ok("inspect", "-f", "{{.State.Status}}", "c1").stdout == "exited\n"


def test_ps_json_speaks_dockers_keys(mr):
    mr.load("busybox")
    assert mr("run", "--name", "j", "busybox", "sh", "-c", "exit 4").returncode == 4
    row = json.loads(mr.ok("ps", "-a", "--format", "json").lines[0])
    assert {"ID", "Image", "Command", "CreatedAt", "RunningFor", "Status", "State", "Names", "Labels",
            "Ports", "Networks", "Mounts"} <= set(row)
    assert (row["State"], row["Names"], row["Image"], row["Command"]) == ("exited", "j", "busybox",
                                                                         '"sh -c exit 4"')
    assert row["Status"].startswith("Exited (4) ") and len(row["ID"]) == 12
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \+0000 UTC", row["CreatedAt"]), row["CreatedAt"]
    image_row = json.loads(mr.ok("images", "--format", "{{json .}}").lines[0])
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \+0000 UTC", image_row["CreatedAt"]), image_row


@pytest.mark.parametrize("verb", ["images", "ps", "load", "rm", "stop", "inspect", "logs", "commit"])
def test_dash_h_is_help_where_it_is_not_a_flag(mr, verb):
    result = mr(verb, "-h")
    assert result.returncode == 0 and "Usage:" in result.stdout, result


def test_run_usage_errors_exit_125_and_run_h_is_the_hostname(mr):
    mr.load("busybox")
    for args in (("--no-such-flag", "busybox"), (), ("--memory",)):
        result = mr("run", *args)
        assert result.returncode == 125, (args, result)
    assert mr.ok("run", "--rm", "-h", "box1", "busybox", "hostname").stdout == "box1\n"
    assert mr("run", "--rm", "busybox", "sh", "-c", "exit 2").returncode == 2
    assert mr("rm").returncode == 2                  # other commands keep click's 2


def test_top_lists_the_containers_processes_and_nothing_of_ours(mr):
    mr.load("busybox")
    mr.ok("run", "-d", "--name", "t", "busybox", "sh", "-c", "sleep 300 & exec sleep 301")
    pid1 = mr.inspect("t")["State"]["Pid"]
    waiter = mr.popen("exec", "t", "sleep", "30", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    expected = {"sleep 300", "sleep 301", "sleep 30"}               # not exec's waiter
    try:
        # until exec's sleep is there as itself: a process caught between fork and
        # exec would show under its parent's command line for a moment
        deadline = time.monotonic() + 10
        while True:
            rows = [line.split(None, 7) for line in mr.ok("top", "t").lines]
            commands = [row[7] if len(row) == 8 else None for row in rows[1:]]
            if (len(rows) == 4 and set(commands) == expected) or time.monotonic() >= deadline:
                break
            time.sleep(0.1)
    finally:
        waiter.kill()
        waiter.wait()
    assert len(rows) == 4 and set(commands) == expected, rows           # as last seen
    assert rows[0] == ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    assert rows[1][1] == str(pid1) and all(row[0] == "root" for row in rows[1:])
    mr.ok("rm", "-f", "t")
    assert mr("top", "t").returncode == 1


@pytest.mark.kernel
def test_stats_no_stream_reads_the_cgroup(mr):
    mr.load("busybox")
    mr.ok("run", "-d", "--name", "busy", "--memory", "64m", "busybox", "sh", "-c",
          "while :; do :; done & exec sleep 300")
    mr.ok("run", "-d", "--name", "idle", "busybox", "sleep", "300")
    rows = {json.loads(line)["Name"]: json.loads(line)
            for line in mr.ok("stats", "--no-stream", "--format", "json").lines}
    assert set(rows) == {"busy", "idle"}
    assert rows["busy"]["MemUsage"].endswith(" / 67.1MB") and rows["busy"]["PIDs"] == "2", rows
    assert float(rows["busy"]["CPUPerc"].rstrip("%")) > 0, rows
    table = mr.ok("stats", "--no-stream", "idle").lines
    assert table[0].split()[:4] == ["CONTAINER", "ID", "NAME", "CPU"] and " idle " in table[1]
    mr.ok("rm", "-f", "busy", "idle")


def test_run_dit_keeps_a_shell_up_on_its_own_terminal(mr):
    """`docker run -dit busybox sh`: the shell waits on its terminal instead of
    reading EOF from /dev/null and ending at once; its prompt is in the log."""
    mr.load("busybox")
    mr.ok("run", "-dit", "--name", "sh1", "busybox", "sh")
    mr.running_state("sh1")
    time.sleep(0.5)
    assert mr.inspect("sh1")["State"]["Status"] == "running"
    assert mr.ok("exec", "sh1", "readlink", "/proc/1/fd/0").stdout.strip() == "/dev/pts/0"
    deadline = time.monotonic() + 10
    while "/ #" not in mr.ok("logs", "sh1").stdout:
        assert time.monotonic() < deadline, mr.ok("logs", "sh1").stdout
        time.sleep(0.1)
    mr.ok("stop", "-t", "1", "sh1")
