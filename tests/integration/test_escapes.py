"""Attacks on the trust boundary, run the way an attacker would run them: a
hostile image, a hostile container, a careless caller. Each one aims at a
canary the test made (a directory, a file, a mount only the host has, or a
jail whose "/" is a directory of the test's), never at a real system path.

    working dir     -w / WorkingDir / exec -w through a caller's descriptor
    exec window     a watcher in the container races `minirun exec` children
    mount targets   /proc, /dev, /sys, /etc files, -v and --tmpfs through
                    symlinks in the image, inside a jail; none in /proc
    devices         the container's nodes are its own; -d output is a pipe;
                    exec -t takes no /dev/ptmx the container placed
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
from .test_process import run_in_pty

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

def watcher_report(mr, name: str = "w") -> str:
    """procwatch's /report once it has finished (its last line says "scanned N")."""
    report = ""
    for _ in range(300):
        report = mr("exec", name, "cat", "/report").stdout
        if "scanned" in report:
            break
        time.sleep(0.1)
    return report


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
              "sh", "-c", f"procwatch 25 {target} {marker} > /report; sleep 600")
        for _ in range(40):
            mr.ok("exec", "w", "true")
        report = watcher_report(mr)
    finally:
        subprocess.run(["umount", str(marker_dir)], check=True)
    assert "scanned" in report, report
    assert not target.exists(), target.read_text()
    assert "root " not in report and "mountinfo " not in report, report


def host_interpreter() -> str:
    """DEV:INO of the python binary minirun runs on, as stat(2) inside a container sees it."""
    st = os.stat(os.path.realpath(sys.executable))
    return f"{st.st_dev}:{st.st_ino}"


@pytest.mark.parametrize("how", ["run --init", "exec", "exec -t"])
def test_no_process_beside_the_command_runs_the_hosts_interpreter(mr, tmp_path, canary_dir, how):
    """--init's PID 1 and exec's waiter stay beside the command. Were either the host's
    python, a container with CAP_SYS_PTRACE could open /proc/PID/exe, a host file, and
    keep it until it can be written (CVE-2019-5736's kind). They are the trampoline:
    a sealed memfd. A watcher compares every /proc/PID/exe, PID 1's too, with python."""
    watcher = build_probe(tmp_path, "procwatch")
    load_image(mr, tmp_path, "watch", [entry("bin/procwatch", data=watcher, mode=0o755)])
    seconds = 6 if how == "run --init" else 15
    watch = f"procwatch {seconds} {canary_dir}/pwned no-marker {host_interpreter()} > /report"
    init = ("--init",) if how == "run --init" else ()
    mr.ok("run", "-d", "--name", "w", "--cap-add", "SYS_PTRACE", *init, "localhost/watch",
          "sh", "-c", f"{watch}; sleep 60")
    if how == "exec":
        for _ in range(25):
            mr.ok("exec", "w", "sh", "-c", "sleep 0.1")
    elif how == "exec -t":
        for _ in range(5):
            code, _ = run_in_pty(mr, "exec", "-t", "w", "sh", "-c", "sleep 0.5")
            assert code == 0
    report = watcher_report(mr)
    assert "scanned" in report, report
    assert "exe " not in report, f"a process of the container ran the host's python: {report}"
    assert not (canary_dir / "pwned").exists()


def test_exec_into_a_container_still_on_the_hosts_root_is_refused(mr, canary_dir):
    """A container's state says running from the fork of its PID 1 on, before that
    process leaves the host's mount namespace and root. An exec in that window would
    run its command on the host's files. The window is made wide here: the state
    names a process of the host's."""
    import json
    from minirun.linux.procfs import start_time
    mr.load("busybox")
    cid = mr.ok("run", "-d", "--name", "c", "busybox", "sleep", "60").stdout.strip()
    path = mr.root / "containers" / cid / "state.json"
    saved = path.read_text()
    host = subprocess.Popen(["sleep", "30"])
    try:
        state = json.loads(saved)
        state.update(pid=host.pid, pid_start=start_time(host.pid))
        path.write_text(json.dumps(state))
        result = mr("exec", "c", "sh", "-c", f"echo written > {canary_dir}/pwned")
    finally:
        path.write_text(saved)
        host.kill()
        host.wait()
    assert not (canary_dir / "pwned").exists(), "exec ran on the host's root"
    one_line_refusal(result, "still starting")
    mr.ok("rm", "-f", "c")


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


