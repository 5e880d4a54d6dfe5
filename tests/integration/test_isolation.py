"""Isolation, as a container sees it: escape attempts that must fail, resource limits
that must bite, the three network modes, volumes and --read-only, and --init.

Every check runs busybox applets inside a real container (the `mr` fixture's
private store) and, where the attempt could touch the host, checks the host
afterwards. A check that needs something this host lacks (a /proc file, gcc,
a device) skips and says why; it never passes silently.

A few attempts need a real program instead of a shell: busybox's `chroot`
always chdirs into the new root, which is exactly what the classic escape must
avoid. `probe` (compiled here, statically, with gcc) does the escape by the
book, and prints its ids and capabilities when it is installed setuid root.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import secrets
import select
import shutil
import signal
import socket
import statistics
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from minirun.network import ipam
from minirun.layer.tree import snapshot

from . import netfixtures, slowed
from .conftest import Minirun, overlay_mounts_under, processes_using
from .imagebuild import entry, layer_tar, write_layout

DOCKER_DEFAULT_CAPS = "00000000a80425fb"
CAP_NET_ADMIN = 12
# Docker's defaults (moby oci/defaults.go): masked with /dev/null or an empty read-only tmpfs ...
MASKED_PATHS = ("/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
                "/sys/firmware", "/sys/devices/virtual/powercap")
# ... and bound read-only onto themselves
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")

PROBE_C = r"""
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void status(void) {
    char line[256];
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "CapEff:", 7) || !strncmp(line, "NoNewPrivs:", 11)) fputs(line, stdout);
    fclose(f);
}

int main(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "ids")) {
        printf("uid=%d euid=%d\n", (int)getuid(), (int)geteuid());
        status();
        return 0;
    }
    if (argc >= 3 && !strcmp(argv[1], "escape")) {
        /* the classic: chroot into a subdirectory while the cwd stays outside it,
           climb with "..", which no root stops any more, and chroot to where we end up */
        mkdir("/.escape", 0755);
        if (chroot("/.escape") != 0) printf("chroot: %s\n", strerror(errno));
        for (int i = 0; i < 64; i++) chdir("..");
        if (chroot(".") != 0) printf("chroot .: %s\n", strerror(errno));
        chdir("/");
        for (int i = 2; i < argc; i++) {
            int fd = open(argv[i], O_RDONLY);
            if (fd < 0) { printf("contained %s: %s\n", argv[i], strerror(errno)); continue; }
            char buf[256];
            ssize_t n = read(fd, buf, sizeof buf - 1);
            buf[n > 0 ? n : 0] = 0;
            printf("ESCAPED %s: %s\n", argv[i], buf);
            close(fd);
        }
        return 0;
    }
    fprintf(stderr, "usage: probe ids | probe escape PATH...\n");
    return 2;
}
"""


# ---------------------------------------------------------------- helpers

def sh(mr, script: str, *flags: str, image: str = "busybox", **kwargs):
    """`run --rm [flags] image sh -c script`, whatever its exit code."""
    return mr("run", "--rm", *flags, image, "sh", "-c", script, **kwargs)


def sh_ok(mr, script: str, *flags: str, image: str = "busybox", **kwargs) -> str:
    result = sh(mr, script, *flags, image=image, **kwargs)
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def status_field(text: str, name: str) -> str:
    match = re.search(rf"^{name}:\s*(\S+)", text, re.M)
    assert match, f"no {name} in\n{text}"
    return match.group(1)


def wait_running(mr, name: str, timeout: float = 10) -> dict:
    """The container's State once it runs with a pid."""
    return mr.running_state(name, timeout)


def read_line(stream, timeout: float) -> str:
    ready, _, _ = select.select([stream], [], [], timeout)
    assert ready, f"no output within {timeout}s"
    return stream.readline()


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)


def host_processes_with(needle: bytes) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if needle in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(int(pid))
        except OSError:
            pass
    return found


def mount_points(mountinfo: str) -> dict[str, tuple[str, str]]:
    """mount point -> (per-mount options, fs type) of the topmost mount there."""
    out = {}
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) < 10 or "-" not in fields:
            continue
        sep = fields.index("-")
        out[fields[4]] = (fields[5], fields[sep + 1])
    return out


def host_marker(tmp_path: Path) -> tuple[Path, str]:
    """A file only the host has, with a random content to look for."""
    secret_dir = tmp_path / f"host-only-{secrets.token_hex(4)}"
    secret_dir.mkdir()
    marker = secret_dir / "host-marker"
    content = "host-secret-" + secrets.token_hex(8)
    marker.write_text(content + "\n")
    return marker, content


@pytest.fixture
def marker(tmp_path):
    path, content = host_marker(tmp_path)
    yield path, content
    assert path.read_text() == content + "\n", "the host marker changed"


# ---------------------------------------------------------------- images

@pytest.fixture(scope="session")
def probe(tmp_path_factory) -> Path:
    """A static binary for what busybox cannot do (see the module docstring)."""
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        pytest.skip("needs gcc to build the static escape probe (apt-get install gcc libc6-dev)")
    out = tmp_path_factory.mktemp("probe")
    (out / "probe.c").write_text(PROBE_C)
    built = subprocess.run([gcc, "-static", "-O1", "-o", str(out / "probe"), str(out / "probe.c")],
                           capture_output=True, text=True)
    if built.returncode != 0:
        pytest.skip(f"cannot build a static binary here (libc.a missing?): {built.stderr[-300:]}")
    return out / "probe"


