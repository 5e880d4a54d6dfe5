"""A container without a mount namespace of its own (runtime-spec allows it; runc
chroots): its mounts are made beneath the rootfs in the host's mount namespace, so
minirun-oci takes them away itself, at delete or when create fails.

check() refuses what would reach the host's own mounts without a namespace of the
container's: root.readonly (there is no mount of the rootfs to make read-only: "/"
would be the host's) and rootfsPropagation. unmount_beneath(rootfs) detaches every
mount below the rootfs, deepest first (/proc/self/mountinfo).
"""

from __future__ import annotations

import os

from .. import linux
from ..linux import procfs
from ..errors import UsageError


def check(cfg: dict) -> None:
    if cfg["root"]["path"].rstrip("/") == "":
        raise UsageError("config.json: root.path is the host's / and linux.namespaces has no mount namespace: "
                         "the container's mounts would land on the host's own",
                         "add {\"type\": \"mount\"} to linux.namespaces, or give another root.path")
    if cfg["root"].get("readonly"):
        raise UsageError("config.json: root.readonly needs a mount namespace (it would remount the host's root)",
                         "add {\"type\": \"mount\"} to linux.namespaces, or drop root.readonly")
    if cfg["linux"].get("rootfsPropagation"):
        raise UsageError("config.json: linux.rootfsPropagation needs a mount namespace (it would change the "
                         "host's mounts)", "add {\"type\": \"mount\"} to linux.namespaces, or drop it")


def beneath(rootfs: str) -> list[str]:
    """The mount points below rootfs, deepest first; none for "/" or a relative path
    (a damaged record must never make delete detach the host's own mounts)."""
    if not rootfs.startswith("/") or rootfs.rstrip("/") == "":
        return []
    prefix = os.fsencode(rootfs.rstrip("/") + "/")
    points = {os.fsdecode(p) for p in procfs.mount_points() if p.startswith(prefix)}
    return sorted(points, key=lambda p: p.count("/"), reverse=True)


def unmount_beneath(rootfs: str) -> None:
    for _ in range(3):                      # a detached parent can reveal nothing new; stacked ones can
        points = beneath(rootfs)
        if not points:
            return
        for point in points:
            try:
                linux.umount2(point, linux.MNT_DETACH)
            except OSError:
                pass
