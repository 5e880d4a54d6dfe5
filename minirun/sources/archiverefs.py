"""The names an archive gives its images: an OCI layout's annotations
(containerd's full name, or org.opencontainers.image.ref.name, a bare tag taking
its repository from the archive's file name) and a docker-archive's RepoTags.
Each is parsed as a reference; an invalid one is refused with a hint to name
the image with --tag instead."""

from __future__ import annotations

import os
import re

from .. import oci
from ..oci import reference
from ..errors import BadImage, UsageError

_CONTAINERD_NAME = "io.containerd.image.name"


def oci_refs(path: str, annotations: dict) -> list[str]:
    try:
        return _oci_refs_unchecked(path, annotations)
    except UsageError as exc:
        raise BadImage(f"{path}: the image's name annotation is invalid: {exc.message}",
                       "load it with --tag REF") from None


def _oci_refs_unchecked(path: str, annotations: dict) -> list[str]:
    full = annotations.get(_CONTAINERD_NAME)
    name = annotations.get(oci.ANNOTATION_REF_NAME)
    if isinstance(full, str) and full:
        return [str(reference.parse(full))]
    if not isinstance(name, str) or not name:
        return []
    if "/" in name or ":" in name:
        return [str(reference.parse(name))]
    return [str(reference.parse(f"localhost/{_repo_from_path(path)}:{name}"))]


def _repo_from_path(path: str) -> str:
    """ch3_myapp/ or ch3_myapp.tar -> ch3_myapp, folded to a valid repository name."""
    base = os.path.basename(os.path.normpath(path))
    for suffix in (".tar.gz", ".tgz", ".tar"):
        if base.endswith(suffix):
            base = base[: -len(suffix)]
    base = re.sub(r"[^a-z0-9._-]+", "-", base.lower()).strip("._-")
    return base or "image"


def docker_refs(tags: object, what: str) -> list[str]:
    if tags is None:
        return []
    if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
        raise BadImage(f"{what}: 'RepoTags' must be a list of strings")
    try:
        return [str(reference.parse(tag)) for tag in tags]
    except UsageError as exc:
        raise BadImage(f"{what}: {exc.message}", "load it with --tag REF") from None
