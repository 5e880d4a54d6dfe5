"""Container cgroups: flag parsing, detection, and both drivers against a fake cgroupfs.

The fake plays the kernel's part on a tmp_path tree, following
Documentation/admin-guide/cgroup-v2.rst and cgroup-v1/*.rst. mkdir fills in the
interface files of the controllers the parent passes down, subtree_control
accepts only available controllers, rmdir fails with EBUSY while tasks remain,
and cgroup.kill empties the group. It enforces no limit. The tests check which
files get written, with what values, and in what order.
"""

from __future__ import annotations

import errno
import json
import os

import pytest

from minirun.errors import EnvironmentProblem, RuntimeFailure, UsageError
from minirun.linux import cgroups
from minirun.linux.cgroups import CgroupFS, CgroupHandle, Limits, V1Driver, V2Driver

MiB = 1 << 20
CID = "c0ffee"

V2_CORE = {"cgroup.procs": "", "cgroup.subtree_control": "", "cgroup.events": "populated 0\nfrozen 0\n",
           "cgroup.kill": "", "cgroup.type": "domain"}
V2_FILES = {   # what each controller adds to a non-root cgroup
    "memory": {"memory.current": "0", "memory.max": "max", "memory.swap.max": "max",
               "memory.events": "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n"},
    "pids": {"pids.current": "0", "pids.max": "max", "pids.events": "max 0\n"},
    "cpu": {"cpu.max": "max 100000", "cpu.weight": "100", "cpu.stat": "usage_usec 0\n"},
    "io": {"io.max": ""},
}
V1_CORE = {"cgroup.procs": "", "tasks": "", "notify_on_release": "0", "cgroup.clone_children": "0"}
V1_FILES = {
    "memory": {"memory.limit_in_bytes": "9223372036854771712", "memory.memsw.limit_in_bytes": "9223372036854771712",
               "memory.failcnt": "0", "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n"},
    "pids": {"pids.max": "max", "pids.current": "0", "pids.events": "max 0\n"},
    "cpu,cpuacct": {"cpu.cfs_period_us": "100000", "cpu.cfs_quota_us": "-1", "cpu.shares": "1024"},
}


class FakeCgroupFS(CgroupFS):
    """The kernel's side of cgroupfs, on plain directories; every write is recorded."""

    def __init__(self, root, version, swap=True, kill_file=True, immortal=()):
        self.root, self.version = str(root), version
        self.swap, self.kill_file, self.immortal = swap, kill_file, set(immortal)
        self.writes: list[tuple[str, str]] = []
        self.killed: list[int] = []
        self.fail: dict[str, int] = {}          # file name -> errno its write fails with

    def rel(self, path):
        return os.path.relpath(path, self.root)

    def mkdir(self, path):
        os.mkdir(path)
        files = dict(V2_CORE if self.version == "v2" else V1_CORE)
        if self.version == "v2":
            passed = read(os.path.join(os.path.dirname(path), "cgroup.subtree_control")).split()
            files["cgroup.controllers"] = " ".join(passed)
            for controller in passed:
                files.update(V2_FILES[controller])
        else:
            hierarchy = os.path.realpath(path)[len(os.path.realpath(self.root)) + 1:].split("/")[0]
            files.update(V1_FILES[hierarchy])
        for name, text in files.items():
            if (self.swap or "swap" not in name and "memsw" not in name) and \
                    (self.kill_file or name != "cgroup.kill"):
                write(os.path.join(path, name), text)

    def rmdir(self, path):
        if any(e.is_dir() for e in os.scandir(path)) or read(os.path.join(path, "cgroup.procs")).split():
            raise OSError(errno.EBUSY, "Device or resource busy", path)
        for entry in os.scandir(path):
            os.unlink(entry.path)
        os.rmdir(path)

    def write(self, path, value):
        self.writes.append((self.rel(path), value))
        name = os.path.basename(path)
        if name in self.fail:
            raise OSError(self.fail[name], os.strerror(self.fail[name]), path)
        if not os.path.exists(path):
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", path)
        if name == "cgroup.subtree_control":
            self._subtree_control(path, value)
        elif name == "cgroup.procs":
            write(path, read(path) + value + "\n")
        elif name == "cgroup.kill":
            for directory, _, _ in os.walk(os.path.dirname(path)):
                procs = os.path.join(directory, "cgroup.procs")
                self.killed += [int(p) for p in read(procs).split()]
                write(procs, "")
        else:
            write(path, value)

    def _subtree_control(self, path, value):
        available = read(os.path.join(os.path.dirname(path), "cgroup.controllers")).split()
        enabled = read(path).split()
        for word in value.split():
            if word[1:] not in available:
                raise OSError(errno.ENOENT, "No such file or directory", path)
            enabled = [c for c in enabled if c != word[1:]] + ([word[1:]] if word[0] == "+" else [])
        write(path, " ".join(sorted(enabled)))

    def kill(self, pid):
        self.killed.append(pid)
        if pid in self.immortal:
            return
        for directory, _, _ in os.walk(self.root):
            procs = os.path.join(directory, "cgroup.procs")
            if os.path.exists(procs):
                write(procs, "".join(f"{p}\n" for p in read(procs).split() if int(p) != pid))


