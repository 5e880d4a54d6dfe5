"""minirun save without root: images put into a store by hand (blobs, images.json,
layer meta), saved in each format, read back with minirun's own loader
(sources/archive.py) and checked byte by byte; the CLI's stdout and terminal rules."""

from __future__ import annotations

import io
import json
import os
import pty
import subprocess
import sys
import tarfile

import pytest

from minirun import oci
from minirun.errors import BadImage, Conflict, DigestMismatch, ImageNotFound, NotFound, UsageError
from minirun.api.save import destination, save
from minirun.lib.frozen import replace
from minirun.sources.archive import open_images
from minirun.store import ImageRecord, LayerMeta, LayerRef

from .conftest import TarBuilder, gzip_bytes, sha

BASE = TarBuilder().dir("etc").file("etc/base", b"base\n").bytes()
APP = TarBuilder().dir("app").file("app/main", b"one\n", mode=0o755).bytes()
OTHER = TarBuilder().dir("app").file("app/main", b"two\n").bytes()


def zstd_bytes(raw: bytes) -> bytes:
    zstandard = pytest.importorskip("zstandard")
    return zstandard.ZstdCompressor().compress(raw)


COMPRESS = {oci.OCI_LAYER_GZIP: gzip_bytes, oci.OCI_LAYER: lambda raw: raw, oci.OCI_LAYER_ZSTD: zstd_bytes}


