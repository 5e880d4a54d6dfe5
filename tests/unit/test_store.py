"""The store pieces that need no root: blobs, images.json, locks, tmp/ cleaning."""

from __future__ import annotations

import os

import pytest

from minirun.errors import Conflict, DigestMismatch, ImageNotFound, NotFound, UsageError
from minirun.store.index import Catalog
from minirun.store.locks import Locks
from minirun.store import ImageRecord
from minirun.store.root import Store

from .conftest import hexdigest, sha


def listing(path) -> list[str]:
    return sorted(os.listdir(path))


# ---------------------------------------------------------------- layout

def test_ensure_creates_layout_and_is_idempotent(store):
    for sub in ("blobs/sha256", "layers/sha256", "containers", "locks", "tmp"):
        assert os.path.isdir(os.path.join(store.root, sub)), sub
    assert store.ensure() is store


def test_store_root_is_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert Store("rel").root == str(tmp_path / "rel")


# ---------------------------------------------------------------- blobs

def test_put_stores_bytes_under_their_digest(store):
    digest = store.blobs.put(b"payload")
    assert digest == sha(b"payload")
    assert listing(store.blobs.directory) == [digest[7:]]
    assert store.blobs.read(digest) == b"payload"
    assert store.blobs.has(digest)
    assert store.blobs.put(b"payload", expected=digest) == digest      # present: no error, no copy
    assert listing(store.tmp) == []
    assert store.blobs.list() == [digest]


def test_put_digest_mismatch_keeps_nothing(store):
    with pytest.raises(DigestMismatch):
        store.blobs.put(b"payload", expected=sha(b"other"))
    assert listing(store.blobs.directory) == []
    assert listing(store.tmp) == []


def test_writer_streams_and_commits(store):
    with store.blobs.writer() as w:
        w.write(b"ab")
        w.write(b"cd")
        digest = w.commit()
    assert digest == sha(b"abcd") and w.size == 4
    assert store.blobs.read(digest) == b"abcd"
    assert listing(store.tmp) == []


def test_writer_digest_mismatch_keeps_nothing(store):
    with pytest.raises(DigestMismatch):
        with store.blobs.writer(expected=sha(b"right")) as w:
            w.write(b"wrong")
            w.commit()
    assert listing(store.blobs.directory) == []
    assert listing(store.tmp) == []


def test_writer_check_without_context_manager_cleans_up(store):
    w = store.blobs.writer(expected=sha(b"right"))
    w.write(b"wrong")
    with pytest.raises(DigestMismatch):
        w.commit()
    assert listing(store.blobs.directory) == []
    assert listing(store.tmp) == []


def test_writer_aborted_by_exception_keeps_nothing(store):
    with pytest.raises(RuntimeError):
        with store.blobs.writer() as w:
            w.write(b"half")
            raise RuntimeError("download failed")
    assert listing(store.tmp) == []
    assert listing(store.blobs.directory) == []


def test_missing_blob_is_not_found(store):
    with pytest.raises(NotFound):
        store.blobs.read(hexdigest("a"))
    with pytest.raises(NotFound):
        store.blobs.open(hexdigest("a"))


def test_remove_blob(store):
    digest = store.blobs.put(b"x")
    store.blobs.remove(digest)
    store.blobs.remove(digest)      # twice is fine
    assert not store.blobs.has(digest)


# ---------------------------------------------------------------- images.json

ID1 = "sha256:" + "1a2b3c4d5e6f" + "0" * 52
ID2 = "sha256:" + "1a2b3c4d5e6f" + "1" * 52      # shares a 12-digit prefix with ID1
ID3 = "sha256:" + "fedcba987654" + "2" * 52
MANIFEST1 = hexdigest("9")


def record(manifest: str = hexdigest("8")) -> ImageRecord:
    return ImageRecord(manifest, (), created="", size=0)


@pytest.fixture
def images(store):
    idx = store.images
    idx.add(ID1, record(MANIFEST1), ["docker.io/library/busybox:latest", "docker.io/library/busybox:1.36"])
    idx.add(ID2, record(), ["localhost/myapp:latest", "localhost/myapp:dev"])
    idx.add(ID3, record(), ["quay.io/org/tool:v1"])
    return idx


def test_empty_index_reads_as_empty(store):
    assert store.images.read() == Catalog()
    with pytest.raises(ImageNotFound):
        store.images.resolve("busybox")


@pytest.mark.parametrize("name, image_id", [
    ("busybox", ID1),
    ("busybox:latest", ID1),
    ("busybox:1.36", ID1),
    ("docker.io/library/busybox", ID1),
    ("index.docker.io/library/busybox:1.36", ID1),
    ("quay.io/org/tool:v1", ID3),
    ("myapp", ID2),                     # short name falls back to localhost/NAME:latest
    ("myapp:dev", ID2),
    ("localhost/myapp", ID2),
])
def test_resolve_by_reference(images, name, image_id):
    found, rec = images.resolve(name)
    assert found == image_id
    assert rec == images.read().images[image_id]