def fixture_layer(mr, name: str = "busybox") -> bytes:
    """The uncompressed tar of a one-layer fixture image, to stack our own layer on."""
    layout = Path(mr.fixture_path(name))
    blob = lambda digest: (layout / "blobs" / "sha256" / digest.split(":", 1)[1]).read_bytes()  # noqa: E731
    manifest = json.loads(blob(json.loads((layout / "index.json").read_text())["manifests"][0]["digest"]))
    data = blob(manifest["layers"][0]["digest"])
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


@pytest.fixture
def probe_image(mr, tmp_path, probe) -> str:
    """busybox plus /bin/probe, and setuid-root copies of it and of busybox.

    The busybox copy is named busybox-suid: a multi-call busybox finds its applet by
    argv[0], and only a name starting with "busybox" makes it take the next word."""
    probe_bytes = probe.read_bytes()
    busybox = Path(shutil.which("busybox")).read_bytes()
    extra = layer_tar([entry("bin/probe", data=probe_bytes, mode=0o755),
                       entry("bin/suid-probe", data=probe_bytes, mode=0o4755),
                       entry("bin/busybox-suid", data=busybox, mode=0o4755)])
    write_layout(tmp_path / "probeimg", [fixture_layer(mr), extra],
                 {"Cmd": ["sh"], "Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"]})
    mr.ok("load", str(tmp_path / "probeimg"))
    return "probeimg"


# ---------------------------------------------------------------- escape attempts

@pytest.mark.kernel
def test_mounting_a_tmpfs_inside_fails_and_the_host_is_unchanged(mr):
    mr.load("busybox")
    host_tmp = lambda: sorted(l for l in Path("/proc/self/mountinfo").read_text().splitlines()  # noqa: E731,E741
                              if l.split()[4] == "/tmp")
    before = host_tmp()
    out = sh(mr, "mount -t tmpfs none /tmp; echo tmpfs=$?; mount -o remount,rw /sys; echo sys=$?; "
                 "umount /proc; echo proc=$?; grep -c ' /tmp ' /proc/self/mountinfo")
    lines = out.stdout.splitlines()
    assert "tmpfs=0" not in lines and "sys=0" not in lines and "proc=0" not in lines, out.stdout
    assert lines[-1] == "0", "a tmpfs got mounted on /tmp inside"
    assert "permission denied" in out.stderr.lower() or "not permitted" in out.stderr.lower(), out.stderr
    assert host_tmp() == before


@pytest.mark.kernel
@pytest.mark.parametrize("mode", ["pivot_root", "chroot"])
def test_chroot_escape_does_not_reach_the_host(mr, probe_image, marker, mode):
    """Under pivot_root the classic escape runs and stays inside. Under --chroot the
    host's tree is still in the namespace, so minirun drops CAP_SYS_CHROOT there:
    the escape's first chroot(2) is refused."""
    path, content = marker
    flags = ["--chroot"] if mode == "chroot" else []
    out = mr.ok("run", "--rm", *flags, probe_image, "probe", "escape", str(path),
                f"/proc/1/root{path}", f"/proc/self/root{path}").stdout
    assert content not in out and "ESCAPED" not in out, out
    if mode == "chroot":
        assert "chroot:" in out, f"chroot(2) should have been refused: {out}"
    else:
        assert "chroot:" not in out, f"the first chroot failed, so nothing was attempted: {out}"
        assert out.count("contained ") == 3, out
    assert not os.path.exists("/.escape")


@pytest.mark.kernel
@pytest.mark.parametrize("mode", ["pivot_root", "chroot"])
def test_proc_1_root_is_the_containers_own_root(mr, marker, mode):
    mr.load("busybox")
    path, content = marker
    flags = ["--chroot"] if mode == "chroot" else []
    out = mr.ok("run", "--rm", *flags, "busybox", "sh", "-c",
                f"echo $$; ls -a /proc/1/root/ | sort | tr '\\n' ' '; echo; ls -a / | sort | tr '\\n' ' '; echo; "
                f"cat /proc/1/root{path} /proc/1/root/..{path} 2>&1; "
                f"ls /proc/1/root{path.parent} 2>&1; true").stdout
    lines = out.splitlines()
    assert lines[0] == "1"
    assert lines[1] == lines[2], "/proc/1/root/ is not the container's /"
    assert content not in out and "host-marker\n" not in out.replace(str(path), ""), out


@pytest.mark.kernel
def test_only_stdio_crosses_into_the_container(mr):
    """With nothing extra open, ls sees 0, 1, 2 and its own directory fd (3)."""
    mr.load("busybox")
    out = mr.ok("run", "--rm", "busybox", "ls", "-l", "/proc/self/fd/", stdin=subprocess.DEVNULL).stdout
    fds = {line.split()[8]: line.split("->")[-1].strip() for line in out.splitlines()
           if line.startswith("l")}
    assert set(fds) <= {"0", "1", "2", "3"}, out
    assert fds["0"] == "/dev/null" and fds["1"].startswith("pipe:") and fds["2"].startswith("pipe:"), out


@pytest.mark.kernel
def test_an_inherited_host_directory_fd_is_not_usable_inside(mr, marker):
    """runc closes every descriptor but stdio before exec (CVE-2024-21626 is what a leaked
    directory fd leads to); a caller's open fd must not follow minirun into the container."""
    mr.load("busybox")
    path, content = marker
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        out = mr("run", "--rm", "busybox", "sh", "-c",
                 f"ls /proc/self/fd/; echo --; cat /proc/self/fd/{fd}/host-marker; cd -P /proc/self/fd/{fd} && ls",
                 pass_fds=(fd,), stdin=subprocess.DEVNULL)
    finally:
        os.close(fd)
    listing, _, rest = out.stdout.partition("--\n")
    assert set(listing.split()) <= {"0", "1", "2", "3"}, listing
    assert content not in out.stdout and "host-marker" not in rest, out.stdout


