"""minirun-oci, the runc-compatible OCI runtime (issue 18), on the real kernel:
the lifecycle create/state/start/state/delete, run's exit code, kill by name and
number, and refusals that leave nothing behind (no state entry, mount or process)."""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .peers import mounts_under

pytestmark = pytest.mark.root
V1 = {c: os.path.exists(f"/sys/fs/cgroup/{c}/cgroup.procs") for c in ("devices", "pids", "cpu", "cpuset")}


class Oci:
    def __init__(self, root: Path):
        self.root = root
        self.wrapper: list[str] = []         # a command minirun-oci runs under (setpriv, ...)

    def __call__(self, *args: str, timeout: float = 30, stdout=None) -> subprocess.CompletedProcess:
        """Output through files, not pipes: a created container's init holds create's stdio."""
        import tempfile
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            done = subprocess.run([*self.wrapper, sys.executable, "-m", "minirun.ociruntime", "--root", str(self.root), *args],
                                  stdout=stdout or out, stderr=err, text=True, timeout=timeout,
                                  stdin=subprocess.DEVNULL)
            out.seek(0)
            err.seek(0)
            return subprocess.CompletedProcess(done.args, done.returncode, out.read(), err.read())

    def ok(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        done = self(*args, **kwargs)
        assert done.returncode == 0, f"minirun-oci {' '.join(args)} -> {done.returncode}\n{done.stderr}"
        return done

    def state(self, cid: str) -> dict:
        return json.loads(self.ok("state", cid).stdout)

    def entries(self) -> list[str]:
        """The containers' dirs (not .cache: seccomp programs compiled once, ociruntime/seccache.py)."""
        return sorted(n for n in os.listdir(self.root) if not n.startswith(".")) if self.root.exists() else []


@pytest.fixture
def bundle(mr, tmp_path) -> Path:
    mr.load("busybox")
    path = tmp_path / "bundle"
    mr.ok("bundle", "busybox", str(path), "--copy")
    (path / "rootfs").chmod(0o755)           # made 0700 under pytest's tmp dir; uid 1000 runs below
    if not V1["devices"]:                    # device rules need cgroup v1 here: tested apart
        _config(path, lambda d: d["linux"].pop("resources", None))
    return path


@pytest.fixture
def oci(tmp_path):
    runtime = Oci(tmp_path / "oci-state")
    yield runtime
    for cid in runtime.entries():
        runtime("delete", "--force", cid)
    assert runtime.entries() == []


def _config(bundle: Path, change) -> None:
    path = bundle / "config.json"
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


def _args(*args: str):
    def change(doc):
        doc["process"]["args"] = list(args)
    return change


def _wait_status(oci: Oci, cid: str, status: str, timeout: float = 10) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        current = oci.state(cid)
        if current["status"] == status or time.monotonic() > deadline:
            return current
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def test_lifecycle_create_state_start_delete(oci, bundle, tmp_path):
    out = tmp_path / "out"
    _config(bundle, _args("/bin/sh", "-c", "echo started > /tmp/mark; sleep 60"))
    pid_file = tmp_path / "pid"
    with open(out, "w") as stdout:
        oci.ok("create", "--bundle", str(bundle), "--pid-file", str(pid_file), "c1", stdout=stdout)
    created = oci.state("c1")
    assert created["status"] == "created" and created["id"] == "c1"
    assert created["pid"] == int(pid_file.read_text()) and _alive(created["pid"])
    assert created["bundle"] == str(bundle) and created["ociVersion"].startswith("1.")
    assert not (bundle / "rootfs" / "tmp" / "mark").exists()       # nothing runs before start
    assert oci("delete", "c1").returncode != 0                       # created: needs --force
    start = time.monotonic()
    oci.ok("start", "c1")
    assert time.monotonic() - start < 5
    assert oci.state("c1")["status"] == "running"
    assert oci("start", "c1").returncode != 0                        # only once
    oci.ok("kill", "c1", "KILL")
    stopped = _wait_status(oci, "c1", "stopped")
    assert stopped["status"] == "stopped"
    assert (bundle / "rootfs" / "tmp" / "mark").read_text() == "started\n"
    oci.ok("delete", "c1")
    assert oci.entries() == [] and not _alive(created["pid"])


def test_run_returns_the_exit_code_and_passes_stdio(oci, bundle):
    _config(bundle, _args("/bin/sh", "-c", "echo out; echo err >&2; hostname; exit 7"))
    _config(bundle, lambda d: d.update(hostname="oci-host"))
    done = oci("run", "--bundle", str(bundle), "r1")
    assert done.returncode == 7, done.stderr
    assert done.stdout == "out\noci-host\n" and done.stderr == "err\n"
    assert oci.entries() == []


def test_process_user_cwd_env_rlimits_and_masks(oci, bundle):
    def change(doc):
        doc["process"].update(args=["/bin/sh", "-c", "id -u; id -g; id -G; pwd; echo $GREETING; ulimit -n; "
                                    "cat /etc/passwd | wc -c; touch /proc/sys/x 2>/dev/null || echo ro"],
                              cwd="/tmp", env=["PATH=/bin", "GREETING=hi"])
        doc["process"]["user"] = {"uid": 1000, "gid": 1001, "additionalGids": [1002]}
        doc["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 123, "hard": 456}]
        doc["linux"]["maskedPaths"].append("/etc/passwd")
    assert (bundle / "rootfs" / "etc" / "passwd").stat().st_size > 0
    _config(bundle, change)
    done = oci("run", "--bundle", str(bundle), "u1")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:8] == ["1000", "1001", "1001 1002", "/tmp", "hi", "123", "0", "ro"]


@pytest.mark.parametrize("name", ["KILL", "SIGKILL", "9", "sigterm", "15"])
def test_kill_by_name_and_number(oci, bundle, name):
    # PID 1 of its namespace gets only the signals it handles: trap TERM
    _config(bundle, _args("/bin/sh", "-c", "trap 'exit 3' TERM; while :; do sleep 0.1; done"))
    oci.ok("create", "--bundle", str(bundle), "k1")
    oci.ok("start", "k1")
    pid = oci.state("k1")["pid"]
    oci.ok("kill", "k1", name)
    assert _wait_status(oci, "k1", "stopped")["status"] == "stopped"
    assert not _alive(pid)
    oci.ok("delete", "k1")


def test_kill_with_no_signal_sends_term_and_bad_signal_is_refused(oci, bundle):
    _config(bundle, _args("/bin/sh", "-c", "trap 'exit 3' TERM; while :; do sleep 0.1; done"))
    oci.ok("create", "--bundle", str(bundle), "k2")
    oci.ok("start", "k2")
    bad = oci("kill", "k2", "NOSUCH")
    assert bad.returncode != 0 and len(bad.stderr.strip().splitlines()) == 1 and "signal" in bad.stderr
    oci.ok("kill", "k2")
    assert _wait_status(oci, "k2", "stopped")["status"] == "stopped"
    oci.ok("delete", "k2")


def test_delete_force_kills_a_running_container(oci, bundle):
    _config(bundle, _args("/bin/sleep", "60"))
    oci.ok("create", "--bundle", str(bundle), "f1")
    oci.ok("start", "f1")
    pid = oci.state("f1")["pid"]
    oci.ok("delete", "--force", "f1")
    assert not _alive(pid) and oci.entries() == []


def test_duplicate_id_is_refused(oci, bundle):
    _config(bundle, _args("/bin/sleep", "60"))
    oci.ok("create", "--bundle", str(bundle), "d1")
    pid = oci.state("d1")["pid"]
    again = oci("create", "--bundle", str(bundle), "d1")
    assert again.returncode != 0 and "already exists" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1
    assert oci.state("d1")["pid"] == pid and _alive(pid)


@pytest.mark.parametrize("command", [["state"], ["kill"], ["delete"], ["start"], ["kill", "--all"]])
def test_unknown_id_is_refused(oci, command):
    done = oci(*command, "nosuch")
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [done.stderr.strip()] and "does not exist" in done.stderr
    assert "Traceback" not in done.stderr and oci.entries() == []


def _refused(oci: Oci, bundle: Path, words: str) -> None:
    before = set(mounts_under(bundle))
    done = oci("create", "--bundle", str(bundle), "bad")
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], done.stderr
    assert oci.entries() == [] and set(mounts_under(bundle)) == before
    assert _processes_naming(str(bundle)) == []