def add_image(store, layers: list[bytes], refs: list[str], manifest_type: str = oci.OCI_MANIFEST,
              created: str = "2024-01-01T00:00:00Z", layer_type: str = oci.OCI_LAYER_GZIP) -> str:
    """Store an image as a load would: layer blobs (gzip unless told), the layer
    cache's meta, config, manifest, images.json. Returns the image id."""
    diff_ids = [sha(raw) for raw in layers]
    config = json.dumps({"architecture": "amd64", "os": "linux", "created": created,
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    compress = COMPRESS[layer_type]
    layer_type = oci.layer_type_for(manifest_type, layer_type)
    records, descs = [], []
    for raw, diff_id in zip(layers, diff_ids):
        blob = compress(raw)
        digest = store.blobs.put(blob)
        cache_layer(store, diff_id, digest, layer_type)
        records.append(LayerRef(diff_id, diff_id, digest, layer_type, len(blob), unpacked_size=len(raw)))
        descs.append(oci.Descriptor(layer_type, digest, len(blob)))
    config_type = oci.OCI_CONFIG if manifest_type == oci.OCI_MANIFEST else oci.DOCKER_CONFIG
    image_id = store.blobs.put(config)
    manifest = oci.Manifest(manifest_type, oci.Descriptor(config_type, image_id, len(config)),
                            tuple(descs)).to_bytes()
    record = ImageRecord(store.blobs.put(manifest), tuple(records), media_type=manifest_type,
                         created=created, architecture="amd64", os="linux", variant="", size=1)
    store.images.add(image_id, record, refs)
    return image_id


def cache_layer(store, diff_id: str, blob: str, media_type: str) -> None:
    if store.layers.has(diff_id):
        return
    with store.staging("layer") as staged:
        os.mkdir(os.path.join(staged, "diff"))
        store.layers.install(staged, diff_id, LayerMeta(diff_id, blob=blob, media_type=media_type))


def members(path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: (tar.extractfile(m).read() if m.isfile() else b"") for m in tar.getmembers()}


def loaded(path) -> list[tuple[str, list[str], list[str]]]:
    """(image id, refs, layer digests) of each image minirun's loader finds at path."""
    with open_images(str(path)) as images:
        return [(sha(src.config_bytes), src.refs, [layer.digest for layer in src.layers]) for src in images]


# ---------------------------------------------------------------- docker-archive

def test_docker_archive_holds_uncompressed_layers_config_and_names(store, tmp_path):
    image_id = add_image(store, [BASE, APP], ["docker.io/library/app:v1"])
    out = tmp_path / "app.tar"
    save(store, ["app:v1"], "docker-archive", str(out))
    files = members(out)
    base_hex, app_hex, config_hex = sha(BASE)[7:], sha(APP)[7:], image_id[7:]
    assert files[f"{base_hex}/layer.tar"] == BASE and files[f"{app_hex}/layer.tar"] == APP
    assert files[f"{config_hex}.json"] == store.blobs.read(image_id)
    assert json.loads(files["manifest.json"]) == [{
        "Config": f"{config_hex}.json", "RepoTags": ["app:v1"],
        "Layers": [f"{base_hex}/layer.tar", f"{app_hex}/layer.tar"]}]
    assert json.loads(files["repositories"]) == {"app": {"v1": app_hex}}
    assert loaded(out) == [(image_id, ["docker.io/library/app:v1"], [sha(BASE), sha(APP)])]


@pytest.mark.parametrize("layer_type", [oci.OCI_LAYER_ZSTD, oci.OCI_LAYER])
def test_zstd_and_plain_layers_go_into_a_docker_archive_as_plain_tars(store, tmp_path, layer_type):
    image_id = add_image(store, [BASE, APP], ["localhost/app:latest"], layer_type=layer_type)
    out = tmp_path / "app.tar"
    save(store, ["app"], "docker-archive", str(out))
    files = members(out)
    assert files[f"{sha(BASE)[7:]}/layer.tar"] == BASE and files[f"{sha(APP)[7:]}/layer.tar"] == APP
    assert loaded(out) == [(image_id, ["localhost/app:latest"], [sha(BASE), sha(APP)])]


def test_a_shared_layer_is_written_once_and_an_image_named_twice_once(store, tmp_path):
    app = add_image(store, [BASE, APP], ["localhost/app:latest", "localhost/app:v2"])
    other = add_image(store, [BASE, OTHER], ["registry.example.com:5000/team/other:1"])
    out = tmp_path / "both.tar"
    save(store, ["app", "localhost/app:v2", "registry.example.com:5000/team/other:1", app[7:19]],
         "docker-archive", str(out))
    with tarfile.open(out) as tar:
        names = tar.getnames()
    assert names.count(f"{sha(BASE)[7:]}/layer.tar") == 1
    manifest = json.loads(members(out)["manifest.json"])
    assert [entry["RepoTags"] for entry in manifest] == [
        ["localhost/app:latest", "localhost/app:v2"], ["registry.example.com:5000/team/other:1"]]
    assert [image_id for image_id, _, _ in loaded(out)] == [app, other]


def test_an_image_saved_by_id_has_no_name(store, tmp_path):
    image_id = add_image(store, [BASE], ["localhost/app:latest"])
    out = tmp_path / "byid.tar"
    save(store, [image_id[7:19]], "docker-archive", str(out))
    files = members(out)
    assert json.loads(files["manifest.json"])[0]["RepoTags"] is None
    assert json.loads(files["repositories"]) == {}
    assert loaded(out) == [(image_id, [], [sha(BASE)])]


def test_a_blob_that_does_not_match_its_diff_id_fails_and_leaves_nothing(store, tmp_path):
    add_image(store, [BASE, APP], ["localhost/app:latest"])
    record = store.images.resolve("app")[1]
    with open(store.blobs.path(record.layers[1].blob), "wb") as f:
        f.write(gzip_bytes(OTHER))           # valid gzip, wrong content
    with pytest.raises(DigestMismatch, match="diff_id"):
        save(store, ["app"], "docker-archive", str(tmp_path / "out.tar"))
    assert os.listdir(tmp_path) == ["store"]


@pytest.mark.parametrize("layer_type", [oci.OCI_LAYER_GZIP, oci.OCI_LAYER_ZSTD])
def test_a_corrupt_compressed_blob_is_one_error_naming_the_layer(store, tmp_path, layer_type):
    add_image(store, [BASE, APP], ["localhost/app:latest"], layer_type=layer_type)
    record = store.images.resolve("app")[1]
    path = store.blobs.path(record.layers[0].blob)
    with open(path, "r+b") as f:
        f.seek(12)
        f.write(b"\xff" * 64)
    with pytest.raises(BadImage, match=sha(BASE)[7:19]):
        save(store, ["app"], "docker-archive", str(tmp_path / "out.tar"))
    assert os.listdir(tmp_path) == ["store"]


# ---------------------------------------------------------------- OCI layout and archive

def oci_files(store, names, fmt, tmp_path) -> dict[str, bytes]:
    if fmt == "oci-dir":
        out = tmp_path / "layout"
        save(store, names, fmt, str(out))
        return {os.path.relpath(os.path.join(d, f), out): open(os.path.join(d, f), "rb").read()
                for d, _, fs in os.walk(out) for f in fs}
    out = tmp_path / "layout.tar"
    save(store, names, fmt, str(out))
    return {name: data for name, data in members(out).items() if data or not name.startswith("blobs")}


@pytest.mark.parametrize("fmt", ["oci-archive", "oci-dir"])
def test_oci_keeps_the_stored_manifests_and_names_each_image(store, tmp_path, fmt):
    app = add_image(store, [BASE, APP], ["localhost/app:latest"])
    other = add_image(store, [BASE, OTHER], ["localhost/other:latest"])
    records = [store.images.resolve(name)[1] for name in ("app", "other")]
    files = oci_files(store, ["app", other[7:19], app], fmt, tmp_path)
    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads(files["index.json"])
    assert [m["digest"] for m in index["manifests"]] == [r.manifest for r in records]
    assert index["manifests"][0]["annotations"] == {
        "org.opencontainers.image.ref.name": "latest", "io.containerd.image.name": "localhost/app:latest"}
    assert "annotations" not in index["manifests"][1]          # named by id
    expected = {app, other} | {r.manifest for r in records} | \
        {layer.blob for r in records for layer in r.layers}
    blobs = {"sha256:" + name.rsplit("/", 1)[1]: data for name, data in files.items() if name.startswith("blobs/")}
    assert set(blobs) == expected and len(expected) == 7        # the shared BASE blob once
    assert all(sha(data) == digest and data == store.blobs.read(digest) for digest, data in blobs.items())
    path = tmp_path / ("layout" if fmt == "oci-dir" else "layout.tar")
    assert loaded(path) == [(app, ["localhost/app:latest"], [layer.blob for layer in records[0].layers]),
                            (other, [], [layer.blob for layer in records[1].layers])]


def test_a_docker_manifest_is_written_as_an_oci_one_with_the_same_digests(store, tmp_path):
    image_id = add_image(store, [BASE, APP], ["localhost/app:latest"], manifest_type=oci.DOCKER_MANIFEST)
    record = store.images.resolve("app")[1]
    files = oci_files(store, ["app"], "oci-archive", tmp_path)
    digest = json.loads(files["index.json"])["manifests"][0]["digest"]
    assert digest != record.manifest
    manifest = oci.parse_manifest(files["blobs/sha256/" + digest[7:]])
    assert manifest.media_type == oci.OCI_MANIFEST
    assert (manifest.config.media_type, manifest.config.digest) == (oci.OCI_CONFIG, image_id)
    assert [(d.media_type, d.digest) for d in manifest.layers] == \
        [(oci.OCI_LAYER_GZIP, layer.blob) for layer in record.layers]


def test_a_layer_cached_from_another_image_is_saved_from_that_image_blob(store, tmp_path):
    """The image names an uncompressed blob the store never fetched ("Already
    exists"): the cached layer's own gzip blob serves, under a rebuilt manifest."""
    image_id = add_image(store, [BASE, APP], ["localhost/app:latest"])
    with store.images.update() as doc:
        record = doc.images[image_id]
        own_blob = record.layers[0].blob
        moved = replace(record.layers[0], blob=sha(BASE), media_type=oci.DOCKER_LAYER, size=len(BASE))
        doc.images[image_id] = replace(record, layers=(moved, *record.layers[1:]))
    assert not store.blobs.has(sha(BASE))
    files = oci_files(store, ["app"], "oci-archive", tmp_path)
    digest = json.loads(files["index.json"])["manifests"][0]["digest"]
    manifest = oci.parse_manifest(files["blobs/sha256/" + digest[7:]])
    assert manifest.config.digest == image_id
    assert manifest.layers[0] == oci.Descriptor(oci.OCI_LAYER_GZIP, own_blob, len(store.blobs.read(own_blob)))
    docker = tmp_path / "docker.tar"
    save(store, ["app"], "docker-archive", str(docker))
    assert members(docker)[f"{sha(BASE)[7:]}/layer.tar"] == BASE


def test_oci_dir_refuses_a_non_empty_directory_and_fills_an_empty_one(store, tmp_path):
    add_image(store, [BASE], ["localhost/app:latest"])
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "mine.txt").write_text("keep me")
    with pytest.raises(Conflict, match="not empty"):
        save(store, ["app"], "oci-dir", str(busy))
    assert os.listdir(busy) == ["mine.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    save(store, ["app"], "oci-dir", str(empty))
    assert sorted(os.listdir(empty)) == ["blobs", "index.json", "oci-layout"]
    assert sorted(os.listdir(tmp_path)) == ["busy", "empty", "store"]     # no temporaries left


def test_a_missing_blob_fails_the_oci_dir_and_removes_what_was_built(store, tmp_path):
    image_id = add_image(store, [BASE], ["localhost/app:latest"])
    os.unlink(store.blobs.path(image_id))
    with pytest.raises(NotFound, match="config blob"):
        save(store, ["app"], "oci-dir", str(tmp_path / "layout"))
    assert os.listdir(tmp_path) == ["store"]


# ---------------------------------------------------------------- output rules

@pytest.mark.parametrize("fmt", ["docker-archive", "oci-archive"])
def test_same_store_content_gives_the_same_bytes(store, tmp_path, fmt):
    add_image(store, [BASE, APP], ["localhost/app:latest"])
    first, second = io.BytesIO(), io.BytesIO()
    save(store, ["app"], fmt, first)
    save(store, ["app"], fmt, second)
    assert first.getvalue() == second.getvalue()
    with tarfile.open(fileobj=io.BytesIO(first.getvalue())) as tar:
        infos = tar.getmembers()
    assert [m.name for m in infos] == sorted(m.name for m in infos)
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname) for m in infos} == {(0, 0, 0, "", "")}


