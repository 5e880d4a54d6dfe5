"""Interop with real peers, both directions.

minirun -> peers: what `minirun save` writes, podman loads and runs, skopeo
inspects, and umoci unpacks to exactly the tree minirun's own overlay shows.
peers -> minirun: what podman save, skopeo copy and umoci repack write,
minirun loads under the same image id and runs with the right content.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from minirun.layer.tree import compare, snapshot

from . import peers

HELLO = "[runtime 1.0] hello from myapp"
SAVE_FORMATS = ("docker-archive", "oci-archive", "oci-dir")
TREE_FIELDS = ("type", "mode", "uid", "gid", "size", "sha256", "target")


@pytest.fixture(scope="module")
def podman_store(tmp_path_factory):
    pm = peers.Podman(tmp_path_factory.mktemp("podman"))
    yield pm
    pm.cleanup()


@pytest.fixture
def podman(podman_store):
    """The module's podman, emptied after each test so no layer is reused across tests."""
    yield podman_store
    podman_store("rmi", "--all", "--force")


def image_id(mr, name: str) -> str:
    return mr.inspect(name)["Id"]


def save(mr, tmp_path: Path, name: str, fmt: str) -> Path:
    dest = tmp_path / ("saved-oci" if fmt == "oci-dir" else f"saved-{fmt}.tar")
    mr.ok("save", "--format", fmt, "-o", str(dest), name)
    return dest


def fields(tree: dict) -> dict:
    return {path: {k: v for k, v in entry.items() if k in TREE_FIELDS} for path, entry in tree.items()}


@contextlib.contextmanager
def merged_view(lower_dirs: list[str], target: Path):
    """A read-only overlay of an image's layers (topmost first): what a container starts from."""
    target.mkdir()
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", "ro,lowerdir=" + ":".join(lower_dirs),
                    str(target)], check=True, capture_output=True)
    try:
        yield target
    finally:
        subprocess.run(["umount", str(target)], check=True)


# ---------------------------------------------------------------- minirun -> peers

@pytest.mark.parametrize("fmt", SAVE_FORMATS)
def test_podman_loads_and_runs_what_minirun_saves(mr, podman, tmp_path, fmt):
    mr.load("myapp")
    saved = save(mr, tmp_path, "myapp", fmt)
    names = podman.load(str(saved))
    assert len(names) == 1, names
    if fmt != "oci-dir":                 # podman names a layout dir after the dir itself
        assert names == ["localhost/myapp:latest"]
    assert podman.image_id(names[0]) == image_id(mr, "myapp")
    assert podman.run(names[0]).strip() == HELLO
    assert podman.run(names[0], "cat", "/usr/bin/rt-info").startswith("#!")


def test_an_image_whose_layers_were_cached_from_another_image_saves_and_runs(mr, podman, tmp_path):
    """myotherapp comes back from an uncompressed docker-archive after myapp (gzip)
    was loaded: its two shared layers "Already exist", so the blobs its record names
    were never stored, and save must use myapp's blobs of the same diff_ids."""
    mr.load("myotherapp")
    other_id = image_id(mr, "myotherapp")
    uncompressed = save(mr, tmp_path, "myotherapp", "docker-archive")
    mr.ok("rmi", "myotherapp")
    mr.load("myapp")
    reloaded = mr.ok("load", str(uncompressed)).lines
    assert sum(line.endswith(": Already exists") for line in reloaded) == 2
    diff_ids = mr.inspect("myotherapp")["RootFS"]["Layers"]
    assert not (mr.root / "blobs" / "sha256" / diff_ids[0][7:]).exists()
    archive = tmp_path / "other-oci.tar"
    mr.ok("save", "--format", "oci-archive", "-o", str(archive), "myotherapp")
    raw = peers.skopeo_raw(f"oci-archive:{archive}")
    myapp_layers = peers.skopeo_raw(f"oci:{mr.fixture_path('myapp')}:latest")["layers"]
    assert [layer["digest"] for layer in raw["layers"][:2]] == [layer["digest"] for layer in myapp_layers[:2]]
    names = podman.load(str(archive))
    assert podman.image_id(names[0]) == other_id
    assert podman.run(names[0]).strip() == "[runtime 1.0] hello from myotherapp"


