"""The kernel's interfaces, one module each. The package module itself is the
syscall layer, so that `from minirun import linux` costs a run no extra import:

    __init__.py   the one ctypes module (below), and NAMESPACES, the one namespace table
    caps.py       capabilities, no_new_privs and every prctl; require_root
    procfs.py     /proc/PID/stat and /proc/self/status: start times, liveness, signals
    cgroups/      a container's cgroup: limits.py, files.py, v1.py, v2.py
    overlay.py    the overlay mount: lowerdir stacks, the new mount API, options
    probes.py     what doctor and info ask of the kernel and the store's filesystem

The syscall layer: every raw Linux syscall minirun makes that Python's
os module lacks (Python 3.11 has no os.unshare or os.setns).

Each wrapper raises OSError with errno set, like the os module does, so
callers handle kernel failures the same way whatever module made the call.

It uses ctypes' C core, _ctypes, without `import ctypes`: ctypes/__init__.py
builds some 30 C types and the byte-order variants of Structure when it is
imported, ~1.5 ms of every `minirun run`. The few types below are made the
way it makes its own (a _SimpleCData subclass per C type code), and so is the
libc handle (dlopen(NULL) and a function-pointer class that keeps errno).
tests/unit/test_linux_ctypes.py holds them against ctypes' own.
"""

from __future__ import annotations

import _ctypes
import os

from ..lib import log


class c_int(_ctypes._SimpleCData):
    _type_ = "i"


class c_uint(_ctypes._SimpleCData):
    _type_ = "I"


class c_long(_ctypes._SimpleCData):
    _type_ = "l"


class c_ulong(_ctypes._SimpleCData):          # also size_t and uint64_t: minirun is 64-bit only
    _type_ = "L"


class c_ushort(_ctypes._SimpleCData):
    _type_ = "H"


class c_char(_ctypes._SimpleCData):
    _type_ = "c"


class _Function(_ctypes.CFuncPtr):
    """A libc function: C calling convention, errno saved for get_errno, int result."""
    _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
    _restype_ = c_int


class _Libc:
    """ctypes.CDLL(None, use_errno=True): the process's own symbols, libc's among them."""

    def __init__(self):
        self._handle = _ctypes.dlopen(None, 0)

    def __getattr__(self, name: str) -> _Function:
        function = _Function((name, self))
        setattr(self, name, function)
        return function


def buffer(size: int):
    """ctypes.create_string_buffer(size): zeroed, with .raw and len()."""
    return (c_char * size)()


if _ctypes.sizeof(c_ulong) != 8:
    raise ImportError("minirun needs a 64-bit Linux")

_libc = _Libc()
_libc.syscall.restype = c_long

# clone(2) / unshare(2) flags
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

# mount(2) flags
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
MS_SLAVE = 0x80000
MS_STRICTATIME = 0x1000000

# The one namespace table: the namespaces a container has of its own, each as
# /proc/PID/ns/<name> and its clone flag, in the order `exec` joins them (setns):
# mnt last but pid, because it changes what paths mean; pid affects only the
# children. `run` unshares them all at once (pid in the parent, the rest in the child).
NAMESPACES = (("ipc", CLONE_NEWIPC), ("uts", CLONE_NEWUTS), ("net", CLONE_NEWNET),
              ("mnt", CLONE_NEWNS), ("pid", CLONE_NEWPID))
_CLONE_NAMES = {CLONE_NEWNS: "CLONE_NEWNS", CLONE_NEWCGROUP: "CLONE_NEWCGROUP", CLONE_NEWUTS: "CLONE_NEWUTS",
                CLONE_NEWIPC: "CLONE_NEWIPC", CLONE_NEWUSER: "CLONE_NEWUSER", CLONE_NEWPID: "CLONE_NEWPID",
                CLONE_NEWNET: "CLONE_NEWNET"}