@pytest.mark.parametrize("name", ["fedcba987654", "fedcba9876542", "sha256:fedcba987654", ID3, ID3[7:],
                                  "fedcba98765", "fed", "f"])     # as docker: any unique prefix
def test_resolve_by_id_prefix(images, name):
    assert images.resolve(name)[0] == ID3


def test_ambiguous_id_prefix(images):
    with pytest.raises(UsageError, match="ambiguous"):
        images.resolve("1a2b3c4d5e6f")
    assert images.resolve("1a2b3c4d5e6f1")[0] == ID2


@pytest.mark.parametrize("name", [
    "alpine",
    "busybox:nope",
    "docker.io/library/myapp",     # fully qualified: no localhost fallback
    "quay.io/org/tool",            # :latest is not tagged
    "0123456789a",                 # a short prefix of no image
    "0123456789ab",                # a valid prefix of no image
])
def test_unknown_names_are_image_not_found(images, name):
    with pytest.raises(ImageNotFound):
        images.resolve(name)


@pytest.mark.parametrize("name", ["Not A Reference", "UPPER/Case", "busybox:bad tag"])
def test_malformed_names_are_usage_errors_not_missing_images(images, name):
    from minirun.errors import UsageError
    with pytest.raises(UsageError):
        images.resolve(name)


def test_resolve_by_manifest_digest(images):
    assert images.resolve("busybox@" + MANIFEST1)[0] == ID1


def test_digest_of_another_repository_is_not_found(images):
    with pytest.raises(ImageNotFound):
        images.resolve("alpine@" + MANIFEST1)


def test_add_returns_only_ids_a_moved_tag_left_dangling(images):
    moved = images.add(ID3, record(), ["docker.io/library/busybox:latest", "quay.io/org/tool:v1"])
    assert moved == []                          # ID1 keeps busybox:1.36, so it is not dangling
    assert images.resolve("busybox")[0] == ID3
    assert images.resolve("busybox:1.36")[0] == ID1
    assert images.refs_of(ID1) == ["docker.io/library/busybox:1.36"]
    moved = images.add(ID3, record(), ["docker.io/library/busybox:1.36"])
    assert moved == [ID1]                       # its last tag moved away
    assert images.refs_of(ID1) == []


def test_re_adding_an_image_moves_nothing(images):
    assert images.add(ID1, record(MANIFEST1), ["docker.io/library/busybox:latest"]) == []


def test_untag_and_remove(images):
    images.untag("localhost/myapp:dev")
    assert images.refs_of(ID2) == ["localhost/myapp:latest"]
    with pytest.raises(ImageNotFound):
        images.untag("localhost/myapp:dev")
    images.remove(ID1)
    doc = images.read()
    assert ID1 not in doc.images
    assert not doc.refs_of(ID1)


def test_ref_for(images):
    assert images.ref_for("myapp") == "localhost/myapp:latest"
    assert images.ref_for("busybox:1.36") == "docker.io/library/busybox:1.36"
    assert images.ref_for("fedcba987654") is None
    assert images.ref_for("alpine") is None


def test_index_writes_leave_no_tmp_files(images, store):
    assert listing(store.tmp) == []


# ---------------------------------------------------------------- locks

class Holder:
    """Another process (forked, so no interpreter needs to be exec'd) holding a lock."""

    def __init__(self, directory: str, name: str, shared: bool):
        ready_r, ready_w = os.pipe()
        release_r, self._release_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: hold the lock until the parent closes its pipe end
            try:
                os.close(ready_r)
                os.close(self._release_w)
                with Locks(directory).hold(name, shared=shared):
                    os.write(ready_w, b"1")
                    os.read(release_r, 1)
            finally:
                os._exit(0)
        os.close(ready_w)
        os.close(release_r)
        try:
            assert os.read(ready_r, 1) == b"1", "the holder process failed to take the lock"
        finally:
            os.close(ready_r)
        self.pid = pid

    def release(self) -> None:
        if self._release_w is not None:
            os.close(self._release_w)
            self._release_w = None
            os.waitpid(self.pid, 0)


@pytest.fixture
def holder(tmp_path):
    """Start another process holding a lock until the test ends."""
    holders = []

    def start(name: str, shared: bool = False) -> Holder:
        holders.append(Holder(str(tmp_path), name, shared))
        return holders[-1]
    yield start
    for h in holders:
        h.release()


def test_second_holder_times_out_naming_the_holder_pid(tmp_path, holder):
    other = holder("images")
    waits = []
    with pytest.raises(Conflict) as info:
        with Locks(str(tmp_path)).hold("images", timeout=0.05, on_wait=waits.append):
            pytest.fail("got a lock another process holds")
    assert other.pid != os.getpid()
    assert f"held by pid {other.pid}" in info.value.message
    assert waits == ["images"]


def test_lock_is_free_once_the_holder_exits(tmp_path, holder):
    other = holder("gc")
    with pytest.raises(Conflict):
        with Locks(str(tmp_path)).hold("gc", timeout=0.02):
            pass
    other.release()
    with Locks(str(tmp_path)).hold("gc", timeout=1):
        pass