def _processes_naming(text: str) -> list[int]:
    """pgrep -f, without procps (the Debian 12 VM has none)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if text.encode() in cmdline and int(pid) != os.getpid():
            found.append(int(pid))
    return found


def test_missing_config_is_refused(oci, bundle):
    (bundle / "config.json").unlink()
    _refused(oci, bundle, "config.json")


def test_invalid_config_is_refused(oci, bundle):
    (bundle / "config.json").write_text("{not json")
    _refused(oci, bundle, "not valid JSON")


def test_unknown_oci_version_is_refused(oci, bundle):
    _config(bundle, lambda d: d.update(ociVersion="2.0.0"))
    _refused(oci, bundle, "ociVersion")


def test_rootfs_symlink_out_of_the_bundle_is_refused(oci, bundle, tmp_path):
    (tmp_path / "elsewhere").mkdir()
    (bundle / "escape").symlink_to(tmp_path / "elsewhere")
    _config(bundle, lambda d: d["root"].update(path="escape"))
    _refused(oci, bundle, "outside the bundle")


def test_mount_destination_symlink_out_of_rootfs_is_refused(oci, bundle, tmp_path):
    outside = tmp_path / "host-dir"
    outside.mkdir()
    (bundle / "rootfs" / "sneaky").symlink_to(outside)
    _config(bundle, lambda d: d["mounts"].append({"destination": "/sneaky/x", "type": "tmpfs",
                                                  "source": "tmpfs", "options": ["nosuid"]}))
    _refused(oci, bundle, "leads out of the container's root")
    assert list(outside.iterdir()) == []



@pytest.mark.kernel
@pytest.mark.parametrize("options", [["rbind", "ro", "nodev"], ["bind", "ro", "nodev", "relatime"]])
def test_a_symlink_in_a_bind_source_cannot_move_its_flags(oci, bundle, tmp_path, options):
    """The rootfs reaches /a as /x -> a/b/.., and the bind source holds b -> ../z: a
    second lookup of /x after the bind (old minirun-oci's remount) walked through the
    source to the container's / and left the ro,nodev bind writable."""
    source = tmp_path / "volume"
    source.mkdir()
    (source / "b").symlink_to("../z")        # relative: minirun-oci refuses a way out of the root
    (bundle / "rootfs" / "a" / "b").mkdir(parents=True)
    (bundle / "rootfs" / "z").mkdir()
    (bundle / "rootfs" / "x").symlink_to("a/b/..")
    _config(bundle, lambda d: d["mounts"].append({"destination": "/x", "type": "bind", "source": str(source),
                                                  "options": options}))
    _config(bundle, _args("sh", "-c", "grep ' /a ' /proc/self/mountinfo; echo pwned > /a/canary && echo WROTE; "
                                      "echo done"))
    out = oci.ok("run", "-b", str(bundle), "rolink").stdout
    fields = out.splitlines()[0].split()[5].split(",")
    assert "ro" in fields and "nodev" in fields, out
    assert "WROTE" not in out and "done" in out, out
    assert sorted(os.listdir(source)) == ["b"]


def _options_of(out: str, point: str) -> list[str]:
    for line in out.splitlines():
        fields = line.split()
        if len(fields) > 5 and fields[4] == point:
            return fields[5].split(",")
    raise AssertionError(f"{point} is not mounted:\n{out}")


@pytest.mark.kernel
@pytest.mark.parametrize("options", [["rbind", "ro", "nodev", "noatime"], ["rbind", "rro", "rnodev"],
                                     ["rbind", "ro", "nodev", "relatime", "sync", "defaults"]])
def test_every_mount_of_a_bind_gets_its_flags_whatever_the_options(oci, bundle, tmp_path, options):
    """An outside review: an atime option sent the flags down a remount that missed the
    submounts when the destination was not ASCII (/xé/sub stayed writable with
    devices) and dropped the source's own nosuid; rro was dropped silently."""
    source = tmp_path / "volume"
    source.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,nosuid", "minirun-test-vol", str(source)], check=True)
    try:
        (source / "sub").mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "minirun-test-sub", str(source / "sub")],
                       check=True)
        _config(bundle, lambda d: d["mounts"].append({"destination": "/xé", "type": "bind", "source": str(source),
                                                      "options": options}))
        _config(bundle, _args("sh", "-c", "cat /proc/self/mountinfo; echo pwned > /xé/sub/canary && echo WROTE; "
                                          "echo done"))
        out = oci.ok("run", "-b", str(bundle), "allflags").stdout
        for point in ("/xé", "/xé/sub"):
            assert {"ro", "nodev"} <= set(_options_of(out, point)), (point, out)
        assert "nosuid" in _options_of(out, "/xé"), out               # the source's own flag stays
        assert "WROTE" not in out and "done" in out, out
        assert os.listdir(source / "sub") == []
    finally:
        subprocess.run(["umount", "-R", str(source)], check=True)


