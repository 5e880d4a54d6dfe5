"""`minirun info`: the effective configuration (and where each value came from),
the kernel features minirun uses on this machine, and store statistics.

The kernel facts come from the same probes `minirun doctor` runs (in a
throw-away child with its own mount namespace); the store figures from the
inventory `minirun system df` reads.
"""

from __future__ import annotations

import os

from .. import config


def gather(store_root: str) -> dict:
    from .doctor import run_all
    settings = {key: {"Value": value, "Source": source}
                for key, (value, source) in ((k, config.effective(k)) for k in config.SETTINGS)}
    checks = {check.name: check for check in run_all(store_root)}

    def said(name: str) -> str:
        check = checks.get(name)
        return f"{check.status}: {check.detail}" if check else "not checked"
    from ..linux.overlay import strategy_from_env
    from ..linux.cgroups import detect
    cgroup_version = detect()
    features = {
        "Kernel": os.uname().release,
        "OverlayMountAPI": f"{strategy_from_env()} ({said('overlay lowerdir+')})",
        "Overlay": said("overlayfs"),
        "OverlayOptions": "index=off, redirect_dir=off, metacopy=off",
        "PivotRoot": said("pivot_root"),
        "Cgroups": f"{cgroup_version or 'none'}; a container gets one only with -d, --memory, --cpus or "
                   "--pids-limit (or MINIRUN_CGROUPS=always)",
        "CgroupControllers": said("cgroups"),
        "Capabilities": said("capabilities"),
        "Rlimits": said("rlimits"),
        "LayerExtraction": _extraction(),
        "StoreFilesystem": said("store filesystem"),
        "DType": said("d_type"),
    }
    return {"ConfigFile": {"Path": config.path(), "Exists": os.path.exists(config.path())},
            "Settings": settings, "Kernel": features, "Store": _store_stats(store_root)}


def _extraction() -> str:
    from ..layer import safeopen
    try:
        fd = safeopen.linux.openat2(-100, "/", safeopen.DIR_FLAGS, safeopen.RESOLVE)
    except OSError as exc:
        return f"O_NOFOLLOW walk per component (openat2 unavailable: {exc.strerror})"
    os.close(fd)
    return "openat2 RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS"


def _store_stats(root: str) -> dict:
    if not os.path.isdir(root):
        from ..store.root import check_root
        check_root(root)                 # MINIRUN_ROOT=/dev/null is an error, not "not created yet"
        return {"Root": root, "Exists": False}
    from ..store import open_store
    from .disk import disk_usage, inventory_for
    store = open_store(root, create=False)
    usage = disk_usage(inventory_for(store, sizes=True))
    rows = {row.kind: {"Total": row.total, "Active": row.active, "Bytes": row.size,
                       "ReclaimableBytes": row.reclaimable} for row in usage.rows}
    running = 0
    from .control import container_records
    for record in container_records(store):
        running += record.state.running
    return {"Root": root, "Exists": True, "RunningContainers": running, **rows}


def lines(doc: dict) -> list[str]:
    from .catalog import human_size
    out = [f"Config file: {doc['ConfigFile']['Path']}"
           f"{'' if doc['ConfigFile']['Exists'] else ' (absent: built-in defaults)'}", "Settings:"]
    for key, item in doc["Settings"].items():
        value = ", ".join(item["Value"]) if isinstance(item["Value"], list) else item["Value"]
        out.append(f"  {key + ':':22} {value or '(none)'}   [{item['Source']}]")
    out.append("Kernel:")
    out += [f"  {key + ':':22} {value}" for key, value in doc["Kernel"].items()]
    store = doc["Store"]
    out.append("Store:")
    out.append(f"  {'Root:':22} {store['Root']}{'' if store['Exists'] else ' (not created yet)'}")
    if store["Exists"]:
        out.append(f"  {'Running containers:':22} {store['RunningContainers']}")
        for kind, row in store.items():
            if isinstance(row, dict):
                out.append(f"  {kind + ':':22} {row['Total']} ({row['Active']} active), "
                           f"{human_size(row['Bytes'])}, {human_size(row['ReclaimableBytes'])} reclaimable")
    return out
