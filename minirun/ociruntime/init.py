"""The container's init: what runs inside the new namespaces, from the mounts to the exec.

setup() runs as the process that will become the container's process: propagation,
the bundle's mounts (every destination resolved beneath the rootfs: a symlink that
leads out of it is refused), the default devices and linux.devices, masked and
read-only paths (sandbox/rootfs.py), pivot_root (rootfs.enter), root.readonly,
sysctl, hostname, rlimits, oomScoreAdj, cwd and the program's path. Then it reports
ready; finish() waits on the exec fifo for `start`, takes the user and the five
capability sets (linux/caps.py) and execs process.args.
"""

from __future__ import annotations

import errno
import fcntl
import os
import resource
import struct
import termios

from .. import linux
from ..errors import RuntimeFailure
from ..layer.safeopen import PATH_FLAGS, fd_path, open_in_root
from ..linux import caps
from ..sandbox import bindmount, command, rootfs, trampoline   # imported now: after pivot_root no module file is in reach
from . import cgroupview, config, hooks  # noqa: F401 - hooks (and its subprocess) imported before pivot_root

_DIR = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC
_BENEATH = linux.RESOLVE_BENEATH | linux.RESOLVE_NO_MAGICLINKS
_FLAGS = {"ro": (linux.MS_RDONLY, True), "rw": (linux.MS_RDONLY, False),
          "nosuid": (linux.MS_NOSUID, True), "suid": (linux.MS_NOSUID, False),
          "nodev": (linux.MS_NODEV, True), "dev": (linux.MS_NODEV, False),
          "noexec": (linux.MS_NOEXEC, True), "exec": (linux.MS_NOEXEC, False),
          "sync": (0x10, True), "async": (0x10, False), "dirsync": (0x80, True),
          "remount": (linux.MS_REMOUNT, True), "mand": (0x40, True), "nomand": (0x40, False),
          "noatime": (0x400, True), "atime": (0x400, False), "nodiratime": (0x800, True),
          "diratime": (0x800, False), "relatime": (0x200000, True), "norelatime": (0x200000, False),
          "strictatime": (linux.MS_STRICTATIME, True), "nostrictatime": (linux.MS_STRICTATIME, False),
          "bind": (linux.MS_BIND, True), "rbind": (linux.MS_BIND | linux.MS_REC, True),
          "nosymfollow": (0x100, True), "symfollow": (0x100, False)}
# runtime-spec 1.1's recursive options: an rbind's flags reach every mount below it
# here whichever spelling asks for them (sandbox/bindmount.py), so rro is ro
_FLAGS.update({f"r{name}": _FLAGS[name] for name in ("ro", "rw", "nosuid", "suid", "nodev", "dev", "noexec", "exec",
                                                      "noatime", "atime", "nodiratime", "diratime", "relatime",
                                                      "norelatime", "strictatime", "nostrictatime", "nosymfollow",
                                                      "symfollow")})
# options runc takes that set a filesystem's flags, never a bind mount's: a bind leaves them
_FILESYSTEM_ONLY = {"defaults", "lazytime", "nolazytime", "iversion", "noiversion", "acl", "noacl",
                    "silent", "loud"}
MS_SHARED, MS_UNBINDABLE = 0x100000, 0x20000
_PROPAGATION = {"private": linux.MS_PRIVATE, "rprivate": linux.MS_PRIVATE | linux.MS_REC,
                "slave": linux.MS_SLAVE, "rslave": linux.MS_SLAVE | linux.MS_REC,
                "shared": MS_SHARED, "rshared": MS_SHARED | linux.MS_REC,
                "unbindable": MS_UNBINDABLE, "runbindable": MS_UNBINDABLE | linux.MS_REC}
_DEFAULT_DEVICES = (("/dev/null", 1, 3), ("/dev/zero", 1, 5), ("/dev/full", 1, 7),
                    ("/dev/random", 1, 8), ("/dev/urandom", 1, 9), ("/dev/tty", 5, 0))
