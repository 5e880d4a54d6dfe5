"""Build small OCI layouts inside a test, for cases the fixtures do not cover
(a foreign architecture, an image without mount points, odd layers)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path


def layer_tar(entries: list[tarfile.TarInfo | tuple[tarfile.TarInfo, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for entry in entries:
            info, data = entry if isinstance(entry, tuple) else (entry, None)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def entry(name: str, kind: bytes = tarfile.REGTYPE, data: bytes | None = None, mode: int = 0o644,
          linkname: str = "") -> tarfile.TarInfo | tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.linkname, info.mtime = kind, mode, linkname, 1700000000
    if data is not None:
        info.size = len(data)
        return info, data
    return info


def write_layout(path: Path, layers: list[bytes], config: dict | None = None, arch: str = "amd64",
                 ref: str = "latest", top: dict | None = None) -> None:
    """An OCI layout with gzip layers and a config naming them; top: more keys at the
    config's top level (history, author, ...)."""
    blobs = path / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(data: bytes) -> dict:
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return {"digest": "sha256:" + digest, "size": len(data)}

    descs, diff_ids = [], []
    for raw in layers:
        diff_ids.append("sha256:" + hashlib.sha256(raw).hexdigest())
        descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                      **put(gzip.compress(raw, mtime=0))})
    cfg = {"architecture": arch, "os": "linux", "created": "2024-01-01T00:00:00Z",
           "config": config or {}, "rootfs": {"type": "layers", "diff_ids": diff_ids}, **(top or {})}
    cfg_desc = {"mediaType": "application/vnd.oci.image.config.v1+json", **put(json.dumps(cfg).encode())}
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": cfg_desc, "layers": descs}
    man_desc = {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                **put(json.dumps(manifest).encode()),
                "annotations": {"org.opencontainers.image.ref.name": ref}}
    (path / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    (path / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [man_desc]}))


def busybox_layer(extra: list | None = None, with_mount_points: bool = True) -> bytes:
    """/bin/busybox from the host with sh and a few applets, without the fixtures' base dirs."""
    import shutil
    binary = Path(shutil.which("busybox")).read_bytes()
    entries = [entry("bin", tarfile.DIRTYPE, mode=0o755),
               entry("bin/busybox", data=binary, mode=0o755)]
    for applet in ("sh", "ls", "cat", "echo", "true", "mkdir", "stat"):
        entries.append(entry(f"bin/{applet}", tarfile.SYMTYPE, linkname="busybox", mode=0o777))
    if with_mount_points:
        entries += [entry(d, tarfile.DIRTYPE, mode=0o755) for d in ("proc", "dev", "sys")]
    return layer_tar(entries + (extra or []))
