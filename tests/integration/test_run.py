"""minirun run: namespaces, exit codes, config handling, and the upper dir after a run."""

from __future__ import annotations

import json
import shutil
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from minirun.layer.tree import compare, directory, file, snapshot, symlink, whiteout
from minirun.linux.overlay import kernel_has_lowerdir_plus

from .conftest import REPO, overlay_mounts_under
from .imagebuild import busybox_layer, entry, layer_tar, write_layout

FIXTURE_LAYERS = REPO / "rootfs-fixtures" / "layers"


def upper_of(mr, name: str) -> Path:
    return Path(mr.inspect(name)["UpperDir"])


def wait_running(mr, name: str, timeout: float = 10) -> int:
    """The host pid of the container's PID 1, once it runs."""
    return mr.running_state(name, timeout)["pid"]


def wait_gone(pid: int, timeout: float = 2) -> bool:
    """Whether the process pid has ended within timeout seconds."""
    for _ in range(int(timeout / 0.02)):
        if not Path(f"/proc/{pid}").exists():
            return True
        time.sleep(0.02)
    return not Path(f"/proc/{pid}").exists()


# ---------------------------------------------------------------- exit codes

@pytest.mark.kernel
def test_exit_codes_follow_docker_run(mr):
    mr.load("busybox")
    assert mr("run", "--rm", "busybox", "sh", "-c", "exit 3").returncode == 3
    missing = mr("run", "--rm", "busybox", "no-such-command")
    assert missing.returncode == 127
    assert "no-such-command" in missing.stderr and "not found" in missing.stderr
    not_exec = mr("run", "--rm", "busybox", "/etc/passwd")
    assert not_exec.returncode == 126 and "Permission denied" in not_exec.stderr
    absent = mr("run", "--rm", "busybox", "/no/such/file")
    assert absent.returncode == 127 and "exec /no/such/file: executable file not found" in absent.stderr
    unknown = mr("run", "--rm", "--pull", "never", "nosuchimage", "true")
    assert unknown.returncode == 125 and "minirun load" in unknown.stderr