_MS_NAMES = {MS_RDONLY: "MS_RDONLY", MS_NOSUID: "MS_NOSUID", MS_NODEV: "MS_NODEV", MS_NOEXEC: "MS_NOEXEC",
             MS_REMOUNT: "MS_REMOUNT", MS_BIND: "MS_BIND", MS_REC: "MS_REC", MS_PRIVATE: "MS_PRIVATE",
             MS_SLAVE: "MS_SLAVE", MS_STRICTATIME: "MS_STRICTATIME"}
MNT_DETACH = 0x2

# the new mount API (Linux 5.2+); the numbers are shared by every architecture but alpha
SYS_MOVE_MOUNT = 429
SYS_FSOPEN = 430
SYS_FSCONFIG = 431
SYS_FSMOUNT = 432
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}
FSOPEN_CLOEXEC = 0x1
FSCONFIG_SET_FLAG = 0
FSCONFIG_SET_STRING = 1
FSCONFIG_CMD_CREATE = 6
FSMOUNT_CLOEXEC = 0x1
MOUNT_ATTR_NODEV = 0x4
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOVE_MOUNT_T_EMPTY_PATH = 0x40

SYS_PIDFD_OPEN = 434                  # the same number on every architecture (Linux 5.3+)

OVERLAYFS_SUPER_MAGIC = 0x794C7630
TMPFS_MAGIC = 0x01021994


def _check(result: int, what: str, path: str | None = None) -> int:
    if result < 0:
        err = _ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}", path)
    return result


def _b(value: str | None) -> bytes | None:
    return None if value is None else os.fsencode(value)


def unshare(flags: int) -> None:
    if log.debugging:
        log.debug(f"unshare({log.flag_names(flags, _CLONE_NAMES)})")
    _check(_libc.unshare(c_int(flags)), "unshare")


def setns(fd: int, nstype: int = 0) -> None:
    if log.debugging:
        log.debug(f"setns(fd {fd}, {log.flag_names(nstype, _CLONE_NAMES)})")
    _check(_libc.setns(c_int(fd), c_int(nstype)), "setns")


def mount(source: str | None, target: str, fstype: str | None, flags: int = 0,
          data: str | None = None) -> None:
    if log.debugging:
        log.debug(f"mount({source}, {target}, {fstype}, {log.flag_names(flags, _MS_NAMES)}"
                  f"{', ' + data if data else ''})")
    _check(_libc.mount(_b(source), _b(target), _b(fstype), c_ulong(flags), _b(data)),
           f"mount {fstype or ''} on {target}".replace("  ", " "), target)


def umount2(target: str, flags: int = 0) -> None:
    if log.debugging:
        log.debug(f"umount2({target}, {flags:#x})")
    _check(_libc.umount2(_b(target), c_int(flags)), "umount", target)


def pivot_root(new_root: str, put_old: str) -> None:
    if log.debugging:
        log.debug(f"pivot_root({new_root}, {put_old}) in {os.getcwd()}")
    number = SYS_PIVOT_ROOT.get(os.uname().machine)
    if number is None:
        _check(_libc.pivot_root(_b(new_root), _b(put_old)), "pivot_root", new_root)
    else:
        _check(_libc.syscall(c_long(number), _b(new_root), _b(put_old)), "pivot_root", new_root)


def inet_socket() -> int:
    """socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC): a descriptor for interface ioctls,
    without loading the _socket extension (~0.5 ms of each run's child)."""
    return _check(_libc.socket(c_int(2), c_int(2 | os.O_CLOEXEC), c_int(0)), "socket")


LOCK_SH, LOCK_EX, LOCK_NB = 1, 2, 4


def flock(fd: int, operation: int) -> None:
    """fcntl.flock without the fcntl extension (one more library to load per run);
    EWOULDBLOCK under LOCK_NB raises BlockingIOError, as fcntl.flock does."""
    _check(_libc.flock(c_int(fd), c_int(operation)), "flock")