_DEV_LINKS = (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
              ("stderr", "/proc/self/fd/2"), ("ptmx", "pts/ptmx"))


def mount_options(options: list) -> tuple[int, int, str]:
    """(flags, propagation flags, data) of a mount's options."""
    flags, propagation, data = 0, 0, []
    for option in options:
        if option in _FLAGS:
            bit, on = _FLAGS[option]
            flags = flags | bit if on else flags & ~bit
        elif option in _PROPAGATION:
            propagation |= _PROPAGATION[option]
        else:
            data.append(option)
    return flags, propagation, ",".join(data)


def _beneath(root: int, path: str, flags: int = PATH_FLAGS) -> int:
    rel = path.strip("/") or "."
    for _ in range(8):
        try:
            return linux.openat2(root, rel, flags, _BENEATH)
        except OSError as exc:
            if exc.errno != errno.EAGAIN:
                raise
    raise OSError(errno.EAGAIN, "the path kept changing", path)


def _fail(path: str, exc: OSError) -> RuntimeFailure:
    why = {errno.EXDEV: "a symlink on the way leads out of the container's root",
           errno.ENOTDIR: "a part of it is not a directory", errno.ELOOP: "too many symlinks"
           }.get(exc.errno, exc.strerror)
    return RuntimeFailure(f"cannot mount on {path} in the container: {why}",
                          "fix the rootfs or the mount's destination in config.json")