def read(path) -> str:
    with open(path) as f:
        return f.read()


def write(path, text) -> None:
    with open(path, "w") as f:
        f.write(text)


@pytest.fixture
def v2_tree(tmp_path):
    """A cgroup2 root as on Debian 12: systemd already passes cpu and memory down, not pids."""
    root = tmp_path / "cgroup"
    root.mkdir()
    for name, text in {"cgroup.controllers": "cpuset cpu io memory hugetlb pids rdma misc",
                       "cgroup.subtree_control": "cpu memory", "cgroup.procs": "1\n",
                       "cgroup.max.depth": "max", "cgroup.stat": "nr_descendants 0\n"}.items():
        write(root / name, text)
    return root


def make_v1_tree(root, controllers=("memory", "pids", "cpu,cpuacct")):
    """cgroup v1 as systemd mounts it: cpu and cpuacct co-mounted, with symlinks to the pair."""
    root.mkdir(exist_ok=True)
    for controller in controllers:
        (root / controller).mkdir()
        write(root / controller / "cgroup.procs", "1\n")
    if "cpu,cpuacct" in controllers:
        os.symlink("cpu,cpuacct", root / "cpu")
        os.symlink("cpu,cpuacct", root / "cpuacct")
    return root


@pytest.fixture
def v1_tree(tmp_path):
    return make_v1_tree(tmp_path / "cgroup")


# ---------------------------------------------------------------- parsing

@pytest.mark.parametrize("text, expected", [
    ("32m", 32 * MiB), ("32M", 32 * MiB), ("32mb", 32 * MiB), ("32MiB", 32 * MiB), ("1g", 1 << 30),
    ("2G", 2 << 30), ("8192k", 8 * MiB), ("10485760", 10 * MiB), ("10485760b", 10 * MiB),
    ("6m", 6 * MiB), ("1.5g", 3 << 29), (" 64m ", 64 * MiB), ("64 m", 64 * MiB), ("1t", 1 << 40),
])
def test_parse_memory(text, expected):
    assert cgroups.parse_memory(text) == expected


@pytest.mark.parametrize("text", ["", "m", "abc", "32x", "-32m", "1..5g", "32mbb", "0x10m", "1e9"])
def test_parse_memory_rejects_malformed(text):
    with pytest.raises(UsageError, match="not a size") as info:
        cgroups.parse_memory(text)
    assert "\n" not in info.value.line() and info.value.hint


@pytest.mark.parametrize("text", ["1048576", "512k", "6291455", "5m", "0"])
def test_parse_memory_minimum_is_6_mib_like_docker(text):
    with pytest.raises(UsageError, match="minimum of 6 MiB"):
        cgroups.parse_memory(text)


def test_parse_memory_refuses_more_than_the_kernel_counts():
    with pytest.raises(UsageError, match="too large"):
        cgroups.parse_memory("99999999p")


@pytest.mark.parametrize("text, expected", [("0.5", 0.5), ("2", 2.0), ("0.01", 0.01), ("1.25", 1.25)])
def test_parse_cpus(text, expected):
    assert cgroups.parse_cpus(text, available=2) == expected


@pytest.mark.parametrize("text", ["0", "-1", "0.001", "2.5", "3", "nan", "inf", "abc", ""])
def test_parse_cpus_rejects_out_of_range(text):
    with pytest.raises(UsageError, match="from 0.01 to 2") as info:
        cgroups.parse_cpus(text, available=2)
    assert "2 CPUs" in info.value.hint


