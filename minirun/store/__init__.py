"""The on-disk store under MINIRUN_ROOT (default /var/lib/minirun).

    blobs/sha256/<hex>            blobs.py       BlobStore: content store, verified before rename
    layers/sha256/<key>/          layers.py      LayerStore: diff/ (files + whiteouts), meta.json
    images.json                   index.py       ImageIndex: references and image records
    containers/<id>/              containers.py  ContainerStore: upper/ work/ init/ l/
                                                 config.json state.json container.log[.N]
                                  logfile.py     container.log: the output's records, rotated
    locks/                        locks.py       flock files
    tmp/                          root.py        Store.staging: everything is built here, then renamed
    mnt/                          root.py        the shared mount point each container's child mounts on

readers.py reads every record of the store the same way (bounded, no symlinks,
no FIFOs, each field's type checked); gc.py removes what nothing refers to. Each
directory has exactly one owner module; no other module builds paths into it
(networks/ is network/ipam.py's, seccomp/ sandbox/seccomp.py's).

The typed records are defined here, in the package module, so that they cost
`minirun run` no module of their own; they are defined before root.py is
imported (at the end), since the modules it imports use them.

minirun's own on-disk documents as frozen records: a container's config.json
(ContainerConfig) and state.json (ContainerState), the image records of
images.json (ImageRecord, each layer a LayerRef) and a layer's meta.json
(LayerMeta).

Why records and not dicts: a field read by string key fails where it is read,
late and far from the cause, or quietly gives a default; a record's fields are
named once, here, and a document that does not fit them fails in one place, at
load time, as the store's one-line DamagedRecord.

Each record has one reader, load(), and one writer, dump(); the modules that own
the files (containers.py, layers.py, index.py) call them and nothing else does.
The JSON is versioned: dump() writes "version": VERSION. A document without a
version was written by a minirun before records were typed (version 0): it
loads, a field it lacks taking the default it always had. From version 1 on,
every field must be there and no other: a renamed or missing field is damage,
said with the file's name, the field and the fix; only a field added in a later
version (a record's ADDED: field -> version) may be missing from an older
document, and takes its default. A version newer than VERSION was written by a
newer minirun and is refused the same way. Version 2 added ContainerConfig's
options (the run flags, so that `start` can run a container again); version 3
ContainerState's ports (the host ports a running container's -p flags are bound
to, random ones included, for ps and inspect).

Built on lib/frozen.py, not dataclasses: nothing is generated at import, which
keeps `minirun run` fast.
"""

from __future__ import annotations

from ..errors import DamagedRecord
from ..lib.frozen import MISSING, asdict, dataclass, field, replace
from . import readers
from .readers import BOOL, COUNT, DIGEST, DIGESTS, INT, OBJECT, STR, STRS, Kind, nullable

VERSION = 3
_OR_EMPTY = Kind(DIGEST.name + " or empty", lambda v: v == "" or DIGEST.test(v))


def load(cls, doc: object, path: str, what: str, hint: str | None = None):
    """The record of class cls that doc holds; DamagedRecord naming path when it does
    not fit (see the module docstring for what each version must hold)."""
    readers.check(doc, path, what, {}, (), hint)
    version = doc.get("version", 0)
    if not readers.INT.test(version) or version < 0:
        raise _damaged(path, f"{what}: 'version' is {readers.json_type(version)}, not a version", hint)
    if version > VERSION:
        raise _damaged(path, f"{what} is version {version}, written by a newer minirun (this one "
                             f"reads up to {VERSION})", "use that minirun, or a newer one")
    values = {}
    for f in cls.__record_fields__:
        kind = cls.KINDS[f.name]
        if f.name in doc:
            value = doc[f.name]
            if not kind.test(value):
                raise _damaged(path, f"{what}: {f.name!r} is {readers.json_type(value)}, not {kind.name}",
                               hint)
            values[f.name] = tuple(value) if isinstance(value, list) else value
        elif f.default is MISSING or version >= getattr(cls, "ADDED", {}).get(f.name, 1):
            raise _damaged(path, f"{what} has no {f.name!r}", hint)   # older: the default
    if version:
        unknown = sorted(set(doc) - set(cls.KINDS) - {"version"})
        if unknown:
            raise _damaged(path, f"{what} has a field this minirun does not know: {unknown[0][:80]!r}", hint)
    return cls(**values)


def dump(record) -> dict:
    """The JSON object for record, versioned (tuples become lists when written)."""
    return {"version": VERSION, **_plain(record)}


def _plain(record) -> dict:
    out = {}
    for name, value in asdict(record).items():
        if isinstance(value, tuple):
            value = [_plain(v) if hasattr(v, "__record_fields__") else v for v in value]
        out[name] = value
    return out


def _damaged(path: str, problem: str, hint: str | None) -> DamagedRecord:
    return DamagedRecord(path, problem) if hint is None else DamagedRecord(path, problem, hint)


def _loader(what: str):
    """cls.load(doc, path, hint): load() for one record class, naming it what."""
    def load_one(cls, doc: object, path: str, hint: str | None = None):
        return load(cls, doc, path, what, hint)
    return classmethod(load_one)


# ---------------------------------------------------------------- containers/<id>/