def test_a_directory_bound_on_a_file_is_one_line(oci, bundle, tmp_path):
    (tmp_path / "volume").mkdir()
    _config(bundle, lambda d: d["mounts"].append({"destination": "/etc/passwd", "type": "bind",
                                                  "source": str(tmp_path / "volume"), "options": ["rbind"]}))
    _refused(oci, bundle, "one is a directory and the other is not")


def test_an_unknown_bind_option_is_refused_not_dropped(oci, bundle, tmp_path):
    (tmp_path / "volume").mkdir()
    _config(bundle, lambda d: d["mounts"].append({"destination": "/v", "type": "bind", "source": str(tmp_path / "volume"),
                                                  "options": ["rbind", "rro-typo"]}))
    _refused(oci, bundle, "rro-typo")

@pytest.mark.parametrize("field,change", [
    ("hooks.prestart[0].path", lambda d: d.update(hooks={"prestart": [{"path": "true"}]})),
    ("linux.uidMappings", lambda d: d["linux"].update(uidMappings=[{"containerID": 0, "hostID": 1000, "size": 1}])),
    ("linux.namespaces: user with a path", lambda d: d["linux"]["namespaces"].append({"type": "user",
                                                                                       "path": "/proc/1/ns/user"})),
    ("process.terminal", lambda d: d["process"].update(terminal=True)),
    ("linux.resources.blockIO", lambda d: d["linux"].update(resources={"blockIO": {"weight": 100}})),
    ("linux.resources.cpu.nosuch", lambda d: d["linux"].update(resources={"cpu": {"nosuch": 1}})),
    ("linux.resources.rdma", lambda d: d["linux"].update(resources={"rdma": {"mlx4_0": {"hcaHandles": 1}}})),
])
def test_fields_it_cannot_honour_are_refused_by_name(oci, bundle, field, change):
    _config(bundle, change)
    _refused(oci, bundle, field)


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs util-linux's setpriv")
@pytest.mark.parametrize("kind", ["permitted", "effective", "inheritable"])
def test_capabilities_minirun_oci_lacks_fail_create(oci, bundle, kind):
    """runc fails create when capset would refuse a set; before, minirun-oci's create
    succeeded and the init died after start. setpriv takes CAP_SYS_NICE from its bounding
    set, so the root process it execs (minirun-oci) lacks it."""
    oci.wrapper = ["setpriv", "--bounding-set", "-sys_nice"]
    sets = {kind, "bounding"} | ({"permitted"} if kind == "effective" else set())   # effective needs permitted
    _config(bundle, lambda d: d["process"]["capabilities"].update(
        {k: [*d["process"]["capabilities"].get(k, []), "CAP_SYS_NICE"] for k in sets}))
    refused = "permitted" if kind == "effective" else kind
    _refused(oci, bundle, f"process.capabilities.{refused}: CAP_SYS_NICE")
    oci.wrapper = []                         # the same config with every capability there: it runs
    _config(bundle, _args("/bin/sh", "-c", "grep CapPrm /proc/self/status"))
    oci.ok("create", "--bundle", str(bundle), "c1")
    oci.ok("start", "c1")


