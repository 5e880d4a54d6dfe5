"""Image references, normalised the way Docker does.

    busybox                   -> docker.io/library/busybox:latest
    user/app                  -> docker.io/user/app:latest
    host:5000/x/y:tag         -> host:5000/x/y:tag
    repo@sha256:<hex>         -> pinned by digest (a tag may stand beside it)
"""

from __future__ import annotations

from ..lib.frozen import dataclass

from ..errors import UsageError
from ..lib.names import is_hex, is_registry_host, is_repository_path, is_sha256_digest, is_tag

DEFAULT_REGISTRY = "docker.io"
DEFAULT_TAG = "latest"


@dataclass(frozen=True)
class Reference:
    registry: str
    repository: str
    tag: str = ""
    digest: str = ""

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.repository}"

    def __str__(self) -> str:
        out = self.name
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out

    def familiar(self) -> str:
        """The short form docker prints: busybox:latest rather than docker.io/library/busybox:latest.
        library/ goes only when one component remains: docker.io/library/a/b stays library/a/b,
        which parses back to itself (a/b would be docker.io/a/b, another repository)."""
        repo = self.name
        if self.registry == DEFAULT_REGISTRY:
            short = self.repository.removeprefix("library/")
            repo = short if "/" not in short else self.repository
        return repo + (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")


def _looks_like_host(part: str) -> bool:
    return "." in part or ":" in part or part == "localhost" or part.startswith("[")


def _shown(text: str, limit: int = 80) -> str:
    """The reference as an error line quotes it, cut short when it is huge."""
    shown = repr(text)
    return shown if len(shown) <= limit else f"{shown[:limit]}... ({len(text)} characters)"


def parse(text: str) -> Reference:
    """Parse and normalise an image reference, or raise UsageError saying what is wrong."""
    if not isinstance(text, str):
        raise UsageError(f"invalid reference {_shown(text)}: a reference is text, "
                         f"not {type(text).__name__}")
    original = _shown(text)
    if not text.isascii() or not text.isprintable():
        raise UsageError(f"invalid reference {original}: only printable ASCII is allowed")
    if not text or text != text.strip():
        raise UsageError(f"invalid reference {original}: empty or padded with spaces")
    digest = ""
    if "@" in text:
        text, digest = text.split("@", 1)
        if not is_sha256_digest(digest):
            raise UsageError(f"invalid reference {original}: digest must be sha256:<64 hex digits>")
    tag = ""
    slash = text.rfind("/")
    colon = text.rfind(":")
    if colon > slash:
        text, tag = text[:colon], text[colon + 1:]
        if not is_tag(tag):
            raise UsageError(f"invalid reference {original}: bad tag {_shown(tag)}")
    first, _, rest = text.partition("/")
    if rest and _looks_like_host(first):
        if not is_registry_host(first):
            raise UsageError(f"invalid reference {original}: bad registry host {_shown(first)}")
        registry, path = first, rest
    else:
        registry, path = DEFAULT_REGISTRY, text
    if registry in ("index.docker.io", "registry-1.docker.io"):
        registry = DEFAULT_REGISTRY
    if registry == DEFAULT_REGISTRY and "/" not in path:
        path = f"library/{path}"
    if not is_repository_path(path):
        raise UsageError(f"invalid reference {original}: repository names are lowercase "
                         "letters, digits and . _ - separated by /")
    if len(registry) + 1 + len(path) > 255:
        raise UsageError(f"invalid reference {original}: longer than 255 characters")
    if not tag and not digest:
        tag = DEFAULT_TAG
    return Reference(registry, path, tag, digest)


def is_id_prefix(text: str) -> bool:
    """True for a full image id or a hex prefix of at least 12 digits (docker's rule)."""
    body = text.removeprefix("sha256:")
    return 12 <= len(body) <= 64 and is_hex(body)