# ---------------------------------------------------------------- 3. mount targets, in a jail

JAIL_SCRIPT = r"""
set -e
J=$1; DEV=$2; MIRRORED=$3; shift 3
mount --make-rprivate /
mount --bind "$J" "$J"
for d in $MIRRORED; do
  if [ -d "/$d" ] && [ ! -L "/$d" ]; then mount --rbind "/$d" "$J/$d"; fi
done
mount -t proc proc "$J/proc"
mount --bind "$DEV" "$J/dev"
cd /
exec chroot "$J" "$@"
"""
# The host's top-level dirs the jail mirrors: the system's, plus wherever this
# checkout, its virtualenv and the Python behind it live (CI clones elsewhere).
MIRRORED = sorted(({"usr", "lib", "lib32", "lib64", "bin", "sbin", "etc", "root", "tmp", "sys"}
                   | {path.parts[1] for p in (REPO, sys.prefix, sys.base_prefix, sys.executable)
                      for path in (Path(p).absolute(), Path(p).resolve())}) - {"proc", "dev"})
DEVICES = {"null": (1, 3), "zero": (1, 5), "full": (1, 7), "random": (1, 8), "urandom": (1, 9), "tty": (5, 0)}


class Jail:
    """minirun run inside a mount namespace whose "/" is a directory of the test's:
    what an escape writes to "/" lands in that directory, never in the host's own,
    and its /dev holds canary nodes of the test's own making."""

    def __init__(self, tmp_path: Path):
        self.root = tmp_path / "jail"
        self.dev = tmp_path / "jail-dev"
        self.root.mkdir()
        self.dev.mkdir()
        for d in MIRRORED:
            host = Path("/") / d
            if host.is_symlink():
                (self.root / d).symlink_to(os.readlink(host))
            elif host.is_dir():
                (self.root / d).mkdir()
        (self.root / "proc").mkdir()
        (self.root / "dev").mkdir()
        for name, (major, minor) in DEVICES.items():
            os.mknod(self.dev / name, stat.S_IFCHR | 0o666, os.makedev(major, minor))
            os.chmod(self.dev / name, 0o666)

    def run(self, mr, *args: str):
        prefix = ("unshare", "--mount", "sh", "-c", JAIL_SCRIPT, "jail", str(self.root), str(self.dev), " ".join(MIRRORED))
        return mr(*args, prefix=prefix, cwd="/", env={"PYTHONPATH": str(REPO)})   # this checkout's code

    def entries(self) -> list[str]:
        return sorted(os.listdir(self.root))

    def devices(self) -> dict[str, tuple[int, int, int]]:
        return {name: (st.st_mode, st.st_uid, st.st_gid)
                for name in DEVICES for st in [os.lstat(self.dev / name)]}


@pytest.fixture
def jail(tmp_path) -> Jail:
    return Jail(tmp_path)


def test_the_jail_runs_minirun(mr, jail):
    """The jail itself works: a plain run in it succeeds and leaves "/" as it was."""
    mr.load("busybox")
    before = jail.entries()
    result = jail.run(mr, "run", "--rm", "busybox", "echo", "inside")
    assert result.returncode == 0 and result.stdout == "inside\n", result.stderr
    assert jail.entries() == before


LINKED = [("dev", "/"), ("proc", "/"), ("sys", "/"), ("dev", "../../../../../../../.."),
          ("proc", "../../../../../../.."), ("dev", "/proc/self/root")]


@pytest.mark.kernel
@pytest.mark.parametrize("point,link", LINKED, ids=[f"{p}->{l}" for p, l in LINKED])
def test_a_kernel_mount_point_that_is_a_symlink_is_refused(mr, tmp_path, jail, point, link):
    """/dev, /proc or /sys as a symlink out of the image: the runtime, still in the
    host's root, once made the devices, pts/, shm/ and the /etc files in the host's /."""
    others = [entry(d, tarfile.DIRTYPE, mode=0o755) for d in ("proc", "dev", "sys") if d != point]
    name = load_image(mr, tmp_path, f"{point}link", others + [entry(point, tarfile.SYMTYPE, linkname=link)],
                      mount_points=False)
    before = jail.entries()
    result = jail.run(mr, "run", "--rm", name, "echo", "ran")
    one_line_refusal(result, f"/{point}", "symlink")
    assert jail.entries() == before