def test_effective_beyond_permitted_fails_create(oci, bundle):
    """capset refuses effective beyond permitted: create says so, naming both sets."""
    _config(bundle, lambda d: d["process"]["capabilities"].update(effective=["CAP_KILL", "CAP_NET_RAW"],
                                                                  permitted=["CAP_KILL"]))
    _refused(oci, bundle, "process.capabilities.effective: CAP_NET_RAW: not in process.capabilities.permitted")


def test_inheritable_beyond_the_bounding_set_fails_create(oci, bundle):
    _config(bundle, lambda d: d["process"]["capabilities"].update(bounding=["CAP_KILL"],
                                                                  inheritable=["CAP_NET_RAW"]))
    _refused(oci, bundle, "process.capabilities.inheritable: CAP_NET_RAW")


def test_missing_program_fails_create_and_leaves_nothing(oci, bundle):
    _config(bundle, _args("/no/such/program"))
    _refused(oci, bundle, "no such executable")


def test_global_flags_features_and_json_log(oci, tmp_path, bundle):
    log = tmp_path / "log.json"
    done = subprocess.run([sys.executable, "-m", "minirun.ociruntime", "--root", str(oci.root), "--log", str(log),
                           "--log-format", "json", "--cgroup-manager=cgroupfs", "state", "nosuch"],
                          capture_output=True, text=True)
    assert done.returncode != 0
    entry = json.loads(log.read_text().splitlines()[0])
    assert entry["level"] == "error" and "nosuch" in entry["msg"] and entry["time"]
    assert json.loads(oci.ok("features").stdout)["ociVersionMax"] == "1.1.0"
    assert oci("--systemd-cgroup", "state", "x").returncode != 0
    assert "minirun-oci" in oci.ok("--version").stdout
    launcher = Path(__file__).resolve().parents[2] / "bin" / "minirun-oci"
    done = subprocess.run([sys.executable, str(launcher), "--version"], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(launcher.parents[1])))
    assert done.returncode == 0 and done.stdout.startswith("minirun-oci version")


