"""create, start and restart (issue 17.3): a container runs again on its own upper
dir, with the flags it was made with, as docker's do."""

from __future__ import annotations

import json
import os
import time

import pytest


def test_create_then_start_runs_it_again_and_again_on_its_upper_dir(mr, tmp_path):
    mr.load("busybox")
    data = tmp_path / "data"
    data.mkdir()
    cid = mr.ok("create", "--name", "c", "-v", f"{data}:/data", "busybox", "sh", "-c",
                "date >> /runs; wc -l < /runs; echo seen >> /data/log").stdout.strip()
    assert len(cid) == 64
    assert " Created " in mr.ok("ps", "-a").lines[1]
    assert not (data / "log").exists()                         # not started yet
    first = mr.ok("start", "-a", "c")
    assert first.stdout.strip() == "1"
    assert mr.ok("start", "-a", "c").stdout.strip() == "2"
    assert mr.ok("diff", "c").lines == ["A /runs"]
    assert (data / "log").read_text() == "seen\nseen\n"       # the volume came back too
    assert mr.ok("start", "c").stdout == "c\n"                 # detached: its name
    deadline = time.monotonic() + 10
    while mr.inspect("c")["State"]["Status"] != "exited" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert mr.ok("logs", "c").stdout == "1\n2\n3\n"              # every run's output, as docker keeps it
    assert mr.inspect("c")["Id"] == cid


def test_start_a_gives_the_commands_exit_code_and_a_running_one_is_left_alone(mr):
    mr.load("busybox")
    assert mr("run", "--name", "r", "busybox", "sh", "-c", "echo x >> /f; exit $(wc -l < /f)").returncode == 1
    assert mr("start", "-a", "r").returncode == 2                # a `run` container starts again too
    mr.ok("run", "-d", "--name", "up", "busybox", "sleep", "60")
    pid = mr.inspect("up")["State"]["Pid"]
    assert mr.ok("start", "up").stdout == "up\n"
    assert mr.inspect("up")["State"]["Pid"] == pid
    mr.ok("restart", "-t", "0", "up")
    again = mr.running_state("up")
    assert again["pid"] != pid
    missing = mr("start", "nosuch")
    assert missing.returncode == 1 and "no such container" in missing.stderr
    mr.ok("rm", "-f", "up")


def test_start_keeps_the_environment_the_container_was_made_with(mr):
    mr.load("busybox")
    mr.ok("create", "--name", "e", "-e", "FROM_HOST", "-e", "SET=1", "busybox", "sh", "-c",
          'echo "$FROM_HOST $SET"', env={"FROM_HOST": "at-create"})
    out = mr.ok("start", "-a", "e", env={"FROM_HOST": "at-start"}).stdout
    assert out == "at-create 1\n"


def test_create_with_rm_is_removed_after_its_start(mr):
    mr.load("busybox")
    mr.ok("create", "--rm", "--name", "once", "busybox", "true")
    mr.ok("start", "-a", "once")
    assert mr.ok("ps", "-a", "-q").stdout == ""


def test_a_container_made_before_options_were_kept_says_so(mr):
    """config.json of version 1 has no options: start cannot know the flags."""
    mr.load("busybox")
    cid = mr.ok("create", "--name", "old", "busybox", "true").stdout.strip()
    path = mr.root / "containers" / cid / "config.json"
    doc = json.loads(path.read_text())
    del doc["options"]
    doc["version"] = 1
    path.write_text(json.dumps(doc))
    assert mr.ok("ps", "-a").lines[1].split()[-1] == "old"        # it still loads
    result = mr("start", "old")
    assert result.returncode != 0 and "made by an older minirun" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    doc["version"] = 2                                             # a version-2 document must have it
    path.write_text(json.dumps(doc))
    assert "has no 'options'" in mr("inspect", cid[:12]).stderr


@pytest.mark.parametrize("args", [("--no-such-flag", "busybox"), ("nosuch-image-here",)])
def test_create_errors_are_one_line_and_leave_nothing(mr, args):
    mr.load("busybox")
    result = mr("create", "--pull", "never", *args)
    assert result.returncode == 125, result
    assert "Traceback" not in result.stderr
    assert mr.ok("ps", "-a", "-q").stdout == ""
    assert os.listdir(mr.root / "containers") == []
