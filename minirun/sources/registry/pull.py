"""minirun pull: the manifest (the host's platform picked from an index), then
the layers the cache lacks, downloaded three at a time into tmp/ (resumable
with Range after a dropped connection or a killed pull), verified, and handed
to the importer, which extracts them in order."""

from __future__ import annotations

import hashlib
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from ...lib.frozen import dataclass

from ... import oci
from ...oci import reference
from ...errors import (NO_SPACE_ERRNOS, BadImage, DigestMismatch, EnvironmentProblem, RegistryError,
                      RegistryUnavailable, UsageError, out_of_space)
from ..importer import SourceImage, SourceLayer, import_image
from ..progress import Report
from .client import RegistryClient

PARALLEL_DOWNLOADS = 3          # as docker does
RETRIES = 3
RETRY_DELAY = 0.5        # seconds, times the attempt number
CHUNK = 1 << 16


@dataclass(frozen=True)
class PullResult:
    ref: str
    image_id: str
    manifest_digest: str
    up_to_date: bool
    downloaded_bytes: int
    requests: int


def parse_platform(text: str | None) -> oci.Platform:
    if not text:
        return oci.host_platform()
    parts = text.split("/")
    if not 2 <= len(parts) <= 3 or not all(parts):
        raise UsageError(f"invalid platform {text!r}: expected os/arch[/variant], e.g. linux/arm64")
    return oci.Platform(parts[0], parts[1], parts[2] if len(parts) == 3 else "")


def choose(index: oci.Index, wanted: oci.Platform, what: str) -> oci.Descriptor:
    offered = [d for d in index.manifests if d.platform and d.media_type not in oci.INDEX_TYPES
               and d.platform.architecture != "unknown"]
    for desc in offered:
        p = desc.platform
        if (p.os, p.architecture) == (wanted.os, wanted.architecture) and \
                (not wanted.variant or p.variant == wanted.variant):
            return desc
    names = ", ".join(sorted({str(d.platform) for d in offered})) or "none"
    raise UsageError(f"{what} has no image for {wanted}; it offers: {names}",
                     "pick one with --platform")


def pull(store, text: str, platform: str | None, report: Report) -> PullResult:
    """Pull text's image into the store, reporting each layer's steps and bytes to report."""
    ref = reference.parse(text)
    wanted = parse_platform(platform)
    client = RegistryClient(ref.registry)
    repo = ref.repository
    data, media_type, digest = client.get_manifest(repo, ref.digest or ref.tag)
    if media_type in oci.INDEX_TYPES:
        desc = choose(oci.parse_index(data, f"index of {ref}"), wanted, str(ref))
        data, media_type, digest = client.get_manifest(repo, desc.digest)
    manifest = oci.parse_manifest(data, f"manifest of {ref}")
    refs = [str(ref)]
    image_id = manifest.config.digest
    if _already_here(store, image_id, digest):
        store.images.add(image_id, store.images.read().images[image_id], refs)
        return PullResult(str(ref), image_id, digest, True, 0, client.requests)

    try:
        result, downloaded = _fetch_and_import(store, client, ref, manifest, data, refs, report)
    except BaseException as exc:
        from ...store.gc import collect_after_failure
        collect_after_failure(store)
        kept = [os.path.getsize(store.partial_download(d.digest)) for d in manifest.layers
                if os.path.exists(store.partial_download(d.digest))]
        if kept and out_of_space(exc) and not isinstance(exc, EnvironmentProblem):
            raise EnvironmentProblem(
                f"no space left on the store's filesystem; {len(kept)} partial download(s) of "
                f"{sum(kept)} bytes stay in {store.tmp} for a later pull to resume",
                "free space and pull again, or remove them with `minirun prune` "
                "(`minirun system df` counts them)") from exc
        raise
    store.images.add_repository(result.image_id, ref.name)
    return PullResult(str(ref), result.image_id, digest, False, downloaded, client.requests)


def _fetch_and_import(store, client: RegistryClient, ref, manifest: oci.Manifest, data: bytes,
                      refs: list[str], report: Report):
    """Download what the cache lacks (in parallel) while the importer extracts in order."""
    repo = ref.repository
    with store.locks.hold("gc", shared=True):
        config_bytes = _config(store, client, repo, manifest.config)
        config = oci.parse_config(config_bytes)
        if len(config.diff_ids) != len(manifest.layers):
            raise BadImage(f"{ref}: config lists {len(config.diff_ids)} diff_ids for "
                           f"{len(manifest.layers)} layers")
        chains = oci.chain_ids(list(config.diff_ids))
        downloader = _Downloader(store, client, repo, report)
        layers = []
        with ThreadPoolExecutor(PARALLEL_DOWNLOADS, thread_name_prefix="pull") as pool:
            for i, desc in enumerate(manifest.layers):
                cached = store.layers.lookup(config.diff_ids[i], chains[i]) is not None
                future = None
                if not cached and not store.blobs.has(desc.digest):
                    report(oci.short_id(desc.digest), "Waiting")
                    future = pool.submit(downloader.fetch, desc)
                layers.append(SourceLayer(desc.media_type, desc.digest, desc.size,
                                          _opener(store, desc.digest, future), in_store=True))

            def extracting(label: str, status: str, *size) -> None:
                report(label, _docker_word(status), *size)
            try:
                result = import_image(store, SourceImage(config_bytes, layers, refs, data, str(ref)),
                                      extracting)
            except BaseException:
                downloader.cancel()
                raise
    return result, downloader.bytes