@pytest.mark.kernel
def test_seccomp_profile_is_applied(oci, bundle):
    def change(doc):
        doc["process"]["args"] = ["/bin/sh", "-c", "mkdir /tmp/d 2>&1; echo done"]
        doc["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
                                   "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO",
                                                 "errnoRet": 1}]}
    _config(bundle, change)
    done = oci("run", "--bundle", str(bundle), "s1")
    assert done.returncode == 0, done.stderr
    assert "Operation not permitted" in done.stdout and done.stdout.endswith("done\n")
    assert not (bundle / "rootfs" / "tmp" / "d").exists()


@pytest.mark.skipif(not V1["devices"], reason="needs the cgroup v1 devices controller")
@pytest.mark.kernel
def test_devices_cgroup_denies_a_device_node(oci, bundle):
    """linux.resources.devices deny-all (the default config): a node the container makes
    for a host disk cannot be opened, while /dev/null still can."""
    _config(bundle, _args("/bin/sh", "-c", "mknod /tmp/disk b 7 0 2>&1; head -c1 /tmp/disk >/dev/null 2>&1 "
                                           "&& echo opened || echo denied; echo x > /dev/null && echo null-ok"))
    done = oci("run", "--bundle", str(bundle), "v1")
    assert done.returncode == 0, done.stderr
    assert "denied" in done.stdout and "null-ok" in done.stdout and "opened" not in done.stdout


@pytest.mark.skipif(not all(V1[c] for c in ("pids", "cpu", "cpuset")), reason="needs cgroup v1 pids, cpu, cpuset")
@pytest.mark.kernel
def test_cgroups_path_pids_and_cpu_are_applied_and_removed(oci, bundle):
    name = f"minirun-oci-test-{os.getpid()}"
    groups = {c: Path("/sys/fs/cgroup") / c / name / "c" for c in ("pids", "cpu", "cpuset")}
    _config(bundle, lambda d: d["linux"].update(cgroupsPath=f"/{name}/c", resources={
        **d["linux"].get("resources", {}), "pids": {"limit": 17},
        "cpu": {"shares": 512, "period": 100000, "quota": 50000, "cpus": "0"}}))
    _config(bundle, _args("/bin/sleep", "60"))
    try:
        oci.ok("create", "--bundle", str(bundle), "p1")
        pid = oci.state("p1")["pid"]
        assert (groups["pids"] / "pids.max").read_text().strip() == "17"
        assert (groups["cpu"] / "cpu.shares").read_text().strip() == "512"
        assert (groups["cpu"] / "cpu.cfs_quota_us").read_text().strip() == "50000"
        assert (groups["cpuset"] / "cpuset.cpus").read_text().strip() == "0"
        for group in groups.values():
            assert str(pid) in (group / "cgroup.procs").read_text().split()
        oci.ok("delete", "--force", "p1")
        for group in groups.values():
            assert not group.exists() and not group.parent.exists()
    finally:
        for group in groups.values():
            for path in (group, group.parent):
                if path.exists():
                    path.rmdir()


