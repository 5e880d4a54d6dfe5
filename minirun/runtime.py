"""Container operations behind the CLI: run, ps, rm, inspect, diff."""

from __future__ import annotations

import os
import signal
import sys
import time
from dataclasses import dataclass

from . import oci, overlay
from .errors import Conflict, EnvironmentProblem, RuntimeFailure
from .sandbox import spec as specs
from .store.containers import now


def require_root(what: str) -> None:
    if os.geteuid() != 0:
        raise EnvironmentProblem(f"minirun {what} must run as root (it mounts overlayfs and "
                                 "creates namespaces)", f"run it with sudo: sudo minirun {what} ...")


@dataclass(frozen=True)
class RunResult:
    container_id: str
    exit_code: int
    error: str = ""


def run(store, image: str, opts: specs.RunOptions, name: str | None = None, remove: bool = False,
        warn=lambda line: print(line, file=sys.stderr)) -> RunResult:
    """Create a container from image and run it to completion in the foreground."""
    from .sandbox import process, rootfs
    require_root("run")
    with store.locks.hold("gc", shared=True):
        image_id, record = store.images.resolve(image)
        config = oci.parse_config(store.blobs.read(image_id))
        lowers = _lower_dirs(store, record)
        if config.platform.architecture and config.platform.architecture != oci.host_platform().architecture:
            warn(f"WARNING: The requested image's platform ({config.platform}) does not match "
                 f"the detected host platform ({oci.host_platform()})")
        cid = store.containers.new_id()
        containers = store.containers
        plan = overlay.plan(lowers, containers.upper(cid), containers.work(cid), containers.path(cid))
        proc = specs.build(config, opts, cid)
        container_config = {
            "name": name, "image": image, "image_id": image_id,
            "layers": [layer["key"] for layer in record["layers"]],
            "argv": list(proc.argv), "env": list(proc.env), "cwd": proc.cwd, "user": proc.user,
            "hostname": proc.hostname, "chroot": proc.chroot, "auto_remove": remove,
            "runtime_paths": list(rootfs.MOUNT_POINTS),
        }
        containers.create(cid, container_config, dict(zip(plan.links, plan.lowers)))
    launch = process.Launch(proc, plan, containers.merged(cid), overlay.strategy_from_env())
    try:
        started = process.start(launch)
    except BaseException:
        if remove:
            containers.remove(cid)
        raise
    containers.set_state(cid, status="running", pid=started.pid, started=now(),
                         pid_start=_start_time(started.pid))
    outcome = process.wait(started)
    containers.set_state(cid, status="exited", exit_code=outcome.exit_code, finished=now(),
                         error=outcome.error, pid=0)
    if remove:
        containers.remove(cid)
    return RunResult(cid, outcome.exit_code, outcome.error)


def _lower_dirs(store, record: dict) -> list[str]:
    """Layer dirs topmost first. A layer listed twice (repeated empty layers are common)
    appears once, at its topmost place: overlayfs refuses a dir stacked twice, and the
    lower copy could only show what the upper copy already shows."""
    lowers = []
    for layer in reversed(record["layers"]):
        if store.layers.diff_path(layer["key"]) in lowers:
            continue
        if not store.layers.has(layer["key"]):
            raise RuntimeFailure(f"layer {layer['key']} of this image is missing from the store",
                                 "load or pull the image again")
        lowers.append(store.layers.diff_path(layer["key"]))
    return lowers


def _start_time(pid: int) -> int:
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
        if not pid or _start_time(pid) != state.get("pid_start"):
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
        if _start_time(pid) == 0:
            return
        time.sleep(0.01)


def inspect(store, name: str) -> dict:
    cid = store.containers.resolve(name)
    config = store.containers.config(cid)
    lowers = [store.layers.diff_path(key) for key in reversed(config.get("layers", []))]
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
    view = LowerView([store.layers.diff_path(key) for key in reversed(config.get("layers", []))])
    return changes(scan_upper(store.containers.upper(cid)), view.exists, config.get("runtime_paths", ()))
