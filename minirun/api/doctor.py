"""minirun doctor: can this machine run containers, and if not, what to change.

Each check is a function returning a Check: ok, warn (works, with a limit
worth knowing) or fail (a command will fail), with the fix to apply. The
checks that need the kernel's answer ask it for real, in a throw-away child
with a private mount namespace: mount an overlay, pivot_root, probe
`lowerdir+`. Nothing is left behind.
"""

from __future__ import annotations

import os
import resource
import tempfile
from ..lib.frozen import dataclass
from typing import Callable

from .. import linux
from ..linux import probes
from ..linux.procfs import status_field

OK, WARN, FAIL = "ok", "warn", "fail"

# Capability numbers (linux/capability.h) of what `run` needs in the bounding set
# (mounts, mknod, user switch, chroot, the default set it hands on), and of what
# only some options need.
NEEDED_CAPS = {"CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_FOWNER": 3, "CAP_KILL": 5, "CAP_SETGID": 6,
               "CAP_SETUID": 7, "CAP_SETPCAP": 8, "CAP_SYS_CHROOT": 18, "CAP_SYS_ADMIN": 21,
               "CAP_MKNOD": 27}
OPTIONAL_CAPS = {"CAP_NET_ADMIN": (12, "--network bridge"),
                 "CAP_SYS_RESOURCE": (24, "--ulimit above the hard limit")}


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    detail: str
    fix: str = ""

    def to_json(self) -> dict:
        return {"Check": self.name, "Status": self.status, "Detail": self.detail, "Fix": self.fix}


def run_all(root: str) -> list[Check]:
    checks: list[Callable[[], Check]] = [
        check_root, lambda: check_store_fs(root), lambda: check_d_type(root), check_overlay,
        check_lowerdir_plus, lambda: check_pivot_root(root), check_cgroups, check_capabilities,
        check_rlimits,
    ]
    out = []
    for check in checks:
        try:
            out.append(check())
        except Exception as exc:  # noqa: BLE001 - a check that breaks is itself a finding
            out.append(Check(getattr(check, "__name__", "check"), FAIL, f"the check failed: {exc}"))
    return out


def check_root() -> Check:
    if os.geteuid() == 0:
        return Check("root", OK, "running as root")
    return Check("root", FAIL, f"running as uid {os.geteuid()}", "run minirun as root (sudo)")


def check_store_fs(root: str) -> Check:
    path = _existing(root)
    kind = linux.statfs_type(path)
    name = _FS_NAMES.get(kind, hex(kind))
    if kind == linux.OVERLAYFS_SUPER_MAGIC:
        return Check("store filesystem", FAIL, f"{root} is on overlayfs, which cannot hold upper dirs",
                     "set MINIRUN_ROOT to a directory on ext4, xfs (ftype=1), btrfs or tmpfs")
    return Check("store filesystem", OK, f"{root} is on {name}")


def check_d_type(root: str) -> Check:
    base = _existing(root)
    with tempfile.TemporaryDirectory(dir=base, prefix=".doctor-") as probe:
        os.mkdir(os.path.join(probe, "d"))
        open(os.path.join(probe, "f"), "w").close()
        types = linux.dirent_types(probe)
    if types.get("d") == 4 and types.get("f") == 8:
        return Check("d_type", OK, "the store's filesystem reports entry types")
    return Check("d_type", FAIL, "the store's filesystem reports no entry types (d_type)",
                 "use a filesystem with d_type: xfs needs mkfs.xfs -n ftype=1; ext4 and btrfs have it")


def check_overlay() -> Check:
    listed = "overlay" in _read("/proc/filesystems")
    result = probes.overlay_mount_fails()
    if result is None:
        return Check("overlayfs", OK, "an overlay with upper and work dirs mounts")
    fix = "load the module: modprobe overlay" if not listed else "check dmesg for overlayfs messages"
    return Check("overlayfs", FAIL, f"mounting an overlay failed: {result}", fix)


