"""Seccomp profiles: Docker's format read and checked (sandbox/seccomp_profile.py),
the rules chosen for a container's capabilities, architecture and kernel, the
default profile's content, and a compiled filter loaded on a real process."""

from __future__ import annotations

import errno
import json
import os

import pytest

from minirun import linux
from minirun.linux import caps as linux_caps
from minirun.store import Store
from minirun.sandbox import seccomp, seccomp_build, seccomp_profile as sp
from minirun.linux.caps import DOCKER_DEFAULT
from minirun.sandbox.seccomp import check

KERNEL = (6, 18)
CLONE_NS_FLAGS = 0x7E020000


def profile(**doc) -> sp.Profile:
    doc.setdefault("defaultAction", "SCMP_ACT_ERRNO")
    return sp.parse(json.dumps(doc).encode(), "test.json")


def default(caps=DOCKER_DEFAULT, arch="amd64", kernel=KERNEL) -> dict[str, list[sp.Call]]:
    with open(seccomp.DEFAULT_PROFILE, "rb") as f:
        selected = sp.select(sp.parse(f.read(), "default"), frozenset(caps), arch, kernel)
    calls: dict[str, list[sp.Call]] = {}
    for call in selected.rules:
        calls.setdefault(call.name, []).append(call)
    return calls


# ---------------------------------------------------------------- the default profile

def test_default_refuses_by_default_with_eperm():
    with open(seccomp.DEFAULT_PROFILE, "rb") as f:
        parsed = sp.parse(f.read(), "default")
    assert parsed.default_action == sp.ERRNO | errno.EPERM


def test_default_never_allows_keyrings_or_io_uring():
    for caps in (DOCKER_DEFAULT, sp_all_caps()):
        calls = default(caps)
        for name in ("keyctl", "add_key", "request_key", "io_uring_setup", "io_uring_enter"):
            assert name not in calls


def sp_all_caps() -> frozenset:
    from minirun.linux.caps import all_names
    return all_names()


def test_default_clone_refuses_namespace_flags_without_sys_admin():
    calls = default()
    (clone,) = calls["clone"]
    assert clone.action == sp.ALLOW
    assert clone.args == (sp.Arg(0, CLONE_NS_FLAGS, 0, sp.OPS["SCMP_CMP_MASKED_EQ"]),)
    assert calls["clone3"] == [sp.Call("clone3", sp.ERRNO | errno.ENOSYS)]
    for name in ("mount", "umount2", "unshare", "setns", "pivot_root", "open_tree", "fsopen", "bpf"):
        assert name not in calls, name


def test_default_with_sys_admin_allows_namespaces_and_mounts():
    calls = default(DOCKER_DEFAULT | {"sys_admin"})
    assert calls["clone"] == [sp.Call("clone", sp.ALLOW)]
    assert calls["clone3"] == [sp.Call("clone3", sp.ALLOW)]
    for name in ("mount", "umount2", "unshare", "setns", "fsopen", "move_mount", "sethostname"):
        assert calls[name] == [sp.Call(name, sp.ALLOW)]


@pytest.mark.parametrize("cap, names", [
    ("sys_ptrace", ["kcmp", "pidfd_getfd", "process_madvise"]),
    ("sys_module", ["init_module", "finit_module", "delete_module"]),
    ("sys_time", ["settimeofday", "clock_settime"]),
    ("sys_boot", ["reboot"]), ("sys_pacct", ["acct"]), ("syslog", ["syslog"]),
    ("sys_nice", ["mbind", "set_mempolicy"]), ("sys_rawio", ["iopl", "ioperm"]),
    ("dac_read_search", ["open_by_handle_at"]), ("sys_tty_config", ["vhangup"]),
])
def test_capability_groups_follow_the_capability(cap, names):
    without, with_cap = default(DOCKER_DEFAULT - {cap}), default(DOCKER_DEFAULT | {cap})
    for name in names:
        assert name not in without and with_cap[name][0].action == sp.ALLOW


def test_sys_chroot_is_in_dockers_default_set_and_allows_chroot():
    assert "chroot" in default() and "chroot" not in default(DOCKER_DEFAULT - {"sys_chroot"})


def test_ptrace_needs_kernel_4_8_without_the_capability():
    assert "ptrace" in default(kernel=(4, 8)) and "ptrace" in default(kernel=(6, 1))
    assert "ptrace" not in default(kernel=(4, 4))
    assert "ptrace" in default(DOCKER_DEFAULT | {"sys_ptrace"}, kernel=(4, 4))


