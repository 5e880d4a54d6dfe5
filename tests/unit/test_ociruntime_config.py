"""minirun-oci's pure parts: config.json checks, kill's signal names, mount options,
the cgroup v1 plan, and the CLI's flag parsing."""

from __future__ import annotations

import json
import signal

import pytest

from minirun.errors import MinirunError, UsageError
from minirun.linux.cgroups import ociresources
from minirun.ociruntime import cli, config, init


def _bundle(tmp_path, **changes):
    (tmp_path / "rootfs").mkdir(exist_ok=True)
    doc = {"ociVersion": "1.1.0", "root": {"path": "rootfs"}, "process": {"args": ["/bin/true"], "cwd": "/"},
           "linux": {"namespaces": [{"type": "mount"}]}}
    for key, value in changes.items():
        doc[key] = value
    (tmp_path / "config.json").write_text(json.dumps(doc))
    return tmp_path


def test_a_plain_config_loads_with_defaults(tmp_path):
    cfg = config.load(str(_bundle(tmp_path)))
    assert cfg["root"]["path"] == str(tmp_path / "rootfs")
    assert cfg["process"]["user"] == {"uid": 0, "gid": 0, "additionalGids": []}
    assert cfg["mounts"] == [] and cfg["annotations"] == {}


@pytest.mark.parametrize("changes,words", [
    ({"ociVersion": "2.0.0"}, "ociVersion"),
    ({"hooks": {"prestart": [{"path": "x"}]}}, "hooks.prestart[0].path"),
    ({"hooks": {"poststop": [{"path": "/x", "timeout": 0}]}}, "hooks.poststop[0].timeout"),
    ({"hooks": {"createRuntime": [{"path": "/x", "args": "a b"}]}}, "hooks.createRuntime[0].args"),
    ({"root": {"path": "../.."}}, "outside the bundle"),
    ({"process": {"args": []}}, "process.args"),
    ({"process": {"args": ["x"], "user": {"uid": "0"}}}, "process.user.uid"),
    ({"linux": {"namespaces": [{"type": "mount"}, {"type": "user"}]}}, "linux.uidMappings and linux.gidMappings"),
    ({"linux": {"namespaces": [{"type": "mount"}, {"type": "user", "path": "/proc/1/ns/user"}]}}, "user with a path"),
    ({"linux": {"namespaces": [{"type": "mount"}], "uidMappings": [{"containerID": 0, "hostID": 1, "size": 1}]}},
     "linux.uidMappings without a user namespace"),
    ({"linux": {"namespaces": [{"type": "mount"}], "resources": {"memory": {"limit": "1"}}}},
     "linux.resources.memory.limit"),
    ({"linux": {"namespaces": [{"type": "mount"}], "resources": {"memory": {"nosuch": 5}}}},
     "linux.resources.memory.nosuch"),
    ({"linux": {"namespaces": [{"type": "mount"}], "resources": {"rdma": {"x": {}}}}}, "linux.resources.rdma"),
    ({"linux": {"namespaces": [{"type": "mount"}], "cgroupsPath": "/a/../b"}}, "cgroupsPath"),
    ({"linux": {"namespaces": [{"type": "mount"}],
                "resources": {"hugepageLimits": [{"pageSize": "2MB/../x", "limit": 1}]}}},
     "linux.resources.hugepageLimits[0].pageSize"),
    ({"linux": {"namespaces": [{"type": "mount"}],
                "resources": {"hugepageLimits": [{"pageSize": "2MB", "limit": -1}]}}},
     "linux.resources.hugepageLimits[0].limit"),
    ({"linux": {"namespaces": [{"type": "mount"}], "resources": {"network": {"classID": 1 << 32}}}},
     "linux.resources.network.classID"),
    ({"linux": {"namespaces": [{"type": "mount"}],
                "resources": {"network": {"priorities": [{"name": "lo 5\neth0", "priority": 1}]}}}},
     "linux.resources.network.priorities[0].name"),
    ({"linux": {"namespaces": [{"type": "mount"}],
                "resources": {"network": {"priorities": [{"name": "lo", "priority": "1"}]}}}},
     "linux.resources.network.priorities[0].priority"),
    ({"mounts": [{"destination": "relative"}]}, "not absolute"),
])
def test_bad_configs_are_refused_naming_the_field(tmp_path, changes, words):
    with pytest.raises(MinirunError) as caught:
        config.load(str(_bundle(tmp_path, **changes)))
    assert words in caught.value.message


def test_oversized_and_broken_configs(tmp_path):
    _bundle(tmp_path)
    (tmp_path / "config.json").write_text("{")
    with pytest.raises(UsageError, match="not valid JSON"):
        config.load(str(tmp_path))
    (tmp_path / "config.json").write_text(" " * (config.MAX_CONFIG_BYTES + 1))
    with pytest.raises(UsageError, match="larger than"):
        config.load(str(tmp_path))


@pytest.mark.parametrize("text,number", [("KILL", 9), ("SIGKILL", 9), ("kill", 9), ("9", 9), ("TERM", 15),
                                         ("SIGUSR1", signal.SIGUSR1)])
def test_signal_names_and_numbers(text, number):
    assert config.signal_number(text) == number


@pytest.mark.parametrize("text", ["NOPE", "0", "999", "", "SIG"])
def test_bad_signals(text):
    with pytest.raises(UsageError):
        config.signal_number(text)


def test_mount_options():
    flags, propagation, data = init.mount_options(["ro", "nosuid", "rbind", "rprivate", "mode=755", "size=1k"])
    assert flags & 0x1 and flags & 0x2 and flags & 0x1000 and flags & 0x4000
    assert propagation == init._PROPAGATION["rprivate"] and data == "mode=755,size=1k"


def test_cgroup_plan():
    plan = ociresources.plan({"devices": [{"allow": False, "access": "rwm"}, {"allow": True, "type": "c", "major": 1,
                                                                         "minor": 3, "access": "r"}],
                          "pids": {"limit": -1}, "cpu": {"shares": 512, "quota": 5000, "period": 10000,
                                                         "cpus": "0-1"}}, "v1", ["c 10:200 rwm"])
    assert plan["devices"][:3] == [("devices.deny", "a"), ("devices.deny", "a *:* rwm"), ("devices.allow", "c 1:3 r")]
    assert ("devices.allow", "c 10:200 rwm") in plan["devices"]
    assert plan["pids"] == [("pids.max", "max")]
    assert plan["cpu"] == [("cpu.shares", "512"), ("cpu.cfs_period_us", "10000"), ("cpu.cfs_quota_us", "5000")]
    assert plan["cpuset"] == [("cpuset.cpus", "0-1")]


def test_cli_ignores_unknown_global_flags_and_parses_command_flags():
    out = cli._Output()
    flags, rest = cli._split(["--root", "/r", "--cgroup-manager=cgroupfs", "--debug", "create", "-b", "x"],
                             cli._GLOBAL, out, globals_=True)
    assert flags == {"root": "/r", "debug": True} and rest == ["create", "-b", "x"]
    opts, rest = cli._split(["--bundle=B", "--pid-file", "P", "id"], cli._COMMANDS["create"], out, globals_=False)
    assert opts == {"bundle": "B", "pid-file": "P"} and rest == ["id"]
    with pytest.raises(UsageError):
        cli._split(["-z", "id"], cli._COMMANDS["create"], out, globals_=False)