LINKED_TARGETS = [("-v", "/data", "/"), ("--tmpfs", "/data", "/"), ("-v", "/data", "../../../../../.."),
                  ("--tmpfs", "/data/x", "/tmp")]


@pytest.mark.kernel
@pytest.mark.parametrize("flag,path,link", LINKED_TARGETS, ids=[f"{f}{p}->{l}" for f, p, l in LINKED_TARGETS])
def test_volume_and_tmpfs_targets_resolve_inside_the_root(mr, tmp_path, jail, flag, path, link):
    """A -v or --tmpfs destination reached through an image symlink lands inside the
    container (as under runc's securejoin), never on the host path the link names."""
    source = tmp_path / "volume"
    source.mkdir()
    (source / "from-volume").write_text("v\n")
    name = load_image(mr, tmp_path, "datalink", [entry("data", tarfile.SYMTYPE, linkname=link),
                                                 entry("tmp", tarfile.DIRTYPE, mode=0o1777)])
    spec = f"{source}:{path}" if flag == "-v" else path
    before = jail.entries()
    result = jail.run(mr, "run", "--rm", flag, spec, name, "sh", "-c", f"ls {path}; touch {path}/made")
    if result.returncode:
        one_line_refusal(result, path.rsplit("/", 1)[0] or path)
    assert jail.entries() == before
    assert sorted(os.listdir(source)) == (["from-volume", "made"] if flag == "-v" and result.returncode == 0
                                          else ["from-volume"])




@pytest.mark.kernel
def test_a_symlink_in_the_volume_cannot_move_its_read_only_flag(mr, tmp_path):
    """/x -> /a/b/.. in the image reaches /a, and the volume mounted there holds
    b -> /. Old minirun looked /x up again after the bind to remount it ro,nodev:
    that walk went through the volume's b and remounted the container's / instead,
    so the :ro volume stayed writable, and without nodev (an outside review wrote
    through it and opened a node it made)."""
    volume = tmp_path / "volume"
    volume.mkdir()
    (volume / "b").symlink_to("/")
    name = load_image(mr, tmp_path, "rolink", [entry("a", tarfile.DIRTYPE, mode=0o755),
                                               entry("a/b", tarfile.DIRTYPE, mode=0o755),
                                               entry("x", tarfile.SYMTYPE, linkname="/a/b/..")])
    out = mr("run", "--rm", "-v", f"{volume}:/x:ro", name, "sh", "-c",
             "grep ' /a ' /proc/self/mountinfo; echo pwned > /a/canary && echo WROTE; "
             "mknod /a/null c 1 3 && echo x > /a/null && echo OPENED; echo done").stdout
    options = out.splitlines()[0].split()[5].split(",")
    assert "ro" in options and "nodev" in options, out
    assert "WROTE" not in out and "OPENED" not in out and out.rstrip().endswith("done"), out
    assert sorted(os.listdir(volume)) == ["b"]


@pytest.mark.kernel
def test_a_volumes_own_submounts_are_read_only_and_nodev_too(mr, tmp_path):
    """-v DIR:/data:ro where DIR has a mount of its own below it: old minirun
    remounted only the top, so the submount stayed writable and a node made there
    opened its device. Every mount of the volume gets ro and nodev now."""
    volume = tmp_path / "volume"
    (volume / "sub").mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "minirun-test-sub", str(volume / "sub")], check=True)
    try:
        mr.load("busybox")
        out = mr("run", "--rm", "-v", f"{volume}:/data:ro", "busybox", "sh", "-c",
                 "echo pwned > /data/sub/canary && echo WROTE; echo done").stdout
        assert "WROTE" not in out and "done" in out, out
        assert os.listdir(volume / "sub") == []
        out = mr("run", "--rm", "-v", f"{volume}:/data", "busybox", "sh", "-c",
                 "mknod /data/sub/null c 1 3 && echo x > /data/sub/null && echo OPENED; echo done").stdout
        assert "OPENED" not in out and "done" in out, out
    finally:
        subprocess.run(["umount", str(volume / "sub")], check=True)

IN_PROC = [("--tmpfs", "/data", "/proc/self/fd"), ("-v", "/data", "/proc/self"), ("-v", "/data", "/proc/sys"),
           ("--tmpfs", "/proc/self/fd", ""), ("-v", "/proc/sys", ""), ("-v", "/proc", ""),
           ("-v", "/data", "../proc/sys/kernel")]