@pytest.mark.kernel
def test_init_holds_no_inherited_fd_a_ptrace_capable_container_could_use(mr, marker):
    """minirun-init (PID 1) never execs, so close-on-exec does not help it: before f87fb87 it
    kept the caller's fds and minirun's own fd on the host's PID namespace, and a container
    with SYS_PTRACE read host files through /proc/1/fd/N."""
    mr.load("busybox")
    path, content = marker
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        out = mr("run", "--rm", "--init", "--cap-add", "SYS_PTRACE", "busybox", "sh", "-c",
                 f"ls -l /proc/1/fd/; echo --; cat /proc/1/fd/{fd}/host-marker",
                 pass_fds=(fd,), stdin=subprocess.DEVNULL)
    finally:
        os.close(fd)
    listing, _, rest = out.stdout.partition("--\n")
    fds = {line.split()[8]: line.split("->")[-1].strip() for line in listing.splitlines()
           if line.startswith("l")}
    assert content not in rest, f"read the host marker through PID 1's fd {fd}"
    assert set(fds) <= {"0", "1", "2"}, listing


@pytest.mark.kernel
def test_writing_proc_sys_fails_and_the_host_value_stays(mr):
    mr.load("busybox")
    knob = Path("/proc/sys/vm/swappiness")
    before = knob.read_text().strip()
    attempt = str((int(before) + 7) % 100)
    try:
        out = sh(mr, f"echo {attempt} > {knob}; echo swappiness=$?; echo 4242 > /proc/sys/kernel/ns_last_pid; "
                     f"echo ns_last_pid=$?; sysctl -w vm.swappiness={attempt}; echo sysctl=$?")
        after = knob.read_text().strip()
    finally:
        if knob.read_text().strip() != before:
            knob.write_text(before)
    assert after == before, f"the container changed the host's vm.swappiness to {after}"
    for name in ("swappiness", "ns_last_pid", "sysctl"):
        assert f"{name}=0" not in out.stdout, out.stdout
    assert "Read-only file system" in out.stderr, out.stderr


@dataclass
class ProcView:
    paths: dict[str, tuple[str, int]]      # path -> ("file"|"dir"|"absent", bytes (0/1) or entries)
    mounts: dict[str, tuple[str, str]]


def proc_view(mr, *flags: str) -> ProcView:
    """One container's view of the masked and read-only paths, and its mount table."""
    checks = " ".join(MASKED_PATHS + READONLY_PATHS)
    script = (f"for p in {checks}; do "
              'if [ -d "$p" ]; then echo "PATH $p dir $(ls -A "$p" | wc -l)"; '
              'elif [ -e "$p" ]; then echo "PATH $p file $(head -c 1 "$p" | wc -c)"; '
              'else echo "PATH $p absent 0"; fi; done; cat /proc/self/mountinfo')
    out = mr.ok("run", "--rm", *flags, "busybox", "sh", "-c", script).stdout
    paths = {}
    for line in out.splitlines():
        if line.startswith("PATH "):
            _, path, kind, count = line.split()
            paths[path] = (kind, int(count))
    return ProcView(paths, mount_points(out))


@pytest.fixture(scope="module")
def default_view(tmp_path_factory, fixtures) -> ProcView:
    """Read once for all the masked/read-only path checks, from a store of its own."""
    root = tmp_path_factory.mktemp("masks") / "store"
    mr = Minirun(root, fixtures)
    try:
        mr.load("busybox")
        yield proc_view(mr)
    finally:
        assert not processes_using(root) and not overlay_mounts_under(root)
        from minirun.lib.fsutil import remove_tree
        remove_tree(str(root))


@pytest.mark.kernel
@pytest.mark.parametrize("path", MASKED_PATHS)
def test_masked_path_shows_nothing(default_view, path):
    if not os.path.exists(path):
        pytest.skip(f"this host's kernel has no {path}: there is nothing to mask")
    kind, count = default_view.paths[path]
    assert path in default_view.mounts, f"nothing is mounted over {path}"
    if os.path.isdir(path):
        assert kind == "dir" and count == 0, f"{path} lists {count} entries inside"
        options, fstype = default_view.mounts[path]
        assert fstype == "tmpfs" and options.split(",")[0] == "ro", default_view.mounts[path]
    else:
        assert kind == "file" and count == 0, f"{path} is readable inside"


@pytest.mark.kernel
@pytest.mark.parametrize("path", READONLY_PATHS)
def test_read_only_path_is_mounted_read_only(default_view, path):
    if not os.path.exists(path):
        pytest.skip(f"this host's kernel has no {path}: there is nothing to protect")
    assert path in default_view.mounts, f"{path} is not bound onto itself"
    options, _ = default_view.mounts[path]
    assert options.split(",")[0] == "ro", f"{path} is mounted {options}"


@pytest.mark.kernel
def test_host_pids_are_invisible(mr):
    mr.load("busybox")
    tag = f"29.{secrets.randbelow(10 ** 6):06d}"
    host_sleeper = subprocess.Popen(["sleep", tag])
    try:
        out = mr.ok("run", "--rm", "busybox", "sh", "-c",
                    f"ps -o pid,args; for p in {os.getpid()} {host_sleeper.pid}; do "
                    "test -e /proc/$p && echo visible-$p; kill -0 $p 2>/dev/null && echo signalable-$p; done; "
                    "ls /proc | grep -c '^[0-9]'").stdout
    finally:
        stop(host_sleeper)
    lines = out.splitlines()
    assert tag not in out, "a host process shows in the container's ps"
    assert not [line for line in lines if line.startswith(("visible-", "signalable-"))], out
    assert int(out.splitlines()[-1]) <= 4, out