F_SETPIPE_SZ = 1031


def set_pipe_size(fd: int, size: int) -> None:
    """F_SETPIPE_SZ, best effort: a pipe past the caller's limit
    (/proc/sys/fs/pipe-max-size for users) keeps the size it has."""
    _libc.fcntl(c_int(fd), c_int(F_SETPIPE_SZ), c_int(size))


def ioctl(fd: int, request: int, arg: bytes) -> bytes:
    """fcntl.ioctl(fd, request, arg) for a request that reads and writes a struct:
    the struct as the kernel left it."""
    buf = buffer(len(arg))
    buf.raw = arg
    _check(_libc.ioctl(c_int(fd), c_ulong(request), buf), "ioctl")
    return buf.raw


def sethostname(name: str) -> None:
    raw = name.encode()
    _check(_libc.sethostname(raw, c_ulong(len(raw))), "sethostname")


def pidfd_open(pid: int) -> int:
    """A descriptor that pins pid: while it is open the number cannot name another
    process, and setns(pidfd, flags) joins that process's namespaces (Linux 5.8+)."""
    return _check(_libc.syscall(c_long(SYS_PIDFD_OPEN), c_int(pid), c_uint(0)), "pidfd_open")


def statfs_type(path: str) -> int:
    """f_type of the filesystem holding path (the first field of struct statfs on every 64-bit ABI)."""
    buf = buffer(256)
    _check(_libc.statfs(_b(path), buf), "statfs", path)
    return c_long.from_buffer(buf).value & 0xFFFFFFFF


SYS_GETDENTS64 = {"x86_64": 217, "aarch64": 61}
DT_UNKNOWN = 0


def dirent_types(path: str) -> dict[str, int]:
    """name -> d_type as getdents64 reports it for the entries of a directory.
    DT_UNKNOWN (0) everywhere means the filesystem lacks d_type, which overlayfs
    needs in an upper dir (xfs made with ftype=0, for one)."""
    import platform
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        buf = buffer(1 << 16)
        out: dict[str, int] = {}
        while True:
            n = _check(_libc.syscall(c_long(SYS_GETDENTS64[platform.machine()]), fd, buf,
                                     len(buf)), "getdents64", path)
            if n == 0:
                return out
            offset = 0
            while offset < n:
                reclen = int.from_bytes(buf.raw[offset + 16:offset + 18], "little")
                d_type = buf.raw[offset + 18]
                name = buf.raw[offset + 19:offset + reclen].split(b"\0", 1)[0]
                out[os.fsdecode(name)] = d_type
                offset += reclen
    finally:
        os.close(fd)


# ---------------------------------------------------------------- new mount API

def fsopen(fstype: str) -> int:
    return _check(_libc.syscall(c_long(SYS_FSOPEN), _b(fstype),
                                c_uint(FSOPEN_CLOEXEC)), f"fsopen {fstype}")


def fsconfig_string(fd: int, key: str, value: str) -> None:
    if log.debugging:
        log.debug(f"fsconfig(fd {fd}, {key}={value})")
    _check(_libc.syscall(c_long(SYS_FSCONFIG), c_int(fd), c_uint(FSCONFIG_SET_STRING),
                         _b(key), _b(value), c_int(0)), f"fsconfig {key}={value}", value)


def fsconfig_flag(fd: int, key: str) -> None:
    _check(_libc.syscall(c_long(SYS_FSCONFIG), c_int(fd), c_uint(FSCONFIG_SET_FLAG),
                         _b(key), None, c_int(0)), f"fsconfig {key}")


def fsconfig_create(fd: int) -> None:
    _check(_libc.syscall(c_long(SYS_FSCONFIG), c_int(fd), c_uint(FSCONFIG_CMD_CREATE),
                         None, None, c_int(0)), "fsconfig create")