def test_parse_cpus_defaults_to_this_hosts_cpus():
    assert cgroups.parse_cpus(str(cgroups.host_cpus())) == cgroups.host_cpus()


@pytest.mark.parametrize("value, expected", [("64", 64), (64, 64), ("1", 1), ("-1", None), (-1, None),
                                             ("0", None), (0, None)])
def test_parse_pids(value, expected):
    assert cgroups.parse_pids(value) == expected


@pytest.mark.parametrize("value", ["-2", "abc", "1.5", "", None])
def test_parse_pids_rejects(value):
    with pytest.raises(UsageError, match="--pids-limit"):
        cgroups.parse_pids(value)


def test_limits():
    assert Limits().empty
    assert not Limits(pids=1).empty
    assert Limits.parse("32m", "0.5", "64", available_cpus=2) == Limits(32 * MiB, 0.5, 64)
    assert Limits.parse(pids="-1").empty


def test_cpu_quota_is_microseconds_per_100ms_period():
    assert cgroups.cpu_quota(0.5) == 50_000
    assert cgroups.cpu_quota(1.5) == 150_000
    assert cgroups.cpu_quota(0.01) == 1_000


def test_plan_lists_memory_even_without_a_limit():
    assert cgroups.plan(Limits(), "v1") == {"memory": []}
    assert cgroups.plan(Limits(), "v2") == {"memory": []}
    assert cgroups.plan(Limits(pids=5), "v2") == {"memory": [], "pids": [("pids.max", "5", True)]}


# ---------------------------------------------------------------- detection

def test_detect_pure_v2(v2_tree):
    assert cgroups.detect(str(v2_tree)) == "v2"
    driver = cgroups.open_driver(str(v2_tree))
    assert isinstance(driver, V2Driver) and driver.root == str(v2_tree)


def test_detect_v1(v1_tree):
    assert cgroups.detect(str(v1_tree)) == "v1"
    assert isinstance(cgroups.open_driver(str(v1_tree)), V1Driver)


def test_detect_hybrid_with_empty_unified_is_v1(v1_tree):
    (v1_tree / "unified").mkdir()
    write(v1_tree / "unified" / "cgroup.controllers", "")
    write(v1_tree / "unified" / "cgroup.subtree_control", "")
    assert cgroups.detect(str(v1_tree)) == "v1"


def test_detect_hybrid_with_controllers_in_unified_is_v2(tmp_path):
    root = make_v1_tree(tmp_path / "cgroup", controllers=("cpu,cpuacct",))
    (root / "unified").mkdir()
    write(root / "unified" / "cgroup.controllers", "memory pids")
    assert cgroups.detect(str(root)) == "v2"
    assert cgroups.open_driver(str(root)).root == str(root / "unified")


def test_detect_nothing(tmp_path):
    assert cgroups.detect(str(tmp_path)) is None
    assert cgroups.open_driver(str(tmp_path)) is None
    assert cgroups.open_driver(str(tmp_path), Limits()) is None
    with pytest.raises(EnvironmentProblem, match="no cgroup controllers"):
        cgroups.open_driver(str(tmp_path), Limits(pids=10))


# ---------------------------------------------------------------- v2

def v2(root, **fake) -> tuple[V2Driver, FakeCgroupFS]:
    fs = FakeCgroupFS(root, "v2", **fake)
    return V2Driver(str(root), fs), fs


def test_v2_create_writes_the_limits(v2_tree):
    driver, fs = v2(v2_tree)
    handle = driver.create(CID, Limits(memory=32 * MiB, cpus=0.5, pids=64))
    assert fs.writes == [
        ("cgroup.subtree_control", "+pids"),       # cpu and memory were already passed down
        ("minirun/cgroup.subtree_control", "+memory +pids +cpu"),
        (f"minirun/{CID}/memory.max", "33554432"),
        (f"minirun/{CID}/memory.swap.max", "0"),
        (f"minirun/{CID}/pids.max", "64"),
        (f"minirun/{CID}/cpu.max", "50000 100000"),
    ]
    path = str(v2_tree / "minirun" / CID)
    assert handle.paths == [path] and handle.memory == path and handle.version == "v2"
    assert read(v2_tree / "cgroup.subtree_control") == "cpu memory pids"
    assert read(f"{path}/cgroup.controllers") == "cpu memory pids"
    assert read(f"{path}/memory.max") == "33554432" and read(f"{path}/cpu.max") == "50000 100000"