def _make_target(root: int, path: str, directory: bool) -> int:
    """An O_PATH fd of path beneath the root, made (parents as directories) when missing."""
    try:
        return _beneath(root, path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise _fail(path, exc) from None
    parts = [p for p in path.split("/") if p]
    fd = os.dup(root)
    try:
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            try:
                nxt = _beneath(fd, part, PATH_FLAGS if last else _DIR)
            except FileNotFoundError:
                if last and not directory:
                    os.close(os.open(part, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644,
                                     dir_fd=fd))
                else:
                    os.mkdir(part, 0o755, dir_fd=fd)
                nxt = _beneath(fd, part, PATH_FLAGS if last else _DIR)
            os.close(fd)
            fd = nxt
        return fd
    except OSError as exc:
        os.close(fd)
        raise _fail(path, exc) from None


def _mount_one(root: int, bundle: str, mount: dict, group: dict | None = None) -> None:
    dest, kind = mount["destination"], mount.get("type") or ""
    flags, propagation, data = mount_options(mount.get("options", []))
    source = mount.get("source") or kind or "none"
    bind = bool(flags & linux.MS_BIND) or kind == "bind"
    if kind == "cgroup":                 # the container's own cgroup (cgroupview.py)
        os.close(_make_target(root, dest, True))
        cgroupview.mount(lambda: _make_target(root, dest, True), flags, group or {})
        return
    if bind:
        flags |= linux.MS_BIND
        if not source.startswith("/"):
            source = os.path.join(bundle, source)
        try:
            src = os.open(source, PATH_FLAGS)
        except OSError as exc:
            raise RuntimeFailure(f"cannot bind {source} on {dest}: {exc.strerror}",
                                 "fix the mount's source in config.json") from None
        unknown = [o for o in data.split(",") if o and o not in _FILESYSTEM_ONLY]
        if unknown:
            raise RuntimeFailure(f"cannot bind {source} on {dest}: minirun-oci does not know the option(s) "
                                 f"{','.join(unknown)}", "remove them from the mount in config.json, or use runc or crun")
        rest = flags & ~(linux.MS_BIND | linux.MS_REC | linux.MS_REMOUNT)
        try:
            is_dir = os.path.isdir(fd_path(src))
            point = _make_target(root, dest, is_dir)
            try:
                if os.path.isdir(fd_path(point)) != is_dir:
                    raise RuntimeFailure(f"cannot bind {source} on {dest}: one is a directory and the other "
                                         "is not", "bind a directory on a directory and a file on a file")
                # flags set before the bind is attached: a second lookup of dest would
                # walk through the source, whose symlinks could take them elsewhere
                top = bindmount.bind(root, dest, "", point, rest, bool(flags & linux.MS_REC), source_fd=src)
            finally:
                os.close(point)
        finally:
            os.close(src)
        try:
            if propagation:
                linux.mount(None, fd_path(top), None, propagation)
        finally:
            os.close(top)
        return
    point = _make_target(root, dest, True)
    try:
        linux.mount(source, fd_path(point), kind, flags, data or None)
    except OSError as exc:
        raise RuntimeFailure(f"cannot mount {kind} on {dest}: {exc.strerror}",
                             "fix the mount's type, source or options in config.json") from None
    finally:
        os.close(point)
    if propagation:
        top = _make_target(root, dest, True)
        try:
            linux.mount(None, fd_path(top), None, propagation)
        finally:
            os.close(top)


def _devices(root: int, devices: list, uid: int, gid: int, userns: bool = False) -> None:
    dev = _make_target(root, "/dev", True)
    os.close(dev)
    wanted = [{"path": p, "type": "c", "major": ma, "minor": mi, "fileMode": 0o666, "uid": 0, "gid": 0}
              for p, ma, mi in _DEFAULT_DEVICES] + list(devices)
    umask = os.umask(0)
    try:
        for device in wanted:
            parent, _, name = device["path"].rpartition("/")
            fd = _make_target(root, parent, True)
            pfd = os.open(fd_path(fd), _DIR & ~os.O_PATH | os.O_RDONLY)
            os.close(fd)
            try:
                kind = {"c": 0o020000, "u": 0o020000, "b": 0o060000, "p": 0o010000}[device["type"]]
                mode = device.get("fileMode", 0o666) & 0o7777
                try:
                    os.unlink(name, dir_fd=pfd)
                except FileNotFoundError:
                    pass
                if userns:              # no mknod in a user namespace: the host's node, bound (as runc)
                    _bind_device(pfd, name, device["path"])
                    continue
                os.mknod(name, kind | mode, os.makedev(device.get("major", 0), device.get("minor", 0)), dir_fd=pfd)
                os.chown(name, device.get("uid", 0), device.get("gid", 0), dir_fd=pfd, follow_symlinks=False)
            finally:
                os.close(pfd)
    finally:
        os.umask(umask)
    dev = open_in_root(root, "dev", follow=False, flags=_DIR & ~os.O_PATH | os.O_RDONLY)
    try:
        for name, target in _DEV_LINKS:
            try:
                os.symlink(target, name, dir_fd=dev)
            except FileExistsError:
                pass
    finally:
        os.close(dev)


def _bind_device(parent: int, name: str, host_path: str) -> None:
    os.close(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=parent))
    target = os.open(name, PATH_FLAGS, dir_fd=parent)
    try:
        linux.mount(host_path, fd_path(target), None, linux.MS_BIND)
    except OSError as exc:
        raise RuntimeFailure(f"linux.devices: cannot bind the host's {host_path} in the user namespace: "
                             f"{exc.strerror}", "give devices the host has") from None
    finally:
        os.close(target)


def _terminal(process: dict, console) -> None:
    """A pty from the container's devpts: the master goes over the console socket (one
    SCM_RIGHTS message, as runc sends it), the slave becomes fds 0-2 and the controlling tty."""
    from ..sandbox import tty           # loaded by setup() (or exec) before the root changed
    master, slave = tty.open_in("")
    try:
        size = process.get("consoleSize") or {}
        if size:
            fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", size.get("height", 0), size.get("width", 0),
                                                              0, 0))
        tty.send_master(console, master)
    finally:
        os.close(master)
        console.close()
    tty.become_controlling(slave)