@pytest.mark.kernel
def test_terminal_master_is_sent_over_the_console_socket(oci, bundle, tmp_path):
    import socket
    _config(bundle, _args("/bin/sh", "-c", "tty; stty size; echo hi-there"))
    _config(bundle, lambda d: d["process"].update(terminal=True, consoleSize={"height": 30, "width": 100}))
    path = str(tmp_path / "console.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    server.settimeout(20)
    try:
        oci.ok("create", "--bundle", str(bundle), "--console-socket", path, "t1")
        conn, _ = server.accept()
        _, fds, _, _ = socket.recv_fds(conn, 64, 1)
        conn.close()
        assert len(fds) == 1
        master = fds[0]
        oci.ok("start", "t1")
        output = b""
        deadline = time.monotonic() + 10
        while b"hi-there" not in output and time.monotonic() < deadline:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
        os.close(master)
        text = output.decode(errors="replace").replace("\r", "")
        assert "/dev/pts/0" in text and "30 100" in text and "hi-there" in text, text
        _wait_status(oci, "t1", "stopped")
        oci.ok("delete", "t1")
    finally:
        server.close()


def test_console_socket_without_terminal_is_refused(oci, bundle, tmp_path):
    before = set(mounts_under(bundle))
    done = oci("create", "--bundle", str(bundle), "--console-socket", str(tmp_path / "none.sock"), "t2")
    assert done.returncode != 0 and "process.terminal is false" in done.stderr
    assert oci.entries() == [] and set(mounts_under(bundle)) == before


def test_kill_of_a_stopped_container_fails(oci, bundle):
    _config(bundle, _args("/bin/true"))
    oci.ok("create", "--bundle", str(bundle), "k3")
    oci.ok("start", "k3")
    assert _wait_status(oci, "k3", "stopped")["status"] == "stopped"
    done = oci("kill", "k3", "KILL")
    assert done.returncode != 0 and "stopped" in done.stderr
    oci.ok("delete", "k3")


def test_read_only_rbind_makes_every_submount_read_only(oci, bundle, tmp_path):
    """The `cgroup` mount of runc's spec binds the host's /sys/fs/cgroup: none of its
    hierarchies may be writable inside, or the container could change the host's cgroups."""
    _config(bundle, lambda d: d["mounts"].append({"destination": "/hostcg", "type": "bind",
                                                  "source": "/sys/fs/cgroup", "options": ["rbind", "ro"]}))
    _config(bundle, _args("/bin/sh", "-c", "grep ' /hostcg' /proc/self/mountinfo | awk '{print $6}' | "
                                           "cut -d, -f1 | sort | uniq -c"))
    done = oci("run", "--bundle", str(bundle), "ro1")
    assert done.returncode == 0, done.stderr
    assert "rw" not in done.stdout.split() and " ro" in done.stdout, done.stdout


def test_kill_all_signals_every_process_of_the_container(oci, bundle):
    _config(bundle, _args("/bin/sh", "-c", "sleep 60 & sleep 60 & wait"))
    oci.ok("create", "--bundle", str(bundle), "ka")
    oci.ok("start", "ka")
    pid = oci.state("ka")["pid"]
    deadline = time.monotonic() + 10
    children = []
    while len(children) < 2 and time.monotonic() < deadline:
        children = [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
        time.sleep(0.05)
    assert len(children) == 2
    # TERM: PID 1 (sh, no handler) ignores it, so only --all reaches the sleeps; then sh's wait ends
    oci.ok("kill", "--all", "ka", "TERM")
    assert _wait_status(oci, "ka", "stopped")["status"] == "stopped"
    deadline = time.monotonic() + 5
    while any(_alive(c) for c in children) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(c) for c in children)
    oci.ok("delete", "ka")


def test_delete_force_removes_what_a_killed_create_left(oci):
    (oci.root / "half").mkdir(parents=True)          # a create killed before it wrote state.json
    assert oci("state", "half").returncode != 0
    assert oci("delete", "half").returncode != 0
    oci.ok("delete", "--force", "half")
    assert oci.entries() == []


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace to kill create at one exact step")
def test_delete_force_kills_the_init_of_a_create_killed_before_its_state(oci, bundle, tmp_path):
    """create SIGKILLed just as it puts state.json in place (strace injects the kill at
    that rename): the init has reported ready and waits on the exec fifo, with no state
    to find it by. delete --force must still kill it and remove its cgroups."""
    from minirun.linux.cgroups.ocigroup import PARENT
    cid = f"killed-{os.getpid()}"
    _config(bundle, _args("/bin/sleep", "60"))
    argv = ["strace", "-o", "/dev/null", "-P", str(oci.root / cid / "state.json.tmp"),
            "-e", "trace=rename,renameat,renameat2", "-e", "inject=rename,renameat,renameat2:signal=SIGKILL",
            sys.executable, "-m", "minirun.ociruntime", "--root", str(oci.root),
            "create", "--bundle", str(bundle), cid]
    groups = lambda: glob.glob(f"/sys/fs/cgroup/*/{PARENT}/{cid}") + glob.glob(f"/sys/fs/cgroup/{PARENT}/{cid}")
    with open(tmp_path / "out", "w") as out:
        killed = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=30)
    try:
        assert killed.returncode in (-9, 137), (tmp_path / "out").read_text()
        assert not (oci.root / cid / "state.json").exists()
        inits = _processes_naming(str(bundle))          # the init: a fork of create, same argv
        assert inits and all(_alive(p) for p in inits)  # the case itself: an init left waiting
        made = groups()
        assert made                                     # and its cgroups
        assert oci("state", cid).returncode != 0
        oci.ok("delete", "--force", cid)
        assert not any(_alive(p) for p in inits)
        assert oci.entries() == [] and groups() == []
    finally:
        for pid in _processes_naming(str(bundle)):
            os.kill(pid, 9)
        for path in groups():
            for _ in range(100):
                try:
                    os.rmdir(path)
                    break
                except OSError:
                    time.sleep(0.02)