@pytest.mark.kernel
@pytest.mark.parametrize("flag,path,link", IN_PROC, ids=[f"{f}{p}->{l}" for f, p, l in IN_PROC])
def test_volume_and_tmpfs_targets_in_proc_are_refused(mr, tmp_path, flag, path, link):
    """A mount in the container's procfs could stand in for what the runtime or the
    kernel's users rely on there (runc's CVE-2019-16884 and CVE-2019-19921): an image
    symlink into /proc, or a /proc path given as such, is refused in one line, as
    runc refuses it. Old minirun mounted a tmpfs over /proc/self/fd and the rest."""
    source = tmp_path / "volume"
    source.mkdir()
    extra = [entry("data", tarfile.SYMTYPE, linkname=link)] if link else []
    name = load_image(mr, tmp_path, "proclink", extra)
    spec = f"{source}:{path}" if flag == "-v" else path
    result = mr("run", "--rm", flag, spec, name, "true")
    one_line_refusal(result, path, "/proc")
    assert os.listdir(source) == []


def test_lxcfs_files_may_cover_their_proc_files(mr, tmp_path):
    """The exception: the files lxcfs stands in for, named as such."""
    fake = tmp_path / "meminfo"
    fake.write_text("MemTotal: 1 kB\n")
    mr.load("busybox")
    out = mr.ok("run", "--rm", "-v", f"{fake}:/proc/meminfo:ro", "-v", f"{fake}:/proc/sys/kernel/ns_last_pid",
                "busybox", "cat", "/proc/meminfo", "/proc/sys/kernel/ns_last_pid").stdout
    assert out == "MemTotal: 1 kB\n" * 2


@pytest.mark.parametrize("flag,spec,words", [
    ("--tmpfs", "/proc/cpuinfo", ["a tmpfs", "/proc/cpuinfo", "target is not"]),
    ("-v", "{dir}:/proc/meminfo", ["/proc/meminfo", "it is a directory"]),
    ("-v", "{file}:/bin", ["/bin", "it is not a directory"]),
    ("-v", "{dir}/missing:/data", ["/data", "does not exist on the host"]),
    ("--tmpfs", "/dev", ["/dev/null", "over /dev"])])
def test_a_mount_of_the_wrong_kind_is_one_line(mr, tmp_path, flag, spec, words):
    """Old minirun passed the kernel's ENOTDIR or ENOENT on, about /proc/self/fd/N."""
    (tmp_path / "file").write_text("f\n")
    mr.load("busybox")
    result = mr("run", "--rm", flag, spec.format(dir=tmp_path, file=tmp_path / "file"), "busybox", "true")
    one_line_refusal(result, *words)
    assert "/proc/self/fd" not in result.stderr

@pytest.mark.parametrize("name", ["hostname", "hosts", "resolv.conf"])
@pytest.mark.parametrize("how", ["dir", "symlink-to-dir"])
def test_an_etc_file_that_is_a_directory_in_the_image_is_one_line(mr, tmp_path, name, how):
    """Old minirun passed the kernel's ENOTDIR on, about /proc/self/fd/N (an outside review)."""
    planted = (entry(f"etc/{name}", tarfile.DIRTYPE, mode=0o755) if how == "dir" else
               entry(f"etc/{name}", tarfile.SYMTYPE, linkname="/proc"))
    image = load_image(mr, tmp_path, "etcdir", [entry("etc", tarfile.DIRTYPE, mode=0o755), planted])
    result = mr("run", "--rm", image, "true")
    assert result.returncode == 125, result.stderr
    one_line_refusal(result, f"/etc/{name}", "is a directory")
    assert "/proc/self/fd" not in result.stderr


@pytest.mark.kernel
def test_etc_files_through_a_symlink_land_inside_the_root(mr, tmp_path, jail):
    """/etc/resolv.conf -> ../run/resolv.conf (as systemd images have it) is mounted
    on the image's own /run/resolv.conf."""
    name = load_image(mr, tmp_path, "etclink", [
        entry("etc", tarfile.DIRTYPE, mode=0o755), entry("run", tarfile.DIRTYPE, mode=0o755),
        entry("run/resolv.conf", data=b"# image\n"),
        entry("etc/resolv.conf", tarfile.SYMTYPE, linkname="../run/resolv.conf")])
    before = jail.entries()
    out = jail.run(mr, "run", "--rm", name, "cat", "/run/resolv.conf")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("# minirun"), out.stdout
    assert jail.entries() == before