def _docker_word(status: str) -> str:
    return "Pull complete" if status.startswith("Extracted") else status


def _already_here(store, image_id: str, manifest_digest: str) -> bool:
    record = store.images.read().images.get(image_id)
    return record is not None and record.manifest == manifest_digest and \
        all(store.layers.has(layer.key) for layer in record.layers)


def _config(store, client: RegistryClient, repo: str, desc: oci.Descriptor) -> bytes:
    if store.blobs.has(desc.digest):
        return store.blobs.read(desc.digest)
    data = client.get_blob(repo, desc.digest).body(oci.MAX_CONFIG_BYTES)
    actual = oci.sha256_digest(data)
    if actual != desc.digest:
        raise DigestMismatch(f"image config {oci.short_id(desc.digest)}: content has digest {actual}, "
                             f"expected {desc.digest}")
    return data      # the importer stores it, with the rest of the image


def _opener(store, digest: str, future: Future | None):
    def open_blob():
        if future is not None:
            future.result()
        return store.blobs.open(digest)
    return open_blob


class _Downloader:
    def __init__(self, store, client: RegistryClient, repo: str, report: Report):
        self.store, self.client, self.repo, self.report = store, client, repo, report
        self.bytes = 0
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True

    def fetch(self, desc: oci.Descriptor) -> None:
        label = oci.short_id(desc.digest)

        def on_wait(_name):
            self.report(label, "Waiting for another minirun downloading it")
        with self.store.locks.hold(f"blob-{desc.digest[7:]}", on_wait=on_wait):
            if self.store.blobs.has(desc.digest):
                self.report(label, "Download complete")
                return
            partial = self.store.partial_download(desc.digest)
            resumed = os.path.exists(partial)
            self._download(desc, partial, label)
            self.report(label, "Verifying Checksum")
            try:
                self._verify(desc, partial)
            except DigestMismatch:
                if not resumed:
                    raise
                # the partial download came from an earlier pull, perhaps from another
                # registry (partials are kept by digest alone): once more, from byte 0
                self.report(label, "Downloading again from the start")
                self._download(desc, partial, label)
                self._verify(desc, partial)
            self.store.blobs.adopt(partial, desc.digest)
            self.report(label, "Download complete")

    def _download(self, desc: oci.Descriptor, partial: str, label: str) -> None:
        """partial grows until it holds the whole blob: resumed where it stopped. A full
        disk keeps it, and says so (_kept)."""
        try:
            self._resume(desc, partial, label)
        except OSError as exc:
            if exc.errno not in NO_SPACE_ERRNOS:
                raise
            raise _kept(partial, label, desc.size) from exc

    def _resume(self, desc: oci.Descriptor, partial: str, label: str) -> None:
        failures = 0
        while True:
            offset = os.path.getsize(partial) if os.path.exists(partial) else 0
            if offset >= desc.size:
                return
            try:
                self._stream(desc, partial, offset, label)
                return
            except RegistryUnavailable as exc:
                failures += 1
                if failures > RETRIES or self.cancelled:
                    raise RegistryUnavailable(f"download of layer {label} failed after {RETRIES} retries: "
                                              f"{exc.message}", "run the pull again to resume it") from None
                self.report(label, f"Retrying in {failures * RETRY_DELAY:.1f}s")
                time.sleep(failures * RETRY_DELAY)

    def _stream(self, desc: oci.Descriptor, partial: str, offset: int, label: str) -> None:
        response = self.client.get_blob(self.repo, desc.digest, offset)
        mode = "ab"
        if offset and response.status == 200:
            offset, mode = 0, "wb"     # the server ignored Range: start over
        try:
            self.report(label, "Downloading", offset, desc.size)
            with open(partial, mode) as f:
                while not self.cancelled:
                    chunk = response.read(CHUNK)
                    if not chunk:
                        break
                    f.write(chunk)
                    offset += len(chunk)
                    self.bytes += len(chunk)
                    if offset > desc.size:
                        raise DigestMismatch(f"layer {label}: registry sent more than the "
                                             f"{desc.size} bytes the manifest declares")
                    self.report(label, "Downloading", offset, desc.size)
        finally:
            response.close()
        if self.cancelled:
            raise RegistryError("pull cancelled")
        if offset < desc.size:
            raise RegistryUnavailable(f"connection closed after {offset} of {desc.size} bytes")

    def _verify(self, desc: oci.Descriptor, partial: str) -> None:
        digest = hashlib.sha256()
        with open(partial, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        actual = "sha256:" + digest.hexdigest()
        if actual != desc.digest:
            os.unlink(partial)
            raise DigestMismatch(f"layer {oci.short_id(desc.digest)}: downloaded content has digest "
                                 f"{actual}, expected {desc.digest}", "pull again; the registry or a proxy "
                                 "served corrupt data")


def _kept(partial: str, label: str, total: int) -> EnvironmentProblem:
    """A full disk stopped a download: say what stays, and how to go on or let it go."""
    try:
        got = os.path.getsize(partial)
    except OSError:
        got = 0
    return EnvironmentProblem(
        f"no space left on the store's filesystem after {got} of layer {label}'s {total} bytes; "
        f"the partial download stays in {partial} for a later pull to resume",
        "free space and pull again, or remove it with `minirun prune` (`minirun system df` counts it)")
