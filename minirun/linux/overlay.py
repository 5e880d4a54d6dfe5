"""overlayfs mounts as data: which lower dirs, upper, work and options, and
which kernel interface mounts them. Bookkeeping returns an OverlayMount; only
mount() talks to the kernel, and it runs inside the container's mount namespace.

Options are fixed on purpose (Documentation/filesystems/overlayfs.rst):
    index=off         no inode index in workdir: hard links copied up stay plain
                      files in the upper dir, and the upper dir can be read alone.
    redirect_dir=off  a renamed lower dir is copied up whole instead of being
                      recorded as an xattr pointing into the lower layers, which
                      a diff of the upper dir alone would misread.
    metacopy=off      a chmod/chown copies data up too, so every changed file in
                      the upper dir holds its full content.
    volatile          only for a container run with --rm, whose upper dir is
                      deleted when it ends: no sync of the upper filesystem,
                      neither the container's fsync calls nor the syncfs that
                      unmounting a writable overlay does when the container
                      exits (~0.8 ms of each `run --rm /bin/true` here). What it
                      writes is in the page cache, readable from the host as
                      ever; only a host crash could lose it, and a volatile
                      upper dir is never mounted again (the kernel refuses one
                      that holds work/work/incompat/volatile). Podman does the
                      same for --rm. Kernels before 5.10 know no volatile;
                      there the overlay is mounted without it.

Strategies, picked by MINIRUN_OVERLAY_API (auto, new, legacy):
    new     fsopen/fsconfig with one "lowerdir+" per layer (Linux 6.8+): no
            length limit but the kernel's 500 layers.
    legacy  mount(2) with one option string, which must fit in a page. Absolute
            paths are used when they fit; otherwise the short links l/<n> in the
            container dir, with the mount made from that dir.
    auto    new, falling back to legacy when the kernel rejects lowerdir+: at the
            first lowerdir+ (6.5-6.7), or, before 6.5, where overlayfs has no
            fs_context of its own, at the create (see _NO_SUCH_KEY).

Layer count. The kernel stacks at most MAX_LOWER (500) lower dirs in one
overlay (OVL_MAX_STACK; the 501st lowerdir+ gives EINVAL). An image with more
distinct layers is refused by plan() before anything exists: `run` exits 125
(as every run failure), other commands exit 2 (UsageError). load and pull
accept such an image, since `save` and `push` still work on it.

The container's own dirs (its init layer; for export also its upper dir) sit
above the image's layers. When they would push a stack past MAX_LOWER, the
image's layers become a read-only overlay of their own (`below`), mounted
first on the target, and the container's overlay is stacked on top of it with
that mount as its bottom lower dir. The kernel allows this: a lower dir may be
an overlay (stacking depth 2, FILESYSTEM_MAX_STACK_DEPTH), only the upper dir
may not. So a 500-layer image runs with its init layer as a real lower dir,
and the upper dir still holds nothing but what the run wrote (`diff`, `commit`
and `export` need no exceptions).
"""

from __future__ import annotations

import errno
import os
from ..lib.frozen import dataclass

from .. import linux
from ..errors import EnvironmentProblem, RuntimeFailure, UsageError

OPTIONS = ("index=off", "redirect_dir=off", "metacopy=off")
PAGE_LIMIT = 4095            # mount(2) copies at most one page of options, NUL included
MAX_LOWER = 500              # fs/overlayfs: OVL_MAX_STACK
STRATEGIES = ("auto", "new", "legacy")


@dataclass(frozen=True)
class OverlayMount:
    lowers: tuple[str, ...]          # absolute layer dirs, topmost first
    upper: str                       # "" for a read-only overlay (--read-only)
    work: str
    base: str                        # the container dir holding upper/, work/ and l/
    links: tuple[str, ...] = ()      # short names relative to base, one per lower, if needed
    below: OverlayMount | None = None  # the image's layers as an overlay of their own, mounted
                                      # first on the target: the bottom lower dir of this one
    volatile: bool = False           # no syncs of the upper dir (--rm; see above)


def check_layer_count(count: int) -> None:
    """An image with more distinct layers than one overlay stacks cannot be mounted."""
    if count > MAX_LOWER:
        raise UsageError(f"image has {count} distinct layers; overlayfs stacks at most {MAX_LOWER}",
                         f"rebuild or squash the image into at most {MAX_LOWER} layers")


