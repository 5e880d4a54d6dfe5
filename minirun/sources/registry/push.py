"""minirun push: every blob the registry lacks (HEAD first; a cross-repository
mount when another repository there has it), then the manifest with its own
media type, so the registry serves exactly the bytes the store holds."""

from __future__ import annotations


from concurrent.futures import ThreadPoolExecutor
from ...lib.frozen import dataclass

from ... import oci
from ...oci import reference
from ...errors import UsageError
from ..progress import Metered, Report
from .client import RegistryClient

PARALLEL_UPLOADS = 3


@dataclass(frozen=True)
class PushResult:
    ref: str
    digest: str
    size: int


def push(store, image: str, dest: str | None, report: Report) -> PushResult:
    """Push image to dest (default: its own reference), reporting each blob's steps and
    the bytes sent of it to report."""
    with store.locks.hold("gc", shared=True):    # no rmi or prune takes a blob mid-upload
        return _push(store, image, dest, report)


def _push(store, image: str, dest: str | None, report: Report) -> PushResult:
    image_id, record = store.images.resolve(image)
    target = _target(store, image, image_id, dest)
    if not target.tag and not target.digest:
        raise UsageError(f"push needs a tag: {target}")
    manifest_bytes, manifest = _manifest(store, record)
    client = RegistryClient(target.registry)
    repo = target.repository
    sources = _mount_sources(store, target)
    blobs = [*manifest.layers, manifest.config]
    with ThreadPoolExecutor(PARALLEL_UPLOADS, thread_name_prefix="push") as pool:
        list(pool.map(lambda d: _push_blob(store, client, repo, d, sources, report), blobs))
    reference_part = target.tag or target.digest
    digest = client.put_manifest(repo, reference_part, manifest_bytes, manifest.media_type)
    store.images.add_repository(image_id, target.name)
    return PushResult(str(target), digest, len(manifest_bytes))


def _manifest(store, record) -> tuple[bytes, oci.Manifest]:
    """The stored manifest, or, when some of its layer blobs were never fetched
    (the layer came from another image), one naming blobs the store holds for
    the same layers (store/blobs.py layer_blob). The config, so the image id, is the same."""
    from ...store.blobs import layer_blob
    manifest_bytes = store.blobs.read(record.manifest)
    manifest = oci.parse_manifest(manifest_bytes)
    if all(store.blobs.has(d.digest) for d in manifest.layers):
        return manifest_bytes, manifest
    layers = tuple(layer_blob(store, layer) for layer in record.layers)
    layers = tuple(oci.Descriptor(oci.layer_type_for(manifest.media_type, d.media_type), d.digest, d.size)
                   for d in layers)
    rebuilt = oci.Manifest(manifest.media_type, manifest.config, layers)
    return rebuilt.to_bytes(), rebuilt


def _target(store, image: str, image_id: str, dest: str | None) -> reference.Reference:
    if dest:
        return reference.parse(dest)
    ref = store.images.ref_for(image)
    if ref is None:
        refs = store.images.refs_of(image_id)
        if len(refs) != 1:
            raise UsageError(f"say where to push {image}: give a reference as the second argument")
        ref = refs[0]
    return reference.parse(ref)


def _mount_sources(store, target: reference.Reference) -> dict[str, list[str]]:
    """blob digest -> other repositories on the same registry that images holding
    that blob came from or went to: candidates for a cross-repository mount."""
    out: dict[str, list[str]] = {}
    for image_id, record in store.images.read().images.items():
        repos = []
        for name in record.repositories:
            registry, _, repo = name.partition("/")
            if registry == target.registry and repo != target.repository:
                repos.append(repo)
        for digest in [image_id, *(layer.blob for layer in record.layers)]:
            out.setdefault(digest, []).extend(r for r in repos if r not in out.get(digest, []))
    return out


def _push_blob(store, client: RegistryClient, repo: str, desc: oci.Descriptor,
               sources: dict[str, list[str]], report: Report) -> None:
    label = oci.short_id(desc.digest)
    report(label, "Preparing")
    if client.blob_exists(repo, desc.digest, scope=f"repository:{repo}:pull,push"):
        report(label, "Layer already exists")
        return
    for source in sources.get(desc.digest, []):
        if client.mount_blob(repo, desc.digest, source):
            report(label, f"Mounted from {source}")
            return
    report(label, "Pushing", 0, desc.size)

    def sent(done: int) -> None:
        report(label, "Pushing", done, desc.size)
    with store.blobs.open(desc.digest) as stream:
        client.upload_blob(repo, desc.digest, desc.size, Metered(stream, sent))
    report(label, "Pushed")