def fsmount(fd: int, attr_flags: int = 0) -> int:
    return _check(_libc.syscall(c_long(SYS_FSMOUNT), c_int(fd), c_uint(FSMOUNT_CLOEXEC),
                                c_uint(attr_flags)), "fsmount")


def move_mount(from_fd: int, to_path: str) -> None:
    if log.debugging:
        log.debug(f"move_mount(fd {from_fd}, {to_path})")
    _check(_libc.syscall(c_long(SYS_MOVE_MOUNT), c_int(from_fd), b"",
                         c_int(-100), _b(to_path), c_uint(MOVE_MOUNT_F_EMPTY_PATH)),
           "move_mount", to_path)


SYS_OPEN_TREE = 428
SYS_MOUNT_SETATTR = 442               # Linux 5.12+
OPEN_TREE_CLONE = 0x1
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NOEXEC = 0x8
MOUNT_ATTR_ATIME_MASK = 0x70           # RELATIME 0x0, NOATIME 0x10, STRICTATIME 0x20
MOUNT_ATTR_NOATIME = 0x10
MOUNT_ATTR_STRICTATIME = 0x20
MOUNT_ATTR_NODIRATIME = 0x80
MOUNT_ATTR_NOSYMFOLLOW = 0x200000


class _MountAttr(_ctypes.Structure):
    _fields_ = [("attr_set", c_ulong), ("attr_clr", c_ulong), ("propagation", c_ulong), ("userns_fd", c_ulong)]


def move_mount_onto(from_fd: int, to_fd: int) -> None:
    """move_mount(2) of the detached tree from_fd onto what to_fd holds (an O_PATH fd):
    no path is looked up, and no symlink at the target could be taken instead."""
    _check(_libc.syscall(c_long(SYS_MOVE_MOUNT), c_int(from_fd), b"", c_int(to_fd), b"",
                         c_uint(MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH)), "move_mount")


def open_tree_clone(path: str, dir_fd: int = -100, recursive: bool = True) -> int:
    """A bind mount of path (of dir_fd itself when path is "") that is attached
    nowhere yet (open_tree(2) OPEN_TREE_CLONE, with AT_RECURSIVE an rbind), to be
    given its flags and then moved into place. Linux 5.2+."""
    flags = OPEN_TREE_CLONE | os.O_CLOEXEC | (AT_RECURSIVE if recursive else 0) | (0 if path else AT_EMPTY_PATH)
    return _check(_libc.syscall(c_long(SYS_OPEN_TREE), c_int(dir_fd), _b(path), c_uint(flags)),
                  "open_tree", path or None)


def mount_setattr(fd: int, attr_set: int, recursive: bool = True, attr_clr: int = 0) -> None:
    """MOUNT_ATTR_* flags cleared (attr_clr) then set on the mount fd holds, and with
    recursive on every mount below it (Linux 5.12+)."""
    attr = _MountAttr(attr_set, attr_clr, 0, 0)
    _check(_libc.syscall(c_long(SYS_MOUNT_SETATTR), c_int(fd), b"",
                         c_uint(AT_EMPTY_PATH | (AT_RECURSIVE if recursive else 0)),
                         _ctypes.byref(attr), c_ulong(_ctypes.sizeof(attr))), "mount_setattr")


def fs_context_messages(fd: int) -> str:
    """The kernel's own explanation of a failed fsconfig, read from the context fd."""
    lines = []
    while True:
        try:
            msg = os.read(fd, 1024)
        except OSError:
            break
        if not msg:
            break
        lines.append(msg.decode(errors="replace").strip())
    return "; ".join(lines)


# ---------------------------------------------------------------- openat2 (Linux 5.6+)

SYS_OPENAT2 = 437                     # the same number on every architecture
RESOLVE_NO_XDEV = 0x01                # never cross a mount point
RESOLVE_NO_MAGICLINKS = 0x02          # never follow /proc/*/fd-style links
RESOLVE_NO_SYMLINKS = 0x04            # fail with ELOOP at any symlink on the way
RESOLVE_BENEATH = 0x08                # fail with EXDEV on a way out of dir_fd
RESOLVE_IN_ROOT = 0x10                # treat dir_fd as "/" for the whole lookup