def plan(lowers: list[str], upper: str, work: str, base: str, own: list[str] | tuple = (),
         volatile: bool = False) -> OverlayMount:
    """The overlay for a container. lowers: the image's layer dirs, topmost first;
    own: the container's dirs stacked above them (its init layer, export's upper).
    volatile: the upper dir is thrown away after (run --rm). Short links are
    planned only when absolute paths overflow a page."""
    if not lowers:
        raise UsageError("an image needs at least one layer to run")
    check_layer_count(len(lowers))
    if not upper and len(own) + len(lowers) < 2:
        raise UsageError("a read-only overlay needs at least two lower dirs")
    for path in (*own, *lowers, upper, work):
        if any(c in path for c in ",:\\"):
            raise EnvironmentProblem(f"overlay path {path!r} contains ',' ':' or '\\'",
                                     "choose a MINIRUN_ROOT without those characters")
    volatile = volatile and bool(upper)
    if len(own) + len(lowers) <= MAX_LOWER:
        return _flat(tuple(own) + tuple(lowers), upper, work, base, volatile)
    # own dirs are few (init, upper); they never need links
    return OverlayMount(tuple(own), upper, work, base, below=_flat(tuple(lowers), "", "", base),
                       volatile=volatile)


def _flat(lowers: tuple[str, ...], upper: str, work: str, base: str, volatile: bool = False) -> OverlayMount:
    spec = OverlayMount(lowers, upper, work, base, volatile=volatile)
    if len(legacy_options(spec).encode()) > PAGE_LIMIT:
        spec = OverlayMount(lowers, upper, work, base, tuple(f"l/{i:x}" for i in range(len(lowers))),
                           volatile=volatile)
    return spec


def short_links(spec: OverlayMount) -> dict[str, str]:
    """Every short link a legacy mount needs (l/<n> -> lower dir), to be made under spec.base."""
    links = dict(zip(spec.links, spec.lowers))
    if spec.below is not None:
        links.update(short_links(spec.below))
    return links


def links_to_make(spec: OverlayMount, strategy: str) -> dict[str, str]:
    """The short links this strategy will use: none when lowerdir+ will mount the
    overlay. 500 symlinks made and removed with each container are most of the
    start of a 500-layer image here (~0.5 ms each on this ext4), and only the
    legacy mount reads them."""
    links = short_links(spec)
    if not links or strategy == "new" or (strategy == "auto" and kernel_has_lowerdir_plus()):
        return {}
    return links


# A key no overlayfs knows. Before Linux 6.5 overlayfs has no fs_context of its own:
# the kernel's legacy one takes any key at fsconfig time, adds it to one option
# string, and only FSCONFIG_CMD_CREATE parses that (EINVAL for "lowerdir+" on 6.1).
# So fsconfig accepting "lowerdir+" proves nothing unless it also refuses this key.
_NO_SUCH_KEY = "minirun-no-such-option"


def kernel_has_lowerdir_plus() -> bool:
    """Ask the kernel as the mount will (Linux 6.8+ knows lowerdir+); nothing is mounted."""
    try:
        fd = linux.fsopen("overlay")
    except OSError:
        return False
    try:
        linux.fsconfig_string(fd, "lowerdir+", "/")
    except OSError:
        return False
    else:
        return not _takes_any_key(fd)
    finally:
        os.close(fd)


def _takes_any_key(fd: int) -> bool:
    """True when fd is the kernel's legacy fs_context, which checks no key (see above)."""
    try:
        linux.fsconfig_string(fd, _NO_SUCH_KEY, "")
        return True
    except OSError:
        return False


def _legacy_context() -> bool:
    """Whether a new overlay fs_context would be the legacy one; asked only after a failure."""
    try:
        fd = linux.fsopen("overlay")
    except OSError:
        return True
    try:
        return _takes_any_key(fd)
    finally:
        os.close(fd)


def legacy_options(spec: OverlayMount, below_at: str = "") -> str:
    """The mount(2) data string: relative to spec.base when links are planned.
    below_at: where spec.below is mounted, the last lower dir."""
    if spec.links:
        lower, upper, work = ":".join(spec.links), "upper", "work"
    else:
        lower, upper, work = ":".join(spec.lowers), spec.upper, spec.work
    if spec.below is not None:
        lower = f"{lower}:{below_at or '<below>'}"
    writable = (f"upperdir={upper}", f"workdir={work}") if spec.upper else ()
    volatile = ("volatile",) if spec.volatile else ()
    return ",".join((f"lowerdir={lower}", *writable, *OPTIONS, *volatile))


