"""minirun-oci's linux.resources plan for cgroup v1 and v2 (ociresources.py), the v2
device program's instructions (linux/bpfdevices.py) and the hooks' checks and runs."""

from __future__ import annotations

import json
import struct
import sys

import pytest

from minirun.errors import RuntimeFailure, UsageError
from minirun.linux import bpfdevices
from minirun.linux.cgroups import ociresources
from minirun.ociruntime import hooks

MEMORY = {"limit": 50593792, "reservation": 40000000, "swap": 60000000, "kernelTCP": 50593792,
          "swappiness": 10, "disableOOMKiller": True}


def test_memory_on_v1_writes_each_file_limit_before_swap():
    plan = ociresources.plan({"memory": MEMORY}, "v1")
    assert plan["memory"] == [("memory.limit_in_bytes", "50593792"), ("memory.soft_limit_in_bytes", "40000000"),
                              ("memory.memsw.limit_in_bytes", "60000000"),
                              ("memory.kmem.tcp.limit_in_bytes", "50593792"), ("memory.swappiness", "10"),
                              ("memory.oom_control", "1")]
    assert ociresources.plan({"memory": {"limit": -1}}, "v1")["memory"] == [("memory.limit_in_bytes", "-1")]


def test_memory_pids_cpu_on_v2():
    plan = ociresources.plan({"memory": {"limit": 1 << 26, "reservation": 1 << 25, "swap": 1 << 27},
                              "pids": {"limit": 0}, "cpu": {"shares": 1024, "quota": 50000, "period": 100000,
                                                            "cpus": "0"}}, "v2")
    assert plan["memory"] == [("memory.max", str(1 << 26)), ("memory.low", str(1 << 25)),
                              ("memory.swap.max", str((1 << 27) - (1 << 26)))]
    assert plan["pids"] == [("pids.max", "max")]
    assert plan["cpu"] == [("cpu.weight", "39"), ("cpu.max", "50000 100000")]
    assert plan["cpuset"] == [("cpuset.cpus", "0")]
    assert "devices" not in plan            # a BPF program on v2, not a file


@pytest.mark.parametrize("resources,version,field", [
    ({"memory": {"kernel": 1 << 26}}, "v1", "linux.resources.memory.kernel"),
    ({"memory": {"swappiness": 10}}, "v2", "linux.resources.memory.swappiness"),
    ({"memory": {"disableOOMKiller": True}}, "v2", "linux.resources.memory.disableOOMKiller"),
    ({"memory": {"swap": 1 << 20}}, "v2", "linux.resources.memory.swap"),
    ({"cpu": {"realtimeRuntime": 5}}, "v2", "linux.resources.cpu.realtimeRuntime"),
    ({"cpu": {"idle": 1}}, "v1", "linux.resources.cpu.idle"),
    ({"network": {"classID": 255}}, "v2", "linux.resources.network"),
    ({"network": {"priorities": [{"name": "lo", "priority": 1}]}}, "v2", "linux.resources.network"),
])
def test_what_a_version_lacks_is_refused_by_name(resources, version, field):
    with pytest.raises(ociresources.Unsupported) as caught:
        ociresources.plan(resources, version)
    assert caught.value.field == field


def _decode(code: bytes) -> list[tuple]:
    return [(op, regs & 0xf, regs >> 4, off, imm) for op, regs, off, imm in struct.iter_unpack("<BBhi", code)]


def test_device_program_checks_the_last_rule_first_and_denies_by_default():
    rules = ociresources.device_rules({"devices": [{"allow": False, "access": "rwm"},
                                                   {"allow": True, "type": "c", "major": 1, "minor": 3,
                                                    "access": "r"}]}, [])
    insns = _decode(bpfdevices.assemble(rules[:3]))
    body = insns[6:]
    # c 1:3 r: type 2, then access beyond r (~2) skips, then major 1, minor 3, then allow
    assert body[0] == (0x55, 2, 0, 7, 2)
    assert body[1][:2] == (0xbf, 1) and body[2][0] == 0x57 and body[2][4] == ~2
    assert body[4] == (0x55, 4, 0, 3, 1) and body[5] == (0x55, 5, 0, 2, 3)
    assert body[6] == (0xb7, 0, 0, 0, 1) and body[7][0] == 0x95
    # "a *:* rwm" deny matches everything: r0 = 0, exit, and nothing after it
    assert body[8:] == [(0xb7, 0, 0, 0, 0), (0x95, 0, 0, 0, 0)]
    no_catch_all = _decode(bpfdevices.assemble([(True, "c 1:3 rwm")]))
    assert no_catch_all[-2:] == [(0xb7, 0, 0, 0, 0), (0x95, 0, 0, 0, 0)]


def test_hooks_run_in_order_with_the_state_on_stdin(tmp_path):
    out = tmp_path / "out"
    script = f"import sys; open({str(out)!r}, 'a').write(sys.argv[1] + ' ' + sys.stdin.read() + '\\n')"
    given = {"prestart": [{"path": sys.executable, "args": ["py", "-c", script, name]} for name in ("one", "two")]}
    hooks.check(given)
    hooks.run(given, "prestart", {"id": "c1", "status": "created"})
    lines = out.read_text().splitlines()
    assert [line.split(" ", 1)[0] for line in lines] == ["one", "two"]
    assert json.loads(lines[0].split(" ", 1)[1]) == {"id": "c1", "status": "created"}


def test_a_failing_or_slow_hook_fails_but_poststop_only_warns(tmp_path, capsys):
    failing = {"path": "/bin/sh", "args": ["sh", "-c", "exit 3"]}
    with pytest.raises(RuntimeFailure, match=r"hooks.createRuntime\[0\] \(/bin/sh\): exited with status 3"):
        hooks.run({"createRuntime": [failing]}, "createRuntime", {})
    with pytest.raises(RuntimeFailure, match="timeout of 1 s"):
        hooks.run({"prestart": [{"path": "/bin/sleep", "args": ["sleep", "5"], "timeout": 1}]}, "prestart", {})
    hooks.run({"poststop": [failing]}, "poststop", {})
    assert "warning: hooks.poststop[0]" in capsys.readouterr().err
    with pytest.raises(UsageError, match="must be a list"):
        hooks.check({"poststart": {"path": "/x"}})


def test_hugepage_limits_and_network_classes_become_their_files():
    resources = {"hugepageLimits": [{"pageSize": "2MB", "limit": 1 << 31}, {"pageSize": "1GB", "limit": 0}],
                 "network": {"classID": 0x100001, "priorities": [{"name": "lo", "priority": 10},
                                                                {"name": "eth0", "priority": 30}]}}
    v1 = ociresources.plan(resources, "v1")
    assert v1["hugetlb"] == [("hugetlb.2MB.limit_in_bytes", str(1 << 31)), ("hugetlb.1GB.limit_in_bytes", "0")]
    assert v1["net_cls"] == [("net_cls.classid", str(0x100001))]
    assert v1["net_prio"] == [("net_prio.ifpriomap", "lo 10"), ("net_prio.ifpriomap", "eth0 30")]
    v2 = ociresources.plan({"hugepageLimits": resources["hugepageLimits"]}, "v2")
    assert v2 == {"hugetlb": [("hugetlb.2MB.max", str(1 << 31)), ("hugetlb.1GB.max", "0")]}
    assert ociresources.plan({"network": {"priorities": []}}, "v2") == {}     # nothing asked, nothing refused
