"""minirun-oci under its real callers (issue 18): Debian's podman (with conmon) and
containerd (with ctr and its runc v2 shim) start containers through it.

Each caller runs in a private mount namespace held open for the whole test
(`Sealed`): /run, /var/tmp and /var/lib there are fresh tmpfs mounts, so the
runtime's state (/run/minirun-oci, which podman does not override, and
/run/containerd/runc, which the shim passes as --root), podman's caches and
containerd's shims never touch the host's. Everything else lives under the
test's tmp dir; the cgroups the callers ask for sit under a parent named for
the test, removed at the end, and the namespace's processes are killed.
"""

from __future__ import annotations

import fcntl
import os
import select
import shutil
import signal
import subprocess
import termios
import time
import uuid
from pathlib import Path

import pytest

from .peers import PODMAN_CONF, mounts_under, remove_cgroups, require

pytestmark = [pytest.mark.root, pytest.mark.kernel]
_SEAL = """set -e
mount -t tmpfs -o mode=0755,size=64m tmpfs /run
mount -t tmpfs -o mode=1777,size=512m tmpfs /var/tmp
mount -t tmpfs -o mode=0755,size=64m tmpfs /var/lib
exec sleep 100000
"""


def runtime() -> str:
    path = shutil.which("minirun-oci") or str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "minirun-oci")
    if not os.access(path, os.X_OK):
        pytest.skip("minirun-oci is not installed (bash scripts/setup.sh)")
    resolved = str(Path(path).resolve())
    if any(resolved.startswith(d + "/") for d in ("/run", "/var/tmp", "/var/lib")):
        # as peers.sealed: the callers' namespace (Sealed) covers those with fresh tmpfs
        pytest.skip(f"{resolved} lies under /run, /var/tmp or /var/lib, which the callers get fresh "
                    "and empty; use a checkout elsewhere")
    return path


class Sealed:
    """A mount namespace of the test's own, with fresh /run, /var/tmp and /var/lib;
    run() starts commands in it (nsenter), close() kills everything left in it."""

    def __init__(self):
        require("unshare", "nsenter")
        self.holder = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c", _SEAL])
        deadline = time.monotonic() + 10
        while os.stat(f"/proc/{self.holder.pid}/ns/mnt").st_ino == os.stat("/proc/self/ns/mnt").st_ino or \
                not self._sealed():
            assert time.monotonic() < deadline and self.holder.poll() is None, "the private namespace did not start"
            time.sleep(0.02)

    def _sealed(self) -> bool:
        try:
            with open(f"/proc/{self.holder.pid}/mountinfo") as f:
                return any(line.split()[4] == "/var/lib" for line in f)
        except OSError:
            return False

    def argv(self, *args: str) -> list[str]:
        return ["nsenter", f"--mount=/proc/{self.holder.pid}/ns/mnt", "--", *args]

    def run(self, *args: str, env=None, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run(self.argv(*args), capture_output=True, text=True, env=env, timeout=timeout,
                              stdin=subprocess.DEVNULL)
        if check:
            assert done.returncode == 0, f"{' '.join(args)} -> {done.returncode}\n{done.stderr}{done.stdout}"
        return done

    def close(self) -> None:
        namespace = os.stat(f"/proc/{self.holder.pid}/ns/mnt").st_ino
        for _ in range(3):
            for name in os.listdir("/proc"):
                if name.isdigit() and int(name) != self.holder.pid:
                    try:
                        if os.stat(f"/proc/{name}/ns/mnt").st_ino == namespace:
                            os.kill(int(name), signal.SIGKILL)
                    except OSError:
                        pass
            time.sleep(0.1)
        self.holder.kill()
        self.holder.wait()


def kill_cgroup(name: str) -> None:
    """SIGKILL every process in the cgroup `name` and below, in every hierarchy: a
    container's processes are in mount namespaces of their own, which Sealed.close()
    does not see, but always in the cgroup the caller asked for."""
    for _ in range(50):
        pids = set()
        for procs in Path("/sys/fs/cgroup").glob(f"*/{name}/**/cgroup.procs"):
            try:
                pids |= {int(line) for line in procs.read_text().split()}
            except OSError:
                pass
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.1)


