"""minirun-oci's cgroups (v1 here, v2 in the VM), hooks, kill --all, user namespaces,
a config without a mount namespace, and refusals that leave no state or cgroup."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from .peers import mounts_under, remove_cgroups
from .test_ociruntime import Oci, _args, _config, _refused, _wait_status, bundle, oci  # noqa: F401 - fixtures

pytestmark = pytest.mark.root
CG = Path("/sys/fs/cgroup")
V2 = (CG / "cgroup.controllers").exists()
V1_MEMORY = (CG / "memory" / "cgroup.procs").exists()
V1_PIDS = (CG / "pids" / "cgroup.procs").exists()
UNIFIED = CG / "unified" if (CG / "unified" / "cgroup.procs").exists() else CG if V2 else None


@pytest.fixture
def cgname():
    name = f"minirun-oci-more-{os.getpid()}"
    yield name
    remove_cgroups(name)


def _no_dirs_named(name: str) -> bool:
    return not list(CG.glob(name)) and not list(CG.glob(f"*/{name}"))


@pytest.mark.skipif(not V1_MEMORY, reason="needs the cgroup v1 memory controller")
@pytest.mark.kernel
def test_memory_limits_on_v1_are_written_and_the_cgroup_removed(oci, bundle, cgname):
    memory = {"limit": 50593792, "reservation": 40000000, "swappiness": 10, "disableOOMKiller": True}
    if (CG / "memory" / "memory.memsw.limit_in_bytes").exists():
        memory["swap"] = 60000000
    _config(bundle, lambda d: d["linux"].update(cgroupsPath=f"/{cgname}/m", resources={
        **d["linux"].get("resources", {}), "memory": memory}))
    _config(bundle, _args("/bin/sleep", "60"))
    oci.ok("create", "--bundle", str(bundle), "m1")
    group = CG / "memory" / cgname / "m"
    pid = oci.state("m1")["pid"]
    assert str(pid) in (group / "cgroup.procs").read_text().split()
    assert (group / "memory.limit_in_bytes").read_text().strip() == "50593792"
    assert (group / "memory.soft_limit_in_bytes").read_text().strip() == "39997440"   # page-rounded 40000000
    assert (group / "memory.swappiness").read_text().strip() == "10"
    assert "oom_kill_disable 1" in (group / "memory.oom_control").read_text()
    if "swap" in memory:
        assert (group / "memory.memsw.limit_in_bytes").read_text().strip() == "59998208"
    oci.ok("delete", "--force", "m1")
    assert _no_dirs_named(cgname)


@pytest.mark.skipif(not V1_MEMORY, reason="needs the cgroup v1 memory controller")
@pytest.mark.kernel
def test_kernel_memory_is_refused_by_name_and_leaves_no_cgroup(oci, bundle, cgname):
    _config(bundle, lambda d: d["linux"].update(cgroupsPath=f"/{cgname}/k", resources={
        **d["linux"].get("resources", {}), "memory": {"limit": 1 << 26, "kernel": 1 << 26}}))
    _refused(oci, bundle, "linux.resources.memory.kernel")
    assert _no_dirs_named(cgname)


@pytest.mark.skipif(not (V1_PIDS or V2), reason="needs cgroup v2 or the cgroup v1 pids controller")
@pytest.mark.kernel
def test_every_container_gets_a_cgroup_and_kill_all_signals_its_procs(oci, bundle):
    _config(bundle, _args("/bin/sh", "-c", "sleep 100 & sleep 100 & wait"))
    oci.ok("create", "--bundle", str(bundle), "k1")
    oci.ok("start", "k1")
    group = (CG if V2 else CG / "pids") / "minirun-oci" / "k1"
    deadline = time.monotonic() + 10
    while len((group / "cgroup.procs").read_text().split()) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    procs = [int(p) for p in (group / "cgroup.procs").read_text().split()]
    assert oci.state("k1")["pid"] in procs and len(procs) == 3
    oci.ok("kill", "--all", "k1", "KILL")
    assert _wait_status(oci, "k1", "stopped")["status"] == "stopped"
    oci.ok("delete", "k1")
    assert not group.exists()


@pytest.mark.skipif(not V2, reason="cgroup v2 only (the Debian 12 VM)")
@pytest.mark.kernel
def test_memory_pids_and_device_rules_on_v2(oci, bundle, cgname):
    _config(bundle, lambda d: d["linux"].update(cgroupsPath=f"/{cgname}/v", resources={
        "devices": [{"allow": False, "access": "rwm"}], "memory": {"limit": 1 << 26}, "pids": {"limit": 33}}))
    _config(bundle, _args("/bin/sh", "-c", "mknod /tmp/disk b 7 0; head -c1 /tmp/disk >/dev/null 2>&1 "
                                           "&& echo opened || echo denied; echo x > /dev/null && echo null-ok; "
                                           "cat /sys/fs/cgroup/memory.max 2>/dev/null; sleep 60"))
    out = bundle / "out"
    with open(out, "w") as stdout:
        oci.ok("create", "--bundle", str(bundle), "v2", stdout=stdout)
    group = CG / cgname / "v"
    assert (group / "memory.max").read_text().strip() == str(1 << 26)
    assert (group / "pids.max").read_text().strip() == "33"
    oci.ok("start", "v2")
    deadline = time.monotonic() + 10
    while "null-ok" not in out.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "denied" in out.read_text() and "null-ok" in out.read_text()
    oci.ok("delete", "--force", "v2")
    assert not group.exists()


@pytest.mark.skipif(UNIFIED is None, reason="needs a cgroup2 mount")
@pytest.mark.kernel
def test_the_v2_device_program_allows_only_the_listed_devices(tmp_path):
    """bpfdevices on a real cgroup2 dir (on a hybrid host, its empty unified mount)."""
    import subprocess
    import sys
    from minirun.linux import bpfdevices
    group = UNIFIED / f"minirun-oci-bpf-{os.getpid()}"
    group.mkdir()
    try:
        bpfdevices.attach(str(group), [(False, "a *:* rwm"), (True, "c 1:3 rwm"), (True, "c 1:5 r")])
        probe = ("import os\nfor p, m in (('/dev/null', os.O_RDWR), ('/dev/zero', os.O_RDONLY), "
                 "('/dev/zero', os.O_WRONLY), ('/dev/full', os.O_RDONLY)):\n"
                 "    try:\n        os.close(os.open(p, m)); print('ok')\n"
                 "    except PermissionError: print('denied')\n")
        done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                              preexec_fn=lambda: (group / "cgroup.procs").write_text(str(os.getpid())))
        assert done.stdout.split() == ["ok", "ok", "denied", "denied"], done.stderr
    finally:
        for _ in range(100):
            try:
                group.rmdir()
                break
            except OSError:
                time.sleep(0.02)


def _hook(log: Path, kind: str, shell: str = "/bin/sh", target: str | None = None, first: str = "") -> dict:
    return {"path": shell, "args": ["sh", "-c",
                                    f'{first}echo "{kind} $(readlink /proc/self/ns/mnt) $(cat)" >> {target or log}']}


def test_hooks_run_in_order_with_the_state_on_stdin(oci, bundle, tmp_path):
    log = bundle / "rootfs" / "tmp" / "hooks"
    _config(bundle, _args("/bin/true"))
    _config(bundle, lambda d: d.update(hostname="inside", hooks={
        "prestart": [_hook(log, "prestart")], "createRuntime": [_hook(log, "createRuntime")],
        "createContainer": [_hook(log, "createContainer")],
        # slow: poststart must still come after it (after the user's process is exec'd)
        "startContainer": [_hook(log, "startContainer", "/bin/sh", "/tmp/hooks", first="sleep 0.5; ")],
        "poststart": [_hook(log, "poststart")], "poststop": [_hook(log, "poststop")]}))
    oci.ok("create", "--bundle", str(bundle), "h1")
    pid = oci.state("h1")["pid"]
    mnt_ns = os.readlink(f"/proc/{pid}/ns/mnt")
    oci.ok("start", "h1")
    _wait_status(oci, "h1", "stopped")
    oci.ok("delete", "h1")
    lines = log.read_text().splitlines()
    kinds = [line.split(" ", 1)[0] for line in lines]
    assert kinds == ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"]
    where = {line.split(" ")[0]: line.split(" ")[1] for line in lines}
    assert where["createContainer"] == where["startContainer"] == mnt_ns        # the container's mounts
    assert where["prestart"] == where["poststop"] == os.readlink("/proc/self/ns/mnt")
    states = {line.split(" ")[0]: json.loads(line.split(" ", 2)[2]) for line in lines}
    assert states["prestart"]["id"] == "h1" and states["prestart"]["pid"] == pid
    assert states["prestart"]["status"] == "created" and states["prestart"]["bundle"] == str(bundle)
    assert states["poststart"]["status"] == "running" and states["poststop"]["status"] == "stopped"


def test_a_failing_prestart_hook_fails_create_and_leaves_nothing(oci, bundle):
    _config(bundle, lambda d: d.update(hooks={"prestart": [{"path": "/bin/sh", "args": ["sh", "-c", "exit 4"]}]}))
    _refused(oci, bundle, "hooks.prestart[0] (/bin/sh): exited with status 4")
    assert not (CG / "pids" / "minirun-oci" / "bad").exists()


@pytest.mark.kernel
def test_user_namespace_maps_the_container_root(oci, bundle):
    _config(bundle, _args("/bin/sh", "-c", "cat /proc/self/uid_map /proc/self/gid_map; id -u; "
                                           "touch /tmp/made; stat -c %u /tmp/made"))
    _config(bundle, lambda d: (d["linux"]["namespaces"].append({"type": "user"}), d["linux"].update(
        uidMappings=[{"containerID": 0, "hostID": 200000, "size": 65536}],
        gidMappings=[{"containerID": 0, "hostID": 200000, "size": 65536}])))
    done = oci("run", "--bundle", str(bundle), "u1")
    assert done.returncode == 0, done.stderr
    words = done.stdout.split()
    assert words[:6] == ["0", "200000", "65536", "0", "200000", "65536"] and words[6:] == ["0", "0"]
    assert (bundle / "rootfs" / "tmp" / "made").stat().st_uid == 200000


def test_without_a_mount_namespace_the_mounts_go_at_delete(oci, bundle):
    _config(bundle, lambda d: d["linux"].update(namespaces=[n for n in d["linux"]["namespaces"]
                                                            if n["type"] != "mount"]))
    _config(bundle, lambda d: d["root"].update(readonly=False))
    _config(bundle, _args("/bin/sh", "-c", "ls /proc/self/ns >/dev/null && echo in-root; sleep 60"))
    host_mnt = os.readlink("/proc/self/ns/mnt")
    oci.ok("create", "--bundle", str(bundle), "n1")
    pid = oci.state("n1")["pid"]
    assert os.readlink(f"/proc/{pid}/ns/mnt") == host_mnt
    assert os.readlink(f"/proc/{pid}/root") == str(bundle / "rootfs")
    assert mounts_under(bundle / "rootfs")                        # proc, dev, ... where the host sees them
    oci.ok("delete", "--force", "n1")
    assert mounts_under(bundle / "rootfs") == [] and oci.entries() == []
    _config(bundle, lambda d: d["root"].update(readonly=True))
    _refused(oci, bundle, "root.readonly needs a mount namespace")


@pytest.mark.skipif(not (V1_PIDS or V2), reason="needs the pids controller")
@pytest.mark.kernel
def test_the_cgroup_mount_shows_the_containers_own_cgroup(oci, bundle):
    limit_file = "/sys/fs/cgroup/pids.max" if V2 else "/sys/fs/cgroup/pids/pids.max"
    _config(bundle, lambda d: d["linux"].update(resources={**d["linux"].get("resources", {}),
                                                           "pids": {"limit": 42}}))
    _config(bundle, _args("/bin/sh", "-c", f"cat {limit_file}; touch /sys/fs/cgroup/x 2>/dev/null || echo ro"))
    done = oci("run", "--bundle", str(bundle), "g1")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["42", "ro"]


@pytest.mark.skipif(not V2, reason="cgroup v2 only: there a move into a cgroup with controllers below it is EBUSY")
@pytest.mark.kernel
def test_a_failed_join_kills_the_init_and_leaves_nothing(oci, bundle, cgname):
    """create moves the init into its cgroup while the init works; when the kernel refuses
    that move, create must kill the init (no process, mount or state left), as when the
    intermediate process's own join failed."""
    parent = CG / cgname
    (parent / "below").mkdir(parents=True)
    (parent / "cgroup.subtree_control").write_text("+memory")     # a domain controller: pids is threaded
    _config(bundle, lambda d: d["linux"].update(cgroupsPath=f"/{cgname}"))
    _config(bundle, lambda d: d["linux"].pop("resources", None))
    _refused(oci, bundle, "cannot move the container's init into its cgroups")
    assert (parent / "cgroup.procs").read_text() == ""


