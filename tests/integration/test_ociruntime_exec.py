"""minirun-oci exec and ps (issue 18) on the real kernel: the exit code, env, cwd and
user of the process, --process files (capabilities, rlimits, noNewPrivileges), the
container's seccomp profile, --detach with --pid-file, a terminal over
--console-socket, and the refusals (unknown id, a created or stopped container, a
relative cwd), each one line with a non-zero exit."""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from pathlib import Path

import pytest

from .test_ociruntime import Oci, _alive, _args, _config, _wait_status, bundle, oci  # noqa: F401 - fixtures

pytestmark = pytest.mark.root


def _running(oci: Oci, bundle: Path, cid: str = "x1", change=None) -> int:
    _config(bundle, _args("/bin/sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.1; done"))
    if change is not None:
        _config(bundle, change)
    oci.ok("create", "--bundle", str(bundle), cid)
    oci.ok("start", cid)
    return oci.state(cid)["pid"]


def _one_line(done) -> str:
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    return lines[0]


def test_exec_returns_the_exit_code_and_passes_stdio(oci, bundle):
    _running(oci, bundle)
    done = oci("exec", "x1", "sh", "-c", "echo out; echo err >&2; exit 7")
    assert (done.returncode, done.stdout, done.stderr) == (7, "out\n", "err\n")
    done = oci("exec", "x1", "sh", "-c", "kill -KILL $$")
    assert done.returncode == 128 + 9


def test_exec_runs_inside_the_container(oci, bundle):
    pid = _running(oci, bundle, change=lambda d: d.update(hostname="in-box"))
    done = oci.ok("exec", "x1", "sh", "-c", "hostname; cat /proc/1/cmdline | tr '\\0' ' '; echo; "
                  "echo $$")
    name, init, own = done.stdout.splitlines()
    assert name == "in-box" and init.startswith("/bin/sh -c trap")   # its PID 1 is the container's
    assert 1 < int(own) < 100                                          # numbered in its PID namespace
    for kind in ("mnt", "pid", "uts", "ipc", "net"):
        assert os.stat(f"/proc/{pid}/ns/{kind}").st_ino != os.stat(f"/proc/self/ns/{kind}").st_ino


def test_exec_env_cwd_user(oci, bundle):
    _running(oci, bundle)
    done = oci.ok("exec", "--cwd", "/tmp", "-e", "GREETING=hi", "--env", "OTHER=2", "-u", "1000:1001",
                  "--additional-gids", "1002", "x1", "sh", "-c", "pwd; echo $GREETING $OTHER; id -u; id -G; "
                  "grep CapEff /proc/self/status")
    assert done.stdout.splitlines() == ["/tmp", "hi 2", "1000", "1001 1002", "CapEff:\t0000000000000000"]


