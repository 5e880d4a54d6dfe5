"""Container cgroups on the real kernel, v1 or v2: the limits read back, tasks join,
the OOM killer and pids.max bite, CFS throttles, and removal leaves no directory.

Every cgroup comes from the `cgroup` fixture, which removes it (killing what
is left in it) even when a test fails. Every forked child is killed and reaped
by the `children` fixture. Children exit with os._exit so that they never run
pytest's code.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import sys
import time
import traceback

import pytest

from minirun.errors import EnvironmentProblem
from minirun.linux import cgroups
from minirun.linux.cgroups import CgroupHandle, Limits

ROOT = cgroups.CGROUP_ROOT
MiB = 1 << 20
NEEDED = ("memory", "pids", "cpu")


def _missing_controllers() -> str:
    """Why this host can't run these tests, or "" when it can."""
    version = cgroups.detect(ROOT)
    if version is None:
        return f"no cgroup controllers under {ROOT}"
    if version == "v1":
        missing = [c for c in NEEDED if not os.path.exists(f"{ROOT}/{c}/cgroup.procs")]
    else:
        available = cgroups.open_driver(ROOT).root + "/cgroup.controllers"
        missing = [c for c in NEEDED if c not in open(available).read().split()]
    return f"cgroup {version} lacks the {', '.join(missing)} controller(s)" if missing else ""


if not os.path.isdir(f"{ROOT}/memory") and cgroups.detect(ROOT) != "v2":
    pytest.skip(f"{ROOT}/memory is absent and there is no cgroup v2 with the memory controller",
                allow_module_level=True)
if _missing_controllers():
    pytest.skip(_missing_controllers(), allow_module_level=True)

pytestmark = [pytest.mark.root, pytest.mark.kernel]
VERSION = cgroups.detect(ROOT)


@pytest.fixture
def children():
    """Pids of forked children; whatever is still alive at the end is killed and reaped."""
    pids: set[int] = set()
    yield pids
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass


@pytest.fixture
def cgroup(children):
    """make(limits) -> a new container cgroup, removed after the test whatever happened."""
    driver = cgroups.open_driver(ROOT)
    handles: list[CgroupHandle] = []

    def make(limits: Limits, parent: str = cgroups.PARENT) -> CgroupHandle:
        made = type(driver)(driver.root, parent=parent).create(f"test-{secrets.token_hex(6)}", limits)
        handles.append(made)
        return made

    yield make
    for handle in handles:
        handle.remove(timeout=10)
    assert [p for h in handles for p in h.paths if os.path.exists(p)] == []


def fork(children: set[int], body) -> int:
    """Run body() in a child; its return value is the exit code, an exception exits 70."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - in the child
        code = 70
        try:
            code = body() or 0
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stderr.flush()
            os._exit(code)
    children.add(pid)
    return pid


def wait(children: set[int], pid: int, timeout: float = 60) -> int:
    """The child's wait status; it is killed if it outlives the timeout."""
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            children.discard(pid)
            return status
        if time.monotonic() > deadline:
            raise AssertionError(f"child {pid} still running after {timeout}s")
        time.sleep(0.01)


def read(handle: CgroupHandle, name: str) -> str:
    """One interface file; on v1 from the hierarchy that owns it."""
    path = next(os.path.join(p, name) for p in handle.paths if os.path.exists(os.path.join(p, name)))
    with open(path) as f:
        return f.read().strip()


def counters(handle: CgroupHandle, name: str) -> dict[str, int]:
    words = read(handle, name).split()
    return {k: int(v) for k, v in zip(words[::2], words[1::2])}


def cgroup_of(pid: int) -> dict[str, str]:
    """controller -> cgroup path from /proc/<pid>/cgroup (v2's line is under "")."""
    out = {}
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            for controller in controllers.split(","):
                out[controller] = path
    return out


def sleeper(seconds: float = 60):
    return lambda: time.sleep(seconds)


# ---------------------------------------------------------------- tests

def test_limits_read_back_from_the_kernel(cgroup):
    handle = cgroup(Limits(memory=32 * MiB, cpus=0.5, pids=64))
    if VERSION == "v1":
        assert [os.path.dirname(os.path.dirname(p)) for p in handle.paths] == [
            f"{ROOT}/memory", f"{ROOT}/pids", f"{ROOT}/cpu"]
        assert read(handle, "memory.limit_in_bytes") == str(32 * MiB)
        if os.path.exists(os.path.join(handle.memory, "memory.memsw.limit_in_bytes")):
            assert read(handle, "memory.memsw.limit_in_bytes") == str(32 * MiB)
        assert read(handle, "cpu.cfs_period_us") == "100000"
        assert read(handle, "cpu.cfs_quota_us") == "50000"
    else:
        assert read(handle, "memory.max") == str(32 * MiB)
        if os.path.exists(os.path.join(handle.memory, "memory.swap.max")):
            assert read(handle, "memory.swap.max") == "0"
        assert read(handle, "cpu.max") == "50000 100000"
    assert read(handle, "pids.max") == "64"
    assert handle.oom_killed() is False


def test_a_forked_child_joins_every_hierarchy(cgroup, children):
    handle = cgroup(Limits(memory=32 * MiB, cpus=0.5, pids=64))
    pid = fork(children, sleeper())
    handle.add(pid)
    expected = "/" + os.path.relpath(handle.paths[0], os.path.dirname(os.path.dirname(handle.paths[0])))
    assert expected.startswith("/minirun/test-")
    paths = cgroup_of(pid)
    for controller in (NEEDED if VERSION == "v1" else ("",)):
        assert paths[controller] == expected, paths
    assert str(pid) in read(handle, "cgroup.procs").split()
    assert int(read(handle, "pids.current")) == 1


