"""Image lifecycle: inspect, commit, export, import, tag, history, prune."""

from __future__ import annotations

import json
from typing import List, Optional

import typer

from .common import EXIT_CODES_HELP, app, handled, store as _store


@app.command(epilog=EXIT_CODES_HELP)
@handled()
def inspect(name: str = typer.Argument(..., metavar="CONTAINER|IMAGE"),
            type_: Optional[str] = typer.Option(None, "--type", help="container or image, when a name is both.")):
    """Show a container or an image as JSON.

    A container shows its UpperDir, WorkDir and LowerDirs; an image its
    Config, RootFS.Layers (the diff_ids) and the cached layer directories.

    Example: minirun inspect t1 | jq -r .UpperDir
    """
    from ..runtime import inspect as do_inspect
    print(json.dumps(do_inspect(_store(create=False), name), indent=2))


@app.command(epilog=EXIT_CODES_HELP)
@handled()
def commit(name: str = typer.Argument(..., metavar="CONTAINER"),
           ref: Optional[str] = typer.Argument(None, metavar="[REF]", help="Name for the new image, "
                                               "e.g. myapp:v2 (a tag that moves leaves the old image dangling)."),
           message: str = typer.Option("", "--message", "-m", help="Comment for the history entry."),
           author: str = typer.Option("", "--author", "-a", help="Author, e.g. 'Jo <jo@example.com>'."),
           change: List[str] = typer.Option([], "--change", "-c", help="Dockerfile instruction to apply: "
                                             "CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, STOPSIGNAL, "
                                             "USER, VOLUME, WORKDIR. Repeatable.")):
    """Make a new image from a stopped container: its image's layers plus one new
    layer holding exactly what the container wrote (its upper dir).

    The base layers are shared, not copied. The new layer is packed
    reproducibly: the same upper dir content gives the same layer digest
    (set SOURCE_DATE_EPOCH to clamp file times and fix the creation time, and
    the image id repeats too). The new image keeps its base image's config
    (not the container's command line); change it with -c.

    A running container is refused: stop it first, so the layer is a
    consistent snapshot. The container itself is left as it was.

    Example: sudo minirun commit -m 'add greeting' -c 'CMD ["cat", "/greeting"]' t1 myapp:v2
    """
    from ..commit import CommitOptions, commit as do_commit
    from ..runtime import require_root
    require_root("commit")
    result = do_commit(_store(), name, CommitOptions(ref, message, author, tuple(change)))
    print(result.image_id)