def test_exec_process_file_caps_rlimits_no_new_privileges(oci, bundle, tmp_path):
    _running(oci, bundle)
    process = {"args": ["sh", "-c", "grep -E '^(CapEff|CapBnd|NoNewPrivs)' /proc/self/status; ulimit -n"],
               "cwd": "/", "env": ["PATH=/bin"], "user": {"uid": 0, "gid": 0}, "noNewPrivileges": True,
               "capabilities": {"bounding": ["CAP_KILL", "CAP_CHOWN"], "effective": ["CAP_KILL"],
                                "permitted": ["CAP_KILL"]},
               "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 77, "hard": 88}]}
    (tmp_path / "process.json").write_text(json.dumps(process))
    done = oci.ok("exec", "--process", str(tmp_path / "process.json"), "x1")
    assert done.stdout.splitlines() == ["CapEff:\t0000000000000020", "CapBnd:\t0000000000000021",
                                        "NoNewPrivs:\t1", "77"]


def test_exec_uses_the_containers_seccomp_profile(oci, bundle):
    profile = {"defaultAction": "SCMP_ACT_ALLOW",
               "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}
    _running(oci, bundle, change=lambda d: d["linux"].update(seccomp=profile))
    done = oci("exec", "x1", "mkdir", "/tmp/blocked")
    assert done.returncode != 0 and "Operation not permitted" in done.stderr
    assert not (bundle / "rootfs" / "tmp" / "blocked").exists()
    assert oci.ok("exec", "x1", "grep", "^Seccomp:", "/proc/self/status").stdout.split() == ["Seccomp:", "2"]


def test_exec_cwd_is_checked(oci, bundle):
    _running(oci, bundle)
    assert "not absolute" in _one_line(oci("exec", "--cwd", "tmp", "x1", "pwd"))
    assert "No such file" in _one_line(oci("exec", "--cwd", "/nowhere", "x1", "pwd"))
    assert oci.ok("exec", "--cwd", "/../../..", "x1", "pwd").stdout == "/\n"      # the root's .. is the root
    assert "no such executable" in _one_line(oci("exec", "x1", "no-such-program"))


def test_exec_refuses_unknown_created_and_stopped_containers(oci, bundle):
    assert "does not exist" in _one_line(oci("exec", "nosuch", "true"))
    _config(bundle, _args("/bin/sh", "-c", "exit 0"))
    oci.ok("create", "--bundle", str(bundle), "c1")
    assert "created, not running" in _one_line(oci("exec", "c1", "true"))
    oci.ok("start", "c1")
    _wait_status(oci, "c1", "stopped")
    assert "stopped" in _one_line(oci("exec", "c1", "true"))
    assert "stopped" in _one_line(oci("ps", "c1"))
    assert "exec needs a container ID" in _one_line(oci("exec"))


def test_exec_detach_writes_the_pid_file_and_ps_lists_it(oci, bundle, tmp_path):
    init = _running(oci, bundle, change=_args("/bin/sleep", "60"))      # no processes coming and going
    pid_file = tmp_path / "exec.pid"
    start = time.monotonic()
    oci.ok("exec", "--detach", "--pid-file", str(pid_file), "x1", "sleep", "30")
    assert time.monotonic() - start < 10
    pid = int(pid_file.read_text())
    assert _alive(pid)
    assert os.stat(f"/proc/{pid}/ns/pid").st_ino == os.stat(f"/proc/{init}/ns/pid").st_ino
    assert Path(f"/proc/{pid}/cgroup").read_text() == Path(f"/proc/{init}/cgroup").read_text()
    assert Path(f"/proc/{pid}/root").resolve() == Path(f"/proc/{init}/root").resolve()
    listed = json.loads(oci.ok("ps", "--format", "json", "x1").stdout)
    assert init in listed and pid in listed
    table = oci.ok("ps", "x1").stdout.splitlines()
    assert table[0].split()[1] == "PID" and {int(line.split()[1]) for line in table[1:]} == set(listed)
    oci.ok("delete", "--force", "x1")
    deadline = time.monotonic() + 5
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid)                      # the container's PID namespace went with its init


def test_exec_terminal_over_the_console_socket(oci, bundle, tmp_path):
    _running(oci, bundle)
    path = str(tmp_path / "console.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    server.settimeout(20)
    import subprocess
    import sys
    proc = subprocess.Popen([sys.executable, "-m", "minirun.ociruntime", "--root", str(oci.root), "exec", "-t",
                             "--console-socket", path, "x1", "sh", "-c", "tty; exit 3"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        conn, _ = server.accept()
        _, fds, _, _ = socket.recv_fds(conn, 1, 1)
        conn.close()
        assert len(fds) == 1
        output = b""
        while True:
            try:
                chunk = os.read(fds[0], 1024)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
        os.close(fds[0])
        assert proc.wait(timeout=20) == 3
        assert output.decode().strip().startswith("/dev/pts/")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        server.close()


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs util-linux's setpriv")
def test_exec_with_capabilities_minirun_oci_lacks_is_refused(oci, bundle, tmp_path):
    _running(oci, bundle)
    spec = json.loads((bundle / "config.json").read_text())["process"]
    spec["args"] = ["/bin/true"]
    for kind in ("bounding", "permitted", "effective"):
        spec["capabilities"][kind] = [*spec["capabilities"].get(kind, []), "CAP_SYS_NICE"]
    (tmp_path / "process.json").write_text(json.dumps(spec))
    oci.wrapper = ["setpriv", "--bounding-set", "-sys_nice"]
    line = _one_line(oci("exec", "--process", str(tmp_path / "process.json"), "x1"))
    assert "exec: process.capabilities.permitted: CAP_SYS_NICE" in line
    oci.wrapper = []
    oci.ok("exec", "--process", str(tmp_path / "process.json"), "x1")
