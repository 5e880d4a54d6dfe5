"""Image commands: load, images, rmi."""

from __future__ import annotations

import json
from typing import List, Optional

import typer

from . import lightcmds
from .common import EXIT_CODES_HELP, app, completer, handled, register, store as _store


register(lightcmds.LOAD)
register(lightcmds.IMAGES)


@app.command(epilog=EXIT_CODES_HELP)
@handled()
def rmi(names: List[str] = typer.Argument(..., metavar="IMAGE...", autocompletion=completer("images")),
        force: bool = typer.Option(False, "--force", "-f", help="Remove even if containers use it.")):
    """Remove images; layers that no other image or container uses are deleted.

    Example: sudo minirun rmi myapp
    """
    from ..api.catalog import remove
    from ..linux.caps import require_root
    require_root("rmi")
    remove(_store(), names, force, print)