def _hugetlb_file(group_path: str, size: str) -> Path | None:
    """Where this host keeps a hugetlb limit of cgroupsPath group_path, or None with no
    hugetlb controller (v1 hierarchy or v2 controller)."""
    if (CG / "hugetlb" / "cgroup.procs").exists():
        return CG / "hugetlb" / group_path.lstrip("/") / f"hugetlb.{size}.limit_in_bytes"
    if V2 and "hugetlb" in (CG / "cgroup.controllers").read_text().split():
        return CG / group_path.lstrip("/") / f"hugetlb.{size}.max"
    return None


@pytest.mark.skipif(not os.path.exists("/sys/kernel/mm/hugepages/hugepages-2048kB"), reason="no 2 MB huge pages")
@pytest.mark.kernel
def test_hugepage_limits_are_written_or_refused_by_name(oci, bundle, cgname):
    """Applied where the kernel has a hugetlb controller (the VM's cgroup v2), refused
    in one line naming the field where it has none (this host's v1); a page size the
    kernel lacks is refused either way."""
    limit = 2 << 30
    _config(bundle, _args("/bin/sleep", "60"))
    _config(bundle, lambda d: d["linux"].update(cgroupsPath=f"/{cgname}/h", resources={
        **d["linux"].get("resources", {}), "hugepageLimits": [{"pageSize": "2MB", "limit": limit}]}))
    where = _hugetlb_file(f"/{cgname}/h", "2MB")
    if where is None:
        _refused(oci, bundle, "linux.resources.hugepageLimits")
    else:
        oci.ok("create", "--bundle", str(bundle), "h1")
        assert where.read_text().strip() == str(limit)
        assert str(oci.state("h1")["pid"]) in (where.parent / "cgroup.procs").read_text().split()
        oci.ok("delete", "--force", "h1")
    assert _no_dirs_named(cgname)
    _config(bundle, lambda d: d["linux"]["resources"].update(hugepageLimits=[{"pageSize": "3MB", "limit": limit}]))
    _refused(oci, bundle, "hugepageLimits" if where is None else "hugetlb.3MB")
    assert _no_dirs_named(cgname)


