"""A ctypes binding to libseccomp.so.2, just enough to compile a profile to the
BPF program the kernel loads (seccomp_export_bpf), and no BPF compiler of our
own. Only a cache miss imports this module (sandbox/seccomp_build.py): it
imports ctypes, which the run path avoids, and loading the library costs ~1 ms.

    compile_filter(selected, fd)      write the program for a selected profile to fd
"""

from __future__ import annotations

import ctypes
import os

from ..lib import log
from ..errors import EnvironmentProblem, UsageError
from .seccomp_profile import ALLOW, LOG, Selected

NR_SCMP_ERROR = -1                 # seccomp_syscall_resolve_name: a name libseccomp does not know
FLTATR_CTL_NNP = 3                 # have seccomp_load set no_new_privs (we load the program ourselves)
FLTATR_CTL_OPTIMIZE = 8            # 2: a binary tree of syscall numbers instead of a list (2.5+)


class _ArgCmp(ctypes.Structure):
    """struct scmp_arg_cmp."""
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int),
                ("datum_a", ctypes.c_uint64), ("datum_b", ctypes.c_uint64)]


class _Version(ctypes.Structure):
    _fields_ = [("major", ctypes.c_uint), ("minor", ctypes.c_uint), ("micro", ctypes.c_uint)]


_lib = None


def library():
    """libseccomp, loaded once, with the signatures we call."""
    global _lib
    if _lib is None:
        try:
            lib = ctypes.CDLL("libseccomp.so.2")
        except OSError:
            raise EnvironmentProblem(
                "libseccomp.so.2 cannot be loaded: minirun compiles its seccomp filters with it",
                "install it (Debian/Ubuntu: apt-get install libseccomp2; Fedora: dnf install "
                "libseccomp), or run with --security-opt seccomp=unconfined") from None
        void_p, u32, i32 = ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int
        for name, restype, argtypes in (
                ("seccomp_version", ctypes.POINTER(_Version), []),
                ("seccomp_init", void_p, [u32]),
                ("seccomp_release", None, [void_p]),
                ("seccomp_arch_native", u32, []),
                ("seccomp_arch_resolve_name", u32, [ctypes.c_char_p]),
                ("seccomp_arch_add", i32, [void_p, u32]),
                ("seccomp_attr_set", i32, [void_p, i32, u32]),
                ("seccomp_syscall_resolve_name", i32, [ctypes.c_char_p]),
                ("seccomp_rule_add_array", i32, [void_p, u32, i32, ctypes.c_uint, ctypes.POINTER(_ArgCmp)]),
                ("seccomp_export_bpf", i32, [void_p, i32])):
            function = getattr(lib, name)
            function.restype, function.argtypes = restype, argtypes
        _lib = lib
    return _lib


def version() -> str:
    v = library().seccomp_version().contents
    return f"{v.major}.{v.minor}.{v.micro}"


def loaded_from() -> str:
    """libseccomp.so.2 in the directory the library was loaded from: a cached
    program records what this link points to, so that an upgrade (a new file
    behind the link) compiles the filter again."""
    library()
    with open("/proc/self/maps") as f:
        for line in f:
            path = line.split(None, 5)[-1].strip()
            if os.path.basename(path).startswith("libseccomp.so"):
                soname = os.path.join(os.path.dirname(path), "libseccomp.so.2")
                return soname if os.path.exists(soname) else path
    return ""


def native_arch() -> int:
    return library().seccomp_arch_native()


def arch_token(name: str, source: str) -> int:
    """SCMP_ARCH_X86_64 -> libseccomp's token for it."""
    token = library().seccomp_arch_resolve_name(name.removeprefix("SCMP_ARCH_").lower().encode())
    if not name.startswith("SCMP_ARCH_") or token == 0:
        raise UsageError(f"seccomp profile {source}: unknown architecture {name!r}",
                         "architectures are named like SCMP_ARCH_X86_64 or SCMP_ARCH_AARCH64")
    return token


def compile_filter(selected: Selected, fd: int) -> None:
    """Build the filter in libseccomp and write its BPF program to fd."""
    lib = library()
    ctx = lib.seccomp_init(selected.default_action)
    if not ctx:
        raise UsageError(f"seccomp profile {selected.source}: libseccomp refused the default action",
                         "use one of the SCMP_ACT_* actions")
    try:
        lib.seccomp_attr_set(ctx, FLTATR_CTL_NNP, 0)
        lib.seccomp_attr_set(ctx, FLTATR_CTL_OPTIMIZE, 2)    # refused before 2.5: the list then
        _add_arches(lib, ctx, selected)
        for rule in selected.rules:
            _add_rule(lib, ctx, rule, selected)
        _check(lib.seccomp_export_bpf(ctx, fd), "export the filter", selected.source)
    finally:
        lib.seccomp_release(ctx)


def _add_arches(lib, ctx, selected: Selected) -> None:
    """The native architecture (seccomp_init's) and, from archMap, the ones it runs
    too (x86 and x32 on x86_64): their syscalls would otherwise meet the bad-arch
    action. x32 is left out where the kernel runs no x32 syscalls (CONFIG_X86_X32_ABI
    unset, the usual case): it would add a third of the program, and a third to the
    ~0.2 ms the kernel takes to load it, for syscalls that cannot happen."""
    native = lib.seccomp_arch_native()
    wanted = list(selected.architectures)
    for arch, subs in selected.arch_map:
        if arch_token(arch, selected.source) == native:
            wanted += [arch, *subs]
    if "SCMP_ARCH_X32" in wanted and not _kernel_runs_x32():
        wanted = [name for name in wanted if name != "SCMP_ARCH_X32"]
    for name in wanted:
        rc = lib.seccomp_arch_add(ctx, arch_token(name, selected.source))
        if rc < 0 and -rc != 17:       # EEXIST: the native one, or listed twice
            _check(rc, f"add architecture {name}", selected.source)


def _kernel_runs_x32() -> bool:
    """Whether an x32 syscall (getpid with __X32_SYSCALL_BIT) gets past ENOSYS here."""
    if os.uname().machine != "x86_64":
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    return libc.syscall(ctypes.c_long(0x40000000 | 39)) >= 0 or ctypes.get_errno() != 38


def _add_rule(lib, ctx, rule, selected: Selected) -> None:
    number = lib.seccomp_syscall_resolve_name(rule.name.encode())
    if number == NR_SCMP_ERROR:
        if rule.action in (ALLOW, LOG):
            if log.debugging:
                log.debug(f"seccomp: {rule.name} is unknown to libseccomp {version()}: it gets the "
                          "default action")
            return     # a syscall this libseccomp does not know stays under the default action
        raise UsageError(f"seccomp profile {selected.source}: unknown syscall {rule.name!r} "
                         f"(libseccomp {version()})",
                         "check the name, or remove the rule: this libseccomp cannot refuse it")
    if rule.action == selected.default_action:
        return         # libseccomp refuses a rule that repeats the default
    args = (_ArgCmp * max(1, len(rule.args)))(*[_ArgCmp(a.index, a.op, a.value, a.value_two) for a in rule.args])
    _check(lib.seccomp_rule_add_array(ctx, rule.action, number, len(rule.args), args),
           f"add the rule for {rule.name}", selected.source)


def _check(rc: int, what: str, source: str) -> None:
    if rc < 0:
        raise UsageError(f"seccomp profile {source}: libseccomp could not {what}: {os.strerror(-rc)}",
                         "check the profile's rules and their arguments")