# ---------------------------------------------------------------- 4. devices and the log

def test_the_containers_devices_are_its_own(mr, jail):
    """chmod and chown of /dev/* inside change the container's nodes, never the host's
    (here: the jail's canary nodes, which old minirun bound in)."""
    mr.load("busybox")
    before = jail.devices()
    result = jail.run(mr, "run", "--rm", "busybox", "sh", "-c",
                      "chmod 000 /dev/null /dev/tty && chown 1:1 /dev/zero /dev/urandom && "
                      "ls -ln /dev/null /dev/zero")
    assert result.returncode == 0, result.stderr
    assert jail.devices() == before
    host = os.stat("/dev/null")
    inside = mr.ok("run", "--rm", "busybox", "stat", "-c", "%d %i", "/dev/null").stdout.split()
    assert (int(inside[0]), int(inside[1])) != (host.st_dev, host.st_ino)


def test_a_node_made_in_the_container_opens_no_device(mr):
    """The container keeps CAP_MKNOD, as under Docker; every place it can write is nodev."""
    mr.load("busybox")
    script = ("for d in /dev /tmp /dev/shm /; do mknod $d/mem c 1 1 && "
              "{ head -c 1 $d/mem >/dev/null 2>&1 && echo open:$d || echo refused:$d; }; done")
    out = mr.ok("run", "--rm", "--tmpfs", "/tmp", "busybox", "sh", "-c", script).stdout.split()
    assert out == ["refused:/dev", "refused:/tmp", "refused:/dev/shm", "refused:/"], out


def test_a_detached_container_cannot_reach_its_log_file(mr):
    mr.load("busybox")
    cid = mr.ok("run", "-d", "busybox", "sh", "-c",
                "readlink /proc/self/fd/1; chmod 6777 /proc/self/fd/1 /proc/self/fd/2; "
                "chown 1:1 /proc/self/fd/1; echo done").stdout.strip()
    import json
    for _ in range(100):
        if json.loads(mr.ok("inspect", cid).stdout)[0]["State"]["status"] != "running":
            break
        time.sleep(0.05)
    log = mr.root / "containers" / cid / "container.log"
    st = os.stat(log)
    assert stat.S_IMODE(st.st_mode) == 0o640 and (st.st_uid, st.st_gid) == (0, 0)
    assert log.read_text().split(" ", 3)[3].startswith("pipe:")        # a record: TIME stdout F pipe:[N]



@pytest.mark.parametrize("swap", ["mkfifo /dev/ptmx", "ln -s /proc/self/fd/0 /dev/ptmx"], ids=["fifo", "caller-fd"])
def test_exec_t_opens_no_ptmx_the_container_placed(mr, swap):
    """exec -t's process is root with descriptors of the host's (the caller's terminal
    on 0-2) when it opens the container's terminal, after the container has had
    time to change its /dev. It must take the multiplexer of the container's own
    devpts and the slave from the master, never the /dev/ptmx link: old minirun
    opened what the container put there (here a FIFO, or a link through
    /proc/self/fd/0 to the caller's own terminal) and failed."""
    mr.load("busybox")
    mr.ok("run", "-d", "--name", "p", "busybox", "sh", "-c", f"rm /dev/ptmx && {swap} && touch /swapped && sleep 60")
    for _ in range(100):
        if mr("exec", "p", "test", "-e", "/swapped").returncode == 0:
            break
        time.sleep(0.05)
    code, out = run_in_pty(mr, "exec", "-t", "p", "sh", "-c", "tty; stat -L -c %t:%T /proc/self/fd/0")
    assert code == 0, out
    name, rdev = out.decode().split()[:2]
    assert name.startswith("/dev/pts/") and rdev.split(":")[0] == "88", out     # a devpts slave (136+)
    mr.ok("rm", "-f", "p")


@pytest.mark.kernel
def test_exec_t_refuses_a_fake_devpts_in_one_line(mr):
    """A container with CAP_SYS_ADMIN covers /dev/pts with a tmpfs holding a FIFO
    named ptmx: exec -t says which file is wrong, rather than a bare ioctl error."""
    mr.load("busybox")
    mr.ok("run", "-d", "--name", "f", "--cap-add", "SYS_ADMIN", "busybox", "sh", "-c",
          "mount -t tmpfs none /dev/pts && mkfifo /dev/pts/ptmx && touch /dev/pts/ok && sleep 60")
    for _ in range(100):
        if mr("exec", "f", "test", "-e", "/dev/pts/ok").returncode == 0:
            break
        time.sleep(0.05)
    code, out = run_in_pty(mr, "exec", "-t", "f", "true")
    assert code == 125, out
    lines = [line for line in out.decode().splitlines() if line.strip()]
    assert len(lines) == 1 and "/dev/pts/ptmx" in lines[0] and "not a pty" in lines[0], out
    mr.ok("rm", "-f", "f")