def test_unknown_image_writes_nothing(store, tmp_path):
    add_image(store, [BASE], ["localhost/app:latest"])
    with pytest.raises(ImageNotFound):
        save(store, ["app", "nosuch"], "docker-archive", str(tmp_path / "out.tar"))
    assert os.listdir(tmp_path) == ["store"]


@pytest.mark.parametrize("output, fmt, terminal, expected", [
    ("out.tar", "docker-archive", True, "out.tar"),
    ("-", "oci-archive", False, None),
    (None, "docker-archive", False, None),
    ("dir", "oci-dir", True, "dir"),
])
def test_destination(output, fmt, terminal, expected):
    assert destination(output, fmt, terminal) == expected


@pytest.mark.parametrize("output, fmt, terminal, message", [
    (None, "docker-archive", True, "terminal"),
    ("-", "oci-archive", True, "terminal"),
    (None, "oci-dir", False, "directory"),
    ("x.tar", "docker-dir", False, "unknown save format"),
])
def test_destination_refuses(output, fmt, terminal, message):
    with pytest.raises(UsageError, match=message):
        destination(output, fmt, terminal)


# ---------------------------------------------------------------- the CLI, as a user without a mount runs it

def cli(store, *args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "minirun", "save", *args], capture_output=True,
                          env=dict(os.environ, MINIRUN_ROOT=store.root), timeout=30, **kwargs)


