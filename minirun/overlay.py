"""overlayfs mounts as data: which lower dirs, upper, work and options, and
which kernel interface mounts them. Bookkeeping returns an OverlaySpec; only
mount() talks to the kernel, and it runs inside the container's mount namespace.

Options are fixed on purpose (Documentation/filesystems/overlayfs.rst):
    index=off         no inode index in workdir: hard links copied up stay plain
                      files in the upper dir, and the upper dir can be read alone.
    redirect_dir=off  a renamed lower dir is copied up whole instead of being
                      recorded as an xattr pointing into the lower layers, which
                      a diff of the upper dir alone would misread.
    metacopy=off      a chmod/chown copies data up too, so every changed file in
                      the upper dir holds its full content.

Strategies, picked by MINIRUN_OVERLAY_API (auto, new, legacy):
    new     fsopen/fsconfig with one "lowerdir+" per layer (Linux 6.8+): no
            length limit but the kernel's 500 layers.
    legacy  mount(2) with one option string, which must fit in a page. Absolute
            paths are used when they fit; otherwise the short links l/<n> in the
            container dir, with the mount made from that dir.
    auto    new, falling back to legacy when the kernel rejects lowerdir+.
"""

from __future__ import annotations

import os
from .record import dataclass

from . import linux
from .errors import EnvironmentProblem, RuntimeFailure, UsageError

OPTIONS = ("index=off", "redirect_dir=off", "metacopy=off")
PAGE_LIMIT = 4095            # mount(2) copies at most one page of options, NUL included
MAX_LOWER = 500              # fs/overlayfs: OVL_MAX_STACK
STRATEGIES = ("auto", "new", "legacy")


@dataclass(frozen=True)
class OverlaySpec:
    lowers: tuple[str, ...]          # absolute layer dirs, topmost first
    upper: str                       # "" for a read-only overlay (--read-only)
    work: str
    base: str                        # the container dir holding upper/, work/ and l/
    links: tuple[str, ...] = ()      # short names relative to base, one per lower, if needed


def plan(lowers: list[str], upper: str, work: str, base: str) -> OverlaySpec:
    """The overlay for a container; short links are planned only when absolute paths overflow a page."""
    if not lowers:
        raise UsageError("an image needs at least one layer to run")
    if len(lowers) > MAX_LOWER:
        raise UsageError(f"image has {len(lowers)} layers; overlayfs stacks at most {MAX_LOWER}",
                         "squash the image into fewer layers")
    if not upper and len(lowers) < 2:
        raise UsageError("a read-only overlay needs at least two lower dirs")
    for path in (*lowers, upper, work):
        if any(c in path for c in ",:\\"):
            raise EnvironmentProblem(f"overlay path {path!r} contains ',' ':' or '\\'",
                                     "choose a MINIRUN_ROOT without those characters")
    spec = OverlaySpec(tuple(lowers), upper, work, base)
    if len(legacy_options(spec).encode()) > PAGE_LIMIT:
        spec = OverlaySpec(tuple(lowers), upper, work, base,
                           tuple(f"l/{i:x}" for i in range(len(lowers))))
    return spec


def legacy_options(spec: OverlaySpec) -> str:
    """The mount(2) data string: relative to spec.base when links are planned."""
    if spec.links:
        lower, upper, work = ":".join(spec.links), "upper", "work"
    else:
        lower, upper, work = ":".join(spec.lowers), spec.upper, spec.work
    writable = (f"upperdir={upper}", f"workdir={work}") if spec.upper else ()
    return ",".join((f"lowerdir={lower}", *writable, *OPTIONS))


def strategy_from_env() -> str:
    value = os.environ.get("MINIRUN_OVERLAY_API", "auto") or "auto"
    if value not in STRATEGIES:
        raise UsageError(f"MINIRUN_OVERLAY_API={value!r} is not one of {', '.join(STRATEGIES)}")
    return value


def mount(spec: OverlaySpec, target: str, strategy: str = "auto", nodev: bool = False) -> str:
    """Mount the overlay on target; returns the strategy that worked. nodev: device
    nodes on it cannot be opened (a container may mknod, never use what it made)."""
    if strategy in ("auto", "new"):
        try:
            _mount_new(spec, target, nodev)
            return "new"
        except _NoLowerdirPlus as exc:
            if strategy == "new":
                raise EnvironmentProblem(f"this kernel rejects overlay lowerdir+ ({exc})",
                                         "unset MINIRUN_OVERLAY_API or set it to legacy") from None
    _mount_legacy(spec, target, nodev)
    return "legacy"


class _NoLowerdirPlus(Exception):
    pass


def _mount_new(spec: OverlaySpec, target: str, nodev: bool = False) -> None:
    try:
        fd = linux.fsopen("overlay")
    except OSError as exc:
        raise _NoLowerdirPlus(exc.strerror) from None
    try:
        for i, lower in enumerate(spec.lowers):
            try:
                linux.fsconfig_string(fd, "lowerdir+", lower)
            except OSError as exc:
                if i == 0 and exc.errno == 22:
                    raise _NoLowerdirPlus(linux.fs_context_messages(fd) or exc.strerror) from None
                raise _failure(exc, linux.fs_context_messages(fd)) from None
        try:
            if spec.upper:
                linux.fsconfig_string(fd, "upperdir", spec.upper)
                linux.fsconfig_string(fd, "workdir", spec.work)
            for option in OPTIONS:
                key, value = option.split("=")
                linux.fsconfig_string(fd, key, value)
            linux.fsconfig_create(fd)
            mnt = linux.fsmount(fd, linux.MOUNT_ATTR_NODEV if nodev else 0)
        except OSError as exc:
            raise _failure(exc, linux.fs_context_messages(fd)) from None
        try:
            linux.move_mount(mnt, target)
        finally:
            os.close(mnt)
    finally:
        os.close(fd)


def _mount_legacy(spec: OverlaySpec, target: str, nodev: bool = False) -> None:
    data = legacy_options(spec)
    if len(data.encode()) > PAGE_LIMIT:
        raise UsageError(f"overlay options need {len(data)} bytes, more than one page",
                         "squash the image into fewer layers")
    cwd = None
    if spec.links:
        cwd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        os.chdir(spec.base)
    try:
        linux.mount("overlay", target, "overlay", linux.MS_NODEV if nodev else 0, data)
    except OSError as exc:
        raise _failure(exc, "") from None
    finally:
        if cwd is not None:
            os.fchdir(cwd)
            os.close(cwd)


def _failure(exc: OSError, kernel_says: str) -> RuntimeFailure:
    detail = f" ({kernel_says})" if kernel_says else ""
    return RuntimeFailure(f"mount overlay: {exc.strerror}{detail}",
                          "run `dmesg | tail` for the kernel's reason; the store must be on "
                          "ext4, xfs or btrfs, not overlayfs")
