"""Shell completion of image references and container names, read from the store.

typer drives completion for bash, zsh and fish (`minirun --install-completion`,
or `minirun --show-completion SHELL` to see the script); these functions give it
the candidates. They only read images.json and containers/*/config.json, never
lock, and return nothing rather than fail: a completion must never print an error.
"""

from __future__ import annotations

import json
import os


def _root() -> str:
    from ..store.root import default_root
    return default_root()


def _quietly(function):
    """A completion function that offers nothing instead of raising (a bad config
    file, a damaged store): the shell must never print a traceback."""
    def guarded(incomplete: str) -> list[str]:
        try:
            return function(incomplete)
        except Exception:                  # noqa: BLE001
            return []
    guarded.__name__ = function.__name__
    return guarded


@_quietly
def images(incomplete: str) -> list[str]:
    """Familiar references (busybox:latest, not docker.io/library/...) and short ids."""
    with open(os.path.join(_root(), "images.json")) as f:
        doc = json.load(f)
    doc.setdefault("images", {})
    doc.setdefault("tags", {})
    from ..usage import image_names
    names = set()
    for image_id, familiar_names in image_names(doc).items():
        names.add(image_id[7:19])
        for familiar in familiar_names:
            for name in {familiar, familiar.removeprefix("localhost/")}:   # `run busybox` finds localhost/busybox
                names.update({name, name.removesuffix(":latest")})
    return sorted(n for n in names if n.startswith(incomplete))


@_quietly
def containers(incomplete: str) -> list[str]:
    """Container names, and short ids for containers without one."""
    directory = os.path.join(_root(), "containers")
    ids = [n for n in os.listdir(directory) if len(n) == 64]
    names = set()
    for cid in ids:
        try:
            with open(os.path.join(directory, cid, "config.json")) as f:
                name = json.load(f).get("name")
        except (OSError, ValueError):
            continue
        names.add(name or cid[:12])
    return sorted(n for n in names if n.startswith(incomplete))


def image_or_container(incomplete: str) -> list[str]:
    return sorted(set(containers(incomplete)) | set(images(incomplete)))