class _OpenHow(_ctypes.Structure):
    _fields_ = [("flags", c_ulong), ("mode", c_ulong), ("resolve", c_ulong)]


def openat2(dir_fd: int, path: str, flags: int, resolve: int, mode: int = 0) -> int:
    """open(2) relative to dir_fd with the kernel enforcing the RESOLVE_* rules on
    every component; ENOSYS on kernels before 5.6 (or where seccomp hides it)."""
    how = _OpenHow(flags, mode, resolve)
    return _check(_libc.syscall(c_long(SYS_OPENAT2), c_int(dir_fd), _b(path),
                                _ctypes.byref(how), c_ulong(_ctypes.sizeof(how))), "openat2", path)


# ---------------------------------------------------------------- keyrings and seccomp (issue 14.5)

SYS_KEYCTL = {"x86_64": 250, "aarch64": 219}
SYS_SECCOMP = {"x86_64": 317, "aarch64": 277}
KEYCTL_JOIN_SESSION_KEYRING = 1
SECCOMP_SET_MODE_FILTER = 1
PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 22, 2   # seccomp(2)'s older way in, not a prctl of caps.py's


def join_session_keyring() -> None:
    """A new, anonymous session keyring for this process (keyctl(2)
    KEYCTL_JOIN_SESSION_KEYRING with no name, so never one that already exists):
    the caller's session keyring and the keys in it are out of its reach. A
    kernel without keyrings (ENOSYS) has none to protect."""
    number = SYS_KEYCTL.get(os.uname().machine)
    if number is None:
        return
    if _libc.syscall(c_long(number), c_int(KEYCTL_JOIN_SESSION_KEYRING), None) < 0:
        err = _ctypes.get_errno()
        if err != 38:                               # ENOSYS
            raise OSError(err, f"join a new session keyring: {os.strerror(err)}")


class _SockFprog(_ctypes.Structure):
    """struct sock_fprog: the instruction count and where the instructions are."""
    _fields_ = [("len", c_ushort), ("filter", c_ulong)]


def seccomp_set_filter(program: bytes, flags: int = 0) -> None:
    """Install a seccomp BPF program (struct sock_filter[], 8 bytes each) on this
    process: seccomp(2) SECCOMP_SET_MODE_FILTER, or prctl(PR_SET_SECCOMP) where we
    lack the syscall's number and no flags are asked for. Needs no_new_privs set,
    or CAP_SYS_ADMIN. Every child and exec'd program inherits it, for good."""
    code = buffer(len(program))
    code.raw = program
    prog = _SockFprog(len(program) // 8, _ctypes.addressof(code))
    number = SYS_SECCOMP.get(os.uname().machine)
    if number is None and not flags:
        result = _libc.prctl(c_int(PR_SET_SECCOMP), c_ulong(SECCOMP_MODE_FILTER), _ctypes.byref(prog),
                             c_ulong(0), c_ulong(0))
    else:
        result = _libc.syscall(c_long(number or -1), c_uint(SECCOMP_SET_MODE_FILTER), c_uint(flags),
                               _ctypes.byref(prog))
    _check(result, "load the seccomp filter")


MFD_EXEC = 0x10                       # memfd_create(2), Linux 6.3+: an executable memfd
F_ADD_SEALS = 1033
F_SEAL_SEAL, F_SEAL_SHRINK, F_SEAL_GROW, F_SEAL_WRITE = 0x1, 0x2, 0x4, 0x8


def seal_memfd(fd: int) -> None:
    """Seal a memfd for good: no write, no resize, no further change of its seals."""
    _check(_libc.fcntl(c_int(fd), c_int(F_ADD_SEALS),
                       c_int(F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE)), "seal a memfd")
