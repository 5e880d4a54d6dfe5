"""Containment inside a container, tried the way an attacker would (issue 14, item 5):
the syscalls that reach kernel state shared with the host (keyrings, user and
other namespaces, mounts, ptrace-like access, personality flags) against the
default seccomp filter, the per-container session keyring, the profile
following the capabilities, --security-opt seccomp=PROFILE|unconfined, and exec.

busybox has no tool for raw syscalls, so `sysprobe` (sysprobe.c beside this
file, compiled here with gcc -static) makes one and prints NAME=errno, 0 when it
worked.
"""

from __future__ import annotations

import errno
import gzip
import json
import os
import secrets
import shutil
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from .imagebuild import entry, layer_tar, write_layout

HERE = Path(__file__).resolve().parent
EPERM, ENOSYS, ENOKEY, EBADF = errno.EPERM, errno.ENOSYS, errno.ENOKEY, errno.EBADF
ADDR_NO_RANDOMIZE = 0x0040000


@pytest.fixture(scope="session")
def sysprobe(tmp_path_factory) -> Path:
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        pytest.skip("needs gcc to build the static syscall probe (apt-get install gcc libc6-dev)")
    out = tmp_path_factory.mktemp("sysprobe") / "sysprobe"
    built = subprocess.run([gcc, "-static", "-O1", "-o", str(out), str(HERE / "sysprobe.c")],
                           capture_output=True, text=True)
    if built.returncode != 0:
        pytest.skip(f"cannot build a static binary here (libc.a missing?): {built.stderr[-300:]}")
    return out


def _fixture_layer(mr) -> bytes:
    layout = Path(mr.fixture_path("busybox"))
    blob = lambda digest: (layout / "blobs" / "sha256" / digest.split(":", 1)[1]).read_bytes()  # noqa: E731
    manifest = json.loads(blob(json.loads((layout / "index.json").read_text())["manifests"][0]["digest"]))
    data = blob(manifest["layers"][0]["digest"])
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


@pytest.fixture
def image(mr, tmp_path, sysprobe) -> str:
    """busybox plus /bin/sysprobe and an empty /x to mount on."""
    extra = layer_tar([entry("bin/sysprobe", data=sysprobe.read_bytes(), mode=0o755),
                       entry("x", tarfile.DIRTYPE, mode=0o755)])
    write_layout(tmp_path / "probeimg", [_fixture_layer(mr), extra],
                 {"Cmd": ["sh"], "Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"]})
    mr.ok("load", str(tmp_path / "probeimg"))
    return "probeimg"


def probes(mr, image: str, *checks: str, flags: tuple[str, ...] = (), **kwargs) -> dict[str, int]:
    """Run each 'NAME [ARG]' with sysprobe in one container: NAME -> errno (0: it worked)."""
    script = "; ".join(f"sysprobe {check}" for check in checks)
    result = mr("run", "--rm", *flags, image, "sh", "-c", script, **kwargs)
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    found = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    assert len(found) == len(checks), result.stdout + result.stderr
    return {name: int(value) for name, value in found.items()}


def seccomp_mode(text: str) -> str:
    return next(line.split()[1] for line in text.splitlines() if line.startswith("Seccomp:"))


# ---------------------------------------------------------------- keyrings

@pytest.mark.kernel
def test_keyring_syscalls_are_refused(mr, image):
    """keyctl, add_key and request_key reach the kernel's keyrings, which are not
    namespaced: root's user keyring inside is the host's. Docker refuses all three."""
    got = probes(mr, image, "keyctl", "add_key", "request_key")
    assert got == {"keyctl": EPERM, "add_key": EPERM, "request_key": EPERM}


@pytest.mark.kernel
@pytest.mark.parametrize("profile", ["default", "unconfined"])
def test_the_callers_session_keyring_is_out_of_reach(mr, image, sysprobe, profile):
    """minirun started from a session whose keyring holds a secret key: the container
    cannot find it, with the filter (keyctl refused) or without it (a new session keyring)."""
    name = "minirun-canary-" + secrets.token_hex(4)
    flags = () if profile == "default" else ("--security-opt", "seccomp=unconfined")
    got = probes(mr, image, f"search {name}", flags=flags, prefix=(str(sysprobe), "session", name))
    assert got["search"] == (EPERM if profile == "default" else ENOKEY), \
        "the container found the key in the caller's session keyring"


