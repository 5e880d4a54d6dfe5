"""--ulimit: docker's syntax, the parent's check against the host's hard limits, and apply()."""

from __future__ import annotations

import os
import resource

import pytest

from minirun.errors import EnvironmentProblem, RuntimeFailure, UsageError
from minirun.sandbox import rlimits
from minirun.sandbox.rlimits import UNLIMITED, Ulimit

HOST = {rlimits.RESOURCES["nofile"]: (1024, 20000), rlimits.RESOURCES["nproc"]: (32768, 32768),
        rlimits.RESOURCES["core"]: (0, UNLIMITED), rlimits.RESOURCES["memlock"]: (65536, 65536)}


def host_hard(number):
    return HOST[number]


# ---------------------------------------------------------------- parsing

@pytest.mark.parametrize("text, expected", [
    ("nofile=1024:2048", ("nofile", 1024, 2048)),
    ("nproc=100", ("nproc", 100, 100)),
    ("core=-1", ("core", UNLIMITED, UNLIMITED)),
    ("core=0:-1", ("core", 0, UNLIMITED)),
    ("memlock=-1:-1", ("memlock", UNLIMITED, UNLIMITED)),
    ("nofile=0", ("nofile", 0, 0)),
    ("rtprio=99", ("rtprio", 99, 99)),
])
def test_parse_ulimit(text, expected):
    ulimit = rlimits.parse_ulimit(text)
    assert ulimit == expected
    name, soft, hard = ulimit                  # a plain (name, soft, hard) tuple too
    assert ulimit.resource == rlimits.RESOURCES[name]


def test_every_docker_name_maps_to_the_kernels_number():
    assert sorted(rlimits.RESOURCES) == sorted(
        "core cpu data fsize locks memlock msgqueue nice nofile nproc rss rtprio rttime sigpending stack as".split())
    for name, number in rlimits.RESOURCES.items():
        if hasattr(resource, f"RLIMIT_{name.upper()}"):
            assert getattr(resource, f"RLIMIT_{name.upper()}") == number
    assert rlimits.RESOURCES["locks"] == 10      # RLIMIT_LOCKS, which Python does not export


@pytest.mark.parametrize("text, message", [
    ("nofile", "expected NAME=SOFT"), ("files=10", "expected NAME=SOFT"), ("NOFILE=10", "expected NAME=SOFT"),
    ("=10", "expected NAME=SOFT"), ("nofile=", "is not a limit"), ("nofile=abc", "is not a limit"),
    ("nofile=10:x", "is not a limit"), ("nofile=-2", "is not a limit"), ("nofile=1.5", "is not a limit"),
    ("nofile=10:20:30", "is not a limit"),
])
def test_parse_ulimit_rejects_malformed(text, message):
    with pytest.raises(UsageError, match=message) as info:
        rlimits.parse_ulimit(text)
    assert info.value.hint and "\n" not in info.value.line()


@pytest.mark.parametrize("text", ["nofile=2048:1024", "core=-1:0", "nofile=1:0"])
def test_soft_above_hard_is_a_usage_error(text):
    with pytest.raises(UsageError, match="soft limit is above the hard limit"):
        rlimits.parse_ulimit(text)


def test_later_flag_for_the_same_name_wins_as_in_docker():
    assert rlimits.parse_ulimits(["nofile=10", "nproc=5", "nofile=20:30"]) == (
        ("nofile", 20, 30), ("nproc", 5, 5))


def test_flag_and_json():
    assert Ulimit("nofile", 30000, 30000).flag() == "--ulimit nofile=30000"
    assert Ulimit("nofile", 10, 20).flag() == "--ulimit nofile=10:20"
    ulimit = Ulimit("core", UNLIMITED, UNLIMITED)
    assert ulimit.to_json() == {"Name": "core", "Soft": -1, "Hard": -1}
    assert Ulimit.from_json(ulimit.to_json()) == ulimit


# ---------------------------------------------------------------- check (parent)

def test_check_accepts_limits_within_the_hosts_hard_limits():
    ulimits = rlimits.parse_ulimits(["nofile=1024:20000", "nproc=100", "core=-1", "memlock=0"])
    rlimits.check(ulimits, host_hard, can_raise=False)


def test_check_names_the_limit_above_the_hosts_hard_limit():
    with pytest.raises(EnvironmentProblem) as info:
        rlimits.check([rlimits.parse_ulimit("nofile=30000")], host_hard, can_raise=False)
    assert info.value.message == ("--ulimit nofile=30000: above this host's hard limit 20000 "
                                  "(raising it needs CAP_SYS_RESOURCE)")
    assert "nofile=20000" in info.value.hint


def test_check_unlimited_is_above_any_finite_hard_limit():
    with pytest.raises(EnvironmentProblem, match="memlock=-1: above this host's hard limit 65536"):
        rlimits.check([rlimits.parse_ulimit("memlock=-1")], host_hard, can_raise=False)


def test_check_with_cap_sys_resource_only_nr_open_bounds_nofile():
    rlimits.check(rlimits.parse_ulimits(["nofile=30000", "memlock=-1"]), host_hard, can_raise=True,
                  nr_open=1048576)
    with pytest.raises(EnvironmentProblem, match="fs.nr_open 1048576"):
        rlimits.check([rlimits.parse_ulimit("nofile=2000000")], host_hard, can_raise=True, nr_open=1048576)


def test_has_sys_resource_reads_the_effective_set(tmp_path):
    status = tmp_path / "status"
    status.write_text("Name:\tx\nCapEff:\t000001fffeffffff\n")    # everything but bit 24
    assert rlimits.has_sys_resource(str(status)) is False
    status.write_text("Name:\tx\nCapEff:\t0000000001000000\n")
    assert rlimits.has_sys_resource(str(status)) is True
    status.write_text("Name:\tx\n")
    assert rlimits.has_sys_resource(str(status)) is False


def test_check_uses_this_process_by_default():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    rlimits.check([Ulimit("nofile", min(soft, hard), hard)])


# ---------------------------------------------------------------- apply (child)

def in_child(function) -> int:
    """Run function in a forked child; its exit status: 0 if it returned True."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - in the child
        code = 1
        try:
            code = 0 if function() else 3
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_apply_sets_soft_and_hard():
    def lower():
        rlimits.apply(rlimits.parse_ulimits(["nofile=64:128", "core=0"]))
        return (resource.getrlimit(resource.RLIMIT_NOFILE) == (64, 128)
                and resource.getrlimit(resource.RLIMIT_CORE) == (0, 0))
    assert in_child(lower) == 0


def test_apply_failure_names_the_limit():
    def raise_hard():
        rlimits.apply([Ulimit("nofile", 64, 64)])          # lowering is always allowed
        try:
            rlimits.apply([Ulimit("nofile", 64, 65)])      # raising needs CAP_SYS_RESOURCE
        except RuntimeFailure as err:
            return err.message.startswith("--ulimit nofile=64:65: setrlimit failed")
        return rlimits.has_sys_resource()
    assert in_child(raise_hard) == 0