def setup(cfg: dict, bundle: str, no_pivot: bool, console=None, before_pivot=None) -> str:
    """Everything up to the exec; returns the program's path. before_pivot() runs once
    the mounts are made, before pivot_root (the hooks' point)."""
    spec, process = cfg["linux"], cfg["process"]
    if console is not None:             # the terminal's modules, while the host's files are in reach
        import socket  # noqa: F401 - tty.send_master's
        from ..sandbox import tty  # noqa: F401 - _terminal's
    path = cfg["root"]["path"]
    propagation = spec.get("rootfsPropagation") or ""
    own_mounts = any(ns["type"] == "mount" for ns in spec["namespaces"])
    if own_mounts:
        linux.mount(None, "/", None, linux.MS_REC | (linux.MS_SLAVE if propagation in ("shared", "rshared", "slave",
                                                                                          "rslave") else linux.MS_PRIVATE))
        linux.mount(path, path, None, linux.MS_BIND | linux.MS_REC)
    else:
        # the host's mount namespace (runc's way): the mounts land beneath the rootfs where the
        # host sees them, delete takes them away (hostmounts.py), and the root is a chroot
        no_pivot = True
    root = os.open(path, _DIR)
    userns = any(ns["type"] == "user" for ns in spec["namespaces"])
    top = os.open(path, _DIR)
    try:
        if userns:
            # root of the user namespace from here on: what it makes (in /dev's tmpfs too) is
            # then owned by a mapped id; the bundle's own paths are reached through fds
            os.setresgid(0, 0, 0)
            os.setresuid(0, 0, 0)
        for mount in cfg["mounts"]:
            _mount_one(root, bundle, mount, cfg.get("cgroup"))
        _devices(root, spec["devices"], process["user"]["uid"], process["user"]["gid"], userns)
        if before_pivot is not None:
            before_pivot()
        rootfs.enter(fd_path(top), use_chroot=no_pivot)
    finally:
        os.close(root)
        os.close(top)
    for key, value in spec["sysctl"].items():       # before readonlyPaths, which often hold /proc/sys
        with open("/proc/sys/" + key.replace(".", "/"), "w") as f:
            f.write(value)
    root = os.open("/", _DIR)
    try:
        null = open_in_root(root, "dev/null", follow=False)
        try:
            for masked in spec["maskedPaths"]:
                rootfs.mask(root, masked, null)
        finally:
            os.close(null)
        for ro in spec["readonlyPaths"]:
            rootfs.read_only(root, ro)
    finally:
        os.close(root)
    if console is not None:
        _terminal(process, console)
    if propagation:
        linux.mount(None, "/", None, _PROPAGATION[propagation])
    if cfg["root"].get("readonly"):
        linux.mount(None, "/", None, linux.MS_BIND | linux.MS_REMOUNT | linux.MS_RDONLY)
    if "hostname" in cfg:
        linux.sethostname(cfg["hostname"])
    limits_and_cwd(process)
    if cfg.get("noProcess"):
        return ""
    check_capabilities(process)
    return _program(process)


def check_capabilities(process: dict, what: str = "") -> None:
    """Refuse, before the container is reported ready, capabilities the kernel would
    refuse at the exec (runc fails create then too): ones minirun-oci does not hold."""
    refused = caps.cannot_give(process["capabilities"])
    if refused:
        kind, names = refused
        why = {"inheritable": "not in process.capabilities.bounding or not held by minirun-oci",
               "effective": "not in process.capabilities.permitted"}.get(kind, "not held by minirun-oci, "
                                                                             "so it cannot give them")
        raise RuntimeFailure(f"{what}process.capabilities.{kind}: {', '.join(names)}: {why}",
                             "remove them from config.json, or run minirun-oci where it holds them")


def limits_and_cwd(process: dict, what: str = "",
                   hints: tuple[str, str] = ("give an existing directory in process.cwd",
                                             "give a directory inside the container in process.cwd")) -> None:
    """process.rlimits and oomScoreAdj, then the cwd, which must stay inside the root
    (/proc/self/fd/N of a descriptor of the host's leads out): the init's and exec's.
    what: a prefix for the error lines; hints: theirs (missing cwd, cwd outside)."""
    for limit in process["rlimits"]:
        resource.setrlimit(config.RLIMITS[limit["type"][len("RLIMIT_"):]], (limit["soft"], limit["hard"]))
    if "oomScoreAdj" in process:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(process["oomScoreAdj"]))
    cwd = process.get("cwd") or "/"
    try:
        os.chdir(cwd)
        here = os.getcwd()
    except OSError as exc:
        raise RuntimeFailure(f"{what}process.cwd {cwd}: {exc.strerror} in the container",
                             hints[0]) from None
    if not here.startswith("/"):
        raise RuntimeFailure(f"{what}process.cwd {cwd} leads out of the container's root",
                             hints[1])


