"""File manifests: build() on real directories, encode()/decode(), verify(), the
copy LayerStore.install() records, and fsck.check() on a store made by hand.
Whiteouts and trusted.* xattrs need root; those tests skip without it."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import socket
import stat
import sys
import tarfile

import pytest

from minirun.api import fsck
from minirun.lib.fsutil import remove_tree
from minirun.layer import manifest
from minirun.layer.compare import Difference
from minirun.layer.manifest import build, decode, encode, verify
from minirun.store import LayerMeta

from .conftest import TarBuilder, sha

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="whiteouts and trusted.* xattrs need root")
UID, GID = os.getuid(), os.getgid()


def sha_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "diff"
    root.mkdir()
    os.chmod(root, 0o755)
    (root / "etc").mkdir()
    os.chmod(root / "etc", 0o750)
    (root / "etc/passwd").write_bytes(b"root:x:0:0\n")
    os.chmod(root / "etc/passwd", 0o640)
    os.link(root / "etc/passwd", root / "etc/passwd-")
    (root / "bin").mkdir()
    os.chmod(root / "bin", 0o755)
    (root / "bin/sh").symlink_to("busybox")
    os.mkfifo(root / "bin/fifo", 0o600)
    os.chmod(root / "bin/fifo", 0o600)
    return root


def test_build_records_the_facts_of_every_entry_and_the_root(tree):
    entries = build(str(tree))
    assert list(entries) == ["/", "/bin", "/bin/fifo", "/bin/sh", "/etc", "/etc/passwd", "/etc/passwd-"]
    assert entries["/"] == {"type": "dir", "mode": 0o755, "uid": UID, "gid": GID, "opaque": False}
    assert entries["/etc"] == {"type": "dir", "mode": 0o750, "uid": UID, "gid": GID, "opaque": False}
    assert entries["/etc/passwd"] == {"type": "file", "mode": 0o640, "uid": UID, "gid": GID,
                                      "size": 11, "sha256": sha_hex(b"root:x:0:0\n")}
    assert entries["/etc/passwd-"] == entries["/etc/passwd"]          # no nlink, no times
    assert entries["/bin/sh"] == {"type": "symlink", "mode": 0o777, "uid": UID, "gid": GID,
                                  "target": "busybox"}
    assert entries["/bin/fifo"] == {"type": "fifo", "mode": 0o600, "uid": UID, "gid": GID}


def test_sockets_and_user_xattrs_are_recorded(tmp_path, monkeypatch):
    root = tmp_path / "t"
    root.mkdir()
    (root / "f").write_bytes(b"")
    os.setxattr(root / "f", "user.colour", b"\x00red")
    monkeypatch.chdir(root)                 # AF_UNIX names are short: bind a relative one
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind("sock")
    entries = build(str(root))
    assert entries["/sock"]["type"] == "socket"
    assert entries["/f"]["xattrs"] == {"user.colour": "AHJlZA=="}


def test_a_hard_linked_inode_is_hashed_once(tree, monkeypatch):
    calls = []
    real = manifest.file_hash

    def counting(fd, size, plain=False):
        calls.append(size)
        return real(fd, size, plain)
    monkeypatch.setattr(manifest, "file_hash", counting)
    build(str(tree))
    assert len(calls) == 1


def test_walk_is_iterative_below_the_recursion_limit(tmp_path):
    root = tmp_path / "deep"
    root.mkdir()
    depth = sys.getrecursionlimit() + 100
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth):              # relative to a dir fd: no path-length limit
            os.mkdir("d", dir_fd=fd)
            next_fd = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = next_fd
        os.close(os.open("leaf", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd))
    finally:
        os.close(fd)
    try:
        entries = build(str(root))
        assert len(entries) == depth + 2
        assert entries["/d" * depth + "/leaf"]["size"] == 0
    finally:
        remove_tree(str(root))


def test_verify_of_an_unchanged_tree_is_empty_even_after_touching_times(tree):
    recorded = build(str(tree))
    os.utime(tree / "etc/passwd", (1, 1))
    assert verify(str(tree), recorded) == []


def test_verify_names_what_changed(tree):
    recorded = build(str(tree))
    (tree / "etc/passwd").write_bytes(b"root:x:0:1\n")               # same size, new content
    os.chmod(tree / "etc", 0o700)
    os.unlink(tree / "bin/sh")
    (tree / "bin/sh").symlink_to("dash")
    os.unlink(tree / "bin/fifo")
    (tree / "bin/new").write_bytes(b"")
    found = {d.path: d for d in verify(str(tree), recorded)}
    assert sorted(found) == ["/bin/fifo", "/bin/new", "/bin/sh", "/etc", "/etc/passwd", "/etc/passwd-"]
    assert found["/bin/fifo"] == Difference("/bin/fifo", only="A", kind="fifo")      # removed
    assert found["/bin/new"] == Difference("/bin/new", only="B", kind="file")        # added
    assert found["/bin/sh"].fields == (("target", "busybox", "dash"),)
    assert found["/etc"].fields == (("mode", 0o750, 0o700),)
    assert found["/etc/passwd"].fields == (("sha256", sha_hex(b"root:x:0:0\n"), sha_hex(b"root:x:0:1\n")),)


# ---------------------------------------------------------------- as root: whiteouts, opaque, caps

@needs_root
def test_whiteouts_opaque_dirs_and_capabilities_are_recorded(tmp_path):
    root = tmp_path / "layer"
    root.mkdir()
    os.mknod(root / "gone", stat.S_IFCHR | 0o000, os.makedev(0, 0))
    (root / "opq").mkdir()
    os.setxattr(root / "opq", "trusted.overlay.opaque", b"y")
    os.setxattr(root / "opq", "trusted.overlay.impure", b"y")     # overlayfs bookkeeping: left out
    (root / "ping").write_bytes(b"")
    caps = bytes.fromhex("0100000200200000000000000000000000000000")
    os.setxattr(root / "ping", "security.capability", caps)
    entries = build(str(root))
    assert entries["/gone"] == {"type": "char", "mode": 0, "uid": 0, "gid": 0, "rdev": [0, 0]}
    assert entries["/opq"]["opaque"] is True and "xattrs" not in entries["/opq"]
    assert entries["/ping"]["xattrs"] == {"security.capability": "AQAAAgAgAAAAAAAAAAAAAAAAAAA="}
    recorded = decode(encode(entries))
    os.removexattr(root / "opq", "trusted.overlay.opaque")
    assert [(d.path, d.fields) for d in verify(str(root), recorded)] == [("/opq", (("opaque", True, False),))]


# ---------------------------------------------------------------- on disk

def test_encode_decode_round_trip_with_awkward_names(tree):
    (tree / "new\nline").write_bytes(b"1")
    (tree / os.fsdecode(b"latin-\xe9")).write_bytes(b"2")
    entries = build(str(tree))
    data = encode(entries)
    assert data[:2] == b"\x1f\x8b"                                    # gzip'd
    assert decode(data) == entries
    assert os.fsencode(next(p for p in decode(data) if p.startswith("/latin"))) == b"/latin-\xe9"


@pytest.mark.parametrize("data", [
    b"", b"not gzip", gzip.compress(b"")[:-3],
    gzip.compress(b'{"format": "something-else", "version": 1}\n'),
    gzip.compress(b'{"format": "minirun-file-manifest", "version": 1}\n["/a", {"type": "fi'),
    gzip.compress(b'{"format": "minirun-file-manifest", "version": 1}\n["/a"]\n'),
    gzip.compress(b'{"format": "minirun-file-manifest", "version": 1}\n[1, 2]\n'),
])
def test_damaged_manifests_raise_value_error(data):
    with pytest.raises(ValueError):
        decode(data)


def test_a_future_format_is_refused():
    with pytest.raises(ValueError, match="unknown header"):
        decode(gzip.compress(b'{"format": "minirun-file-manifest", "version": 3}\n'))


def test_big_files_get_a_pieces_hash_and_small_ones_their_sha256(tmp_path):
    (tmp_path / "small").write_bytes(b"s" * 65536)
    (tmp_path / "big").write_bytes(b"b" * 65537)
    entries = build(str(tmp_path))
    assert entries["/small"]["sha256"] == sha_hex(b"s" * 65536) and "pieces" not in entries["/small"]
    assert "sha256" not in entries["/big"] and len(entries["/big"]["pieces"]) == 64


def test_a_format_1_manifest_still_verifies(tmp_path):
    """Format 1 recorded the sha256 of every file: verify() hashes its big files so."""
    (tmp_path / "big").write_bytes(b"b" * 200_000)
    (tmp_path / "small").write_bytes(b"s")
    entries = build(str(tmp_path))
    old = dict(entries, **{"/big": {k: v for k, v in entries["/big"].items() if k != "pieces"}})
    old["/big"]["sha256"] = sha_hex(b"b" * 200_000)
    lines = ['{"format": "minirun-file-manifest", "version": 1}'] + \
            [json.dumps([path, entry]) for path, entry in old.items()]
    recorded = decode(gzip.compress("\n".join(lines).encode()))
    assert verify(str(tmp_path), recorded) == []
    (tmp_path / "big").write_bytes(b"c" * 200_000)
    assert [d.path for d in verify(str(tmp_path), recorded)] == ["/big"]


# ---------------------------------------------------------------- the store and fsck

def _install(store, files: dict[str, bytes]) -> tuple[str, str]:
    """Put a layer the way an import does: its blob, then diff/ + meta via install(); (key, blob)."""
    builder = TarBuilder()
    for name, data in files.items():
        builder.file(name, data)
    tar = builder.bytes()
    blob = gzip.compress(tar, mtime=0)
    blob_digest = store.blobs.put(blob)
    diff_id = sha(tar)
    with store.staging("layer") as staged:
        os.mkdir(os.path.join(staged, "diff"))
        with tarfile.open(fileobj=io.BytesIO(tar)) as t:
            for member in t:
                with open(os.path.join(staged, "diff", member.name), "wb") as f:
                    f.write(t.extractfile(member).read())
                os.chmod(os.path.join(staged, "diff", member.name), 0o644)
        assert store.layers.install(staged, diff_id, LayerMeta(
            diff_id, blob=blob_digest, media_type="application/vnd.oci.image.layer.v1.tar+gzip"))
    return diff_id, blob_digest


def test_install_records_the_file_manifest_beside_meta(store):
    key, _ = _install(store, {"hello": b"hi\n"})
    recorded = store.layers.file_manifest(key)
    assert recorded == build(store.layers.diff_path(key))
    assert recorded["/hello"]["sha256"] == sha_hex(b"hi\n")
    os.unlink(os.path.join(os.path.dirname(store.layers.diff_path(key)), "files.jsonl.gz"))
    assert store.layers.file_manifest(key) is None


def test_fsck_check_of_an_intact_store_finds_nothing(store):
    _install(store, {"a": b"1", "b": b"22"})
    report = fsck.check(store)
    assert (report.layers, report.blobs, report.problems, report.unchecked) == (1, 1, [], [])
    assert report.summary() == "1 layers, 1 blobs checked: 0 problems"


def test_fsck_check_names_a_changed_file_and_a_layer_without_manifest(store):
    key, _ = _install(store, {"a": b"1"})
    other, _ = _install(store, {"b": b"2"})
    with open(os.path.join(store.layers.diff_path(key), "a"), "ab") as f:
        f.write(b"more")
    os.unlink(os.path.join(os.path.dirname(store.layers.diff_path(other)), "files.jsonl.gz"))
    report = fsck.check(store)
    assert report.unchecked == [other]
    (problem,) = report.problems
    assert (problem.subject, problem.name, problem.path) == ("layer", key, "/a")
    assert problem.fields == {"size": [1, 5], "sha256": [sha_hex(b"1"), sha_hex(b"1more")]}
    assert problem.line().startswith(f"layer {key[7:19]}: /a changed: size 1->5 sha256 ")


def test_fsck_check_decompresses_a_layers_blob_against_its_diff_id(store):
    key, blob = _install(store, {"a": b"1"})
    # a blob that is intact under its own name, but not the layer's content: swap the meta's blob
    wrong = store.blobs.put(gzip.compress(b"not the tar", mtime=0))
    meta_path = os.path.join(os.path.dirname(store.layers.diff_path(key)), "meta.json")
    with open(meta_path) as f:
        text = f.read()
    with open(meta_path, "w") as f:
        f.write(text.replace(blob, wrong))
    problems = fsck.check(store).problems
    assert [(p.subject, p.name) for p in problems] == [("blob", wrong)]
    assert f"whose diff_id is {key}" in problems[0].message


def test_fsck_check_names_a_corrupt_blob(store):
    _, blob = _install(store, {"a": b"1" * 1000})
    path = store.blobs.path(blob)
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0xFF
    os.chmod(path, 0o644)
    with open(path, "wb") as f:
        f.write(bytes(data))
    lines = [p.line() for p in fsck.check(store).problems]
    assert lines[0].startswith(f"blob {blob[7:19]}: content has digest sha256:")
    assert len(lines) == 2
    assert "cannot be decompressed" in lines[1] or "uncompressed content" in lines[1]


def test_fsck_check_names_damaged_records(store):
    key, _ = _install(store, {"a": b"1"})
    layer_dir = os.path.dirname(store.layers.diff_path(key))
    with open(os.path.join(layer_dir, "files.jsonl.gz"), "wb") as f:
        f.write(b"garbage")
    with open(store.images.path, "w") as f:
        f.write("{not json")
    lines = sorted(p.line() for p in fsck.check(store).problems)
    assert len(lines) == 2, lines
    assert lines[0].startswith(f"store {store.images.path}: damaged: it is not valid JSON")
    assert lines[1].startswith(f"store {layer_dir}/files.jsonl.gz: damaged: its file manifest is damaged: "
                               "not a gzip'd file manifest")
    assert "`minirun fsck --repair`" in lines[0] and "`minirun fsck --repair`" in lines[1]
    os.unlink(os.path.join(layer_dir, "meta.json"))
    lines = [p.line() for p in fsck.check(store).problems]
    assert f"store {layer_dir}/meta.json: damaged: it is missing" in "\n".join(lines)