def test_v2_second_container_enables_nothing_again(v2_tree):
    driver, fs = v2(v2_tree)
    driver.create("one", Limits(pids=10))
    fs.writes.clear()
    driver.create("two", Limits(pids=10))
    assert fs.writes == [("minirun/two/pids.max", "10")]


def test_v2_no_limits_still_uses_memory_for_oom(v2_tree):
    driver, fs = v2(v2_tree)
    handle = driver.create(CID, Limits())
    assert fs.writes == [("minirun/cgroup.subtree_control", "+memory")]
    assert handle.memory == handle.paths[0]


def test_v2_without_swap_accounting_skips_swap_max(v2_tree):
    driver, fs = v2(v2_tree, swap=False)
    driver.create(CID, Limits(memory=64 * MiB))
    assert [w for w in fs.writes if "memory" in w[0]] == [(f"minirun/{CID}/memory.max", str(64 * MiB))]


def test_v2_missing_controller_is_an_environment_problem(v2_tree):
    write(v2_tree / "cgroup.controllers", "cpu memory")
    driver, fs = v2(v2_tree)
    with pytest.raises(EnvironmentProblem, match="v2 cgroup pids controller"):
        driver.create(CID, Limits(pids=10))
    assert fs.writes == [] and not (v2_tree / "minirun" / CID).exists()


def test_v2_without_memory_controller_runs_unlimited_without_oom_detection(v2_tree):
    write(v2_tree / "cgroup.controllers", "cpu pids")
    write(v2_tree / "cgroup.subtree_control", "")
    driver, _ = v2(v2_tree)
    handle = driver.create(CID, Limits(pids=10))
    assert handle.memory is None and handle.oom_killed() is False


def test_v2_failed_write_removes_the_new_cgroup(v2_tree):
    driver, fs = v2(v2_tree)
    fs.fail["cpu.max"] = errno.EINVAL
    with pytest.raises(RuntimeFailure, match=r"cpu.max to 50000 100000: Invalid argument"):
        driver.create(CID, Limits(memory=32 * MiB, cpus=0.5))
    assert not (v2_tree / "minirun" / CID).exists()
    assert (v2_tree / "minirun").is_dir()     # shared by other containers


def test_v2_refused_subtree_control_is_an_environment_problem(v2_tree):
    driver, fs = v2(v2_tree)
    fs.fail["cgroup.subtree_control"] = errno.EBUSY
    with pytest.raises(EnvironmentProblem, match="cannot enable cgroup controllers"):
        driver.create(CID, Limits(pids=3))


def test_v2_add_and_oom_killed(v2_tree):
    driver, fs = v2(v2_tree)
    handle = driver.create(CID, Limits(memory=32 * MiB))
    handle.add(4242)
    handle.add(0)
    assert fs.writes[-2:] == [(f"minirun/{CID}/cgroup.procs", "4242"), (f"minirun/{CID}/cgroup.procs", "0")]
    assert handle.oom_killed() is False
    events = os.path.join(handle.memory, "memory.events")
    write(events, "low 0\nhigh 0\nmax 12\noom 1\noom_kill 0\noom_group_kill 0\n")
    assert handle.oom_killed() is False        # hitting the limit is not a kill
    write(events, "low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 0\n")
    assert handle.oom_killed() is True


def test_v2_remove(v2_tree):
    driver, _ = v2(v2_tree)
    handle = driver.create(CID, Limits(pids=10))
    handle.remove()
    assert not (v2_tree / "minirun" / CID).exists()
    handle.remove()                            # already gone
    assert handle.oom_killed() is False


def test_v2_remove_kills_lingering_tasks_with_cgroup_kill(v2_tree):
    driver, fs = v2(v2_tree)
    handle = driver.create(CID, Limits(pids=10))
    handle.add(4242)
    handle.remove()
    assert (f"minirun/{CID}/cgroup.kill", "1") in fs.writes and fs.killed == [4242]
    assert not (v2_tree / "minirun" / CID).exists()


def test_v2_remove_without_cgroup_kill_signals_each_task(v2_tree):
    driver, fs = v2(v2_tree, kill_file=False)
    handle = driver.create(CID, Limits(pids=10))
    handle.add(4242)
    handle.add(4343)
    handle.remove()
    assert fs.killed == [4242, 4343]
    assert not (v2_tree / "minirun" / CID).exists()