def check_lowerdir_plus() -> Check:
    from ..linux.overlay import kernel_has_lowerdir_plus
    if kernel_has_lowerdir_plus():
        return Check("overlay lowerdir+", OK, "the new mount API stacks any number of layers (up to 500)")
    return Check("overlay lowerdir+", WARN, f"not available on Linux {os.uname().release}: it came in 6.8",
                 "nothing to do: minirun falls back to one mount(2) option string with short links")


def check_pivot_root(root: str) -> Check:
    result = probes.pivot_root_fails(_existing(root))
    if result is None:
        return Check("pivot_root", OK, "pivot_root works in a new mount namespace")
    return Check("pivot_root", WARN, f"pivot_root failed ({result}), e.g. on an initramfs root",
                 "run containers with --chroot")


def check_cgroups() -> Check:
    from ..linux import cgroups
    version, have = cgroups.controllers()
    if version is None:
        return Check("cgroups", WARN, "no usable cgroup hierarchy under /sys/fs/cgroup",
                     "mount cgroup2 on /sys/fs/cgroup to use --memory, --cpus and --pids-limit")
    missing = [c for c in ("memory", "cpu", "pids") if c not in have]
    detail = f"cgroup {version}, controllers: {', '.join(sorted(have)) or 'none'}"
    if missing:
        return Check("cgroups", WARN, detail + f"; missing {', '.join(missing)}",
                     f"enable the {', '.join(missing)} controller(s) to use the matching run limits")
    return Check("cgroups", OK, detail)


def check_capabilities() -> Check:
    bounding = _cap_set("CapBnd")
    if bounding is None:
        return Check("capabilities", WARN, "cannot read the bounding set from /proc/self/status")
    missing = [name for name, bit in NEEDED_CAPS.items() if not bounding >> bit & 1]
    if missing:
        return Check("capabilities", FAIL, f"the bounding set lacks {', '.join(missing)}",
                     "run minirun where root keeps these (not inside an unprivileged container)")
    lacking = [f"{name} ({why})" for name, (bit, why) in OPTIONAL_CAPS.items() if not bounding >> bit & 1]
    if lacking:
        return Check("capabilities", WARN, f"all needed ones present; lacking {', '.join(lacking)}",
                     "only those features are affected")
    return Check("capabilities", OK, "the bounding set has everything minirun uses")


def check_rlimits() -> Check:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    nproc_soft, nproc_hard = resource.getrlimit(resource.RLIMIT_NPROC)
    detail = f"nofile {_show(soft)}/{_show(hard)}, nproc {_show(nproc_soft)}/{_show(nproc_hard)}"
    if hard != resource.RLIM_INFINITY and hard < 1024:
        return Check("rlimits", FAIL, detail, "raise the hard nofile limit to at least 1024 (ulimit -Hn)")
    if soft != resource.RLIM_INFINITY and soft < 1024:
        return Check("rlimits", WARN, detail, "containers inherit a low soft nofile limit; "
                     "raise it (ulimit -n) or pass --ulimit nofile=N")
    return Check("rlimits", OK, detail + " (containers inherit these unless --ulimit is given)")


# ---------------------------------------------------------------- helpers

_FS_NAMES = {0xEF53: "ext4", 0x58465342: "xfs", 0x9123683E: "btrfs", 0x01021994: "tmpfs",
             0x794C7630: "overlayfs", 0x6969: "nfs", 0x2FC12FC1: "zfs"}


def _existing(path: str) -> str:
    """path, or its nearest existing parent (doctor runs before the store exists)."""
    while not os.path.isdir(path):
        path = os.path.dirname(path) or "/"
    return path


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def _cap_set(field: str) -> int | None:
    value = status_field(field)
    return None if value is None else int(value, 16)


def _show(value: int) -> str:
    return "unlimited" if value == resource.RLIM_INFINITY else str(value)