def test_shared_locks_coexist_but_exclude_exclusive(tmp_path, holder):
    holder("gc", shared=True)
    locks = Locks(str(tmp_path))
    with locks.hold("gc", shared=True, timeout=0.05):
        pass
    with pytest.raises(Conflict):
        with locks.hold("gc", timeout=0.05):
            pass


def test_other_lock_names_do_not_conflict(tmp_path, holder):
    holder("layer-sha256:" + "a" * 64)
    with Locks(str(tmp_path)).hold("layer-sha256:" + "b" * 64, timeout=0.05):
        pass


def test_lock_file_names_are_flat(tmp_path):
    locks = Locks(str(tmp_path))
    with locks.hold("layer-sha256:abc/def"):
        pass
    assert listing(tmp_path) == ["layer-sha256_abc_def.lock"]


# ---------------------------------------------------------------- tmp/ cleaning

@pytest.fixture
def dead_pid():
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return pid


def test_clean_stale_tmp_removes_only_dead_processes_staging(store, dead_pid):
    tmp = store.tmp
    live = os.getpid()
    os.mkdir(os.path.join(tmp, f"container-{dead_pid}-0123456789ab"))
    ro = os.path.join(tmp, f"layer-{dead_pid}-abcdef012345")
    os.makedirs(os.path.join(ro, "diff/sub"))
    open(os.path.join(ro, "diff/sub/f"), "w").close()
    os.chmod(os.path.join(ro, "diff/sub"), 0o500)          # read-only dirs are removed too
    open(os.path.join(tmp, f"blob-{dead_pid}-0123456789ab"), "w").close()
    open(os.path.join(tmp, f"images.json-{dead_pid}-0123456789ab"), "w").close()
    open(os.path.join(tmp, f"blob-{live}-0123456789ab"), "w").close()
    os.mkdir(os.path.join(tmp, f"container-{live}-0123456789ab"))
    open(os.path.join(tmp, "download-" + "c" * 64), "w").close()   # resumable, keyed by digest
    open(os.path.join(tmp, "stray"), "w").close()

    store.clean_stale_tmp()

    assert listing(tmp) == sorted([f"blob-{live}-0123456789ab", f"container-{live}-0123456789ab",
                                   "download-" + "c" * 64, "stray"])


def test_staging_dir_is_removed_unless_renamed(store):
    with store.staging("x") as path:
        open(os.path.join(path, "f"), "w").close()
    assert not os.path.exists(path)
    with store.staging("y") as path:
        os.rename(path, os.path.join(store.root, "kept"))
    assert os.path.isdir(os.path.join(store.root, "kept"))
    assert listing(store.tmp) == []


# ---------------------------------------------------------------- containers/<id>/ removal

CID = "cd" * 32


def _tree(root) -> list[str]:
    out = []
    for here, dirs, files in os.walk(root):
        out += [os.path.relpath(os.path.join(here, n), root) for n in dirs + files]
    return sorted(out)


@pytest.mark.parametrize("layout", ["volatile", "plain", "written", "missing", "extra"])
def test_remove_takes_every_container_layout_whole(store, layout):
    """remove() deletes what overlayfs and the store make by name and the rest by the
    walk: every shape a container dir can have goes, and only it."""
    from minirun.store import ContainerConfig
    from minirun.sandbox.mounts import InitEntry
    store.containers.create(CID, ContainerConfig("c", ()), {},
                            init_entries=[InitEntry("etc", False, 0o755, 0, 0),
                                          InitEntry("etc/hosts", True, 0o644, 0, 0)])
    path = store.containers.path(CID)
    work = os.path.join(path, "work")
    if layout in ("volatile", "written", "extra"):       # what a volatile overlay mount leaves
        os.makedirs(os.path.join(work, "work/incompat/volatile"))
        open(os.path.join(work, "work/incompat/volatile/dirty"), "w").close()
        os.chmod(os.path.join(work, "work"), 0)
    if layout == "plain":
        os.makedirs(os.path.join(work, "work"))
        os.makedirs(os.path.join(work, "index"))
    if layout == "written":                                # what the run wrote, read-only dirs too
        deep = os.path.join(path, "upper", "a", "b")
        os.makedirs(deep)
        open(os.path.join(deep, "f"), "w").close()
        os.symlink(store.blobs.directory, os.path.join(path, "upper", "blobs"))   # must not be followed
        os.chmod(os.path.join(path, "upper", "a"), 0o500)
    if layout == "missing":
        os.rmdir(os.path.join(path, "upper"))
        os.rmdir(work)
    if layout == "extra":
        open(os.path.join(path, "container.log"), "w").close()
        os.mkdir(os.path.join(path, "l"))
        os.symlink(store.root, os.path.join(path, "l", "x"))
    before = _tree(store.root)
    store.containers.remove(CID)
    assert not os.path.lexists(path)
    assert listing(store.tmp) == []
    # nothing else went: every other path of the store is still there
    assert _tree(store.root) == [p for p in before if not p.startswith(os.path.join("containers", CID))]
