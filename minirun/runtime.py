"""Container operations behind the CLI: ps, rm, inspect, diff (run is launcher.py)."""

from __future__ import annotations

import os
import signal
import time

from .errors import Conflict, EnvironmentProblem


def require_root(what: str) -> None:
    if os.geteuid() != 0:
        raise EnvironmentProblem(f"minirun {what} must run as root (it mounts overlayfs and "
                                 "creates namespaces)", f"run it with sudo: sudo minirun {what} ...")


def start_time(pid: int) -> int:
    """Field 22 of /proc/PID/stat: tells a live container from a reused pid."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return 0


def effective_state(state: dict) -> dict:
    """The recorded state, corrected when the runtime died and its container with it."""
    if state.get("status") == "running":
        pid = state.get("pid") or 0
        if not pid or start_time(pid) != state.get("pid_start"):
            return dict(state, status="exited", exit_code=None, error="the runtime process died")
    return state


def container_records(store) -> list[dict]:
    out = []
    for cid in store.containers.ids():
        try:
            config = store.containers.config(cid)
        except (OSError, ValueError):
            continue
        out.append(dict(config, state=effective_state(store.containers.state(cid))))
    out.sort(key=lambda c: c.get("created", ""), reverse=True)
    return out


def remove(store, name: str, force: bool) -> str:
    cid = store.containers.resolve(name)
    state = effective_state(store.containers.state(cid))
    if state.get("status") == "running":
        if not force:
            raise Conflict(f"container {name} is running", "stop it first, or use `minirun rm -f`")
        _kill(state["pid"])
    store.containers.remove(cid)
    return cid


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    for _ in range(100):
        if start_time(pid) == 0:
            return
        time.sleep(0.01)


def lower_dirs(store, cid: str, config: dict) -> list[str]:
    """The container's lower dirs, topmost first: its init layer, then the image's."""
    lowers: list[str] = [store.containers.init(cid)] if config.get("init_layer") else []
    for key in reversed(config.get("layers", [])):
        path = store.layers.diff_path(key)
        if path not in lowers:
            lowers.append(path)
    return lowers


def inspect(store, name: str) -> dict:
    cid = store.containers.resolve(name)
    config = store.containers.config(cid)
    lowers = lower_dirs(store, cid, config)
    upper, work, merged = (store.containers.upper(cid), store.containers.work(cid),
                           store.containers.merged(cid))
    return {
        "Id": cid, "Name": config.get("name"), "Created": config.get("created"),
        "Image": config.get("image_id"), "ImageName": config.get("image"),
        "State": effective_state(store.containers.state(cid)),
        "Config": {"Cmd": config.get("argv"), "Env": config.get("env"), "WorkingDir": config.get("cwd"),
                   "User": config.get("user"), "Hostname": config.get("hostname")},
        "UpperDir": upper, "WorkDir": work, "LowerDirs": lowers, "MergedDir": merged,
        "GraphDriver": {"Name": "overlay", "Data": {
            "UpperDir": upper, "WorkDir": work, "MergedDir": merged, "LowerDir": ":".join(lowers)}},
    }


def diff(store, name: str):
    from .layer.changes import LowerView, changes, scan_upper
    cid = store.containers.resolve(name)
    config = store.containers.config(cid)
    if config.get("read_only"):
        return []
    view = LowerView(lower_dirs(store, cid, config))
    return changes(scan_upper(store.containers.upper(cid)), view.exists)