def _program(process: dict) -> str:
    name = process["args"][0]
    if "/" in name:
        candidates = [name]
    else:
        env_path = next((e[5:] for e in process["env"] if e.startswith("PATH=")),
                        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        candidates = [os.path.join(d or ".", name) for d in env_path.split(":")]
    for candidate in candidates:
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise RuntimeFailure(f"process.args[0] {name!r}: no such executable in the container",
                         "give a program the rootfs holds (check process.env's PATH)")


def report_sink() -> int:  # pragma: no cover - runs in the init
    """Where the trampoline writes the errno of a failed exec (nobody reads it here):
    the container's own /dev/null, opened in its root, never the host's, which a
    process of the container could reach as /proc/PID/fd/3 while the trampoline
    runs, and chmod for the whole host. A container without one gets a pipe's
    write end, its read end closed: the byte then fails with EPIPE, unread as before."""
    try:
        return os.open("/dev/null", os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        read_end, write_end = os.pipe2(os.O_CLOEXEC)
        os.close(read_end)
        return write_end


def finish(process: dict, program: str, fifo: int, seccomp: tuple | None = None, report: int = -1,
           at_start=None) -> None:
    """Wait for `start` on the exec fifo, take the user and capabilities, exec through
    the trampoline: this process is the host's python, and the program's path may
    lead back to it (/proc/self/exe); the trampoline, a sealed memfd, is what that
    then finds. report: a descriptor (report_sink()) for its errno byte."""
    fd = os.open(fd_path(fifo), os.O_WRONLY | os.O_CLOEXEC)
    os.write(fd, b"0")
    os.close(fd)
    os.close(fifo)
    if at_start is not None:
        at_start()                          # the startContainer hooks
    exe = trampoline.prepare()              # before the seccomp filter: it may forbid memfd_create
    if exe < 0:
        raise RuntimeFailure("minirun-oci has no exec trampoline for this machine's architecture",
                             "run it on x86_64")
    become_and_exec(process, program, exe, report, seccomp)


def become_and_exec(process: dict, program: str, exe: int, report: int, seccomp: tuple | None) -> None:
    """The last steps of the init and of exec's process, in the container's root: close
    every descriptor of the caller's, then bounding set, groups, ids, umask, the five
    capability sets and the seccomp filter in runc's order, then the trampoline's exec."""
    command.close_fds((exe, report))        # nothing of the caller's reaches the container
    user, capabilities = process["user"], process["capabilities"]
    names = {kind: frozenset(caps.normalise(n) for n in capabilities.get(kind, []))
             for kind in ("bounding", "effective", "permitted", "inheritable", "ambient")}
    if seccomp and not process["noNewPrivileges"]:
        linux.seccomp_set_filter(*seccomp)      # before the capabilities go (CAP_SYS_ADMIN), as runc
    caps.limit_bounding(names["bounding"])
    caps.keep_across_setuid()
    os.setgroups(user["additionalGids"])
    os.setresgid(user["gid"], user["gid"], user["gid"])
    os.setresuid(user["uid"], user["uid"], user["uid"])
    if "umask" in user:
        os.umask(user["umask"])
    caps.apply_sets(names["effective"], names["permitted"], names["inheritable"], names["ambient"],
                    process["noNewPrivileges"])
    if seccomp and process["noNewPrivileges"]:
        linux.seccomp_set_filter(*seccomp)
    env = dict(entry.split("=", 1) for entry in process["env"] if "=" in entry)
    trampoline.run(exe, program, process["args"], env, report, trampoline.ARGV0)
