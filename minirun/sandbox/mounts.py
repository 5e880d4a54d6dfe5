"""What gets mounted inside a container besides the overlay, as data.

    kernel filesystems   /proc, a tmpfs /dev with a few nodes, /sys read-only
    etc files            /etc/hosts, /etc/hostname, /etc/resolv.conf, written by the
                         child into a tmpfs of its own and bound from there, so they
                         never land in the upper dir (as Docker's, bound from its
                         container dir) and never cost the store a file
    volumes              -v HOST:CTR[:ro|rw], --tmpfs PATH[:OPTIONS]
    masked paths         /dev/null or an empty read-only tmpfs over what containers
                         must not read (Docker's default list); missing ones are skipped
    read-only paths      bound read-only onto themselves (Docker's default list)

Every mount point the image lacks goes into the container's init layer (a
small lower dir on top of the image's, as Docker's "-init" layer), so the
runtime never writes into the upper dir and `minirun diff` shows only the run.
An image of 500 layers (overlayfs's most) keeps its init layer too: overlay.plan
then mounts the image's layers as an overlay of their own, under the init layer.
"""

from __future__ import annotations

import os
from ..lib.frozen import dataclass

from ..errors import UsageError

KERNEL_MOUNT_POINTS = ("/proc", "/dev", "/sys")
ETC_FILES = ("/etc/hosts", "/etc/hostname", "/etc/resolv.conf")

MASKED_PATHS = (
    "/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
    "/sys/firmware", "/sys/devices/virtual/powercap",
)
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")
# The only places in the container's /proc a volume or tmpfs may cover: the files
# lxcfs stands in for (runc's list, less /proc/net/dev: it lies under /proc/self,
# where the kernel refuses the mount). Anything else resolving into procfs is refused.
PROC_FILES_TO_COVER = ("/proc/cpuinfo", "/proc/diskstats", "/proc/meminfo", "/proc/stat", "/proc/swaps",
                       "/proc/uptime", "/proc/loadavg", "/proc/slabinfo", "/proc/sys/kernel/ns_last_pid")


@dataclass(frozen=True)
class Mount:
    target: str                 # absolute, inside the container
    kind: str                   # "bind", "tmpfs" or "file" (content written at start)
    source: str = ""            # host path for binds
    readonly: bool = False
    options: str = ""           # tmpfs data, e.g. size=64m,mode=1777
    is_file: bool = False       # the mount point is a file, not a directory
    content: str = ""           # a "file" mount's text


def _container_path(path: str, what: str) -> str:
    if not path.startswith("/"):
        raise UsageError(f"{what} {path!r}: the container path must be absolute")
    clean = os.path.normpath(path)
    if clean == "/" or clean.startswith("//"):
        raise UsageError(f"{what} {path!r}: cannot mount over the container's root")
    return clean


def parse_volume(text: str) -> Mount:
    """-v HOST:CTR[:ro|rw]. Named volumes are not supported: HOST must be an absolute path."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or not all(parts[:2]):
        raise UsageError(f"invalid volume {text!r}", "use -v /host/path:/container/path[:ro]")
    host, target = parts[0], parts[1]
    mode = parts[2] if len(parts) == 3 else "rw"
    if mode not in ("ro", "rw"):
        raise UsageError(f"invalid volume mode {mode!r} in {text!r}", "use ro or rw")
    if not host.startswith("/"):
        raise UsageError(f"volume {text!r}: named volumes are not supported",
                         "give an absolute host path, e.g. -v $PWD/data:/data")
    return Mount(_container_path(target, "volume"), "bind", os.path.abspath(host), mode == "ro",
                 is_file=os.path.exists(host) and not os.path.isdir(host))    # a device too


def parse_tmpfs(text: str) -> Mount:
    """--tmpfs PATH[:OPTIONS], e.g. /run:size=64m,mode=755."""
    path, _, options = text.partition(":")
    for option in filter(None, options.split(",")):
        key = option.split("=", 1)[0]
        if key not in ("size", "mode", "nr_inodes", "uid", "gid", "ro", "rw", "noexec", "exec",
                       "nosuid", "suid", "nodev", "dev"):
            raise UsageError(f"unknown tmpfs option {option!r} in {text!r}")
    return Mount(_container_path(path, "tmpfs"), "tmpfs", options=options or "mode=1777")


def check_tmpfs_dev(mounts: list[Mount]) -> None:
    """`dev` on a --tmpfs only with --privileged: the container keeps CAP_MKNOD, and
    minirun has no device cgroup, so a node made there could open any host device."""
    for m in mounts:
        if "dev" in m.options.split(","):
            raise UsageError(f"--tmpfs {m.target}: the option dev needs --privileged",
                             "leave it out: device nodes made on that tmpfs could open the host's devices")


def etc_mounts(files: dict[str, str]) -> list[Mount]:
    """hosts, hostname and resolv.conf ({name: text}) over the image's /etc files."""
    return [Mount(f"/etc/{name}", "file", is_file=True, content=text) for name, text in sorted(files.items())]


def mount_points(mounts: list[Mount]) -> list[tuple[str, bool]]:
    """(path, is_file) for every mount point the container needs, kernel ones first."""
    out = [(p, False) for p in KERNEL_MOUNT_POINTS]
    out += [(m.target, m.is_file) for m in mounts]
    return out


def check_no_duplicates(mounts: list[Mount]) -> None:
    seen: set[str] = set()
    for m in mounts:
        if m.target in seen:
            raise UsageError(f"{m.target} is mounted twice", "give each volume or tmpfs its own path")
        seen.add(m.target)


@dataclass(frozen=True)
class InitEntry:
    path: str          # relative: etc/hosts
    is_file: bool
    mode: int
    uid: int
    gid: int


def image_lookup(lowers: list[str]):
    """lookup(path): the lstat of what the image's layers (topmost first) show at
    path, or None; LowerView's answer, for init_entries. Only the layers whose top
    dir holds a path's first component can affect it (as a file, a dir, a whiteout
    or an opaque dir), so each top dir is listed once and each lookup walks only
    those layers. Through 500 layers, the 7 lookups of a run cost ~17 ms as lstat
    after lstat in every layer, and ~4 ms this way."""
    from ..layer.lowerview import LowerView
    holders: dict[str, list[str]] = {}
    for layer in lowers:
        for name in os.listdir(layer):
            holders.setdefault(name, []).append(layer)

    def lookup(path: str):
        first = path.strip("/").split("/", 1)[0]
        return LowerView(holders.get(first, []) if first else lowers).lookup(path)
    return lookup


def init_entries(lookup, points: list[tuple[str, bool]]) -> list[InitEntry]:
    """The init layer: each missing mount point, and the parents it needs. A parent that
    the image has keeps the image's mode and owner (the init layer's copy covers it)."""
    import stat as st_mod
    out: dict[str, InitEntry] = {}
    for path, is_file in points:
        if lookup(path) is not None:
            continue
        parts = path.strip("/").split("/")
        for depth in range(1, len(parts)):
            rel = "/".join(parts[:depth])
            if rel in out:
                continue
            seen = lookup("/" + rel)
            if seen is not None and not st_mod.S_ISDIR(seen.st_mode):
                raise UsageError(f"cannot mount on {path}: /{rel} is not a directory in the image")
            mode, uid, gid = (st_mod.S_IMODE(seen.st_mode), seen.st_uid, seen.st_gid) if seen else (0o755, 0, 0)
            out[rel] = InitEntry(rel, False, mode, uid, gid)
        rel = "/".join(parts)
        out[rel] = InitEntry(rel, is_file, 0o644 if is_file else 0o755, 0, 0)
    return list(out.values())