def strategy_from_env() -> str:
    value = os.environ.get("MINIRUN_OVERLAY_API", "auto") or "auto"
    if value not in STRATEGIES:
        raise UsageError(f"MINIRUN_OVERLAY_API={value!r} is not one of {', '.join(STRATEGIES)}")
    return value


def mount(spec: OverlayMount, target: str, strategy: str = "auto", nodev: bool = False) -> str:
    """Mount the overlay on target; returns the strategy that worked. nodev: device
    nodes on it cannot be opened (a container may mknod, never use what it made).
    With spec.below, that overlay is mounted on target first and spec's own is
    stacked over it, taking it (target, as it then resolves) as its bottom lower dir."""
    if spec.below is None:
        return _mount_one(spec, target, strategy, nodev)
    used = _mount_one(spec.below, target, strategy, nodev)
    try:
        _mount_one(spec, target, used, nodev, below_at=target)
    except BaseException:
        linux.umount2(target, linux.MNT_DETACH)
        raise
    return used


def _mount_one(spec: OverlayMount, target: str, strategy: str, nodev: bool, below_at: str = "") -> str:
    if strategy in ("auto", "new"):
        try:
            _mount_new(spec, target, nodev, below_at)
            return "new"
        except _NoLowerdirPlus as exc:
            if strategy == "new":
                raise EnvironmentProblem(f"this kernel rejects overlay lowerdir+ ({exc})",
                                         "unset MINIRUN_OVERLAY_API or set it to legacy") from None
    _mount_legacy(spec, target, nodev, below_at)
    return "legacy"


class _NoLowerdirPlus(Exception):
    pass


def _mount_new(spec: OverlayMount, target: str, nodev: bool = False, below_at: str = "") -> None:
    try:
        fd = linux.fsopen("overlay")
    except OSError as exc:
        raise _NoLowerdirPlus(exc.strerror) from None
    try:
        for i, lower in enumerate((*spec.lowers, below_at) if below_at else spec.lowers):
            try:
                linux.fsconfig_string(fd, "lowerdir+", lower)
            except OSError as exc:
                # 6.5-6.7 refuse the first lowerdir+; a legacy context (before 6.5) may
                # take a few, then refuse one when its option string outgrows a page
                if exc.errno == errno.EINVAL and (i == 0 or _legacy_context()):
                    raise _NoLowerdirPlus(linux.fs_context_messages(fd) or exc.strerror) from None
                raise _failure(exc, linux.fs_context_messages(fd)) from None
        try:
            if spec.upper:
                linux.fsconfig_string(fd, "upperdir", spec.upper)
                linux.fsconfig_string(fd, "workdir", spec.work)
            for option in OPTIONS:
                key, value = option.split("=")
                linux.fsconfig_string(fd, key, value)
            if spec.volatile:
                try:
                    linux.fsconfig_flag(fd, "volatile")
                except OSError as exc:
                    if exc.errno != errno.EINVAL:
                        raise
                    # before Linux 5.10 overlayfs knows no volatile: mount without it
            linux.fsconfig_create(fd)
            mnt = linux.fsmount(fd, linux.MOUNT_ATTR_NODEV if nodev else 0)
        except OSError as exc:
            if exc.errno == errno.EINVAL and _legacy_context():
                # before 6.5: the create parsed the options and refused "lowerdir+"
                raise _NoLowerdirPlus("overlayfs before Linux 6.5 parses options only at create") from None
            raise _failure(exc, linux.fs_context_messages(fd)) from None
        try:
            linux.move_mount(mnt, target)
        finally:
            os.close(mnt)
    finally:
        os.close(fd)


def _mount_legacy(spec: OverlayMount, target: str, nodev: bool = False, below_at: str = "") -> None:
    data = legacy_options(spec, below_at)
    if len(data.encode()) > PAGE_LIMIT:
        raise UsageError(f"overlay options need {len(data)} bytes, more than one page",
                         "squash the image into fewer layers")
    cwd = None
    if spec.links:
        cwd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        os.chdir(spec.base)
    try:
        try:
            linux.mount("overlay", target, "overlay", linux.MS_NODEV if nodev else 0, data)
        except OSError as exc:
            if exc.errno != errno.EINVAL or not spec.volatile:
                raise
            # before Linux 5.10 overlayfs rejects volatile: the same mount without it
            linux.mount("overlay", target, "overlay", linux.MS_NODEV if nodev else 0,
                        data.removesuffix(",volatile"))
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