@dataclass(frozen=True)
class ContainerConfig:
    """config.json: what was asked for. Written once, when the container is made."""
    name: str
    layers: tuple[str, ...]               # layer keys, bottom first
    id: str = ""
    image: str = ""
    image_id: str = ""
    argv: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    cwd: str = "/"
    user: str = "0"
    hostname: str = ""
    created: str = ""
    capabilities: tuple[str, ...] = ()
    ambient: tuple[str, ...] = ()
    init_layer: bool = False
    read_only: bool = False
    detached: bool = False
    no_new_privs: bool = True
    auto_remove: bool = False
    chroot: bool = False
    privileged: bool = False
    network: str = "none"
    seccomp: str | None = None            # the seccomp/ entry, "unconfined"; None: from before issue 14
    options: dict | None = field(default=None, compare=False)   # run/plan.py RunOptions as JSON;
                                                               # None: made before version 2
    KINDS = {"name": STR, "layers": DIGESTS, "id": STR, "image": STR, "image_id": STR, "argv": STRS,
             "env": STRS, "cwd": STR, "user": STR, "hostname": STR, "created": STR, "capabilities": STRS,
             "ambient": STRS, "init_layer": BOOL, "read_only": BOOL, "detached": BOOL,
             "no_new_privs": BOOL, "auto_remove": BOOL, "chroot": BOOL, "privileged": BOOL,
             "network": STR, "seccomp": nullable(STR), "options": nullable(OBJECT)}
    ADDED = {"options": 2}
    load = _loader("the container's config")


STATUSES = ("created", "running", "exited")


@dataclass(frozen=True)
class ContainerState:
    """state.json: what happened. Replaced whole at each change (store/containers.py
    set_state). In memory, status may also be "removing" (the container is gone)
    or "damaged" (ps lists a container whose records are)."""
    status: str
    pid: int = 0
    pid_start: int = 0
    exit_code: int | None = None
    started: str | None = None
    finished: str | None = None
    oom_killed: bool = False
    error: str | None = None
    cgroup: dict | None = field(default=None, compare=False)   # owned by linux/cgroups/: opaque here
    ports: tuple[str, ...] = ()           # published while running, as ps shows them: 0.0.0.0:8080->80/tcp

    KINDS = {"status": Kind("one of " + ", ".join(STATUSES), lambda v: v in STATUSES), "pid": COUNT,
             "pid_start": COUNT, "exit_code": nullable(INT), "started": nullable(STR),
             "finished": nullable(STR), "oom_killed": BOOL, "error": nullable(STR),
             "cgroup": nullable(OBJECT), "ports": STRS}
    ADDED = {"ports": 3}
    load = _loader("the container's state")

    @property
    def running(self) -> bool:
        return self.status == "running"


# ---------------------------------------------------------------- images.json, layers/

@dataclass(frozen=True)
class LayerRef:
    """One layer of an image record: the cached layer (key) and the blob it came from."""
    key: str
    diff_id: str
    blob: str
    media_type: str
    size: int                             # the blob's bytes
    unpacked_size: int = 0                # the layer's bytes, extracted

    KINDS = {"key": DIGEST, "diff_id": DIGEST, "blob": DIGEST, "media_type": STR, "size": COUNT,
             "unpacked_size": COUNT}


@dataclass(frozen=True)
class ImageRecord:
    """An image's entry in images.json (its key is the image id)."""
    manifest: str
    layers: tuple[LayerRef, ...]          # bottom first
    media_type: str = ""
    created: str = ""
    architecture: str = ""
    os: str = ""
    variant: str = ""
    size: int = 0
    loaded: str = ""
    repositories: tuple[str, ...] = ()    # registry/repository names it was pulled from or pushed to

    KINDS = {"manifest": DIGEST, "layers": Kind("a list of layer records", lambda v: isinstance(v, list)),
             "media_type": STR, "created": STR, "architecture": STR, "os": STR, "variant": STR,
             "size": COUNT, "loaded": STR, "repositories": STRS}

    @classmethod
    def load(cls, doc: object, path: str, what: str, version: int):
        """The record in doc, an entry of an images.json of that version."""
        if isinstance(doc, dict) and "version" not in doc:
            doc = dict(doc, version=version)
        record = load(cls, doc, path, what)
        layers = tuple(load(LayerRef, dict(layer, version=version) if isinstance(layer, dict) else layer,
                            path, f"{what}, layer {n}") for n, layer in enumerate(record.layers))
        return replace(record, layers=layers)

    def dump(self) -> dict:
        """The entry as images.json holds it: the file, not each entry, is versioned."""
        doc = _plain(self)
        return doc


@dataclass(frozen=True)
class LayerMeta:
    """layers/sha256/<key>/meta.json: where an extracted layer came from."""
    diff_id: str
    chain_id: str = ""
    key: str = ""
    keyed_by: str = "diff_id"             # or "chain_id": see store/layers.py
    files: int = 0
    size: int = 0
    blob: str | None = None
    media_type: str = ""
    implied_dirs: tuple[str, ...] = ()
    installed: str = ""
    source: str = ""                      # "commit <container id>" for a committed layer

    KINDS = {"diff_id": DIGEST, "chain_id": _OR_EMPTY, "key": DIGEST, "keyed_by": STR, "files": COUNT,
             "size": COUNT, "blob": nullable(DIGEST), "media_type": STR, "implied_dirs": STRS,
             "installed": STR, "source": STR}
    load = _loader("the layer's meta.json")


from .root import Store, open_store  # noqa: E402 - after the records, which its modules use

__all__ = ["VERSION", "ContainerConfig", "ContainerState", "ImageRecord", "LayerMeta", "LayerRef", "Store",
           "dump", "load", "open_store"]
