"""The --root state dir: the one module that reads and writes it.

    ROOT/ID/state.json     id, bundle, rootfs, pid, the pid's start time, created, owner, annotations
    ROOT/ID/exec.fifo      the init blocks opening it for writing until `start` opens it to read
    ROOT/ID/creating.json  until state.json: what create has made so far (the cgroups it
                           made, whether it mounted on the host, the init's pid and start
                           time once known), so that `delete --force` of a create killed
                           half-way kills its init and removes its cgroups

A container whose state.json is missing is being created (reserve() made the dir,
save() writes state.json once the init is ready). Status is computed, never stored:
a fifo still there means created, a live pid with the recorded start time running,
anything else stopped (procfs.start_time: a reused pid or a zombie is gone).
"""

from __future__ import annotations

import os

from ..errors import Conflict, ContainerNotFound, EnvironmentProblem, UsageError
from ..lib import jsonio as json      # the C half of json: no re, no enum on every call
from ..linux import procfs

DEFAULT_ROOT = "/run/minirun-oci"
OCI_VERSION = "1.1.0"
_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_ID_CHARS = _ALNUM | frozenset("_.+-")      # ^[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}$, without re


def check_id(container_id: str) -> str:
    if not (0 < len(container_id) <= 128 and container_id[0] in _ALNUM and _ID_CHARS.issuperset(container_id)):
        raise UsageError(f"invalid container id {container_id!r}",
                         "use letters, digits, '_', '.', '+' and '-', at most 128, not starting with a symbol")
    return container_id


def container_dir(root: str, container_id: str) -> str:
    return os.path.join(root, check_id(container_id))


def fifo_path(root: str, container_id: str) -> str:
    return os.path.join(container_dir(root, container_id), "exec.fifo")


def check_root(root: str) -> None:
    """ROOT must be ours and writable by no one else: its records say which pids delete
    kills, which cgroups it removes and what it unmounts."""
    try:
        st = os.stat(root)
    except FileNotFoundError:
        return
    if st.st_uid != os.geteuid() or st.st_mode & 0o022:
        who = f"owned by uid {st.st_uid}" if st.st_uid != os.geteuid() else "writable by others"
        raise EnvironmentProblem(f"the state dir {root} is {who}: its records could be planted",
                                 f"use a --root only you can write, or: chown {os.geteuid()} {root} "
                                 f"&& chmod go-w {root}")


def reserve(root: str, container_id: str) -> str:
    """Make ROOT/ID and its exec fifo; an id in use is refused."""
    os.makedirs(root, 0o700, exist_ok=True)
    check_root(root)
    path = container_dir(root, container_id)
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        raise Conflict(f"container {container_id} already exists",
                       f"choose another id, or delete it first: minirun-oci delete {container_id}") from None
    os.mkfifo(os.path.join(path, "exec.fifo"), 0o600)
    return path


def save(root: str, container_id: str, record: dict, name: str = "state.json") -> None:
    path = container_dir(root, container_id)
    tmp = os.path.join(path, name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(record, f)
    os.replace(tmp, os.path.join(path, name))


def save_creating(root: str, container_id: str, partial: dict) -> None:
    save(root, container_id, partial, "creating.json")


def load_creating(root: str, container_id: str) -> dict:
    """creating.json, or {} when there is none (or it is damaged: a create killed
    while writing it had made nothing it names yet)."""
    try:
        with open(os.path.join(container_dir(root, container_id), "creating.json")) as f:
            partial = json.loads(f.read(1 << 20))
    except (OSError, ValueError):
        return {}
    return partial if isinstance(partial, dict) else {}


def load(root: str, container_id: str) -> dict:
    check_root(root)
    path = os.path.join(container_dir(root, container_id), "state.json")
    try:
        with open(path) as f:
            return json.load(f)
    except (FileNotFoundError, NotADirectoryError):
        raise ContainerNotFound(f"container {container_id} does not exist",
                                "list the containers' ids in the --root dir, or create it first") from None
    except ValueError:
        raise ContainerNotFound(f"container {container_id} has a damaged state file {path}",
                                f"remove it: minirun-oci delete --force {container_id}") from None


def status(root: str, record: dict) -> str:
    pid = record.get("pid", 0)
    if not pid or procfs.start_time(pid) != record.get("start_time"):
        return "stopped"
    if os.path.exists(fifo_path(root, record["id"])):
        return "created"
    return "running"


def public(root: str, record: dict) -> dict:
    """What `state` prints (runtime-spec's state, with runc's created and owner)."""
    current = status(root, record)
    return {"ociVersion": OCI_VERSION, "id": record["id"], "status": current,
            "pid": record["pid"] if current != "stopped" else 0, "bundle": record["bundle"],
            "rootfs": record["rootfs"], "created": record["created"], "owner": record.get("owner", ""),
            "annotations": record.get("annotations", {})}


def remove(root: str, container_id: str) -> None:
    _remove_tree(container_dir(root, container_id))


def _remove_tree(path: str) -> None:
    """shutil.rmtree(path, ignore_errors=True) without shutil's imports (bz2, lzma...)
    on every delete: the dir holds a few files."""
    try:
        entries = list(os.scandir(path))
    except OSError:
        return
    for entry in entries:
        try:
            if entry.is_dir(follow_symlinks=False):
                _remove_tree(entry.path)
            else:
                os.unlink(entry.path)
        except OSError:
            pass
    try:
        os.rmdir(path)
    except OSError:
        pass