def test_personality_takes_the_usual_values_only():
    values = sorted(call.args[0].value for call in default()["personality"])
    assert values == [0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF]
    assert all(call.args[0].op == sp.OPS["SCMP_CMP_EQ"] for call in default()["personality"])


def test_architecture_specific_rules():
    assert "arch_prctl" in default(arch="amd64") and "arch_prctl" not in default(arch="arm64")
    assert "set_tls" in default(arch="arm64") and "set_tls" not in default(arch="amd64")
    (s390_clone,) = default(arch="s390x")["clone"]
    assert s390_clone.args[0].index == 1


def test_default_names_are_ones_libseccomp_knows_or_newer():
    """A typo in the default profile would silently allow nothing: every name must
    resolve in this libseccomp, except syscalls newer than it (skipped, so refused)."""
    libseccomp = pytest.importorskip("minirun.sandbox.libseccomp")
    try:
        lib = libseccomp.library()
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"no libseccomp here: {exc}")
    with open(seccomp.DEFAULT_PROFILE, "rb") as f:
        doc = json.load(f)
    names = {n for rule in doc["syscalls"] for n in rule["names"]}
    unknown = {n for n in names if lib.seccomp_syscall_resolve_name(n.encode()) == libseccomp.NR_SCMP_ERROR}
    newer = {"cachestat", "fchmodat2", "futex_requeue", "futex_wait", "futex_wake", "map_shadow_stack"}
    assert unknown <= newer, unknown - newer


# ---------------------------------------------------------------- Docker's format

def test_rules_conditions_and_arguments_as_docker_writes_them():
    parsed = profile(defaultAction="SCMP_ACT_ERRNO", defaultErrnoRet=38,
                     archMap=[{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]}],
                     flags=["SECCOMP_FILTER_FLAG_LOG"],
                     syscalls=[{"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
                               {"name": "kill", "action": "SCMP_ACT_ERRNO", "errnoRet": 3,
                                "args": [{"index": 1, "value": 9, "op": "SCMP_CMP_EQ"}],
                                "comment": "ignored", "unknownField": [1, 2]},
                               {"names": ["reboot"], "action": "SCMP_ACT_KILL_PROCESS",
                                "includes": {"caps": ["CAP_SYS_BOOT", "sys_admin"], "minKernel": "5.1"},
                                "excludes": {"arches": ["arm64"]}}])
    assert parsed.default_action == sp.ERRNO | 38 and parsed.flags == 2
    assert parsed.arch_map == (("SCMP_ARCH_X86_64", ("SCMP_ARCH_X86",)),)
    kill = parsed.rules[1]
    assert kill.names == ("kill",) and kill.action == sp.ERRNO | 3 and kill.args == (sp.Arg(1, 9, 0, 4),)
    reboot = parsed.rules[2]
    assert reboot.includes == sp.Condition(frozenset({"sys_boot", "sys_admin"}), (), (5, 1))

    def names(caps, arch="amd64", kernel=KERNEL):
        return [c.name for c in sp.select(parsed, frozenset(caps), arch, kernel).rules]
    assert names({"sys_boot", "sys_admin"}) == ["read", "write", "kill", "reboot"]
    assert names({"sys_boot"}) == ["read", "write", "kill"], "includes.caps needs every cap"
    assert names({"sys_boot", "sys_admin"}, arch="arm64") == ["read", "write", "kill"]
    assert names({"sys_boot", "sys_admin"}, kernel=(5, 0)) == ["read", "write", "kill"]


def test_excludes_any_cap_excludes():
    parsed = profile(syscalls=[{"names": ["x"], "action": "SCMP_ACT_ALLOW",
                                "excludes": {"caps": ["CAP_A", "CAP_B"], "minKernel": "9.0"}}])
    assert sp.select(parsed, frozenset(), "amd64", KERNEL).rules
    assert not sp.select(parsed, frozenset({"b"}), "amd64", KERNEL).rules
    assert not sp.select(parsed, frozenset(), "amd64", (9, 0)).rules


def test_args_on_distinct_indexes_all_hold_and_on_one_index_either_does():
    parsed = profile(syscalls=[
        {"names": ["a"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
                                                             {"index": 1, "value": 2, "op": "SCMP_CMP_EQ"}]},
        {"names": ["b"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
                                                             {"index": 0, "value": 2, "op": "SCMP_CMP_EQ"}]}])
    calls = sp.select(parsed, frozenset(), "amd64", KERNEL).rules
    assert [(c.name, len(c.args)) for c in calls] == [("a", 2), ("b", 1), ("b", 1)]