# ---------------------------------------------------------------- namespaces

@pytest.mark.kernel
def test_user_namespaces_cannot_be_made_inside(mr, image):
    """unshare -U grants CAP_SYS_ADMIN in the new namespace: mounts, and the whole
    kernel attack surface that only root could reach."""
    got = probes(mr, image, "unshare user", "clone user", "userns-mount /x")
    assert got == {"unshare": EPERM, "clone": EPERM, "userns-mount": EPERM}, got


@pytest.mark.kernel
def test_the_32_bit_syscall_table_is_filtered_too(mr, image):
    """int 0x80 from a 64-bit program reaches the i386 table, numbered differently:
    the filter covers that architecture with the same rules."""
    if os.uname().machine != "x86_64":
        pytest.skip("the i386 table is an x86_64 matter")
    got = probes(mr, image, "i386-getpid", "i386-keyctl", "i386-unshare user")
    if got["i386-getpid"] == errno.ENOSYS:
        pytest.skip("this kernel runs no 32-bit syscalls (IA32 emulation off)")
    assert got == {"i386-getpid": 0, "i386-keyctl": EPERM, "i386-unshare": EPERM}


@pytest.mark.kernel
def test_clone3_is_enosys_so_libc_falls_back_to_clone(mr, image):
    """clone3 hides its flags behind a pointer a filter cannot read: ENOSYS makes
    glibc use clone, whose flags the filter checks."""
    got = probes(mr, image, "clone3", "fork", "clone")
    assert got == {"clone3": ENOSYS, "fork": 0, "clone": 0}


@pytest.mark.kernel
def test_namespaces_and_mounts_follow_cap_sys_admin(mr, image):
    got = probes(mr, image, "unshare mnt", "mount /x", "setns", "clone mnt")
    assert got == {"unshare": EPERM, "mount": EPERM, "setns": EPERM, "clone": EPERM}
    got = probes(mr, image, "unshare mnt", "mount /x", "setns", "clone mnt", "clone3",
                 flags=("--cap-add", "SYS_ADMIN"))
    assert got == {"unshare": 0, "mount": 0, "setns": EBADF, "clone": 0, "clone3": 0}


# ---------------------------------------------------------------- other groups

@pytest.mark.kernel
def test_ptrace_family_follows_cap_sys_ptrace(mr, image):
    """kcmp on itself is allowed by the kernel to anyone: only the filter refuses it.
    ptrace itself is allowed from kernel 4.8 on, as in Docker (the kernel checks it)."""
    assert probes(mr, image, "kcmp", "ptrace") == {"kcmp": EPERM, "ptrace": 0}
    assert probes(mr, image, "kcmp", flags=("--cap-add", "SYS_PTRACE")) == {"kcmp": 0}


@pytest.mark.kernel
def test_personality_is_limited_to_the_usual_values(mr, image):
    """ADDR_NO_RANDOMIZE would turn address randomisation off for what the container runs."""
    assert probes(mr, image, f"personality {ADDR_NO_RANDOMIZE:#x}") == {"personality": EPERM}
    assert probes(mr, image, "personality 0xffffffff") == {"personality": 0}


@pytest.mark.kernel
def test_the_filter_is_in_place_for_the_command_and_for_init(mr, image):
    out = mr.ok("run", "--rm", image, "cat", "/proc/self/status").stdout
    assert seccomp_mode(out) == "2"
    out = mr.ok("run", "--rm", "--init", image, "sh", "-c", "cat /proc/1/status; sysprobe unshare user").stdout
    assert seccomp_mode(out) == "2" and "unshare=1" in out


@pytest.mark.kernel
@pytest.mark.parametrize("user", ["0", "1000"])
def test_the_filter_without_no_new_privileges(mr, image, user):
    """no_new_privs off: the filter is loaded while the child still holds CAP_SYS_ADMIN."""
    out = mr.ok("run", "--rm", "--security-opt", "no-new-privileges:false", "-u", user, image, "sh", "-c",
                "grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status; sysprobe unshare user").stdout
    assert "NoNewPrivs:\t0" in out and seccomp_mode(out) == "2" and "unshare=1" in out, out


# ---------------------------------------------------------------- unconfined, privileged