def test_killed_by_signal_exits_128_plus_n(mr):
    mr.load("busybox")
    proc = mr.popen("run", "--name", "victim", "busybox", "sleep", "30",
                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    pid = wait_running(mr, "victim")
    os.kill(pid, signal.SIGKILL)
    assert proc.wait(timeout=10) == 128 + signal.SIGKILL
    assert mr.only_state()["exit_code"] == 137


# ---------------------------------------------------------------- namespaces

@pytest.mark.kernel
def test_pid_1_hostname_and_host_pids_invisible(mr):
    mr.load("busybox")
    script = f"echo $$; hostname; test -e /proc/{os.getpid()} && echo host-pid-visible; ls /proc | grep -c '^[0-9]'"
    out = mr.ok("run", "--name", "ns", "busybox", "sh", "-c", script).lines
    cid = mr.inspect("ns")["Id"]
    assert out[0] == "1"
    assert out[1] == cid[:12]
    assert "host-pid-visible" not in out
    assert int(out[-1]) <= 3            # sh, ls, grep at most
    assert socket.gethostname() != cid[:12]
    named = mr.ok("run", "--rm", "--hostname", "box1", "busybox", "hostname").stdout.strip()
    assert named == "box1"


def test_ipc_namespace_is_new(mr):
    mr.load("busybox")
    inside = mr.ok("run", "--rm", "busybox", "readlink", "/proc/self/ns/ipc").stdout.strip()
    assert inside and inside != os.readlink("/proc/self/ns/ipc")


def test_dev_proc_sys_inside(mr):
    mr.load("busybox")
    script = ("ls /dev | sort | tr '\\n' ' '; echo; echo x > /dev/null && head -c 4 /dev/zero | wc -c; "
              "touch /sys/x 2>&1 | grep -c 'Read-only'; stat -c %a /dev/shm; test -c /dev/pts/ptmx && echo pts")
    lines = mr.ok("run", "--rm", "busybox", "sh", "-c", script).lines
    for name in ("null", "zero", "full", "random", "urandom", "tty", "ptmx", "pts", "shm"):
        assert name in lines[0].split(), f"/dev/{name} missing: {lines[0]}"
    assert lines[1] == "4"
    assert lines[2] == "1"
    assert lines[3] == "1777"
    assert lines[4] == "pts"


@pytest.mark.parametrize("mode", ["pivot_root", "chroot"])
def test_root_switch(mr, mode):
    mr.load("busybox")
    flags = ["--chroot"] if mode == "chroot" else []
    proc = mr.popen("run", "--name", mode, *flags, "busybox", "sleep", "30",
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        pid = wait_running(mr, mode)
        deadline = time.monotonic() + 10        # recorded running at the fork: wait for the exec
        while Path(f"/proc/{pid}/comm").read_text() != "sleep\n" and time.monotonic() < deadline:
            time.sleep(0.02)
        root = os.readlink(f"/proc/{pid}/root")
        merged = mr.inspect(mode)["MergedDir"]
        assert merged == f"/proc/{pid}/root" and os.path.isfile(f"{merged}/bin/busybox")
        mounts = Path(f"/proc/{pid}/mountinfo").read_text().splitlines()
    finally:
        mr("rm", "-f", mode)
        proc.wait(timeout=10)
    if mode == "pivot_root":
        # the overlay is the namespace's root mount and the host's tree is detached
        assert root == "/"
        assert " / / " in mounts[0] and " - overlay " in mounts[0]
    else:
        assert root == str(mr.root / "mnt")          # the store's shared mount point


@pytest.mark.parametrize("user", ["0", "65534"])   # setuid clears the parent-death signal
def test_minirun_killed_leaves_no_mount_and_no_process(mr, user):
    mr.load("busybox")
    proc = mr.popen("run", "--name", "orphan", "-u", user, "busybox", "sleep", "60",
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pid = wait_running(mr, "orphan")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert wait_gone(pid), "the container outlived its runtime"
    assert overlay_mounts_under(mr.root) == []
    state = mr.only_state()
    assert state["status"] == "exited" and state["exit_code"] is None
    mr.ok("rm", "orphan")


# ---------------------------------------------------------------- image config

def test_config_image_runs_with_its_env_entrypoint_workdir_and_user(mr):
    mr.load("config")
    assert mr.ok("run", "--rm", "config").stdout.strip() == "hello from /srv/app as 1000"
    out = mr.ok("run", "--rm", "-u", "0", "-w", "/tmp", "-e", "GREETING=bye", "config").stdout.strip()
    assert out == "bye from /tmp as 0"
    env = mr.ok("run", "--rm", "--entrypoint", "env", "config").lines
    assert "EMPTY=" in env and "GREETING=hello" in env and "HOME=/home/app" in env
    named = mr.ok("run", "--rm", "-u", "app", "--entrypoint", "id", "config").stdout
    assert "uid=1000(app)" in named


def test_stdin_and_stdout_pass_through(mr):
    mr.load("busybox")
    assert mr.ok("run", "--rm", "-i", "busybox", "cat", input="hello\nworld\n").stdout == "hello\nworld\n"
    assert mr.ok("run", "--rm", "busybox", "cat", input="not for it\n").stdout == ""   # no -i: /dev/null


def test_rm_flag_removes_the_container(mr):
    mr.load("busybox")
    mr.ok("run", "--rm", "--name", "gone", "busybox", "true")
    assert mr.ok("ps", "-a", "-q").stdout == ""
    assert os.listdir(mr.root / "containers") == []


# ---------------------------------------------------------------- upper dir and diff

def test_true_writes_nothing(mr):
    mr.load("myapp")
    mr.ok("run", "--name", "t", "myapp", "/bin/true")
    assert snapshot(str(upper_of(mr, "t"))) == {}
    assert mr.ok("diff", "t").stdout == ""


@pytest.mark.kernel
def test_upper_dir_holds_exactly_what_the_run_wrote(mr):
    mr.load("myapp")
    script = "; ".join([
        "echo new > /new.txt",
        "echo extra >> /etc/runtime.conf",
        "chmod 600 /app/main.sh",
        "ln /app/main.sh /app/hard",
        "ln -s main.sh /app/sym",
        "rm /etc/group",
        "rm /bin/vi",
        "mkdir -p /newdir/sub && echo deep > /newdir/sub/f",
        "rm -r /usr/lib/runtime/v1 && mkdir /usr/lib/runtime/v1 && echo fresh > /usr/lib/runtime/v1/fresh",
    ])
    mr.ok("run", "--name", "w", "myapp", "sh", "-c", script)
    main_sh = (FIXTURE_LAYERS / "myapp-app/app/main.sh").read_bytes()
    runtime_conf = (FIXTURE_LAYERS / "app-runtime/etc/runtime.conf").read_bytes() + b"extra\n"
    root = {"uid": 0, "gid": 0}
    expected = {
        "/new.txt": file(b"new\n", mode=0o644, **root),
        "/etc": directory(opaque=False),
        "/etc/runtime.conf": file(runtime_conf),
        "/etc/group": whiteout(),
        "/app": directory(opaque=False),
        "/app/main.sh": file(main_sh, mode=0o600, nlink=2),
        "/app/hard": file(main_sh, mode=0o600, nlink=2),
        "/app/sym": symlink("main.sh"),
        "/bin": directory(),
        "/bin/vi": whiteout(),
        "/newdir": directory(opaque=False, mode=0o755),
        "/newdir/sub": directory(),
        "/newdir/sub/f": file(b"deep\n"),
        "/usr": directory(),
        "/usr/lib": directory(),
        "/usr/lib/runtime": directory(opaque=False),
        "/usr/lib/runtime/v1": directory(opaque=True),
        "/usr/lib/runtime/v1/fresh": file(b"fresh\n"),
    }
    assert compare(snapshot(str(upper_of(mr, "w"))), expected) == []
    assert mr.ok("diff", "w").lines == [
        "C /app", "A /app/hard", "C /app/main.sh", "A /app/sym",
        "C /bin", "D /bin/vi",
        "C /etc", "D /etc/group", "C /etc/runtime.conf",
        "A /new.txt",
        "A /newdir", "A /newdir/sub", "A /newdir/sub/f",
        "C /usr", "C /usr/lib", "C /usr/lib/runtime", "C /usr/lib/runtime/v1",
        "A /usr/lib/runtime/v1/fresh",
    ]
    as_json = json.loads(mr.ok("diff", "--json", "w").stdout)
    assert {"Path": "/etc/group", "Kind": "D"} in as_json


def test_lower_layers_never_change_through_a_run(mr):
    mr.load("myapp")
    layers = mr.root / "layers" / "sha256"
    before = {key: snapshot(str(layers / key / "diff")) for key in mr.layer_dirs()}
    mr.ok("run", "--rm", "myapp", "sh", "-c", "rm -rf /usr /etc/*; echo x > /app/main.sh; chmod -R 700 /bin")
    after = {key: snapshot(str(layers / key / "diff")) for key in mr.layer_dirs()}
    assert before == after


@pytest.mark.kernel
def test_whiteouts_image_hides_what_its_layers_delete(mr):
    mr.load("whiteouts")
    out = mr.ok("run", "--rm", "whiteouts", "sh", "-c",
                "ls /data; echo --; ls /replaced; echo --; ls -d /olddir /data/remove-me.txt 2>&1 | grep -c 'No such'")
    data, replaced, missing = out.stdout.split("--\n")
    assert data.split() == ["keep.txt"]
    assert replaced.split() == ["new.txt"]
    assert missing.strip() == "2"


def test_mount_points_minirun_creates_are_not_in_diff(mr, tmp_path):
    layout = tmp_path / "bare"
    write_layout(layout, [busybox_layer(with_mount_points=False)], {"Cmd": ["sh"]})
    mr.ok("load", str(layout))
    mr.ok("run", "--name", "b", "bare", "sh", "-c", "ls /proc/self >/dev/null && echo hi > /hi")
    assert mr.ok("diff", "b").lines == ["A /hi"]


# ---------------------------------------------------------------- many layers

@pytest.mark.kernel
@pytest.mark.parametrize("api", ["auto", "new", "legacy"])
def test_200_layers_run_with_each_mount_strategy(mr, api):
    mr.load("layers200")
    argv = ("run", "--rm", "layers200", "sh", "-c",
            "ls /layers | wc -l; cat /layers/199.txt /layers/1.txt; head -1 /proc/self/mountinfo")
    env = {"MINIRUN_OVERLAY_API": api}
    if api == "new" and not kernel_has_lowerdir_plus():
        refused = mr(*argv, env=env)
        assert refused.returncode == 125 and "rejects overlay lowerdir+" in refused.stderr, refused.stderr
        assert len(refused.stderr.splitlines()) == 1
        return
    lines = mr.ok(*argv, env=env).lines
    assert lines[:3] == ["199", "199", "1"]
    # auto mounts with lowerdir+ where the kernel has it (6.8+), else as legacy does
    uses_links = "lowerdir=l/0:" in lines[3]
    assert uses_links == (api == "legacy" or not kernel_has_lowerdir_plus()), lines[3][:200]


@pytest.mark.kernel
@pytest.mark.parametrize("api", ["auto", "legacy"])
def test_only_rm_containers_mount_a_volatile_overlay(mr, api):
    """--rm: the upper dir goes when the container does, so its overlay skips syncs
    (and the syncfs of its unmount); a kept container's upper dir stays durable."""
    mr.load("busybox")
    show_root = ["sh", "-c", "grep ' / / ' /proc/self/mountinfo"]
    env = {"MINIRUN_OVERLAY_API": api}
    removed = mr.ok("run", "--rm", "busybox", *show_root, env=env).stdout
    kept = mr.ok("run", "--name", "k", "busybox", *show_root, env=env).stdout
    assert "overlay" in removed and "overlay" in kept
    # the kernel shows it as ",volatile" (Linux 5.10-6.x) or ",fsync=volatile" (later)
    assert ",volatile" in removed or ",fsync=volatile" in removed
    assert "volatile" not in kept
    # the kernel marks a volatile work dir so that it is never mounted again
    assert not (upper_of(mr, "k").parent / "work" / "work" / "incompat").exists()
    mr.ok("rm", "k")


def test_inspect_lists_upper_work_and_lowers_topmost_first(mr):
    mr.load("myapp")
    mr.ok("run", "--name", "i", "myapp", "true")
    info = mr.inspect("i")
    assert Path(info["UpperDir"]).is_dir() and Path(info["WorkDir"]).is_dir()
    assert info["MergedDir"] == ""              # mounted only while it runs, in its namespace
    # the init layer (mount points the image lacks, such as /etc/hosts) sits on top
    assert len(info["LowerDirs"]) == 4 and info["LowerDirs"][0].endswith("/init")
    assert "/etc/hosts" in snapshot(info["LowerDirs"][0])
    image = json.loads(mr.ok("images", "--format", "json").lines[0])
    top = snapshot(info["LowerDirs"][1])
    assert "/app/main.sh" in top                   # myapp's own layer comes first
    assert "/bin/busybox" in snapshot(info["LowerDirs"][-1])
    assert image["Layers"] == 3
    assert mr("rm", "nosuch").returncode == 1
    mr.ok("rm", "i")
    assert not Path(info["UpperDir"]).exists()


def test_foreign_architecture_warns_and_exits_126(mr, tmp_path):
    import platform
    foreign = "arm64" if platform.machine() == "x86_64" else "amd64"
    machine = 183 if foreign == "arm64" else 62           # EM_AARCH64 / EM_X86_64
    elf = bytearray(64)
    elf[:4] = b"\x7fELF"
    elf[4], elf[5], elf[6] = 2, 1, 1                     # 64-bit, little endian, version 1
    elf[16:18] = (2).to_bytes(2, "little")               # ET_EXEC
    elf[18:20] = machine.to_bytes(2, "little")
    layer = layer_tar([entry("hello", data=bytes(elf), mode=0o755)])
    write_layout(tmp_path / "foreign", [busybox_layer(), layer], {"Cmd": ["/hello"]}, arch=foreign)
    mr.ok("load", str(tmp_path / "foreign"))
    result = mr("run", "--rm", "foreign")
    assert result.returncode == 126
    assert "WARNING" in result.stderr and foreign in result.stderr


def test_store_on_overlayfs_is_refused(mr, tmp_path):
    from minirun import linux
    for sub in ("l", "u", "w", "m"):
        (tmp_path / sub).mkdir()
    merged = tmp_path / "m"
    linux.mount("overlay", str(merged), "overlay", 0,
                f"lowerdir={tmp_path / 'l'},upperdir={tmp_path / 'u'},workdir={tmp_path / 'w'}")
    try:
        result = mr("load", mr.fixture_path("busybox"), env={"MINIRUN_ROOT": str(merged / "store")})
        assert result.returncode == 3
        assert "overlayfs" in result.stderr and "MINIRUN_ROOT" in result.stderr
    finally:
        linux.umount2(str(merged), linux.MNT_DETACH)


def test_the_command_starts_with_no_signal_ignored(mr):
    """Python ignores SIGPIPE and SIGXFSZ; without a reset, `yes | head` would never end."""
    mr.load("busybox")
    assert mr.ok("run", "--rm", "busybox", "sh", "-c", "yes | head -c 4", timeout=20).stdout == "y\ny\n"
    out = mr.ok("run", "--rm", "busybox", "grep", "SigIgn", "/proc/self/status", timeout=20).stdout
    assert out.strip() == "SigIgn:\t0000000000000000"
    mr.ok("run", "-d", "--name", "s", "busybox", "sleep", "30")
    mr.running_state("s")
    out = mr.ok("exec", "s", "grep", "SigIgn", "/proc/self/status", timeout=20).stdout
    assert out.strip() == "SigIgn:\t0000000000000000"


def test_a_run_imports_only_what_starting_a_container_needs(mr):
    """Start latency (benchmarks/start.py): the installed command, bin/minirun, runs a
    container without the stdlib modules that cost ms to import (re with enum and
    functools, json, contextlib, socket, signal's enums) or the heavy dependencies."""
    import sys
    mr.load("busybox")
    mr.ok("run", "--rm", "busybox", "true")      # compiles the seccomp filter once (ctypes, json)
    # PYTHONPATH: bin/minirun's own directory comes first on sys.path, so without it the
    # test would time the installed minirun, not this checkout's
    proc = subprocess.run([sys.executable, "-X", "importtime", str(REPO / "bin" / "minirun"),
                           "run", "--rm", "busybox", "true"], env=dict(mr.env, PYTHONPATH=str(REPO)),
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if "|" in line}
    assert {"minirun.run.start", "minirun.sandbox.process", "_ctypes", "_prctl"} <= imported
    heavy = {"re", "json", "enum", "functools", "contextlib", "collections", "socket", "signal",
             "ctypes", "struct", "fcntl", "typing", "dataclasses", "importlib",
             "typer", "click", "rich", "pyroute2", "prctl"}
    assert not imported & heavy


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace to hold the child before exec")
def test_a_child_stuck_before_exec_holds_no_store_lock(mr):
    """The shared gc lock is held while a run plans and writes its container, not by
    its child: a child blocked before exec (here held by strace for 60 s in the open of
    /etc/passwd, which it reads to resolve the user: an openat2 of etc/passwd in its
    root; a FIFO there no longer blocks it) must not keep prune and rmi waiting."""
    mr.load("busybox")
    proc = subprocess.Popen(["strace", "-f", "-qq", "-o", "/dev/null", "-P", "etc/passwd", "-e", "trace=openat2",
                             "-e", "inject=openat2:delay_enter=60000000",
                             sys.executable, "-m", "minirun", "run", "--name", "stuck", "busybox", "true"],
                            env=mr.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    runtime = None
    try:
        pid = wait_running(mr, "stuck")
        time.sleep(0.3)                          # the child is in the delayed open by now
        assert proc.poll() is None and Path(f"/proc/{pid}").exists()
        lock = mr.root / "locks" / "gc.lock"
        held_by_child = [fd for fd in os.listdir(f"/proc/{pid}/fd")
                         if os.path.realpath(f"/proc/{pid}/fd/{fd}") == str(lock)]
        assert held_by_child == []
        result = mr("image", "prune", "-f", env={"MINIRUN_LOCK_TIMEOUT": "2"})
        assert result.returncode == 0, result.stderr
        runtime = int(Path(f"/proc/{pid}/status").read_text().split("PPid:")[1].split()[0])
    finally:
        if runtime:
            os.kill(runtime, signal.SIGKILL)     # the child follows it (parent-death signal)...
        proc.send_signal(signal.SIGKILL)         # ...once strace, dying, lets go of it
        proc.wait(timeout=30)
    assert wait_gone(pid), "the container outlived its runtime"
    assert overlay_mounts_under(mr.root) == []
    mr.ok("rm", "-f", "stuck")