# ---------------------------------------------------------------- podman

class Podman:
    def __init__(self, base: Path, sealed: Sealed):
        require("podman", "conmon")
        self.base, self.sealed, self.runtime = base, sealed, runtime()
        self.parent = f"minirun-oci-callers-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        # the runroot (at most 50 characters for podman) is in the private /run
        for sub in ("root", "tmp", "libpod-tmp", "networks"):
            (base / sub).mkdir(parents=True, exist_ok=True)
        (base / "containers.conf").write_text(PODMAN_CONF + f'image_copy_tmp_dir = "{base / "tmp"}"\n')
        (base / "storage.conf").write_text(
            f'[storage]\ndriver = "vfs"\nrunroot = "/run/podman"\ngraphroot = "{base / "root"}"\n')
        self.env = dict(os.environ, CONTAINERS_CONF=str(base / "containers.conf"),
                        CONTAINERS_STORAGE_CONF=str(base / "storage.conf"), TMPDIR=str(base / "tmp"))

    def argv(self, *args: str) -> list[str]:
        return ["podman", "--runtime", self.runtime, "--root", str(self.base / "root"), "--runroot",
                "/run/podman", "--tmpdir", str(self.base / "libpod-tmp"), "--storage-driver", "vfs",
                "--network-config-dir", str(self.base / "networks"), *args]

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.sealed.run(*self.argv(*args), env=self.env, check=check)

    def run_args(self, *args: str) -> list[str]:
        # conmon stays in the caller's cgroup (podman would make libpod_parent/conmon for it)
        return ["run", "--network", "none", "--cgroups", "no-conmon", "--cgroup-parent", "/" + self.parent, *args]

    def cleanup(self) -> None:
        self("rm", "--all", "--force", check=False)
        self("rmi", "--all", "--force", check=False)


@pytest.fixture
def podman(tmp_path, fixtures):
    # podman exec puts its conmon in libpod_parent/conmon, whatever run's --cgroups said
    had_libpod = any(Path("/sys/fs/cgroup").glob("*/libpod_parent"))
    sealed = Sealed()
    pm = Podman(tmp_path / "podman", sealed)
    try:
        pm("load", "-q", "-i", str(fixtures / "docker-archive" / "busybox.tar"))
        yield pm
        pm.cleanup()
    finally:
        sealed.close()
        kill_cgroup(pm.parent)
        for point in reversed(mounts_under(tmp_path)):
            subprocess.run(["umount", "-l", point], capture_output=True)
        remove_cgroups(pm.parent)
        if not had_libpod:
            remove_cgroups("libpod_parent")
    assert not any(Path("/sys/fs/cgroup").glob(f"*/{pm.parent}")), "cgroups left behind"


def test_podman_run_rm(podman):
    done = podman(*podman.run_args("--rm", "busybox", "true"))
    assert done.returncode == 0
    done = podman(*podman.run_args("--rm", "busybox", "sh", "-c", "echo hello; exit 3"), check=False)
    assert done.returncode == 3 and done.stdout == "hello\n", done.stderr
    assert podman("ps", "-a", "-q").stdout == ""