# ---------------------------------------------------------------- attacks (a review's, on the first version)

def _with_host_loader(rootfs: Path) -> None:
    """The host interpreter's ELF loader and libraries in the image, so that the
    host's python could run there if anything exec'd it."""
    listing = subprocess.run(["ldd", sys.executable], capture_output=True, text=True).stdout
    for path in re.findall(r"(/\S+\.so[.\d]*)", listing):
        target = rootfs / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(os.path.realpath(path), target)


def test_the_program_never_runs_the_hosts_interpreter(oci, bundle):
    """CVE-2019-5736 class: the init is the host's python until its exec; a program
    path that leads to /proc/self/exe (a symlink the image ships, found in PATH) ran
    that python in the container, which could then write it through /proc/self/fd.
    Now the exec goes through the sealed-memfd trampoline, which is what it finds."""
    rootfs = bundle / "rootfs"
    _with_host_loader(rootfs)
    (rootfs / "usr/local/bin").mkdir(parents=True, exist_ok=True)
    os.symlink("/proc/self/exe", rootfs / "usr/local/bin/py")
    _config(bundle, _args("py", "-S", "-c", "print('the host interpreter ran')"))
    done = oci("run", "--bundle", str(bundle), "exe1")
    assert done.returncode != 0
    assert "host interpreter ran" not in done.stdout and "Python" not in done.stderr, (done.stdout, done.stderr)


def test_a_descriptor_of_the_callers_never_reaches_the_container(oci, bundle, tmp_path):
    """CVE-2024-21626 class: an fd the caller left open, as process.cwd
    (/proc/self/fd/N) or read through /proc/self/fd, led to the host's files."""
    canary = tmp_path / "canary"
    canary.mkdir()
    fd = os.open(canary, os.O_RDONLY | os.O_DIRECTORY)      # inheritable: as a careless caller's
    os.set_inheritable(fd, True)
    try:
        _config(bundle, _args("/bin/sh", "-c", f"ls /proc/self/fd; echo x > /proc/self/fd/{fd}/written"))
        done = subprocess.run([sys.executable, "-m", "minirun.ociruntime", "--root", str(oci.root), "run",
                               "--bundle", str(bundle), "fd1"], pass_fds=(fd,), capture_output=True, text=True,
                              timeout=30, stdin=subprocess.DEVNULL)
        assert str(fd) not in done.stdout.split(), done.stdout
        _config(bundle, lambda d: d["process"].update(cwd=f"/proc/self/fd/{fd}"))
        _config(bundle, _args("/bin/sh", "-c", "echo x > written; ls ../"))
        cwd = subprocess.run([sys.executable, "-m", "minirun.ociruntime", "--root", str(oci.root), "run",
                              "--bundle", str(bundle), "fd2"], pass_fds=(fd,), capture_output=True, text=True,
                             timeout=30, stdin=subprocess.DEVNULL)
        assert cwd.returncode != 0 and len(cwd.stderr.strip().splitlines()) == 1, cwd
    finally:
        os.close(fd)
    assert os.listdir(canary) == []