@pytest.mark.kernel
def test_network_classes_are_written_on_v1_or_refused_by_name(oci, bundle, cgname):
    _config(bundle, _args("/bin/sleep", "60"))
    _config(bundle, lambda d: d["linux"].update(cgroupsPath=f"/{cgname}/n", resources={
        **d["linux"].get("resources", {}), "network": {"classID": 0x100001,
                                                       "priorities": [{"name": "lo", "priority": 7}]}}))
    if (CG / "net_cls" / "cgroup.procs").exists() and (CG / "net_prio" / "cgroup.procs").exists():
        oci.ok("create", "--bundle", str(bundle), "n1")
        assert (CG / "net_cls" / cgname / "n" / "net_cls.classid").read_text().strip() == str(0x100001)
        assert "lo 7" in (CG / "net_prio" / cgname / "n" / "net_prio.ifpriomap").read_text().splitlines()
        oci.ok("delete", "--force", "n1")
    else:               # cgroup v2 (the VM), or a v1 host without them (this one)
        _refused(oci, bundle, "linux.resources.network")
    assert _no_dirs_named(cgname)


@pytest.mark.skipif(not (CG / "cpuset" / "cgroup.procs").exists(), reason="needs the cgroup v1 cpuset controller")
def test_every_v1_container_joins_a_cpuset_with_its_parents_cpus(oci, bundle, cgname):
    """As under runc: a cpuset cgroup even without linux.resources.cpu (runtime-tools'
    empty-cpu case reads its cpuset.cpus), filled from the parent, which v1 leaves empty."""
    _config(bundle, _args("/bin/sleep", "60"))
    _config(bundle, lambda d: d["linux"].update(cgroupsPath=f"/{cgname}/s", resources={
        k: v for k, v in d["linux"].get("resources", {}).items() if k != "cpu"}))
    (CG / "cpuset" / cgname).mkdir()        # there already, empty: as a create killed at its mkdir leaves it
    oci.ok("create", "--bundle", str(bundle), "s1")
    for group in (CG / "cpuset" / cgname, CG / "cpuset" / cgname / "s"):
        for name in ("cpuset.cpus", "cpuset.mems"):
            assert (group / name).read_text().strip() == (CG / "cpuset" / name).read_text().strip() != ""
    assert str(oci.state("s1")["pid"]) in (group / "cgroup.procs").read_text().split()
    oci.ok("delete", "--force", "s1")
    (CG / "cpuset" / cgname).rmdir()        # ours, not create's: delete leaves it
    assert _no_dirs_named(cgname)