@pytest.mark.kernel
def test_setting_the_hostname_inside_leaves_the_hosts_alone(mr):
    mr.load("busybox")
    before = socket.gethostname()
    out = sh(mr, "hostname evil; echo evil > /proc/sys/kernel/hostname; hostname", "--network", "host")
    assert socket.gethostname() == before
    assert Path("/proc/sys/kernel/hostname").read_text().strip() == before
    assert out.stdout.strip() != before


@pytest.mark.kernel
@pytest.mark.parametrize("nnp", ["default", "false"])
def test_setuid_binary_and_no_new_privileges(mr, probe_image, nnp):
    flags = ["--security-opt", "no-new-privileges:false"] if nnp == "false" else []
    out = mr.ok("run", "--rm", "-u", "1000", *flags, probe_image, "sh", "-c",
                "ls -ln /bin/suid-probe; probe ids; echo --; suid-probe ids; echo --; "
                "busybox-suid id -u; busybox-suid sh -c 'id -u'").stdout
    parts = out.split("--\n")
    assert len(parts) == 3, out
    plain, suid, busybox_ids = parts
    listing = plain.splitlines()[0].split()
    assert listing[0] == "-rwsr-xr-x" and listing[2] == "0", listing      # setuid, owned by root
    assert "uid=1000 euid=1000" in plain and status_field(plain, "CapEff") == "0000000000000000"
    if nnp == "default":
        assert status_field(suid, "NoNewPrivs") == "1"
        assert "uid=1000 euid=1000" in suid, f"setuid root worked despite no_new_privs:\n{suid}"
        assert status_field(suid, "CapEff") == "0000000000000000"
    else:
        # as in Docker without no-new-privileges: the setuid bit works, capped by the bounding set
        assert status_field(suid, "NoNewPrivs") == "0"
        assert "uid=1000 euid=0" in suid, suid
        assert status_field(suid, "CapEff") == DOCKER_DEFAULT_CAPS
    # BusyBox drops a setuid euid itself for applets like id and sh (its FEATURE_SUID
    # handling), so a setuid busybox shows 1000 either way: only the probe tells the cases apart
    assert busybox_ids.split() == ["1000", "1000"], busybox_ids


def caps_of(mr, *flags: str) -> str:
    return mr.ok("run", "--rm", *flags, "busybox", "cat", "/proc/self/status").stdout


@pytest.mark.kernel
def test_default_capabilities_are_dockers(mr):
    mr.load("busybox")
    status = caps_of(mr)
    assert status_field(status, "CapEff") == DOCKER_DEFAULT_CAPS
    assert status_field(status, "CapPrm") == DOCKER_DEFAULT_CAPS
    assert status_field(status, "CapBnd") == DOCKER_DEFAULT_CAPS
    assert status_field(status, "CapInh") == status_field(status, "CapAmb") == "0000000000000000"
    assert status_field(status, "NoNewPrivs") == "1"


@pytest.mark.kernel
def test_non_root_has_no_capabilities(mr):
    mr.load("busybox")
    status = caps_of(mr, "-u", "1000")
    for name in ("CapEff", "CapPrm", "CapInh", "CapAmb"):
        assert status_field(status, name) == "0000000000000000", name
    assert status_field(status, "CapBnd") == DOCKER_DEFAULT_CAPS


@pytest.mark.kernel
def test_cap_add_reaches_a_non_root_user_as_ambient(mr):
    mr.load("busybox")
    status = caps_of(mr, "--cap-add", "NET_ADMIN", "-u", "1000")
    amb = int(status_field(status, "CapAmb"), 16)
    assert amb == 1 << CAP_NET_ADMIN, status
    assert int(status_field(status, "CapEff"), 16) == 1 << CAP_NET_ADMIN


@pytest.mark.kernel
def test_cap_drop_all_leaves_nothing(mr):
    mr.load("busybox")
    status = caps_of(mr, "--cap-drop", "ALL")
    for name in ("CapEff", "CapPrm", "CapBnd", "CapInh", "CapAmb"):
        assert status_field(status, name) == "0000000000000000", name
    out = sh(mr, "chown 1000 /etc/passwd; echo chown=$?", "--cap-drop", "ALL")
    assert "chown=0" not in out.stdout


@pytest.mark.kernel
def test_privileged_unmasks_and_mounts_sys_read_write(mr):
    mr.load("busybox")
    view = proc_view(mr, "--privileged")
    sys_options, _ = view.mounts["/sys"]
    assert sys_options.split(",")[0] == "rw", sys_options
    masked = [p for p in MASKED_PATHS + READONLY_PATHS if p in view.mounts]
    assert masked == [], f"still masked or read-only with --privileged: {masked}"
    if os.path.exists("/proc/keys") and Path("/proc/keys").read_text():
        assert view.paths["/proc/keys"] == ("file", 1)


@pytest.mark.kernel
def test_privileged_gets_every_capability_minirun_holds(mr):
    mr.load("busybox")
    ours = status_field(Path("/proc/self/status").read_text(), "CapEff")
    status = caps_of(mr, "--privileged")
    assert status_field(status, "CapEff") == ours


HOST_DEVICES = ("/dev/kvm", "/dev/loop-control", "/dev/hwrng", "/dev/btrfs-control", "/dev/autofs")