@pytest.mark.parametrize("change, words", [
    (lambda d: (d.update(hostname="h"), d["linux"].update(namespaces=[n for n in d["linux"]["namespaces"]
                                                                      if n["type"] != "uts"])), "uts"),
    (lambda d: d["linux"].update(sysctl={"kernel.core_pattern": "|/tmp/x"}), "not namespaced"),
    (lambda d: (d["linux"].update(sysctl={"net.ipv4.ip_forward": "1"}),
                d["linux"].update(namespaces=[n for n in d["linux"]["namespaces"] if n["type"] != "network"])),
     "network namespace"),
])
def test_host_wide_hostname_and_sysctls_are_refused(oci, bundle, change, words):
    """Run in UTS, network and IPC namespaces of the test's own: a runtime that let
    these through (the first version did) changes those, never this machine's."""
    _config(bundle, change)
    done = subprocess.run(["unshare", "--uts", "--net", "--ipc", sys.executable, "-m", "minirun.ociruntime",
                           "--root", str(oci.root), "create", "--bundle", str(bundle), "bad"],
                          capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], done.stderr
    assert oci.entries() == []


def test_a_namespaced_sysctl_is_set_even_under_a_read_only_proc_sys(oci, bundle):
    _config(bundle, lambda d: d["linux"].update(sysctl={"net.ipv4.ip_forward": "1"}))
    _config(bundle, lambda d: d["linux"].setdefault("readonlyPaths", []).append("/proc/sys"))
    _config(bundle, _args("cat", "/proc/sys/net/ipv4/ip_forward"))
    assert oci.ok("run", "--bundle", str(bundle), "sys1").stdout == "1\n"


@pytest.mark.skipif(shutil.which("runc") is None, reason="runc is not installed (its `runc spec` is the config tested)")
def test_runc_specs_default_config_runs(oci, bundle):
    """`runc spec` lists ambient capabilities with an empty inheritable set; the kernel
    raises none of them, and runc skips them. The run must not fail on them (it did:
    "raise ambient capability: Operation not permitted"), and must say what it skipped."""
    (bundle / "config.json").unlink()
    subprocess.run(["runc", "spec", "--bundle", str(bundle)], check=True, capture_output=True)
    _config(bundle, _args("/bin/sh", "-c", "grep CapAmb /proc/self/status; exit 3"))
    _config(bundle, lambda d: d["process"].update(terminal=False))
    done = oci("run", "--bundle", str(bundle), "spec1")
    assert done.returncode == 3, done.stderr
    assert done.stdout == "CapAmb:\t0000000000000000\n"
    assert "process.capabilities.ambient: CAP_AUDIT_WRITE, CAP_KILL, CAP_NET_BIND_SERVICE not raised" in done.stderr


# ---------------------------------------------------------------- a review of the killed-create record

def test_root_path_of_the_hosts_slash_without_a_mount_namespace_is_refused(oci, bundle):
    """Its mounts would land on the host's own, and delete would detach everything below /."""
    _config(bundle, lambda d: (d["root"].update(path="/"),
                               d["linux"].update(namespaces=[n for n in d["linux"]["namespaces"]
                                                             if n["type"] != "mount"])))
    _refused(oci, bundle, "root.path is the host's /")


def test_a_state_dir_others_can_write_is_refused(bundle, tmp_path):
    root = tmp_path / "shared-state"
    root.mkdir()
    root.chmod(0o777)
    done = Oci(root)("create", "--bundle", str(bundle), "w1")
    assert done.returncode == 3 and "writable by others" in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and os.listdir(root) == []


def test_a_state_root_that_is_a_file_fails_in_one_line(bundle, tmp_path):
    root = tmp_path / "a-file"
    root.write_text("")
    done = Oci(root)("create", "--bundle", str(bundle), "f1")
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_a_damaged_creating_record_makes_delete_touch_nothing_outside(oci, tmp_path):
    """creating.json naming a hierarchy's root, the host's / as a rootfs and pid 1: delete
    --force removes the dir and signals, unmounts and removes nothing else."""
    from minirun.ociruntime import state
    (oci.root / "dmg").mkdir(parents=True)
    before = open("/proc/self/mountinfo").read().count("\n")
    state.save_creating(str(oci.root), "dmg", {"pid": 1, "start_time": 1, "host_mounts": True, "rootfs": "/",
                                               "cgroups_made": ["/sys/fs/cgroup/pids", "/sys/fs/cgroup",
                                                                "/sys/fs/cgroup/pids/../cpu", "relative"],
                                               "cgroup_dirs": ["/sys/fs/cgroup/pids"]})
    oci.ok("delete", "--force", "dmg")
    assert oci.entries() == []
    assert open("/proc/self/mountinfo").read().count("\n") == before
    assert os.path.isdir("/sys/fs/cgroup/pids") or not V1["pids"]