def test_v2_remove_takes_nested_cgroups_first(v2_tree):
    driver, fs = v2(v2_tree)
    handle = driver.create(CID, Limits())
    fs.mkdir(os.path.join(handle.paths[0], "inner"))
    handle.remove()
    assert not (v2_tree / "minirun" / CID).exists()


def test_remove_gives_up_on_a_task_that_will_not_die(v2_tree):
    driver, fs = v2(v2_tree, kill_file=False, immortal={4242})
    handle = driver.create(CID, Limits(pids=10))
    handle.add(4242)
    with pytest.raises(RuntimeFailure, match="remove cgroup .*: Device or resource busy") as info:
        handle.remove(timeout=0.1)
    assert "cgroup.procs" in info.value.hint and 4242 in fs.killed


def test_handle_json_round_trip(v2_tree):
    driver, fs = v2(v2_tree)
    handle = driver.create(CID, Limits(memory=32 * MiB))
    data = json.loads(json.dumps(handle.to_json()))
    assert data == {"version": "v2", "paths": handle.paths, "memory": handle.memory}
    again = CgroupHandle.from_json(data, fs)
    assert again == handle
    again.remove()
    assert not os.path.exists(handle.paths[0])
    assert type(CgroupHandle.from_json(data).fs) is CgroupFS


@pytest.mark.parametrize("bad", ["", "..", ".", "a/b", "../../etc", "x" * 200])
def test_create_refuses_a_name_that_is_not_one_path_component(v2_tree, bad):
    driver, fs = v2(v2_tree)
    with pytest.raises(ValueError):
        driver.create(bad, Limits())
    assert fs.writes == []


# ---------------------------------------------------------------- v1

def v1(root, **fake) -> tuple[V1Driver, FakeCgroupFS]:
    fs = FakeCgroupFS(root, "v1", **fake)
    return V1Driver(str(root), fs), fs


def test_v1_create_writes_the_limits(v1_tree):
    driver, fs = v1(v1_tree)
    handle = driver.create(CID, Limits(memory=32 * MiB, cpus=0.5, pids=64))
    assert fs.writes == [
        (f"memory/minirun/{CID}/memory.limit_in_bytes", "33554432"),
        (f"memory/minirun/{CID}/memory.memsw.limit_in_bytes", "33554432"),
        (f"pids/minirun/{CID}/pids.max", "64"),
        (f"cpu/minirun/{CID}/cpu.cfs_period_us", "100000"),
        (f"cpu/minirun/{CID}/cpu.cfs_quota_us", "50000"),
    ]
    paths = [str(v1_tree / c / "minirun" / CID) for c in ("memory", "pids", "cpu")]
    assert handle.paths == paths and handle.memory == paths[0] and handle.version == "v1"
    assert read(v1_tree / "cpu,cpuacct" / "minirun" / CID / "cpu.cfs_quota_us") == "50000"


def test_v1_no_limits_makes_only_the_memory_cgroup(v1_tree):
    driver, fs = v1(v1_tree)
    handle = driver.create(CID, Limits())
    assert fs.writes == [] and handle.paths == [str(v1_tree / "memory" / "minirun" / CID)]
    assert not (v1_tree / "pids" / "minirun").exists()


def test_v1_without_swap_accounting_skips_memsw(v1_tree):
    driver, fs = v1(v1_tree, swap=False)
    driver.create(CID, Limits(memory=8 * MiB))
    assert fs.writes == [(f"memory/minirun/{CID}/memory.limit_in_bytes", str(8 * MiB))]


def test_v1_missing_hierarchy_removes_what_was_made(tmp_path):
    root = make_v1_tree(tmp_path / "cgroup", controllers=("memory", "cpu,cpuacct"))
    driver, _ = v1(root)
    with pytest.raises(EnvironmentProblem, match="v1 cgroup pids controller is not mounted"):
        driver.create(CID, Limits(memory=8 * MiB, pids=5))
    assert not (root / "memory" / "minirun" / CID).exists()


def test_v1_without_memory_hierarchy_skips_it_unless_asked(tmp_path):
    root = make_v1_tree(tmp_path / "cgroup", controllers=("pids",))
    driver, _ = v1(root)
    handle = driver.create(CID, Limits(pids=5))
    assert handle.paths == [str(root / "pids" / "minirun" / CID)] and handle.memory is None
    with pytest.raises(EnvironmentProblem, match="memory controller"):
        driver.create("other", Limits(memory=8 * MiB))