def test_errno_actions_default_to_eperm_and_others_take_no_errno():
    parsed = profile(defaultAction="SCMP_ACT_ALLOW", syscalls=[
        {"names": ["a"], "action": "SCMP_ACT_ERRNO"}, {"names": ["b"], "action": "SCMP_ACT_TRACE"},
        {"names": ["c"], "action": "SCMP_ACT_KILL"}, {"names": ["d"], "action": "SCMP_ACT_LOG"}])
    assert [r.action for r in parsed.rules] == [sp.ERRNO | 1, sp.TRACE | 1, 0, sp.LOG]


BAD = [
    ({"defaultAction": "SCMP_ACT_NOPE"}, "unknown defaultAction"),
    ({}, "defaultAction is missing"),
    ({"defaultAction": "SCMP_ACT_NOTIFY"}, "listener"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 5000}, "defaultErrnoRet is 5000"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": True}, "defaultErrnoRet must be a whole number"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["x"], "archMap": []}, "both architectures and archMap"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "architectures": "SCMP_ARCH_X86"}, "architectures must be a list"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_NOPE"]}, "unknown flag"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": {}}, "syscalls must be a list"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"action": "SCMP_ACT_ERRNO"}]}, "names no syscall"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"name": "a", "names": ["b"], "action": "SCMP_ACT_ERRNO"}]},
     "both name and names"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["a/b"], "action": "SCMP_ACT_ERRNO"}]},
     "is not a syscall name"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"]}]}, "syscalls[0].action is missing"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO",
                                                       "args": [{"index": 0, "value": -1, "op": "SCMP_CMP_EQ"}]}]},
     "syscalls[0].args[0].value is -1"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO",
                                                       "args": [{"index": 0, "value": 2**64, "op": "SCMP_CMP_EQ"}]}]},
     "out of range"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO",
                                                       "args": [{"index": 0, "value": 1.5, "op": "SCMP_CMP_EQ"}]}]},
     "whole number"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO",
                                                       "args": [{"index": 0, "value": 1, "op": "EQ"}]}]},
     "unknown syscalls[0].args[0].op"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW",
                                                       "includes": {"minKernel": "4"}}]}, "not MAJOR.MINOR"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW",
                                                       "includes": {"caps": "CAP_X"}}]}, "caps must be a list"),
]


@pytest.mark.parametrize("doc, expected", BAD, ids=[b[1] for b in BAD])
def test_bad_profiles_name_what_is_wrong(doc, expected):
    with pytest.raises(sp.ProfileError) as failed:
        sp.parse(json.dumps(doc).encode(), "p.json")
    line = failed.value.line()
    assert expected in line and line.startswith("seccomp profile p.json: ") and "\n" not in line


@pytest.mark.parametrize("data, expected", [
    (b"{", "not valid JSON"), (b"\xff\xfe", "not UTF-8"), (b"[" * 100000 + b"]" * 100000, "JSON"),
    (b"[]", "must be an object"), (b" " * (sp.MAX_PROFILE_BYTES + 1), "too big")])
def test_bad_files(data, expected):
    with pytest.raises(sp.ProfileError) as failed:
        sp.parse(data, "p.json")
    assert expected in failed.value.line()


def test_read_profile_refuses_fifos_directories_and_big_files(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "big").write_bytes(b" " * (sp.MAX_PROFILE_BYTES + 10))
    for name, expected in (("fifo", "not a regular file"), ("", "not a regular file"), ("big", "too big"),
                           ("missing", "No such file")):
        with pytest.raises(sp.ProfileError) as failed:
            seccomp_build.read_profile(str(tmp_path / name))
        assert expected in failed.value.line()


# ---------------------------------------------------------------- names, cache, loading

def test_kernel_version():
    assert seccomp.kernel_version("6.18.44-fc-v1252") == (6, 18)
    assert seccomp.kernel_version("5.4.0-150-generic") == (5, 4)
    assert seccomp.kernel_version("4.19") == (4, 19) and seccomp.kernel_version("x") == (0, 0)


def test_entry_names_differ_by_capabilities_and_profile():
    a = seccomp.entry_name("default-1-2", frozenset({"chown"}))
    assert a != seccomp.entry_name("default-1-2", frozenset({"chown", "sys_admin"}))
    assert a != seccomp.entry_name("default-1-3", frozenset({"chown"}))
    seccomp.path(Store("/nonexistent"), a)               # a valid file name