# ---------------------------------------------------------------- 6. capabilities

def cap_sets(status: str) -> dict[str, int]:
    return {line.split(":")[0]: int(line.split()[1], 16) for line in status.splitlines()
            if line.startswith("Cap")}


CAP_CHECKPOINT_RESTORE = 40


@pytest.mark.parametrize("flags", [("--cap-drop", "ALL"), ("-u", "1000"), ("-u", "1000", "--cap-add", "NET_ADMIN")],
                         ids=["cap-drop ALL", "user 1000", "user 1000 + NET_ADMIN"])
def test_inits_pid_1_keeps_no_capability(mr, flags):
    """--init's PID 1 never execs, so it kept whatever it had: CAP_CHECKPOINT_RESTORE
    (unknown to python-prctl) with --cap-drop ALL, the 14 defaults with -u 1000."""
    mr.load("busybox")
    out = mr.ok("run", "--rm", "--init", *flags, "busybox", "cat", "/proc/1/status").stdout
    sets = cap_sets(out)
    for name in ("CapInh", "CapPrm", "CapEff", "CapAmb"):
        assert sets[name] == 0, (name, hex(sets[name]))
    assert "TracerPid" in out


def test_no_process_started_inside_keeps_a_capability_it_was_not_given(mr):
    """Every number up to the kernel's cap_last_cap, named by python-prctl or not."""
    last = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    if last < CAP_CHECKPOINT_RESTORE:
        pytest.skip("this kernel has no CAP_CHECKPOINT_RESTORE")
    mr.load("busybox")
    mr.ok("run", "-d", "--name", "c", "busybox", "sleep", "60")
    views = {"run": mr.ok("run", "--rm", "busybox", "cat", "/proc/self/status").stdout,
             "run --init": mr.ok("run", "--rm", "--init", "busybox", "cat", "/proc/self/status").stdout,
             "exec": mr.ok("exec", "c", "cat", "/proc/self/status").stdout,
             "pid 1": mr.ok("exec", "c", "cat", "/proc/1/status").stdout}
    for where, status in views.items():
        for name, value in cap_sets(status).items():
            assert not value >> CAP_CHECKPOINT_RESTORE & 1, (where, name, hex(value))
            assert value & ~0xa80425fb == 0, (where, name, hex(value))       # Docker's 14 at most
    added = mr.ok("run", "--rm", "--cap-add", "CHECKPOINT_RESTORE", "busybox", "cat", "/proc/self/status").stdout
    assert cap_sets(added)["CapEff"] >> CAP_CHECKPOINT_RESTORE & 1


# ---------------------------------------------------------------- 13. --tmpfs options

def test_docker_tmpfs_flags_work(mr):
    """--tmpfs /run:rw,noexec,nosuid as Docker users type it: the flags are mount flags."""
    mr.load("busybox")
    out = mr.ok("run", "--rm", "--tmpfs", "/run:rw,noexec,nosuid,size=1m", "--tmpfs", "/x:exec,mode=700",
                "busybox", "sh", "-c",
                "grep -E ' /(run|x) ' /proc/self/mounts; cp /bin/busybox /run/true; /run/true && echo ran-run; "
                "cp /bin/busybox /x/true; /x/true && echo ran-x; stat -c %a /x").stdout
    run_line = next(line for line in out.splitlines() if " /run " in line)
    assert "noexec" in run_line and "nosuid" in run_line and "nodev" in run_line and "size=1024k" in run_line
    x_line = next(line for line in out.splitlines() if " /x " in line)
    assert "noexec" not in x_line and "nodev" in x_line
    assert "ran-run" not in out and "ran-x" in out and out.split()[-1] == "700"


def test_a_tmpfs_with_dev_needs_privileged(mr):
    mr.load("busybox")
    result = mr("run", "--rm", "--tmpfs", "/d:dev", "busybox", "true")
    assert result.returncode == 125 and "--privileged" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert mr.ok("ps", "-a", "-q").stdout == ""
