"""The store's own records, read as what they may have become: images.json, a
container's config.json and state.json, a layer's meta.json.

minirun writes each of them whole (a rename from tmp/), but a disk, a crash of
the machine, or a person can still leave one truncated, empty, of the wrong
type, garbage, or replaced by a directory, a FIFO, a huge sparse file or a
symlink to /dev/zero. Reading one here:

- opens it with O_NOFOLLOW | O_NONBLOCK (a symlink is refused, a FIFO never
  blocks), takes it only if fstat says it is a regular file within the record's
  size limit, and reads no more than that;
- parses it with jsonio (the run path must not import json); the typed records
  of store/__init__.py then check each field's type and the record's version
  with the Kinds and check() below.

Whatever is wrong raises DamagedRecord: one line naming the file, what is wrong
with it, and the fix. A record that is absent raises FileNotFoundError, as
before: the callers tell "gone" (a container removed meanwhile) from
"damaged". The checks are a few isinstance() calls per field: cheap enough for
every `minirun run`.
"""

from __future__ import annotations

import errno
import os
import stat

from ..lib import jsonio
from ..errors import DamagedRecord
from ..lib.names import is_sha256_digest

KiB, MiB = 1 << 10, 1 << 20
_OPEN = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC

_TYPES = {stat.S_IFDIR: "a directory", stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket",
          stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device", stat.S_IFLNK: "a symlink"}


def read_bytes(path: str, limit: int, hint: str | None = None) -> bytes:
    """The bytes of the regular file at path, at most limit of them.
    FileNotFoundError when nothing is there; DamagedRecord for anything else."""
    try:
        fd = os.open(path, _OPEN)
    except OSError as exc:
        raise open_failed(path, exc, hint) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _damaged(path, f"it is {file_type(st.st_mode)}, not a file", hint)
        if st.st_size > limit:
            raise _damaged(path, f"it is {st.st_size} bytes, more than such a record can be "
                                 f"({limit} bytes)", hint)
        want = min(st.st_size, limit) + 1         # one read when the size is what fstat said
        data = os.read(fd, want)
        while len(data) >= want and len(data) <= limit:   # it grew (or procfs says 0): go on
            more = os.read(fd, 1 << 20)
            if not more:
                break
            data += more
        if len(data) > limit:
            raise _damaged(path, f"it grows past the {limit} bytes such a record can be", hint)
        return data
    finally:
        os.close(fd)


def open_failed(path: str, exc: OSError, hint: str | None) -> Exception:
    """What a failed open of a record means: DamagedRecord for what is in its place."""
    if exc.errno == errno.ENOENT:
        return exc
    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
        where = first_non_dir(path)
        if where != path:                       # a directory above it is what is damaged
            return DamagedRecord(where, "it is not a directory")
        return _damaged(path, f"it is a symlink (to {_target(path)})", hint)
    if exc.errno == errno.ENXIO:                     # a socket
        return _damaged(path, "it is a socket, not a file", hint)
    return exc


def first_non_dir(path: str, itself: bool = False) -> str:
    """The first directory above path (and path itself, with itself) that is not one
    (a file, a symlink): what an ENOTDIR or ELOOP is about; path when they all are."""
    parts = os.path.abspath(path).split("/")
    for n in range(2, len(parts) + itself):
        here = "/".join(parts[:n])
        try:
            if not stat.S_ISDIR(os.lstat(here).st_mode):
                return here
        except OSError:
            return here
    return path


def _target(path: str) -> str:
    try:
        return repr(os.readlink(path))[:80]
    except OSError:
        return "?"


def file_type(mode: int) -> str:
    return _TYPES.get(stat.S_IFMT(mode), "not a regular file")


def _damaged(path: str, problem: str, hint: str | None) -> DamagedRecord:
    return DamagedRecord(path, problem) if hint is None else DamagedRecord(path, problem, hint)


def read_json(path: str, limit: int, hint: str | None = None) -> object:
    """The JSON value in the record at path (see read_bytes for what may be raised)."""
    data = read_bytes(path, limit, hint)
    if not data.strip():
        raise _damaged(path, "it is empty", hint)
    try:
        return jsonio.loads(data)
    except UnicodeDecodeError as exc:
        raise _damaged(path, f"byte {exc.start} is not UTF-8: it is not JSON text", hint) from None
    except ValueError as exc:
        msg, pos = getattr(exc, "msg", "not JSON"), getattr(exc, "pos", None)
        ended = pos is not None and pos >= len(data.rstrip())
        raise _damaged(path, "it ends in the middle of its JSON (truncated)" if ended
                       else f"it is not valid JSON ({msg}: byte {pos})", hint) from None


def list_dir(path: str) -> list[str]:
    """The names in one of the store's directories: [] when it does not exist yet,
    DamagedRecord when something else is in its place."""
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []
    except OSError as exc:
        if exc.errno in (errno.ENOTDIR, errno.ELOOP):
            raise DamagedRecord(first_non_dir(path, itself=True), "it is not a directory") from None
        raise


# ---------------------------------------------------------------- field checks

def json_type(value: object) -> str:
    if value is None:
        return "null"
    for kind, name in ((bool, "a boolean"), (int, "an integer"), (float, "a number"), (str, "a string"),
                       (list, "an array"), (dict, "an object")):
        if isinstance(value, kind):
            return name
    return type(value).__name__


class Kind:
    """What a field must hold: a name for messages and a test."""
    __slots__ = ("name", "test")

    def __init__(self, name: str, test):
        self.name, self.test = name, test


def _int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _strs(v) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


STR = Kind("a string", lambda v: isinstance(v, str))
INT = Kind("an integer", _int)
COUNT = Kind("an integer of at least 0", lambda v: _int(v) and v >= 0)
BOOL = Kind("a boolean", lambda v: isinstance(v, bool))
STRS = Kind("a list of strings", _strs)
DIGEST = Kind("a digest (sha256:<64 hex digits>)", lambda v: isinstance(v, str) and is_sha256_digest(v))
DIGESTS = Kind("a list of digests", lambda v: isinstance(v, list) and all(
    isinstance(x, str) and is_sha256_digest(x) for x in v))
OBJECT = Kind("an object", lambda v: isinstance(v, dict))


def nullable(kind: Kind) -> Kind:
    return Kind(kind.name + " or null", lambda v: v is None or kind.test(v))


def check(doc: object, path: str, what: str, fields: dict[str, Kind], required: tuple[str, ...] = (),
          hint: str | None = None) -> dict:
    """doc, if it is an object whose fields have their kinds; else DamagedRecord."""
    if not isinstance(doc, dict):
        raise _damaged(path, f"{what} is {json_type(doc)}, not an object", hint)
    for key in required:
        if key not in doc:
            raise _damaged(path, f"{what} has no {key!r}", hint)
    for key, kind in fields.items():
        if key in doc and not kind.test(doc[key]):
            raise _damaged(path, f"{what}: {key!r} is {json_type(doc[key])}, not {kind.name}", hint)
    return doc


# ---------------------------------------------------------------- the records

CONTAINER_CONFIG_LIMIT = 64 * MiB      # argv and env may be long; ARG_MAX bounds them below this
CONTAINER_STATE_LIMIT = 64 * KiB
LAYER_META_LIMIT = 256 * MiB           # implied_dirs lists every directory a hostile tar omitted
IMAGE_INDEX_LIMIT = 256 * MiB


def container_config(cid: str, path: str, doc: object):
    """config.json as a records.ContainerConfig; DamagedRecord when it does not fit."""
    from . import ContainerConfig
    return ContainerConfig.load(doc, path, config_hint(cid))


def container_state(cid: str, path: str, doc: object):
    """state.json as a records.ContainerState; DamagedRecord when it does not fit, or
    names a process or a cgroup that is not this container's to name."""
    from . import ContainerState
    hint = state_hint(cid)
    state = ContainerState.load(doc, path, hint)
    if state.status == "running" and not (state.pid > 1 and state.pid_start > 0):
        raise _damaged(path, "it says running but names no process", hint)
    if state.cgroup is not None:
        _check_cgroup(cid, path, state.cgroup, hint)
    return state


def _check_cgroup(cid: str, path: str, cgroup: dict, hint: str) -> None:
    """rm removes the cgroup a state names and kills what is in it: only one minirun
    can have made for this container, <cgroupfs>[/<hierarchy>]/minirun/<id>."""
    check(cgroup, path, "its cgroup", {"version": STR, "paths": STRS, "memory": nullable(STR)},
          ("paths",), hint)
    for where in cgroup["paths"] + ([cgroup["memory"]] if cgroup.get("memory") else []):
        parts = where.split("/")
        if os.path.normpath(where) != where or not where.startswith("/sys/fs/cgroup/") or \
                parts[-2:] != ["minirun", cid] or len(parts) > 7:
            raise _damaged(path, f"its cgroup path {where[:80]!r} is not one minirun makes", hint)


def layer_meta(path: str, doc: object):
    """meta.json as a records.LayerMeta; DamagedRecord when it does not fit."""
    from . import LayerMeta
    return LayerMeta.load(doc, path, LAYER_HINT)


def config_hint(cid: str) -> str:
    return f"remove the container with `minirun rm -f {cid[:12]}` (its config cannot be recovered)"


def state_hint(cid: str) -> str:
    return (f"remove the container with `minirun rm -f {cid[:12]}`, or keep it, as exited, with "
            "`minirun fsck --repair`")


LAYER_HINT = ("`minirun fsck --repair` removes the layer; then load or pull the images that use it "
              "again")