def test_podman_detached_logs_exec_stop_rm(podman):
    podman(*podman.run_args("-d", "--name", "d1", "busybox", "sh", "-c",
                            "echo logged; trap 'exit 0' TERM; while :; do sleep 0.1; done"))
    deadline = time.monotonic() + 10
    while "logged" not in podman("logs", "d1").stdout and time.monotonic() < deadline:
        time.sleep(0.1)
    assert podman("logs", "d1").stdout == "logged\n"
    done = podman("exec", "d1", "sh", "-c", "echo in-exec; exit 4", check=False)
    assert (done.returncode, done.stdout) == (4, "in-exec\n"), done.stderr
    done = podman("exec", "-u", "1000:1000", "-w", "/tmp", "-e", "GREETING=hi", "d1",
                  "sh", "-c", "id -u; id -g; pwd; echo $GREETING; cat /proc/1/cmdline | tr '\\0' ' '")
    assert done.stdout.splitlines()[:4] == ["1000", "1000", "/tmp", "hi"]
    assert done.stdout.splitlines()[4].startswith("sh -c echo logged")     # the container's PID 1
    podman("exec", "-d", "d1", "sleep", "30")
    assert len(podman("top", "d1", "pid").stdout.split()) >= 3             # header, PID 1, the sleep
    podman("stop", "-t", "5", "d1")
    assert podman("inspect", "--format", "{{.State.ExitCode}}", "d1").stdout.strip() == "0"
    podman("rm", "d1")
    assert podman("ps", "-a", "-q").stdout == ""
    # no container's state is left (.cache holds the compiled seccomp profile)
    assert podman.sealed.run("sh", "-c", "ls /run/minirun-oci 2>/dev/null || true").stdout == ""


def _pty_session(argv: list[str], env: dict, script: bytes, timeout: float = 60) -> tuple[int, bytes]:
    """argv with a pty as its controlling terminal; script typed in; (exit code, all output)."""
    master, slave = os.openpty()

    def controlling():
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, preexec_fn=controlling)
    os.close(slave)
    output, sent, deadline = b"", False, time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                output += chunk
            if not sent and b"#" in output:           # busybox sh's root prompt
                os.write(master, script)
                sent = True
            if proc.poll() is not None and not ready:
                break
        return proc.wait(timeout=10), output
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)


def test_podman_run_interactive_terminal(podman):
    code, output = _pty_session(podman.sealed.argv(*podman.argv(*podman.run_args("-it", "--rm", "busybox", "sh"))),
                                podman.env, b"tty; echo $((6 * 7)); exit 5\n")
    assert code == 5, output
    assert b"/dev/pts/0" in output and b"42" in output


def test_podman_pids_limit(podman):
    done = podman(*podman.run_args("--rm", "--pids-limit", "20", "busybox", "sh", "-c",
                                   "cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max"))
    assert done.stdout.strip() == "20"


def test_podman_memory(podman):
    done = podman(*podman.run_args("--rm", "--memory", "64m", "busybox", "sh", "-c",
                                   "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null "
                                   "|| cat /sys/fs/cgroup/memory.max"))
    assert done.stdout.strip() == str(64 << 20)


@pytest.fixture(scope="module")
def sysprobe(tmp_path_factory) -> Path:
    from .test_seccomp import HERE
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        pytest.skip("needs gcc to build the static syscall probe (apt-get install gcc libc6-dev)")
    out = tmp_path_factory.mktemp("sysprobe") / "sysprobe"
    subprocess.run([gcc, "-static", "-O1", "-o", str(out), str(HERE / "sysprobe.c")], check=True)
    out.parent.chmod(0o755)
    return out


def test_podman_default_seccomp_profile_is_in_force(podman, sysprobe):
    """personality(ADDR_NO_RANDOMIZE) is refused by podman's default profile (ENOSYS,
    which no capability check gives) and allowed without one."""
    probe = ("-v", f"{sysprobe}:/sysprobe:ro", "busybox", "/sysprobe", "personality", "0x0040000")
    assert podman(*podman.run_args("--rm", *probe)).stdout == "personality=38\n"
    assert podman(*podman.run_args("--rm", "--security-opt", "seccomp=unconfined", *probe)).stdout == \
        "personality=0\n"
    podman(*podman.run_args("-d", "--name", "s1", "busybox", "sleep", "60"))
    exec_probe = podman("exec", "-d", "s1", "true")                  # exec too runs under the profile
    assert exec_probe.returncode == 0
    podman("cp", str(sysprobe), "s1:/tmp/sysprobe", check=False)
    podman("rm", "-f", "-t", "0", "s1")