def test_cli_writes_the_tar_to_a_pipe(store):
    image_id = add_image(store, [BASE], ["localhost/app:latest"])
    result = cli(store, "--format", "oci-archive", "app")
    assert result.returncode == 0, result.stderr
    with tarfile.open(fileobj=io.BytesIO(result.stdout)) as tar:
        index = json.load(tar.extractfile("index.json"))
        manifest = json.load(tar.extractfile("blobs/sha256/" + index["manifests"][0]["digest"][7:]))
    assert manifest["config"]["digest"] == image_id


def test_cli_refuses_a_terminal_in_one_line(store):
    add_image(store, [BASE], ["localhost/app:latest"])
    leader, follower = pty.openpty()
    try:
        proc = subprocess.run([sys.executable, "-m", "minirun", "save", "app"], stdout=follower,
                              stderr=subprocess.PIPE, env=dict(os.environ, MINIRUN_ROOT=store.root), timeout=30)
    finally:
        os.close(follower)
        os.close(leader)
    lines = proc.stderr.decode().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "terminal" in lines[0] and "hint:" in lines[0]


def test_cli_errors_are_one_line(store, tmp_path):
    add_image(store, [BASE], ["localhost/app:latest"])
    missing = cli(store, "nosuch", "-o", str(tmp_path / "x.tar"))
    bad_format = cli(store, "app", "--format", "docker-dir", "-o", str(tmp_path / "x.tar"))
    no_dir = cli(store, "app", "-o", str(tmp_path / "no" / "x.tar"))
    for result, code in ((missing, 1), (bad_format, 2), (no_dir, 1)):
        lines = result.stderr.decode().splitlines()
        assert result.returncode == code and len(lines) == 1 and "Traceback" not in lines[0], result.stderr
    assert sorted(os.listdir(tmp_path)) == ["store"]