def test_v1_oom_killed_reads_the_oom_kill_counter(v1_tree):
    driver, _ = v1(v1_tree)
    handle = driver.create(CID, Limits(memory=8 * MiB))
    control = os.path.join(handle.memory, "memory.oom_control")
    assert handle.oom_killed() is False
    write(os.path.join(handle.memory, "memory.failcnt"), "57")
    write(control, "oom_kill_disable 0\nunder_oom 1\noom_kill 0\n")
    assert handle.oom_killed() is False        # limit hits and a pending OOM are not kills
    write(control, "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
    assert handle.oom_killed() is True


def test_v1_add_and_remove_in_every_hierarchy(v1_tree):
    driver, fs = v1(v1_tree)
    handle = driver.create(CID, Limits(memory=8 * MiB, pids=5, cpus=1))
    handle.add(4242)
    assert [w for w in fs.writes if w[0].endswith("cgroup.procs")] == [
        (f"{c}/minirun/{CID}/cgroup.procs", "4242") for c in ("memory", "pids", "cpu")]
    handle.remove()
    assert 4242 in fs.killed
    assert not any(os.path.exists(p) for p in handle.paths)


def test_a_containers_cgroups_are_found_by_its_id(tmp_path):
    """What `rm` frees when a killed runtime never recorded the cgroup in the state."""
    cid = "ab" * 32
    made = [tmp_path / "memory" / "minirun" / cid, tmp_path / "pids" / "minirun" / cid,
            tmp_path / "minirun" / cid]
    for path in made:
        path.mkdir(parents=True)
    (tmp_path / "cpu" / "minirun" / ("cd" * 32)).mkdir(parents=True)      # another container's
    handle = cgroups.CgroupHandle.of_container(cid, str(tmp_path))
    assert sorted(handle.paths) == sorted(map(str, made))
    assert cgroups.CgroupHandle.of_container("ef" * 32, str(tmp_path)).paths == []
    assert cgroups.CgroupHandle.of_container(cid, str(tmp_path / "missing")).paths == []


def test_only_cgroup_dirs_below_a_hierarchy_root_are_taken_from_a_record():
    from minirun.linux.cgroups import ocigroup
    root = ocigroup.CGROUP_ROOT
    good = [f"{root}/pids/minirun-oci/x", f"{root}/minirun-oci/x"]
    bad = [root, "/", "relative/x", f"{root}/pids/../../etc", f"{root}//pids/x", "/etc/x", 5, None]
    bad += [f"{root}/{name}" for name in os.listdir(root)
            if os.path.ismount(os.path.realpath(f"{root}/{name}"))]      # cpu -> cpu,cpuacct too
    assert ocigroup.recorded(good + bad) == good
    assert ocigroup.recorded("not a list") == []


def test_membership_takes_mount_points_and_cgroup_names_that_are_not_utf8(tmp_path):
    """/proc/self/mountinfo and /proc/PID/cgroup are bytes: a host mount point in
    Latin-1, or a cgroup named so, once ended minirun-oci exec and ps in a
    UnicodeDecodeError. They come back byte for byte (os.fsencode), escapes undone."""
    import os
    from minirun.linux import procfs
    from minirun.linux.cgroups import membership
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_bytes(
        b"30 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:9 - cgroup cgroup rw,cpu,cpuacct\n"
        b"31 25 0:27 /sub /mnt/caf\xe9\\040x rw - cgroup cgroup rw,memory\n"
        b"32 25 0:28 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n"
        b"truncated line\n")
    proc = tmp_path / "proc" / "7"
    proc.mkdir(parents=True)
    (proc / "cgroup").write_bytes(b"4:cpu,cpuacct:/a\n3:memory:/sub/b\xff\n0::/c\n")
    assert [os.fsencode(p) for _, p, _, _ in procfs.mounts(str(mountinfo))] == \
        [b"/sys/fs/cgroup/cpu,cpuacct", b"/mnt/caf\xe9 x", b"/sys/fs/cgroup/unified"]
    dirs = membership.of(7, str(mountinfo), str(tmp_path / "proc"))
    assert [os.fsencode(d) for d in dirs] == [b"/sys/fs/cgroup/cpu,cpuacct/a", b"/mnt/caf\xe9 x/b\xff",
                                             b"/sys/fs/cgroup/unified/c"]