# ---------------------------------------------------------------- containerd

_CONTAINERD_CONF = """version = 2
root = "{base}/root"
state = "{base}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
                    "io.containerd.snapshotter.v1.aufs", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "{base}/containerd.sock"
[ttrpc]
  address = "{base}/containerd.sock.ttrpc"
[debug]
  address = "{base}/debug.sock"
[metrics]
  address = ""
"""


class Containerd:
    def __init__(self, base: Path, sealed: Sealed):
        require("containerd", "ctr")
        self.base, self.sealed, self.runtime = base, sealed, runtime()
        base.mkdir(parents=True)
        (base / "config.toml").write_text(_CONTAINERD_CONF.format(base=base))
        self.log = open(base / "containerd.log", "w")
        self.daemon = subprocess.Popen(sealed.argv("containerd", "--config", str(base / "config.toml")),
                                       stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 30
        while self.ctr("version", check=False).returncode != 0:
            assert time.monotonic() < deadline and self.daemon.poll() is None, \
                f"containerd did not start: {(base / 'containerd.log').read_text()[-2000:]}"
            time.sleep(0.1)
        self.cgroup = f"minirun-oci-ctr-{os.getpid()}-{uuid.uuid4().hex[:6]}"

    def ctr(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.sealed.run("ctr", "--address", str(self.base / "containerd.sock"), *args, check=check)

    def close(self) -> None:
        self.daemon.terminate()
        try:
            self.daemon.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.daemon.kill()
            self.daemon.wait()
        self.log.close()


@pytest.fixture
def containerd(tmp_path):
    sealed = Sealed()
    daemon = None
    try:
        daemon = Containerd(tmp_path / "containerd", sealed)
        yield daemon
    finally:
        if daemon is not None:
            daemon.close()
            kill_cgroup(daemon.cgroup)
        sealed.close()
        for point in reversed(mounts_under(tmp_path)):
            subprocess.run(["umount", "-l", point], capture_output=True)
        if daemon is not None:
            remove_cgroups(daemon.cgroup)
    assert not any(Path("/sys/fs/cgroup").glob(f"*/{daemon.cgroup}")), "cgroups left behind"


def test_containerd_ctr_run_exec_kill(containerd, fixtures):
    ctr = containerd.ctr
    ctr("images", "import", "--all-platforms", str(fixtures / "docker-archive" / "busybox.tar"))
    image = next(line.split()[0] for line in ctr("images", "ls").stdout.splitlines()[1:] if "busybox" in line)
    done = ctr("run", "--rm", "--runc-binary", containerd.runtime, "--cgroup", f"/{containerd.cgroup}/r1",
               image, "r1", "sh", "-c", "echo from-ctr; exit 6", check=False)
    assert (done.returncode, done.stdout) == (6, "from-ctr\n"), done.stderr
    ctr("run", "-d", "--runc-binary", containerd.runtime, "--cgroup", f"/{containerd.cgroup}/d1",
        image, "d1", "sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.1; done")
    done = ctr("task", "exec", "--exec-id", "e1", "d1", "sh", "-c", "echo in-task; exit 9", check=False)
    assert (done.returncode, done.stdout) == (9, "in-task\n"), done.stderr
    assert len(ctr("task", "ps", "d1").stdout.splitlines()) >= 2
    ctr("task", "kill", "d1")                                        # SIGTERM
    deadline = time.monotonic() + 10
    while "STOPPED" not in ctr("task", "ls").stdout and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "STOPPED" in ctr("task", "ls").stdout
    ctr("task", "delete", "d1")
    ctr("containers", "delete", "d1")
    assert containerd.sealed.run("sh", "-c", "ls -A /run/containerd/runc/default 2>/dev/null || true").stdout == ""
