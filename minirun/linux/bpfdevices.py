"""cgroup v2 device rules: a BPF_PROG_TYPE_CGROUP_DEVICE program, assembled here from
an allow/deny list and attached to a cgroup with bpf(2). The one module that calls bpf(2).

cgroup v2 has no devices.allow file; the kernel instead runs the programs attached
to the cgroup (and its ancestors) on each device open or mknod
(Documentation/admin-guide/cgroup-v2.rst "Device controller"). The program sees a
struct bpf_cgroup_dev_ctx {u32 access_type; u32 major; u32 minor} in r1, where
access_type is (access << 16) | type (type 1 block, 2 char; access 1 mknod, 2 read,
4 write), and returns 1 to allow, 0 to deny. The program built here:

    r2 = ctx.access_type & 0xffff      the device type
    r3 = ctx.access_type >> 16         the access asked for
    r4 = ctx.major;  r5 = ctx.minor
    for each rule, last first:          the last matching rule wins, as in cgroup v1
        if type differs        skip     (not checked for "a")
        if r3 & ~access != 0   skip     (asked for more than the rule names)
        if major differs       skip     (not checked for *)
        if minor differs       skip
        r0 = allow; exit
    r0 = 0; exit                        nothing matched: deny

It is attached with BPF_F_ALLOW_MULTI, so the ancestors' programs still apply, and it
goes when the cgroup is removed. Rules are (allow, "TYPE MAJOR:MINOR ACCESS") as
linux/cgroups/ociresources.py makes them.
"""

from __future__ import annotations

import ctypes
import os
import struct

from ..errors import EnvironmentProblem

_SYS_BPF = 321                          # x86_64
_BPF_PROG_LOAD, _BPF_PROG_ATTACH = 5, 8
_PROG_TYPE_CGROUP_DEVICE, _ATTACH_CGROUP_DEVICE, _F_ALLOW_MULTI = 15, 6, 2
_TYPES = {"b": 1, "c": 2}
_ACCESS = {"m": 1, "r": 2, "w": 4}
# opcodes (include/uapi/linux/bpf.h, bpf_common.h)
_LDXW, _AND64_K, _RSH64_K, _MOV64_K, _MOV64_X, _JNE_K, _JNE_X, _EXIT = 0x61, 0x57, 0x77, 0xb7, 0xbf, 0x55, 0x5d, 0x95


def _insn(op: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", op, (src << 4) | dst, off, imm)


def _parse(text: str) -> tuple[int | None, int | None, int | None, int]:
    """(type or None for any, major or None, minor or None, access mask) of "c 1:3 rwm"."""
    kind, numbers, access = text.split()
    major, minor = numbers.split(":")
    mask = 0
    for letter in access:
        mask |= _ACCESS[letter]
    return (_TYPES.get(kind), None if major == "*" else int(major), None if minor == "*" else int(minor), mask)


def assemble(rules: list[tuple[bool, str]]) -> bytes:
    """The program's instructions for the ordered rules."""
    out = [_insn(_LDXW, 2, 1, 0), _insn(_AND64_K, 2, imm=0xffff),
           _insn(_LDXW, 3, 1, 0), _insn(_RSH64_K, 3, imm=16),
           _insn(_LDXW, 4, 1, 4), _insn(_LDXW, 5, 1, 8)]
    for allow, text in reversed(rules):
        kind, major, minor, mask = _parse(text)
        checks: list[list[tuple]] = []      # each check: instructions whose last is the skip jump
        if kind is not None:
            checks.append([(_JNE_K, 2, 0, kind)])
        if mask != 7:
            checks.append([(_MOV64_X, 1, 3, 0), (_AND64_K, 1, 0, ~mask & 0xffffffff), (_JNE_K, 1, 0, 0)])
        if major is not None:
            checks.append([(_JNE_K, 4, 0, major)])
        if minor is not None:
            checks.append([(_JNE_K, 5, 0, minor)])
        flat = [item for check in checks for item in check] + [(_MOV64_K, 0, 0, int(allow)), (_EXIT, 0, 0, 0)]
        for i, (op, dst, src, imm) in enumerate(flat):
            skip = len(flat) - i - 1 if op == _JNE_K else 0     # to the first instruction after this rule
            if op == _AND64_K and imm > 0x7fffffff:
                imm -= 1 << 32
            out.append(_insn(op, dst, src, skip, imm))
        if not checks:
            return b"".join(out)        # a rule for every device: what comes after is unreachable
    out += [_insn(_MOV64_K, 0, imm=0), _insn(_EXIT)]
    return b"".join(out)


def _bpf(command: int, attr: bytes) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    buf = ctypes.create_string_buffer(attr, 128)
    result = libc.syscall(ctypes.c_long(_SYS_BPF), ctypes.c_int(command), buf, ctypes.c_uint(128))
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return result


def attach(cgroup_dir: str, rules: list[tuple[bool, str]]) -> None:
    """Load the program for rules and attach it to the v2 cgroup at cgroup_dir."""
    code = assemble(rules)
    insns = ctypes.create_string_buffer(code, len(code))
    license_ = ctypes.create_string_buffer(b"Apache-2.0")
    # union bpf_attr, BPF_PROG_LOAD: prog_type, insn_cnt, insns, license, log_level, log_size, log_buf
    load = struct.pack("<IIQQIIQ", _PROG_TYPE_CGROUP_DEVICE, len(code) // 8, ctypes.addressof(insns),
                       ctypes.addressof(license_), 0, 0, 0)
    try:
        prog = _bpf(_BPF_PROG_LOAD, load)
    except OSError as exc:
        raise EnvironmentProblem(f"config.json: linux.resources.devices: the kernel refused the cgroup v2 device "
                                 f"program: {exc.strerror}", "run as root on a kernel with CONFIG_CGROUP_BPF"
                                 ) from None
    try:
        target = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            _bpf(_BPF_PROG_ATTACH, struct.pack("<IIII", target, prog, _ATTACH_CGROUP_DEVICE, _F_ALLOW_MULTI))
        except OSError as exc:
            raise EnvironmentProblem(f"config.json: linux.resources.devices: cannot attach the device program to "
                                     f"{cgroup_dir}: {exc.strerror}", "check that it is a cgroup v2 directory"
                                     ) from None
        finally:
            os.close(target)
    finally:
        os.close(prog)