def test_remove_kills_what_is_still_running(cgroup, children):
    handle = cgroup(Limits(pids=64))
    pid = fork(children, sleeper())
    handle.add(pid)
    handle.remove(timeout=10)
    assert not any(os.path.exists(p) for p in handle.paths)
    status = wait(children, pid, timeout=10)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    handle.remove()                            # a second time: already gone


def hog(handle: CgroupHandle, size: int):
    def body():
        handle.add(0)                          # 0: the writer itself
        block = bytearray(size)
        for offset in range(0, size, 4096):    # touch every page, whatever the allocator did
            block[offset] = 1
        return 0
    return body


def test_a_child_within_the_limit_is_not_oom_killed(cgroup, children):
    handle = cgroup(Limits(memory=32 * MiB))
    status = wait(children, fork(children, hog(handle, 8 * MiB)))
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert handle.oom_killed() is False


def test_a_memory_hog_is_oom_killed(cgroup, children):
    handle = cgroup(Limits(memory=32 * MiB, pids=64))
    status = wait(children, fork(children, hog(handle, 100 * MiB)))
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, status
    assert handle.oom_killed() is True


def test_a_fork_bomb_stops_at_pids_max(cgroup, children):
    handle = cgroup(Limits(pids=64))
    read_fd, write_fd = os.pipe()

    def bomb():
        handle.add(0)
        sleepers, failed = [], 0
        for _ in range(200):
            try:
                pid = os.fork()
            except BlockingIOError:            # EAGAIN: pids.max reached
                failed += 1
                continue
            if pid == 0:  # pragma: no cover - a sleeper
                os.close(write_fd)
                time.sleep(30)
                os._exit(0)
            sleepers.append(pid)
        current = int(read(handle, "pids.current"))
        os.write(write_fd, json.dumps({"forked": len(sleepers), "failed": failed, "current": current}).encode())
        for pid in sleepers:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        return 0

    pid = fork(children, bomb)
    os.close(write_fd)
    report = json.loads(os.read(read_fd, 4096))
    os.close(read_fd)
    assert os.WEXITSTATUS(wait(children, pid)) == 0
    assert report["forked"] + 1 <= 64 and report["current"] <= 64, report
    assert report["forked"] >= 60 and report["failed"] == 200 - report["forked"], report
    assert counters(handle, "pids.events")["max"] > 0


def test_cpus_throttle_a_busy_loop(cgroup, children):
    handle = cgroup(Limits(cpus=0.5))
    read_fd, write_fd = os.pipe()

    def spin():
        handle.add(0)
        start_wall, start_cpu = time.monotonic(), time.process_time()
        while time.monotonic() - start_wall < 1.0:
            pass
        share = (time.process_time() - start_cpu) / (time.monotonic() - start_wall)
        os.write(write_fd, str(share).encode())
        return 0

    pid = fork(children, spin)
    os.close(write_fd)
    share = float(os.read(read_fd, 64))
    os.close(read_fd)
    assert os.WEXITSTATUS(wait(children, pid)) == 0
    assert share < 0.8, f"used {share:.2f} of a CPU under --cpus 0.5"
    assert counters(handle, "cpu.stat")["nr_throttled"] > 0


def test_handle_survives_a_round_trip_through_state_json(cgroup, children):
    handle = cgroup(Limits(memory=32 * MiB))
    again = CgroupHandle.from_json(json.loads(json.dumps(handle.to_json())))
    pid = fork(children, sleeper())
    again.add(pid)
    again.remove(timeout=10)
    assert not any(os.path.exists(p) for p in handle.paths)
    wait(children, pid, timeout=10)


UNIFIED = f"{ROOT}/unified"


@pytest.mark.skipif(VERSION != "v1" or not os.path.exists(f"{UNIFIED}/cgroup.procs"),
                    reason="needs a hybrid host's cgroup2 mount")
def test_v2_driver_on_the_hybrid_hosts_empty_cgroup2_mount(children):
    """With no controllers the mount can limit nothing, but it is real cgroup2: tasks join
    through cgroup.procs, a missing controller is refused, and removal kills what is left."""
    parent = f"minirun-test-{secrets.token_hex(4)}"
    driver = cgroups.V2Driver(UNIFIED, parent=parent)
    with pytest.raises(EnvironmentProblem, match="v2 cgroup pids controller is not available"):
        driver.create("refused", Limits(pids=8))
    handle = driver.create(f"test-{secrets.token_hex(6)}", Limits())
    try:
        assert handle.memory is None and handle.oom_killed() is False
        pid = fork(children, sleeper())
        handle.add(pid)
        assert cgroup_of(pid)[""] == "/" + os.path.relpath(handle.paths[0], UNIFIED)
        handle.remove(timeout=10)
        status = wait(children, pid, timeout=10)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        assert not os.path.exists(handle.paths[0])
    finally:
        handle.remove(timeout=10)
        if os.path.isdir(f"{UNIFIED}/{parent}"):
            os.rmdir(f"{UNIFIED}/{parent}")


def test_move_in_place_leaves_a_process_in_its_own_cgroups(cgroup, children):
    """minirun-oci create's warm-up write (membership.move_in_place) must move nothing:
    a process in a container cgroup, not at a hierarchy's root, stays where it is."""
    from minirun.linux.cgroups import membership
    handle = cgroup(Limits(pids=64))

    def body() -> int:
        handle.add(os.getpid())
        before = cgroup_of(os.getpid())
        membership.move_in_place()
        after = cgroup_of(os.getpid())
        inside = any(path.endswith(handle.paths[0].rsplit("/", 1)[-1]) for path in before.values())
        return 0 if inside and after == before else 1

    assert os.waitstatus_to_exitcode(wait(children, fork(children, body))) == 0
