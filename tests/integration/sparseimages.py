"""Images whose layer blob is sparse, in the three formats `minirun load` reads:
an OCI layout dir holding a sparse blob file, and an OCI archive or a
docker-archive whose blob member is itself a sparse tar member (written by GNU
tar, `--sparse`, in the PAX 1.0 or the old GNU format). The blob is an
uncompressed layer tar of zeros only: an empty tar followed by padding, which
costs nothing to declare and, read naively, everything to hash and store.

Also layouts whose extra layer blob is 0 bytes (Docker takes that as an empty
layer). The base is the busybox fixture's OCI layout.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

OCI_TAR = "application/vnd.oci.image.layer.v1.tar"
OCI_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
REF = "localhost/sparse:latest"
EMPTY_SHA = "sha256:" + hashlib.sha256(b"").hexdigest()


def zeros_digest(size: int) -> str:
    """sha256 of `size` zero bytes (cheap up to a GiB or so)."""
    digest, chunk = hashlib.sha256(), bytes(1 << 20)
    for _ in range(size >> 20):
        digest.update(chunk)
    digest.update(bytes(size & ((1 << 20) - 1)))
    return "sha256:" + digest.hexdigest()


def sparse_file(path: Path, size: int) -> None:
    with open(path, "wb") as f:
        f.truncate(size)


def _base(base: Path) -> tuple[dict, dict]:
    blobs = base / "blobs" / "sha256"
    index = json.loads((base / "index.json").read_text())
    manifest = json.loads((blobs / index["manifests"][0]["digest"][7:]).read_text())
    config = json.loads((blobs / manifest["config"]["digest"][7:]).read_text())
    return manifest, config


def layout(dest: Path, base: Path, size: int, digest: str | None = None,
           media_type: str = OCI_TAR, diff_id: str | None = None) -> Path:
    """busybox + one layer whose blob is a sparse file of `size` bytes (all zeros).
    The digest is computed unless given (a blob refused by its size is never hashed)."""
    blobs = dest / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    for blob in (base / "blobs" / "sha256").iterdir():
        shutil.copyfile(blob, blobs / blob.name)
    digest = digest or zeros_digest(size)
    sparse_file(blobs / digest[7:], size)
    manifest, config = _base(base)
    config["rootfs"]["diff_ids"].append(diff_id or digest)

    def put(data: bytes, kind: str) -> dict:
        hexdigest = hashlib.sha256(data).hexdigest()
        (blobs / hexdigest).write_bytes(data)
        return {"mediaType": kind, "digest": "sha256:" + hexdigest, "size": len(data)}

    manifest["layers"].append({"mediaType": media_type, "digest": digest, "size": size})
    manifest["config"] = put(json.dumps(config).encode(), "application/vnd.oci.image.config.v1+json")
    desc = put(json.dumps(manifest).encode(), "application/vnd.oci.image.manifest.v1+json")
    desc["annotations"] = {"io.containerd.image.name": REF}
    (dest / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    (dest / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [desc]}))
    return dest


def docker_dir(dest: Path, base: Path, size: int, digest: str | None = None) -> Path:
    """The files of a docker-archive: busybox's layer, then a sparse layer.tar of `size`."""
    dest.mkdir(parents=True)
    manifest, config = _base(base)
    blobs = base / "blobs" / "sha256"
    (dest / "base").mkdir()
    shutil.copyfile(blobs / manifest["layers"][0]["digest"][7:], dest / "base" / "layer.tar")
    (dest / "sparse").mkdir()
    sparse_file(dest / "sparse" / "layer.tar", size)
    config["rootfs"]["diff_ids"].append(digest or zeros_digest(size))
    config_bytes = json.dumps(config).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    (dest / config_name).write_bytes(config_bytes)
    (dest / "manifest.json").write_text(json.dumps([{"Config": config_name, "RepoTags": [REF],
                                                     "Layers": ["base/layer.tar", "sparse/layer.tar"]}]))
    return dest


def sparse_tar(src: Path, out: Path, fmt: str) -> Path:
    """GNU tar of src's contents, holes as holes: fmt "pax" (GNU sparse 1.0) or "gnu" (type 'S')."""
    args = ["--format=posix", "--sparse-version=1.0"] if fmt == "pax" else ["--format=gnu"]
    subprocess.run(["tar", "--sparse", *args, "-C", str(src), "-cf", str(out), "."], check=True)
    return out


def empty_blob_layout(dest: Path, base: Path, media_type: str = OCI_GZIP) -> Path:
    """busybox + a layer whose blob is 0 bytes: an empty layer, diff_id sha256 of nothing."""
    return layout(dest, base, 0, EMPTY_SHA, media_type, EMPTY_SHA)


def empty_blob_docker_dir(dest: Path, base: Path) -> Path:
    return docker_dir(dest, base, 0, EMPTY_SHA)


def plain_tar(src: Path, out: Path) -> Path:
    subprocess.run(["tar", "-C", str(src), "-cf", str(out), "."], check=True)
    return out
