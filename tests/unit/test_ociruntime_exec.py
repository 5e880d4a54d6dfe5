"""minirun-oci exec's and ps's flag parsing, and how exec builds its process from the
bundle's and the flags (ociruntime/exec.py, ps.py); the cgroup membership parser."""

from __future__ import annotations

import json

import pytest

from minirun.errors import UsageError
from minirun.linux.cgroups import membership
from minirun.ociruntime import cli, ps
from minirun.ociruntime import exec as oci_exec

BUNDLE = {"args": ["sleep", "9"], "cwd": "/", "env": ["PATH=/bin", "A=1"], "terminal": True,
          "user": {"uid": 5, "gid": 6}, "capabilities": {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"]}}


def test_flags_stop_at_the_id_and_repeat():
    opts, cid, args = oci_exec.parse(["-e", "A=2", "--env=B=3", "--detach", "--pid-file", "/p", "-t",
                                      "--cap", "CAP_CHOWN", "-c", "CAP_KILL", "--user", "1:2", "c1",
                                      "sh", "-c", "--cwd"])
    assert cid == "c1" and args == ["sh", "-c", "--cwd"]
    assert opts == {"env": ["A=2", "B=3"], "detach": True, "pid-file": "/p", "tty": True,
                    "cap": ["CAP_CHOWN", "CAP_KILL"], "user": "1:2"}


def test_process_flag_and_double_dash():
    opts, cid, args = oci_exec.parse(["--process", "/f.json", "-d", "--", "c2"])
    assert (opts, cid, args) == ({"process": "/f.json", "detach": True}, "c2", [])


@pytest.mark.parametrize("argv, words", [([], "needs a container ID"), (["--bogus", "c"], "unknown flag --bogus"),
                                         (["--cwd"], "needs a value"), (["-d"], "needs a container ID")])
def test_bad_flags_are_one_line(argv, words):
    with pytest.raises(UsageError, match=words):
        oci_exec.parse(argv)


def test_build_takes_the_bundles_process_with_args_and_flags():
    opts, _, args = oci_exec.parse(["-e", "A=2", "--cwd", "/tmp", "-u", "7", "--cap", "CAP_CHOWN",
                                    "--no-new-privs", "c", "echo", "hi"])
    process = oci_exec.build(opts, args, json.loads(json.dumps(BUNDLE)))
    assert process["args"] == ["echo", "hi"] and process["cwd"] == "/tmp"
    assert process["env"] == ["PATH=/bin", "A=1", "A=2"]
    assert process["user"]["uid"] == 7 and process["user"]["gid"] == 6
    assert process["terminal"] is False                  # only -t asks for one
    assert process["capabilities"]["bounding"] == ["CAP_KILL", "CAP_CHOWN"]
    assert process["capabilities"]["permitted"] == ["CAP_CHOWN"] and process["noNewPrivileges"] is True
    assert BUNDLE["capabilities"]["bounding"] == ["CAP_KILL"]           # the bundle's is not changed


def test_build_reads_and_checks_a_process_file(tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"args": ["true"], "cwd": "relative"}))
    with pytest.raises(UsageError, match="exec process: process.cwd 'relative' is not absolute"):
        oci_exec.build({"process": str(path)}, [], {})
    path.write_text("{bad")
    with pytest.raises(UsageError, match="not valid JSON"):
        oci_exec.build({"process": str(path)}, [], {})
    with pytest.raises(UsageError, match="needs a command"):
        oci_exec.build({}, [], BUNDLE)
    with pytest.raises(UsageError, match="UID"):
        oci_exec.build({"user": "root"}, ["true"], BUNDLE)


def test_ps_flags():
    assert ps.parse(["c1"]) == ("table", "c1", [])
    assert ps.parse(["--format", "json", "c1"]) == ("json", "c1", [])
    assert ps.parse(["-f=table", "c1", "--", "-o", "pid"]) == ("table", "c1", ["-o", "pid"])
    with pytest.raises(UsageError, match="unknown"):
        ps.parse(["--format", "yaml", "c1"])
    with pytest.raises(UsageError, match="needs a container ID"):
        ps.parse(["--format", "json"])


def test_cli_reaches_exec_and_ps(tmp_path, capsys):
    assert cli.main(["--root", str(tmp_path), "exec", "nosuch", "true"]) != 0
    assert "container nosuch does not exist" in capsys.readouterr().err
    assert cli.main(["--root", str(tmp_path), "ps", "--format", "json", "nosuch"]) != 0
    assert "container nosuch does not exist" in capsys.readouterr().err


def test_membership_places_cgroups_on_their_mounts(tmp_path):
    (tmp_path / "7").mkdir()
    (tmp_path / "7" / "cgroup").write_text("12:pids:/a/b\n4:cpu,cpuacct:/c\n1:name=systemd:/s\n0::/u\n")
    (tmp_path / "mountinfo").write_text(
        "30 25 0:26 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n"
        "31 25 0:27 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n"
        "32 25 0:28 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
        "33 25 0:29 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd\n")
    dirs = membership.of(7, str(tmp_path / "mountinfo"), proc=str(tmp_path))
    assert dirs == ["/sys/fs/cgroup/pids/a/b", "/sys/fs/cgroup/cpu,cpuacct/c", "/sys/fs/cgroup/systemd/s",
                    "/sys/fs/cgroup/unified/u"]
