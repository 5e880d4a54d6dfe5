"""Image lifecycle: inspect, commit, export, import, tag, history, prune."""

from __future__ import annotations

import json
from typing import Optional

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
