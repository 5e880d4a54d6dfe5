"""Shell completion of image references and container names, read from the store.

typer drives completion for bash, zsh and fish (`minirun --install-completion`,
or `minirun --show-completion SHELL` to see the script); these functions give it
the candidates. They only read images.json and containers/*/config.json (through the store's
bounded readers: a FIFO there must not hang the shell), never lock, and return
nothing rather than fail: a completion must never print an error.
"""

from __future__ import annotations


def _store():
    from ..store import open_store
    return open_store(create=False)


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
    doc = _store().images.read(warn=False)
    from ..api.disk import image_names
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
    from ..errors import MinirunError
    containers = _store().containers
    names = set()
    for cid in containers.ids():
        try:
            name = containers.config(cid).name
        except (OSError, MinirunError):
            continue
        names.add(name or cid[:12])
    return sorted(n for n in names if n.startswith(incomplete))


def image_or_container(incomplete: str) -> list[str]:
    return sorted(set(containers(incomplete)) | set(images(incomplete)))