def test_cache_round_trip_and_damage(tmp_path):
    store = Store(str(tmp_path))
    program = bytes(range(16))
    assert seccomp.read(store, "x") is None
    seccomp.write(store, "x", {"flags": "2", "lib": "1:2:3:4:/usr/lib/libseccomp.so.2"}, program)
    filt, lib = seccomp.read(store, "x")
    assert filt == seccomp.Filter("x", program, 2) and lib == "1:2:3:4:/usr/lib/libseccomp.so.2"
    assert os.stat(tmp_path / "seccomp").st_mode & 0o777 == 0o700
    path = tmp_path / "seccomp" / "x.bpf"
    assert path.read_bytes().split(b"\n")[0].split()[:2] == [b"minirun-seccomp/1", b"insns=2"]
    whole = path.read_bytes()
    for damaged in (whole[:-8], whole[:-3], b"garbage\n" + program, program,
                    whole.replace(b"flags=2", b"flags=x")):
        path.write_bytes(damaged)
        assert seccomp.read(store, "x") is None
    assert sorted(os.listdir(tmp_path / "seccomp")) == ["x.bpf"]          # no temporary file left


@pytest.mark.parametrize("name", ["../x", "a/b", "", ".hidden", "x y"])
def test_cache_names_are_plain_file_names(tmp_path, name):
    with pytest.raises(ValueError):
        seccomp.path(Store(str(tmp_path)), name)
    assert seccomp.read(Store(str(tmp_path)), name) is None


@pytest.mark.parametrize("size", [0, 7, 4097 * 8])
def test_programs_the_kernel_would_refuse_are_not_cached(tmp_path, size):
    with pytest.raises(ValueError):
        check(bytes(size))


def test_a_compiled_filter_is_obeyed_by_a_process(tmp_path):
    """Compile with libseccomp, load the bytes with linux.seccomp_set_filter (no ctypes),
    in a child: mkdir fails with the profile's errno, the rest works."""
    libseccomp = pytest.importorskip("minirun.sandbox.libseccomp")
    parsed = profile(defaultAction="SCMP_ACT_ALLOW",
                     syscalls=[{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}])
    fd = os.memfd_create("bpf")
    libseccomp.compile_filter(sp.select(parsed, frozenset(), seccomp.host_arch(), KERNEL), fd)
    program = os.pread(fd, 1 << 16, 0)
    os.close(fd)
    check(program)
    pid = os.fork()
    if pid == 0:
        code = 99
        try:
            linux_caps._prctl(38, 1)                           # PR_SET_NO_NEW_PRIVS
            linux.seccomp_set_filter(program)
            try:
                os.mkdir(tmp_path / "blocked")
            except PermissionError as exc:
                code = exc.errno
            with open(tmp_path / "still-works", "w") as f:
                f.write("ok")
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == errno.EACCES
    assert not (tmp_path / "blocked").exists() and (tmp_path / "still-works").read_text() == "ok"


def test_join_session_keyring_gives_a_new_keyring():
    get_session = lambda: linux._libc.syscall(linux.c_long(linux.SYS_KEYCTL["x86_64"]), linux.c_int(0),  # noqa: E731
                                              linux.c_int(-3), linux.c_int(1))
    if os.uname().machine != "x86_64":
        pytest.skip("the keyctl number here is x86_64's")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        before = get_session()
        linux.join_session_keyring()
        os.write(w, f"{before} {get_session()}".encode())
        os._exit(0)
    os.close(w)
    before, after = os.read(r, 100).decode().split()
    os.waitpid(pid, 0)
    assert before != after and int(after) > 0


def test_without_libseccomp_a_run_is_refused_naming_the_package(monkeypatch):
    libseccomp = pytest.importorskip("minirun.sandbox.libseccomp")
    from minirun.errors import EnvironmentProblem

    def missing(*_args, **_kwargs):
        raise OSError("libseccomp.so.2: cannot open shared object file")
    monkeypatch.setattr(libseccomp, "_lib", None)
    monkeypatch.setattr(libseccomp.ctypes, "CDLL", missing)
    with pytest.raises(EnvironmentProblem) as refused:
        libseccomp.library()
    line = refused.value.line()
    assert "libseccomp2" in line and "seccomp=unconfined" in line and "\n" not in line


def test_an_entry_from_a_replaced_libseccomp_is_compiled_again(tmp_path):
    lib = tmp_path / "libseccomp.so.2"
    lib.write_bytes(b"old")
    identity = seccomp.library_identity(str(lib))
    assert identity.endswith(f":{lib}") and seccomp._same_library(identity)
    lib.unlink()
    assert seccomp._same_library(identity), "a library gone keeps the entry: loading needs none"
    (tmp_path / "libseccomp.so.2.9.9").write_bytes(b"newer")
    lib.symlink_to("libseccomp.so.2.9.9")
    assert not seccomp._same_library(identity)
    assert seccomp._same_library("") and seccomp._same_library("garbage")