@pytest.mark.kernel
@pytest.mark.parametrize("flags", [("--security-opt", "seccomp=unconfined"), ("--privileged",)])
def test_unconfined_and_privileged_have_no_filter(mr, image, flags):
    got = probes(mr, image, "kcmp", "clone3", flags=flags)
    assert got == {"kcmp": 0, "clone3": 0}
    assert seccomp_mode(mr.ok("run", "--rm", *flags, image, "cat", "/proc/self/status").stdout) == "0"


# ---------------------------------------------------------------- custom profiles

@pytest.mark.kernel
def test_a_custom_profile_is_obeyed(mr, image, tmp_path):
    profile = tmp_path / "no-mkdir.json"
    profile.write_text(json.dumps({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"},
                     {"names": ["rmdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EROFS}]}))
    flags = ("--security-opt", f"seccomp={profile}")
    got = probes(mr, image, "mkdir /y", "unshare user", flags=flags)
    assert got == {"mkdir": EPERM, "unshare": 0}, "the profile replaces the default, it does not add to it"
    result = mr("run", "--rm", *flags, image, "sh", "-c", "mkdir /y; echo mkdir=$?; rmdir /x")
    assert "mkdir=1" in result.stdout and "not permitted" in result.stderr.lower()
    assert "read-only" in result.stderr.lower(), result.stderr


@pytest.mark.kernel
def test_a_docker_format_profile_with_conditions_and_arguments(mr, image, tmp_path):
    """archMap, includes/excludes on caps, and an argument filter, as Docker writes them."""
    profile = tmp_path / "p.json"
    profile.write_text(json.dumps({
        "defaultAction": "SCMP_ACT_ALLOW",
        "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
                    {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]}],
        "syscalls": [
            {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EINVAL,
             "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
            {"names": ["kcmp"], "action": "SCMP_ACT_ERRNO", "excludes": {"caps": ["CAP_SYS_PTRACE"]}},
            {"names": ["getcwd"], "action": "SCMP_ACT_ERRNO", "includes": {"minKernel": "99.0"}}]}))
    flags = ("--security-opt", f"seccomp={profile}")
    got = probes(mr, image, "personality 8", "kcmp", flags=flags)
    assert got == {"personality": errno.EINVAL, "kcmp": EPERM}
    assert probes(mr, image, "personality 0", flags=flags) == {"personality": 0}
    assert probes(mr, image, "kcmp", flags=(*flags, "--cap-add", "SYS_PTRACE")) == {"kcmp": 0}
    assert mr.ok("run", "--rm", *flags, image, "pwd").stdout.strip() == "/"


def refusing(tmp_path, *names: str, errno_ret: int | None = None) -> str:
    profile = tmp_path / ("no-" + "-".join(names) + f"-{errno_ret}.json")
    rule = {"names": list(names), "action": "SCMP_ACT_ERRNO"}
    if errno_ret is not None:
        rule["errnoRet"] = errno_ret          # 0: the call "succeeds" without being made
    profile.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [rule]}))
    return str(profile)


@pytest.mark.kernel
@pytest.mark.parametrize("call,expected", [("capset", "could not drop its capabilities (capset)"),
                                           ("rt_sigtimedwait", "could not wait for its command")])
def test_a_fake_success_from_the_profile_is_caught_too(mr, image, tmp_path, call, expected):
    """errnoRet 0 answers "done" for a call never made: init must not keep its
    capabilities unawares, nor spin on a signal number of 0 (an outside review)."""
    flags = ("--security-opt", f"seccomp={refusing(tmp_path, call, errno_ret=0)}")
    result = mr("run", "--rm", "--init", *flags, image, "sh", "-c", "sleep 0.2; exit 3", timeout=30)
    assert result.returncode == 125 and expected in result.stderr, (result.returncode, result.stderr)


@pytest.mark.kernel
def test_a_refused_exit_group_never_reruns_the_command(mr, image, tmp_path):
    """The trampoline's exit must not fall through into the code after it: it once ran
    the command again ~32,000 times when a profile refused exit_group."""
    flags = ("--security-opt", f"seccomp={refusing(tmp_path, 'exit_group')}")
    result = mr("run", "--rm", "--init", *flags, image, "sh", "-c", "echo ran; exit 5", timeout=60)
    assert result.stdout == "ran\n" and result.returncode == 5, (result.returncode, result.stdout[:200])


@pytest.mark.kernel
@pytest.mark.parametrize("call,expected", [("capset", "could not drop its capabilities (capset)"),
                                           ("rt_sigprocmask", "could not block signals"),
                                           ("rt_sigtimedwait", "could not wait for its command"),
                                           ("wait4", "could not wait for its command")])
def test_a_profile_refusing_what_init_needs_fails_in_one_line_and_never_hangs(mr, image, tmp_path, call,
                                                                             expected):
    """--init's PID 1 and exec's waiter run under the container's filter. A call it
    needs that the profile refuses ends the run with exit 125 and one line naming the
    call; it never leaves a supervisor that keeps its capabilities, spins or hangs."""
    flags = ("--security-opt", f"seccomp={refusing(tmp_path, call)}")
    result = mr("run", "--rm", "--init", *flags, image, "sh", "-c", "sleep 0.2; exit 3", timeout=30)
    assert result.returncode == 125, (result.returncode, result.stderr)
    assert expected in result.stderr and "Traceback" not in result.stderr, result.stderr
    mr.ok("run", "-d", "--name", "c", *flags, image, "sleep", "60")
    result = mr("exec", "c", "sh", "-c", "sleep 0.2; exit 3", timeout=30)
    assert result.returncode == 125 and expected in result.stderr, (result.returncode, result.stderr)
    assert mr.inspect("c")["State"]["Status"] == "running"       # the container lives on
    mr.ok("rm", "-f", "c")


@pytest.mark.kernel
def test_a_profile_without_execveat_still_runs_the_command(mr, image, tmp_path):
    """The command starts through a sealed memfd, by execveat: a profile that lists execve
    but not execveat (older hand-written allow-lists) gets the memfd by its /proc name.
    exec's waiter, outside the container's PID namespace, has no /proc/self: one line."""
    flags = ("--security-opt", f"seccomp={refusing(tmp_path, 'execveat')}")
    for extra in ((), ("--init",)):
        result = mr("run", "--rm", *extra, *flags, image, "echo", "ran")
        assert (result.returncode, result.stdout) == (0, "ran\n"), (extra, result.returncode, result.stderr)
    mr.ok("run", "-d", "--name", "c", *flags, image, "sleep", "60")
    result = mr("exec", "c", "echo", "ran")
    assert result.returncode == 126 and "Traceback" not in result.stderr, result.stderr
    assert len(result.stderr.splitlines()) == 1 and "allow it" in result.stderr and "execveat" in result.stderr
    mr.ok("rm", "-f", "c")


BAD_PROFILES = [
    ("missing", None, "no such file"),
    ("not json", "{not json", "not valid JSON"),
    ("not an object", "[]", "object"),
    ("unknown action", {"defaultAction": "SCMP_ACT_MAYBE"}, "SCMP_ACT_MAYBE"),
    ("unknown default errno", {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": "x"}, "defaultErrnoRet"),
    ("unknown syscall", {"defaultAction": "SCMP_ACT_ALLOW",
                         "syscalls": [{"names": ["no_such_call"], "action": "SCMP_ACT_ERRNO"}]}, "no_such_call"),
    ("unknown op", {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_ISH"}]}]},
     "SCMP_CMP_ISH"),
    ("arg index", {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]},
     "index"),
    ("unknown arch", {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_VAX"]}, "SCMP_ARCH_VAX"),
    ("too big", {"defaultAction": "SCMP_ACT_ALLOW", "comment": "x" * (2 << 20)}, "too big"),
]


@pytest.mark.kernel
@pytest.mark.parametrize("case", BAD_PROFILES, ids=[case[0] for case in BAD_PROFILES])
def test_a_bad_profile_is_one_line_and_exit_125_with_nothing_left(mr, image, tmp_path, case):
    _, content, expected = case
    profile = tmp_path / "bad.json"
    if content is not None:
        profile.write_text(content if isinstance(content, str) else json.dumps(content))
    result = mr("run", "--name", "c", "--security-opt", f"seccomp={profile}", image, "true")
    assert result.returncode == 125, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert expected.lower() in lines[0].lower() and str(profile) in lines[0], lines[0]
    assert mr.ok("ps", "-a", "-q").stdout.strip() == ""
    assert os.listdir(mr.root / "containers") == []


@pytest.mark.kernel
def test_unknown_security_opt_is_refused(mr, image):
    result = mr("run", "--rm", "--security-opt", "seccomp", image, "true")
    assert result.returncode == 125 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "seccomp" in result.stderr


# ---------------------------------------------------------------- exec

@pytest.mark.kernel
@pytest.mark.parametrize("profile", ["default", "unconfined"])
def test_exec_runs_under_the_containers_own_filter(mr, image, profile):
    flags = () if profile == "default" else ("--security-opt", "seccomp=unconfined")
    mr.ok("run", "-d", "--name", "bg", *flags, image, "sleep", "60")
    mr.running_state("bg")
    out = mr.ok("exec", "bg", "sh", "-c", "grep ^Seccomp: /proc/self/status; sysprobe unshare user; "
                "sysprobe keyctl").stdout
    if profile == "default":
        assert seccomp_mode(out) == "2" and "unshare=1" in out and "keyctl=1" in out, out
    else:
        assert seccomp_mode(out) == "0" and "unshare=0" in out, out


@pytest.mark.kernel
def test_exec_gets_a_new_session_keyring(mr, image, sysprobe):
    mr.ok("run", "-d", "--name", "bg", "--security-opt", "seccomp=unconfined", image, "sleep", "60")
    mr.running_state("bg")
    name = "minirun-canary-" + secrets.token_hex(4)
    result = mr("exec", "bg", "sysprobe", "search", name, prefix=(str(sysprobe), "session", name))
    assert result.stdout.strip() == f"search={ENOKEY}", result.stdout + result.stderr


# ---------------------------------------------------------------- the cache

@pytest.mark.kernel
def test_the_compiled_filter_is_cached_in_the_store(mr, image):
    mr.ok("run", "--rm", image, "true")
    cached = sorted(os.listdir(mr.root / "seccomp"))
    assert len(cached) == 1 and cached[0].endswith(".bpf")
    first = (mr.root / "seccomp" / cached[0]).stat()
    time.sleep(0.01)
    mr.ok("run", "--rm", image, "true")
    assert sorted(os.listdir(mr.root / "seccomp")) == cached
    assert (mr.root / "seccomp" / cached[0]).stat().st_mtime_ns == first.st_mtime_ns
    mr.ok("run", "--rm", "--cap-add", "SYS_ADMIN", image, "true")
    assert len(os.listdir(mr.root / "seccomp")) == 2, "another capability set is another filter"


@pytest.mark.kernel
def test_a_damaged_cached_filter_is_compiled_again(mr, image):
    mr.ok("run", "--rm", image, "true")
    (path,) = (mr.root / "seccomp").iterdir()
    whole = path.read_bytes()
    path.write_bytes(whole[:-3])            # no longer whole instructions
    assert probes(mr, image, "unshare user") == {"unshare": EPERM}
    assert path.read_bytes() == whole


@pytest.mark.kernel
def test_exec_into_a_container_made_before_filters_gets_the_default(mr, image):
    """A config.json without "seccomp" (a container of an older minirun, which wrote
    no "version" either: a version 1 config without it would be damaged)."""
    mr.ok("run", "-d", "--name", "bg", image, "sleep", "60")
    mr.running_state("bg")
    (config_path,) = (mr.root / "containers").glob("*/config.json")
    config = json.loads(config_path.read_text())
    assert config["seccomp"] != "unconfined"
    del config["seccomp"], config["version"]
    config_path.write_text(json.dumps(config))
    out = mr.ok("exec", "bg", "sh", "-c", "grep ^Seccomp: /proc/self/status; sysprobe unshare user").stdout
    assert seccomp_mode(out) == "2" and "unshare=1" in out, out


@pytest.mark.kernel
def test_exec_refuses_when_the_containers_filter_is_gone(mr, image, tmp_path):
    """Never an exec without the filter the container runs under: one line instead.
    (The default profile's filter is compiled again; a custom profile is gone.)"""
    profile = tmp_path / "p.json"
    profile.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW",
                                   "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}))
    mr.ok("run", "-d", "--name", "bg", "--security-opt", f"seccomp={profile}", image, "sleep", "60")
    mr.ok("run", "-d", "--name", "bg2", image, "sleep", "60")
    mr.running_state("bg")
    mr.running_state("bg2")
    shutil.rmtree(mr.root / "seccomp")
    out = mr.ok("exec", "bg2", "sh", "-c", "grep ^Seccomp: /proc/self/status; sysprobe unshare user").stdout
    assert seccomp_mode(out) == "2" and "unshare=1" in out, out
    result = mr("exec", "bg", "true")
    assert result.returncode == 125 and "Traceback" not in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "seccomp" in result.stderr