def openable_host_device() -> tuple[str, int, int] | None:
    """A character device the host may open read-only and a container must not."""
    import stat as st
    for path in HOST_DEVICES:
        try:
            info = os.stat(path)
            if not st.S_ISCHR(info.st_mode):
                continue
            os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY))
        except OSError:
            continue
        return path, os.major(info.st_rdev), os.minor(info.st_rdev)
    return None


@pytest.mark.kernel
def test_a_host_device_node_made_inside_cannot_be_opened(mr):
    device = openable_host_device()
    if device is None:
        pytest.skip(f"none of {', '.join(HOST_DEVICES)} can be opened on this host")
    path, major, minor = device
    mr.load("busybox")
    out = sh(mr, f"mknod /dev/probe-dev c {major} {minor}; echo mknod=$?; "
                 "(exec 3</dev/probe-dev) && echo OPENED || echo DENIED")
    assert "DENIED" in out.stdout, f"{path} ({major}:{minor}) opened inside the container: {out.stdout}"


# ---------------------------------------------------------------- resource limits

@pytest.mark.kernel
def test_fork_bomb_is_contained_by_pids_limit(mr):
    mr.load("busybox")
    tag = f"30.{secrets.randbelow(10 ** 6):06d}"
    try:
        result = mr("run", "--name", "bomb", "--pids-limit", "64", "busybox", "sh", "-c",
                    f"for i in $(seq 500); do sleep {tag} & done; wait", timeout=25)
    except subprocess.TimeoutExpired:
        pytest.fail("500 sleepers ran to the end: --pids-limit 64 did not stop the forks")
    assert "fork" in result.stderr, result.stderr           # "can't fork: Resource temporarily unavailable"
    deadline = time.monotonic() + 5
    while host_processes_with(b"sleep\0" + tag.encode()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert host_processes_with(b"sleep\0" + tag.encode()) == [], "sleepers outlived the container"
    assert subprocess.run(["true"]).returncode == 0          # the host can still fork
    state = mr.only_state()
    assert state["status"] == "exited" and state["exit_code"] == result.returncode


@pytest.mark.kernel
def test_memory_hog_is_oom_killed_and_reported(mr):
    mr.load("busybox")
    result = mr("run", "--name", "hog", "--memory", "32m", "busybox",
                "dd", "if=/dev/zero", "of=/dev/null", "bs=100M", "count=1")
    assert result.returncode == 137, (result.returncode, result.stderr)
    state = mr.only_state()
    assert state["exit_code"] == 137 and state["oom_killed"] is True, state
    row = next(line for line in mr.ok("ps", "-a").lines if line.endswith(" hog"))
    assert "OOM" in row, row
    within = mr.ok("run", "--rm", "--memory", "32m", "busybox",
                   "dd", "if=/dev/zero", "of=/dev/null", "bs=4M", "count=1")
    assert within.returncode == 0


@pytest.mark.kernel
def test_ulimit_above_the_hosts_hard_limit_is_one_line_error(mr):
    import resource
    mr.load("busybox")
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY or rlimit_can_raise():
        pytest.skip("this host could grant any nofile: needs a finite hard limit and no CAP_SYS_RESOURCE")
    result = mr("run", "--rm", "--ulimit", f"nofile={hard + 10000}", "busybox", "true")
    assert result.returncode == 125
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(hard) in lines[0], result.stderr
    assert mr.ok("ps", "-a", "-q").stdout == ""             # refused before a container existed


def rlimit_can_raise() -> bool:
    status = Path("/proc/self/status").read_text()
    return bool(int(status_field(status, "CapEff"), 16) >> 24 & 1)


@pytest.mark.kernel
def test_ulimit_soft_and_hard_inside(mr):
    mr.load("busybox")
    out = sh_ok(mr, "ulimit -Sn; ulimit -Hn", "--ulimit", "nofile=1000:2000")
    assert out.split() == ["1000", "2000"]


@pytest.mark.kernel
def test_cgroup_exists_while_running_and_is_removed_after(mr):
    mr.load("busybox")
    proc = mr.popen("run", "-i", "--name", "cg", "--pids-limit", "64", "--memory", "64m", "busybox",
                    "sh", "-c", "read line; exit 0", stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE)
    try:
        state = wait_running(mr, "cg")
        cid = mr.inspect("cg")["Id"]
        paths = (state.get("cgroup") or {}).get("paths") or []
        assert paths and all(p.endswith(f"/minirun/{cid}") and os.path.isdir(p) for p in paths), state
        if os.path.isdir("/sys/fs/cgroup/memory/minirun"):                # cgroup v1, as here
            assert f"/sys/fs/cgroup/memory/minirun/{cid}" in paths
            assert f"/sys/fs/cgroup/pids/minirun/{cid}" in paths
        proc.stdin.close()
        assert proc.wait(timeout=10) == 0
    finally:
        stop(proc)
    assert [p for p in paths if os.path.exists(p)] == []
    assert not os.path.exists(f"/sys/fs/cgroup/memory/minirun/{cid}")


# The cgroup is made a moment after containers/<id>/ is written; these runs make
# that moment 0.4 s long, so that a reader can see the record in between.
SLOW_CGROUP = ("minirun.linux.cgroups.files:_Driver.create", 0.4)


@pytest.mark.kernel
def test_a_running_state_always_names_a_cgroup_that_exists(mr):
    """A foreground run is recorded before its cgroup is made. Every state read
    meanwhile that says running must name the cgroup, and the cgroup must exist."""
    mr.load("busybox")
    proc = slowed.popen(mr, *SLOW_CGROUP, "run", "-i", "--name", "cg", "--pids-limit", "64", "busybox",
                        "sh", "-c", "read line; exit 0", stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                        stderr=subprocess.PIPE)
    seen, named_at = [], None
    try:
        deadline = time.monotonic() + 30
        # from the record's first appearance, past the 0.4 s before its cgroup, until
        # the state names it, and 0.3 s more
        while time.monotonic() < min(deadline, (named_at or deadline) + 0.3) and proc.poll() is None:
            for state_file in (mr.root / "containers").glob("*/state.json"):
                try:
                    state = json.loads(state_file.read_text())
                except (OSError, ValueError):
                    continue            # replaced meanwhile
                paths = (state.get("cgroup") or {}).get("paths") or []
                if state.get("status") == "running":
                    seen.append((bool(paths), all(os.path.isdir(p) for p in paths)))
                if paths and named_at is None:
                    named_at = time.monotonic()
            time.sleep(0.005)
        proc.stdin.close()
        assert proc.wait(timeout=10) == 0, proc.stderr.read()
    finally:
        stop(proc)
    assert seen, "no running state was seen"
    assert all(named and made for named, made in seen), seen


@pytest.mark.kernel
def test_rm_leaves_a_container_alone_while_it_is_being_set_up(mr, tmp_path):
    """While a foreground run makes its cgroup (held until the test opens a gate),
    its record says created; `rm` without -f must still see a container in use, not
    a stopped one."""
    mr.load("busybox")
    gate = tmp_path / "gate"
    proc = slowed.popen(mr, "minirun.linux.cgroups.files:_Driver.create", 60, "run", "--name", "su",
                        "--pids-limit", "64", "busybox", "true", gate=str(gate), stdout=subprocess.DEVNULL,
                        stderr=subprocess.PIPE)
    try:
        assert json.loads(slowed.first_record(mr).read_text())["status"] == "created"
        refused = mr("rm", "su")
        gate.touch()
        assert refused.returncode != 0 and "is starting" in refused.stderr, refused
        assert proc.wait(timeout=20) == 0, proc.stderr.read()
    finally:
        stop(proc)
    assert mr.inspect("su")["State"]["ExitCode"] == 0


@pytest.mark.kernel
def test_rm_f_of_a_container_being_set_up_kills_it_once_it_runs(mr):
    """rm -f while a run makes its cgroup: rm waits for the command to exist, kills
    it, and returns once the run has given everything back; nothing is left."""
    mr.load("busybox")
    proc = slowed.popen(mr, *SLOW_CGROUP, "run", "--name", "sf", "--pids-limit", "64", "busybox", "sleep", "60",
                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        cid = slowed.first_record(mr).parent.name
        asked = time.monotonic()
        removed = mr("rm", "-f", "sf", timeout=30)
        assert removed.returncode == 0, removed.stderr
        # not by running out its 10 s wait for the runtime and tearing down under it
        assert time.monotonic() - asked < 8, "rm -f waited out its limit"
        assert proc.wait(timeout=20) == 137, proc.stderr.read()
    finally:
        stop(proc)
    assert mr.ok("ps", "-a", "-q").stdout == ""
    assert not os.path.exists(f"/sys/fs/cgroup/pids/minirun/{cid}")


# _join (the cgroup, network and go-ahead) made 0.5 s long
SLOW_JOIN = ("minirun.run.start:_join", 0.5)


@pytest.mark.kernel
def test_a_signal_during_set_up_ends_the_run_and_it_cleans_up(mr):
    """SIGTERM to `minirun run` before its command has started ends the run as Ctrl-C
    does (130, its end recorded, its cgroup gone), not killed half-way by the default
    action (which left a running record, its cgroup and an address behind)."""
    mr.load("busybox")
    proc = slowed.popen(mr, *SLOW_JOIN, "run", "--name", "sg", "--pids-limit", "64", "busybox", "sleep", "30",
                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        slowed.first_record(mr)
        time.sleep(0.1)                         # inside the slow _join
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 130, proc.stderr.read()
    finally:
        stop(proc)
    state = mr.inspect("sg")["State"]
    assert state["Status"] == "exited" and state["ExitCode"] is not None, state
    assert "runtime process died" not in (state.get("Error") or ""), state
    assert not os.path.exists(f"/sys/fs/cgroup/pids/minirun/{mr.inspect('sg')['Id']}")


# ---------------------------------------------------------------- networking

def host_addresses() -> list[str]:
    out = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True,
                         check=True).stdout
    return [line.split()[3].split("/")[0] for line in out.splitlines()
            if not line.split()[3].startswith("127.")]


@pytest.mark.kernel
def test_network_none_has_only_lo_up(mr):
    mr.load("busybox")
    others = host_addresses()
    script = ("ls /sys/class/net | tr '\\n' ' '; echo; cat /sys/class/net/lo/flags; "
              "ping -c1 -w3 127.0.0.1 >/dev/null && echo lo-ping-ok; "
              + "".join(f"ping -c1 -W1 {a} >/dev/null 2>&1 && echo reached-{a}; " for a in others[:2])
              + "true")
    lines = sh_ok(mr, script).splitlines()
    assert lines[0].split() == ["lo"]
    assert int(lines[1], 16) & 0x1, "lo is down"
    assert "lo-ping-ok" in lines
    assert not [line for line in lines if line.startswith("reached-")], lines


@pytest.mark.kernel
def test_network_host_sees_the_hosts_interfaces(mr):
    mr.load("busybox")
    before = netfixtures.link_names()
    out = sh_ok(mr, "readlink /proc/self/ns/net; ls /sys/class/net", "--network", "host")
    after = netfixtures.link_names()
    netns, *inside = out.split()
    assert netns == os.readlink("/proc/self/ns/net")
    # other tests add and remove links meanwhile: compare with what existed throughout
    assert before & after <= set(inside) <= before | after, (sorted(inside), sorted(before & after))


def busybox_ping(address: str) -> subprocess.CompletedProcess:
    return subprocess.run(["busybox", "ping", "-c1", "-w3", address], capture_output=True, text=True,
                          timeout=10)


@pytest.mark.kernel
def test_bridge_network_end_to_end(mr, bridge_net):
    import ipaddress
    bridge, subnet = bridge_net
    gateway = str(next(ipaddress.ip_network(subnet).hosts()))
    mr.load("busybox")
    server = mr.popen("run", "--name", "srv", "--network", "bridge", "busybox", "sh", "-c",
                      "for f in /etc/hosts /etc/hostname /etc/resolv.conf; do test -s $f || echo missing-$f; done; "
                      "echo ADDR $(tail -n1 /etc/hosts); exec nc -l -p 8080 -e echo hi-from-srv",
                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = read_line(server.stdout, 15)
        assert line.startswith("ADDR "), line + server.stderr.read() if server.poll() is not None else line
        address, hostname = line.split()[1:3]
        assert ipaddress.ip_address(address) in ipaddress.ip_network(subnet)
        assert netfixtures.bridge_ports(bridge) == [ipam.veth_name(mr.inspect("srv")["Id"])]
        # the host reaches the container through the bridge
        pinged = busybox_ping(address)
        assert pinged.returncode == 0, pinged.stdout + pinged.stderr
        # a second container reaches the gateway and talks TCP to the first
        client = mr("run", "--name", "cli", "--network", "bridge", "busybox", "sh", "-c",
                    f"ping -c1 -w3 {gateway} >/dev/null && echo gateway-ok; "
                    f"for i in 1 2 3 4 5 6 7 8 9 10; do nc {address} 8080 && break; sleep 0.2; done",
                    timeout=30)
        assert client.returncode == 0, client.stderr
        assert client.stdout.split() == ["gateway-ok", "hi-from-srv"], client.stdout
        assert server.wait(timeout=10) == 0
        assert "missing-" not in server.stdout.read()
    finally:
        stop(server)
    ids = [mr.inspect(name)["Id"] for name in ("srv", "cli")]
    assert hostname == ids[0][:12]
    # the /etc files were bound in from the container dir, not written into the upper dir
    assert mr.ok("diff", "srv").stdout == ""
    assert ipam.allocations(str(mr.root)) == {}, "an address is still allocated"
    veths = {ipam.veth_name(cid) for cid in ids}
    assert not veths & netfixtures.link_names(), "a container's veth outlived it"
    assert netfixtures.bridge_ports(bridge) == []


def test_bridge_vs_none_start_latency(mr, bridge_net):
    """Prints the medians (run with -s); no assertion on speed."""
    mr.load("busybox")
    times: dict[str, list[float]] = {"none": [], "bridge": []}
    for _ in range(10):
        for mode in ("none", "bridge"):
            start = time.perf_counter()
            mr.ok("run", "--rm", "--network", mode, "busybox", "true")
            times[mode].append(time.perf_counter() - start)
    medians = {mode: statistics.median(values) * 1000 for mode, values in times.items()}
    print(f"\nrun --rm busybox true, median of 10: --network none {medians['none']:.0f} ms, "
          f"--network bridge {medians['bridge']:.0f} ms")
    assert ipam.allocations(str(mr.root)) == {}


# ---------------------------------------------------------------- volumes and --read-only

@pytest.mark.kernel
def test_rw_volume_write_is_seen_on_the_host_and_not_in_diff(mr, tmp_path):
    mr.load("busybox")
    host_dir = tmp_path / "vol"
    host_dir.mkdir()
    (host_dir / "from-host").write_text("hello\n")
    out = mr.ok("run", "--name", "v", "-v", f"{host_dir}:/data", "busybox", "sh", "-c",
                "cat /data/from-host; echo written > /data/from-ctr").stdout
    assert out == "hello\n"
    assert (host_dir / "from-ctr").read_text() == "written\n"
    assert mr.ok("diff", "v").stdout == "", "the volume or its mount point shows in diff"
    assert snapshot(mr.inspect("v")["UpperDir"]) == {}


@pytest.mark.kernel
def test_ro_volume_write_fails(mr, tmp_path):
    mr.load("busybox")
    host_dir = tmp_path / "ro"
    host_dir.mkdir()
    (host_dir / "keep").write_text("keep\n")
    out = sh(mr, "echo x > /data/new; echo new=$?; echo x >> /data/keep; echo append=$?; rm /data/keep; "
                 "echo rm=$?; cat /data/keep", "-v", f"{host_dir}:/data:ro")
    assert "new=0" not in out.stdout and "append=0" not in out.stdout and "rm=0" not in out.stdout
    assert "Read-only file system" in out.stderr
    assert sorted(os.listdir(host_dir)) == ["keep"] and (host_dir / "keep").read_text() == "keep\n"


@pytest.mark.kernel
def test_tmpfs_writes_stay_out_of_the_upper_dir(mr):
    mr.load("busybox")
    out = mr.ok("run", "--name", "t", "--tmpfs", "/scratch", "busybox", "sh", "-c",
                "echo t > /scratch/f && cat /scratch/f; grep ' /scratch ' /proc/self/mountinfo").stdout
    lines = out.splitlines()
    assert lines[0] == "t"
    assert " - tmpfs " in lines[1], lines[1]
    assert snapshot(mr.inspect("t")["UpperDir"]) == {}
    assert mr.ok("diff", "t").stdout == ""


@pytest.mark.kernel
def test_read_only_root_refuses_writes_and_upper_stays_empty(mr, tmp_path):
    mr.load("busybox")
    host_dir = tmp_path / "rw"
    host_dir.mkdir()
    result = mr("run", "--name", "ro", "--read-only", "-v", f"{host_dir}:/data", "busybox", "sh", "-c",
                "touch /x; echo root=$?; touch /tmp/y; echo tmp=$?; mkdir /etc/d; echo etc=$?; "
                "echo ok > /data/f; echo volume=$?")
    assert result.stdout.split() == ["root=1", "tmp=1", "etc=1", "volume=0"], result.stdout
    assert result.stderr.count("Read-only file system") == 3, result.stderr
    assert (host_dir / "f").read_text() == "ok\n"
    upper = mr.inspect("ro")["UpperDir"]
    assert not os.path.exists(upper) or snapshot(upper) == {}


# ---------------------------------------------------------------- --init

@pytest.mark.kernel
def test_init_is_pid_1_reaps_orphans_and_passes_the_exit_code(mr):
    mr.load("busybox")
    out = sh_ok(mr, 'sh -c "sleep 0.1 &"; sleep 1; ps -o pid,stat,comm', "--init")
    rows = [line.split() for line in out.splitlines()[1:]]
    assert any(row[0] == "1" and row[-1] == "minirun-init" for row in rows), out
    assert not [row for row in rows if row[1].startswith("Z")], f"zombies left: {out}"
    assert sh(mr, "exit 7", "--init").returncode == 7
    assert sh(mr, "kill -9 $$", "--init").returncode == 137


@pytest.mark.kernel
def test_sigterm_to_pid_1_is_forwarded_by_init(mr):
    mr.load("busybox")
    proc = mr.popen("run", "--name", "sig", "--init", "busybox", "sleep", "30",
                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        pid = wait_running(mr, "sig")["pid"]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:          # the command runs: init is past its set-up
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            if children and Path(f"/proc/{children[0]}/comm").read_text().strip() == "sleep":
                break
            time.sleep(0.02)
        assert Path(f"/proc/{pid}/comm").read_text().strip() == "minirun-init"
        time.sleep(0.1)
        os.kill(pid, signal.SIGTERM)
        code = proc.wait(timeout=10)
    finally:
        stop(proc)
    assert code == 128 + signal.SIGTERM, proc.stderr.read()
    state = mr.only_state()
    assert state["exit_code"] == 143


@pytest.mark.kernel
def test_a_crashed_runtime_gives_back_its_address_and_cgroup(mr, bridge_net):
    """The monitor of a -d container and the container itself are killed with SIGKILL:
    nothing records the end, so `rm` (or the next bridge run) gives the address and
    the cgroup back."""
    mr.load("busybox")
    cid = mr.ok("run", "-d", "--name", "crash", "--network", "bridge", "--pids-limit", "50",
                "busybox", "sleep", "60").stdout.strip()
    state = mr.running_state("crash")
    allocations = mr.root / "networks" / "allocations.json"
    assert cid in json.loads(allocations.read_text())["allocations"]
    cgroup_dirs = [p for p in state["cgroup"]["paths"] if os.path.isdir(p)]
    assert cgroup_dirs
    monitors = [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid()
                and f"MINIRUN_ROOT={mr.root}".encode() in _environ(p)]
    for pid in monitors + [state["pid"]]:
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while mr.only_state()["status"] != "exited" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert mr.only_state()["status"] == "exited"
    assert cid in json.loads(allocations.read_text())["allocations"], "nothing should have run cleanup yet"
    mr.ok("rm", "crash")
    assert cid not in json.loads(allocations.read_text())["allocations"]
    assert not any(os.path.isdir(p) for p in cgroup_dirs)


def _environ(pid: str) -> bytes:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return b""


@pytest.mark.kernel
def test_the_container_never_has_our_terminal(mr, tmp_path):
    """Its own session: our terminal is not its controlling tty, so TIOCSTI cannot type
    into the user's shell (busybox has no TIOCSTI tool; /dev/tty must not open)."""
    mr.load("busybox")
    for flags in ([], ["-i"]):
        out = mr.ok("run", "--rm", *flags, "busybox", "sh", "-c",
                    "cat /proc/self/stat | cut -d' ' -f6,7; (exec 3<>/dev/tty) 2>/dev/null && echo TTY-OPEN || true")
        session, tty_nr = out.stdout.split()[:2]
        assert tty_nr == "0", f"the container has a controlling terminal: {out.stdout}"
        assert "TTY-OPEN" not in out.stdout


@pytest.mark.kernel
def test_a_device_node_made_in_a_volume_cannot_be_opened(mr, tmp_path):
    vol = tmp_path / "vol"
    vol.mkdir()
    mr.load("busybox")
    out = sh(mr, "mknod /v/null c 1 3 && echo made; (exec 3</v/null) 2>/dev/null && echo OPENED || echo DENIED",
             "-v", f"{vol}:/v")
    assert "made" in out.stdout and "DENIED" in out.stdout, out.stdout


@pytest.mark.kernel
def test_init_that_cannot_fork_under_pids_limit_says_why(mr):
    mr.load("busybox")
    result = mr("run", "--rm", "--init", "--pids-limit", "1", "busybox", "true")
    assert result.returncode == 125, result
    assert "could not start the command (clone)" in result.stderr and "--pids-limit" in result.stderr, result.stderr