def test_skopeo_inspects_every_saved_format(mr, tmp_path):
    peers.require("skopeo")
    mr.load("myotherapp", fmt="docker-archive")     # stored with a Docker schema 2 manifest
    info = mr.inspect("myotherapp")
    for fmt in SAVE_FORMATS:
        saved = save(mr, tmp_path, "myotherapp", fmt)
        skopeo_ref = {"docker-archive": f"docker-archive:{saved}", "oci-archive": f"oci-archive:{saved}",
                      "oci-dir": f"oci:{saved}:latest"}[fmt]
        inspected = peers.skopeo_inspect(skopeo_ref)
        raw = peers.skopeo_raw(skopeo_ref)
        assert raw["config"]["digest"] == info["Id"], fmt
        assert inspected["Os"] == "linux" and inspected["Architecture"] == info["Architecture"]
        if fmt == "docker-archive":
            assert inspected["Layers"] == info["RootFS"]["Layers"]        # uncompressed: digest = diff_id
        else:
            assert raw["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
            assert raw["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"
            assert all(layer["mediaType"].startswith("application/vnd.oci.image.layer.v1.tar")
                       for layer in raw["layers"])
            assert len(raw["layers"]) == len(info["RootFS"]["Layers"])


@pytest.mark.parametrize("image", ["myapp", "whiteouts"])
def test_umoci_unpacks_the_tree_minirun_mounts(mr, tmp_path, image):
    peers.require("umoci")
    mr.load(image)
    saved = save(mr, tmp_path, image, "oci-dir")
    rootfs = peers.umoci_unpack(saved, "latest", tmp_path / "bundle")
    lower_dirs = mr.inspect(image)["GraphDriver"]["Data"]["LowerDir"].split(":")
    assert len(lower_dirs) >= 3
    with merged_view(lower_dirs, tmp_path / "merged") as merged:
        ours = fields(snapshot(str(merged)))
    theirs = fields(snapshot(str(rootfs)))
    assert len(ours) > 100 and "/bin/busybox" in ours
    assert compare(theirs, ours) == []
    if image == "whiteouts":
        assert not any(p.startswith("/olddir") or "/.wh." in p for p in theirs)
        assert "/etc/hostname" not in theirs and "/etc/passwd" in theirs
        assert sorted(p for p in theirs if p.startswith("/replaced/")) == ["/replaced/new.txt"]
        assert sorted(p for p in theirs if p.startswith("/data/")) == ["/data/keep.txt"]


@pytest.mark.parametrize("fmt", SAVE_FORMATS)
def test_what_minirun_saves_loads_back_with_the_same_id_and_name(mr, tmp_path, fmt):
    mr.load("myapp")
    before = image_id(mr, "myapp")
    saved = save(mr, tmp_path, "myapp", fmt)
    mr.ok("rmi", "myapp")
    assert mr.layer_dirs() == []           # the reload below extracts from the saved layers
    out = mr.ok("load", str(saved))
    assert out.lines[-1] == "Loaded image: localhost/myapp:latest"   # io.containerd.image.name
    assert image_id(mr, "localhost/myapp:latest") == before
    assert mr.ok("run", "--rm", "myapp").stdout.strip() == HELLO


# ---------------------------------------------------------------- peers -> minirun

@pytest.mark.parametrize("fmt", ["docker-archive", "oci-archive", "oci-dir", "docker-dir"])
def test_minirun_loads_what_podman_saves(mr, podman, tmp_path, fmt):
    names = podman.load(mr.fixture_path("myapp", "oci-archive"))
    podman_id = podman.image_id(names[0])
    archive = tmp_path / (f"podman-{fmt}" if fmt.endswith("-dir") else f"podman-{fmt}.tar")
    podman.save(names[0], str(archive), fmt)
    mr.ok("load", str(archive))
    assert image_id(mr, podman_id) == podman_id
    assert mr.ok("run", "--rm", podman_id[7:19]).stdout.strip() == HELLO


@pytest.mark.parametrize("dest", ["oci", "docker-archive"])
def test_minirun_loads_what_skopeo_copies(mr, tmp_path, dest):
    peers.require("skopeo")
    source = f"oci-archive:{mr.fixture_path('myotherapp', 'oci-archive')}"
    config_digest = peers.skopeo_config_digest(source)
    target = tmp_path / ("copy-oci" if dest == "oci" else "copy.tar")
    ref = f"oci:{target}:v1" if dest == "oci" else f"docker-archive:{target}:localhost/copied:v1"
    peers.skopeo_copy(source, ref, tmp_path)
    assert peers.skopeo_config_digest(ref) == config_digest
    out = mr.ok("load", str(target))
    name = "localhost/copy-oci:v1" if dest == "oci" else "localhost/copied:v1"
    assert out.lines[-1] == f"Loaded image: {name}"
    assert image_id(mr, name) == config_digest
    assert mr.ok("run", "--rm", name).stdout.strip() == "[runtime 1.0] hello from myotherapp"


def top_layer_names(layout: Path, tag: str) -> list[str]:
    index = json.loads((layout / "index.json").read_text())
    entry = next(m for m in index["manifests"]
                 if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag)
    manifest = json.loads((layout / "blobs/sha256" / entry["digest"][7:]).read_bytes())
    blob = (layout / "blobs/sha256" / manifest["layers"][-1]["digest"][7:]).read_bytes()
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob))) as tar:
        return tar.getnames()


def test_minirun_runs_an_image_umoci_repacked_with_a_whiteout(mr, tmp_path):
    peers.require("umoci")
    layout = tmp_path / "umoci-myapp"
    shutil.copytree(mr.fixture_path("myapp"), layout)
    rootfs = peers.umoci_unpack(layout, "latest", tmp_path / "bundle")
    (rootfs / "added.txt").write_text("added by umoci\n")
    os.unlink(rootfs / "etc" / "group")          # /etc/hostname would not do: run binds its own
    peers.umoci("repack", "--image", f"{layout}:v2", str(tmp_path / "bundle"))
    names = top_layer_names(layout, "v2")
    assert any(n.removeprefix("./") == "etc/.wh.group" for n in names), names   # umoci wrote a whiteout
    out = mr.ok("load", str(layout))
    assert "Loaded image: localhost/umoci-myapp:v2" in out.lines
    assert image_id(mr, "localhost/umoci-myapp:v2") == peers.layout_config_digest(layout, "v2")
    script = "cat /added.txt; test -e /etc/group && echo group present || echo group gone; /app/main.sh"
    run = mr.ok("run", "--rm", "localhost/umoci-myapp:v2", "sh", "-c", script)
    assert run.lines == ["added by umoci", "group gone", HELLO]
    before = mr.ok("run", "--rm", "localhost/umoci-myapp:latest", "sh", "-c", "test -e /etc/group && ls /")
    assert "added.txt" not in before.lines and "etc" in before.lines     # the base image is unchanged
