"""The three on-disk forms of built images, each written atomically.

A reader of OUTDIR never sees a half-written archive or layout: files are
written to a temporary name and renamed; a layout directory is assembled next
to its final place and swapped in.
"""

from __future__ import annotations

import hashlib
import os
import shutil

from .image import OCI_INDEX, BuiltImage, canonical_json
from .tarball import archive_bytes

OCI_LAYOUT = canonical_json({"imageLayoutVersion": "1.0.0"})


def split_ref(ref: str) -> tuple[str, str]:
    """'localhost/myapp:latest' -> ('localhost/myapp', 'latest')."""
    repo, _, tag = ref.rpartition(":")
    return repo, tag


def oci_layout_files(images: list[BuiltImage], full_refs: bool) -> dict[str, bytes]:
    """oci-layout, index.json and blobs/sha256/* for one or more images.

    The ref.name annotation is the tag alone in a layout directory (the loader
    names the image after the directory) and the full reference in an archive.
    """
    files: dict[str, bytes] = {"oci-layout": OCI_LAYOUT}
    manifests = []
    for image in images:
        ref_name = image.spec.ref if full_refs else split_ref(image.spec.ref)[1]
        manifests.append(image.manifest_descriptor(ref_name))
        for digest, blob in image.blobs().items():
            files["blobs/sha256/" + digest.split(":", 1)[1]] = blob
    files["index.json"] = canonical_json({
        "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests,
    })
    return files


def _v1_ids(image: BuiltImage) -> list[str]:
    """Per-layer directory names of a docker archive, chained like docker save's v1 ids.

    Chaining (id = sha256(parent id + diff_id)) means a layer directory is
    shared only when the whole stack below it is shared, so its "parent" field
    can never disagree between two images of a multi-image archive.
    """
    ids, parent = [], ""
    for layer in image.layers:
        parent = hashlib.sha256(f"{parent} {layer.diff_id}".encode()).hexdigest()
        ids.append(parent)
    return ids


def docker_archive_files(images: list[BuiltImage]) -> dict[str, bytes]:
    """manifest.json, repositories, <config>.json and <id>/{VERSION,json,layer.tar}.

    layer.tar holds the gzip blob as is: docker load and skopeo sniff the
    compression, and the bytes then match the OCI outputs' layer blobs.
    """
    files: dict[str, bytes] = {}
    manifest, repositories = [], {}
    for image in images:
        config_name = image.config_digest.split(":", 1)[1] + ".json"
        files[config_name] = image.config
        ids = _v1_ids(image)
        for i, (layer_id, layer) in enumerate(zip(ids, image.layers)):
            legacy = {"id": layer_id, **({"parent": ids[i - 1]} if i else {})}
            files[f"{layer_id}/VERSION"] = b"1.0"
            files[f"{layer_id}/json"] = canonical_json(legacy)
            files[f"{layer_id}/layer.tar"] = layer.blob
        manifest.append({
            "Config": config_name,
            "RepoTags": [image.spec.ref],
            "Layers": [f"{layer_id}/layer.tar" for layer_id in ids],
        })
        repo, tag = split_ref(image.spec.ref)
        repositories.setdefault(repo, {})[tag] = ids[-1]
    files["manifest.json"] = canonical_json(manifest)
    files["repositories"] = canonical_json(repositories)
    return files


def write_atomic(path: str, data: bytes) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def write_tree_atomic(path: str, files: dict[str, bytes]) -> None:
    """Assemble a directory beside `path`, then swap it in for the old one."""
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    tmp, old = f"{path}.tmp-{os.getpid()}", f"{path}.old-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    for rel, data in sorted(files.items()):
        dest = os.path.join(tmp, rel)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        with open(dest, "wb") as f:
            f.write(data)
    if os.path.lexists(path):
        os.rename(path, old)
    os.rename(tmp, path)
    shutil.rmtree(old, ignore_errors=True)


def write_all_forms(outdir: str, name: str, images: list[BuiltImage], layout_dir: bool) -> list[str]:
    """Write oci/<name>/ (single images only), oci-archive/<name>.tar, docker-archive/<name>.tar."""
    written = []
    if layout_dir:
        path = os.path.join(outdir, "oci", name)
        files = oci_layout_files(images, full_refs=False)
        write_tree_atomic(path, files)
        written.append(f"{path}/ ({len(files) - 2} blobs)")
    for form, files in (
        ("oci-archive", oci_layout_files(images, full_refs=True)),
        ("docker-archive", docker_archive_files(images)),
    ):
        path = os.path.join(outdir, form, f"{name}.tar")
        write_atomic(path, archive_bytes(files))
        written.append(path)
    return written
